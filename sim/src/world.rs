//! The world each simulated vat runs in: virtual wall clock, seeded
//! randomness, no threads, a disk that takes time to write.

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vat_env::InjectedBug;

/// Virtual time 0 is this wall-clock time in every run (2026-01-01), so
/// expiry dates and crash logs read as dates.
pub const EPOCH_SECS: u64 = 1_767_225_600;

/// One vat incarnation's environment.
pub(crate) struct VatWorld {
    rng: RefCell<ChaCha8Rng>,
    start: tokio::time::Instant,
    disk_delay: (Duration, Duration),
    bugs: Vec<InjectedBug>,
}

impl VatWorld {
    /// The world of `vat`'s `incarnation` in the run of `seed`: its random
    /// stream is its own, so one vat drawing more numbers does not shift
    /// another's.
    pub(crate) fn new(
        seed: u64,
        vat: &str,
        incarnation: u32,
        start: tokio::time::Instant,
        disk_delay: (Duration, Duration),
        bugs: Vec<InjectedBug>,
    ) -> VatWorld {
        VatWorld {
            rng: RefCell::new(ChaCha8Rng::seed_from_u64(stream_seed(
                seed,
                vat,
                incarnation,
            ))),
            start,
            disk_delay,
            bugs,
        }
    }
}

/// A seed for one named stream of a run (FNV-1a over the name, mixed with
/// the run's seed and the incarnation).
pub(crate) fn stream_seed(seed: u64, name: &str, incarnation: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes().chain(incarnation.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^ seed.rotate_left(17)
}

impl vat_env::World for VatWorld {
    fn wall_clock(&self) -> SystemTime {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.start);
        SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS) + elapsed
    }

    fn fill_random(&self, bytes: &mut [u8]) {
        self.rng.borrow_mut().fill_bytes(bytes);
    }

    fn threads_allowed(&self) -> bool {
        false
    }

    fn store_delay(&self) -> Duration {
        let (low, high) = self.disk_delay;
        if high <= low {
            return low;
        }
        let micros = self
            .rng
            .borrow_mut()
            .random_range(low.as_micros() as u64..=high.as_micros() as u64);
        Duration::from_micros(micros)
    }

    fn injects(&self, bug: InjectedBug) -> bool {
        self.bugs.contains(&bug)
    }
}
