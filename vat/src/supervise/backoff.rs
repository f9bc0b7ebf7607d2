//! How long a supervisor waits before a restart.

use std::time::Duration;

/// The pause before each restart, so that a child failing on something
/// outside it (a vat still coming back, a full disk) is not restarted in a
/// tight loop.
///
/// ```
/// use std::time::Duration;
/// use vat::supervise::Backoff;
/// let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50));
/// assert_eq!(b.delay(0), Duration::from_millis(10));
/// assert_eq!(b.delay(2), Duration::from_millis(40));
/// assert_eq!(b.delay(9), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backoff {
    /// Restart at once.
    #[default]
    None,
    /// The same pause before every restart.
    Fixed(Duration),
    /// `initial`, doubling with each restart inside the current intensity
    /// period, never more than `max`.
    Exponential {
        /// The first pause.
        initial: Duration,
        /// The longest pause.
        max: Duration,
    },
}

impl Backoff {
    /// A fixed pause.
    pub fn fixed(pause: Duration) -> Backoff {
        Backoff::Fixed(pause)
    }

    /// A doubling pause from `initial` up to `max`.
    pub fn exponential(initial: Duration, max: Duration) -> Backoff {
        Backoff::Exponential { initial, max }
    }

    /// The pause before a restart that follows `earlier` restarts within
    /// the current intensity period.
    pub fn delay(&self, earlier: usize) -> Duration {
        match *self {
            Backoff::None => Duration::ZERO,
            Backoff::Fixed(pause) => pause,
            Backoff::Exponential { initial, max } => {
                let factor = 1u32.checked_shl(earlier.min(31) as u32).unwrap_or(u32::MAX);
                initial.saturating_mul(factor).min(max)
            }
        }
    }
}
