//! Restart intensity: at most N restarts in T, over a sliding window.

use std::collections::VecDeque;
use std::time::Duration;

use vat_env::Instant;

/// At most `max_restarts` restarts within any `period`; one more and the
/// supervisor gives up: it stops its children and fails, which its own
/// supervisor sees as a crash of that child.
///
/// ```
/// use std::time::Duration;
/// let limit = vat::supervise::Intensity::new(3, Duration::from_secs(5));
/// assert_eq!(limit.max_restarts, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within `period`.
    pub max_restarts: usize,
    /// The sliding window.
    pub period: Duration,
}

impl Intensity {
    /// `max_restarts` within `period`.
    pub fn new(max_restarts: usize, period: Duration) -> Intensity {
        Intensity {
            max_restarts,
            period,
        }
    }
}

impl Default for Intensity {
    /// Three restarts in five seconds.
    fn default() -> Intensity {
        Intensity::new(3, Duration::from_secs(5))
    }
}

/// The times of the restarts within the current period.
#[derive(Debug, Default)]
pub(crate) struct Window {
    restarts: VecDeque<Instant>,
}

impl Window {
    /// Records a restart at `now`; `false` if it is one more than `limit`
    /// allows (the supervisor must give up instead).
    pub(crate) fn record(&mut self, limit: Intensity, now: Instant) -> bool {
        while let Some(&oldest) = self.restarts.front() {
            if now.duration_since(oldest) >= limit.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.push_back(now);
        self.restarts.len() <= limit.max_restarts
    }

    /// Restarts in the current period, the one just recorded included.
    pub(crate) fn len(&self) -> usize {
        self.restarts.len()
    }

    pub(crate) fn clear(&mut self) {
        self.restarts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_exceeded_by_the_restart_after_the_last_allowed() {
        let limit = Intensity::new(3, Duration::from_secs(10));
        let mut window = Window::default();
        let t0 = vat_env::now();
        for i in 0..3 {
            assert!(window.record(limit, t0 + Duration::from_secs(i)), "{i}");
        }
        assert!(!window.record(limit, t0 + Duration::from_secs(3)));
    }

    #[test]
    fn restarts_older_than_the_period_leave_the_window() {
        let limit = Intensity::new(2, Duration::from_secs(10));
        let mut window = Window::default();
        let t0 = vat_env::now();
        assert!(window.record(limit, t0));
        assert!(window.record(limit, t0 + Duration::from_secs(5)));
        // The first restart is exactly one period old: out of the window.
        assert!(window.record(limit, t0 + Duration::from_secs(10)));
        assert_eq!(window.len(), 2);
        assert!(!window.record(limit, t0 + Duration::from_secs(11)));
    }

    #[test]
    fn zero_restarts_allowed_gives_up_at_the_first() {
        let mut window = Window::default();
        assert!(!window.record(Intensity::new(0, Duration::from_secs(1)), vat_env::now()));
    }
}
