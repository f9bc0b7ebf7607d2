//! The one environment a vat runs in: its clocks, timers, randomness and
//! tasks.
//!
//! Library code of the runtime reads time, sleeps, draws random bytes and
//! spawns tasks only through this crate, so that a simulator can run many
//! vats on one thread with virtual time and seeded randomness, and replay a
//! whole history from its seed.
//!
//! - **Monotonic time and timers** are tokio's ([`now`], [`sleep`],
//!   [`timeout`]): real in a vat of its own thread, virtual in a simulation,
//!   whose runtime runs on tokio's paused clock.
//! - **Wall-clock time and randomness** come from the [`World`] installed on
//!   the thread while a vat runs ([`enter`]); with none (the default) they
//!   are the system's, `SystemTime::now` and the OS's random source, at no
//!   extra cost beyond one thread-local read.
//! - **Tasks** ([`spawn`]) belong to the vat that spawns them: they run on
//!   its `LocalSet`, and go when it stops or crashes.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

pub use tokio::time::{error::Elapsed, Instant, Sleep, Timeout};

/// What a simulated environment replaces: the wall clock, the random
/// source, and whether work may leave the vat's thread. Monotonic time is
/// tokio's clock, which a simulator pauses and advances itself.
pub trait World {
    /// The time of day.
    fn wall_clock(&self) -> SystemTime;
    /// Fills `bytes` with random bytes (keys and swiss numbers too).
    fn fill_random(&self, bytes: &mut [u8]);
    /// Whether the runtime may run work on threads of its own (the store's
    /// commit thread). A simulation keeps everything on its one thread.
    fn threads_allowed(&self) -> bool {
        true
    }
    /// How long a durable write takes to reach the disk, for a runtime that
    /// writes on the vat's own thread (zero: at once).
    fn store_delay(&self) -> Duration {
        Duration::ZERO
    }
    /// Whether the runtime should behave as if it had `bug`. Never in the
    /// real world: simulations turn bugs on to prove their property runs
    /// catch them.
    fn injects(&self, bug: InjectedBug) -> bool {
        let _ = bug;
        false
    }
}

/// Bugs a simulation can plant in the runtime, to check that its property
/// runs find them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InjectedBug {
    /// The store acknowledges a durable write before committing it (a crash
    /// in between loses a write its caller was told is safe).
    AckBeforeCommit,
}

/// Whether the environment plants `bug` (never outside a simulation).
pub fn injects(bug: InjectedBug) -> bool {
    world().is_some_and(|world| world.injects(bug))
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<dyn World>>> = const { RefCell::new(None) };
}

/// Runs `f` with `world` as this thread's environment, then restores the
/// one before (a simulator switches worlds as it switches vats).
pub fn enter<R>(world: Option<Rc<dyn World>>, f: impl FnOnce() -> R) -> R {
    let before = CURRENT.with(|current| current.replace(world));
    // Restored even if `f` unwinds, so a panicking vat does not leave its
    // world installed for the next one.
    struct Restore(Option<Option<Rc<dyn World>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take().flatten();
            let _ = CURRENT.try_with(|current| current.replace(before));
        }
    }
    let _restore = Restore(Some(before));
    f()
}

/// The world installed on this thread, if any (`None`: the real one).
pub fn world() -> Option<Rc<dyn World>> {
    CURRENT
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten()
}

/// Whether a simulated world is installed on this thread.
pub fn is_simulated() -> bool {
    CURRENT
        .try_with(|current| current.borrow().is_some())
        .unwrap_or(false)
}

/// The monotonic clock: tokio's (virtual under a paused runtime).
pub fn now() -> Instant {
    Instant::now()
}

/// The wall clock.
pub fn wall() -> SystemTime {
    match world() {
        Some(world) => world.wall_clock(),
        None => SystemTime::now(),
    }
}

/// Fills `bytes` with random bytes from the environment's source.
///
/// # Errors
/// When the OS has no random source to give (never in a simulation).
pub fn fill(bytes: &mut [u8]) -> Result<(), getrandom::Error> {
    match world() {
        Some(world) => {
            world.fill_random(bytes);
            Ok(())
        }
        None => getrandom::fill(bytes),
    }
}

/// A random number in `0.0..1.0` (jitter, choices; not for secrets).
pub fn random_unit() -> f64 {
    match world() {
        Some(world) => {
            let mut bytes = [0u8; 8];
            world.fill_random(&mut bytes);
            // 53 random bits, the precision of an f64 in [0, 1).
            (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
        }
        None => rand::random::<f64>(),
    }
}

/// A random index in `0..count` (`0` when `count` is 0).
pub fn random_below(count: usize) -> usize {
    if count == 0 {
        return 0;
    }
    match world() {
        Some(world) => {
            let mut bytes = [0u8; 8];
            world.fill_random(&mut bytes);
            // The modulo bias is below 2^-40 for any count a vat holds.
            (u64::from_le_bytes(bytes) % count as u64) as usize
        }
        None => rand::random_range(0..count),
    }
}

/// Whether the runtime may start threads of its own for work off the
/// vat's loop.
pub fn threads_allowed() -> bool {
    world().is_none_or(|world| world.threads_allowed())
}

/// How long a durable write takes in this environment when done on the
/// vat's thread.
pub fn store_delay() -> Duration {
    world().map_or(Duration::ZERO, |world| world.store_delay())
}

/// Waits for `duration` on the environment's clock.
pub fn sleep(duration: Duration) -> Sleep {
    tokio::time::sleep(duration)
}

/// Waits until `deadline` on the environment's clock.
pub fn sleep_until(deadline: Instant) -> Sleep {
    tokio::time::sleep_until(deadline)
}

/// `future`, or [`Elapsed`] once `duration` has passed.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    tokio::time::timeout(duration, future)
}

/// `future`, or [`Elapsed`] at `deadline`.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    tokio::time::timeout_at(deadline, future)
}

/// Spawns a task of the current vat (on its `LocalSet`).
///
/// # Panics
/// Outside a `LocalSet`, as `tokio::task::spawn_local` does.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    tokio::task::spawn_local(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl World for Fixed {
        fn wall_clock(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_secs(7)
        }
        fn fill_random(&self, bytes: &mut [u8]) {
            bytes.fill(0xab);
        }
        fn threads_allowed(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_world_replaces_the_wall_clock_and_randomness_only_while_entered() {
        assert!(!is_simulated());
        let seven = SystemTime::UNIX_EPOCH + Duration::from_secs(7);
        let inside = enter(Some(Rc::new(Fixed)), || {
            let mut bytes = [0u8; 4];
            fill(&mut bytes).unwrap();
            (wall(), bytes, threads_allowed(), is_simulated())
        });
        assert_eq!(inside, (seven, [0xab; 4], false, true));
        assert!(!is_simulated());
        assert!(threads_allowed());
        assert_ne!(wall(), seven);
    }

    #[test]
    fn the_world_before_is_restored_after_a_panic() {
        let caught = std::panic::catch_unwind(|| enter(Some(Rc::new(Fixed)), || panic!("boom")));
        assert!(caught.is_err());
        assert!(!is_simulated());
    }

    #[test]
    fn random_choices_stay_in_range() {
        for count in [1, 2, 3, 10] {
            assert!(random_below(count) < count);
            let drawn = enter(Some(Rc::new(Fixed)), || random_below(count));
            assert!(drawn < count);
        }
        assert_eq!(random_below(0), 0);
        let unit = enter(Some(Rc::new(Fixed)), random_unit);
        assert!((0.0..1.0).contains(&unit));
    }
}
