//! Refused restores, counted by reason: in all since the vat opened its
//! persistence, and since the last summary, which the vat logs once per
//! interval when there is anything to say (one line, however many were
//! refused, so that guessing is visible without flooding the log).
//!
//! Pure bookkeeping: the persistence records refusals and asks for the
//! summary on its timer.

use std::fmt;
use std::time::Duration;

use super::quota::Caller;

/// Why a restore was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No such token (never minted, purged, or bound to another vat).
    Unknown,
    /// The token was revoked.
    Revoked,
    /// The token has expired.
    Expired,
    /// The single-use token was used already.
    Used,
}

/// How many restores were refused, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalCounts {
    /// Unknown tokens: guesses land here.
    pub unknown: u64,
    /// Revoked tokens.
    pub revoked: u64,
    /// Expired tokens.
    pub expired: u64,
    /// Single-use tokens presented again.
    pub used: u64,
}

impl RefusalCounts {
    /// All refusals.
    pub fn total(&self) -> u64 {
        self.unknown + self.revoked + self.expired + self.used
    }

    fn add(&mut self, refusal: Refusal) {
        let count = match refusal {
            Refusal::Unknown => &mut self.unknown,
            Refusal::Revoked => &mut self.revoked,
            Refusal::Expired => &mut self.expired,
            Refusal::Used => &mut self.used,
        };
        *count = count.saturating_add(1);
    }
}

/// The refusals of one vat.
#[derive(Debug, Default)]
pub(crate) struct RefusalTally {
    total: RefusalCounts,
    since_summary: RefusalCounts,
    last_caller: Option<Caller>,
}

impl RefusalTally {
    pub(crate) fn record(&mut self, refusal: Refusal, caller: Caller) {
        self.total.add(refusal);
        self.since_summary.add(refusal);
        self.last_caller = Some(caller);
    }

    /// Every refusal so far.
    pub(crate) fn totals(&self) -> RefusalCounts {
        self.total
    }

    /// What was refused since the last summary, covering the `interval`
    /// since then, and starts the next; `None` if nothing was.
    pub(crate) fn take_summary(&mut self, interval: Duration) -> Option<RefusalSummary> {
        let counts = std::mem::take(&mut self.since_summary);
        let last_caller = self.last_caller.take()?;
        (counts.total() > 0).then_some(RefusalSummary {
            counts,
            interval,
            last_caller,
        })
    }
}

/// One summary line's worth of refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefusalSummary {
    pub(crate) counts: RefusalCounts,
    pub(crate) interval: Duration,
    pub(crate) last_caller: Caller,
}

impl fmt::Display for RefusalSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RefusalCounts {
            unknown,
            revoked,
            expired,
            used,
        } = self.counts;
        let total = self.counts.total();
        let plural = if total == 1 { "" } else { "s" };
        write!(f, "{total} restore{plural} refused in the last ")?;
        if self.interval.subsec_nanos() == 0 {
            write!(f, "{} s", self.interval.as_secs())?;
        } else {
            write!(f, "{} ms", self.interval.as_millis())?;
        }
        // A caller is a vat id (base32) or "an anonymous caller": nothing a
        // peer chose reaches the line.
        write!(
            f,
            ": unknown {unknown}, revoked {revoked}, expired {expired}, used single-use {used}; \
             most recent caller {}",
            self.last_caller
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sturdyrefs::VatId;

    #[test]
    fn refusals_are_counted_by_reason_and_summarised_once() {
        let mut tally = RefusalTally::default();
        let guesser = Caller::Vat(VatId::from_bytes([7; 32]));
        for _ in 0..3 {
            tally.record(Refusal::Unknown, Caller::Anonymous);
        }
        tally.record(Refusal::Revoked, Caller::Anonymous);
        tally.record(Refusal::Expired, guesser);
        let summary = tally.take_summary(Duration::from_secs(60)).unwrap();
        assert_eq!(summary.counts.total(), 5);
        assert_eq!(
            summary.to_string(),
            format!(
                "5 restores refused in the last 60 s: unknown 3, revoked 1, expired 1, \
                 used single-use 0; most recent caller vat {}",
                VatId::from_bytes([7; 32])
            )
        );
        // Nothing new, nothing to say; the totals stay.
        assert_eq!(tally.take_summary(Duration::from_secs(60)), None);
        tally.record(Refusal::Used, Caller::Anonymous);
        let next = tally.take_summary(Duration::from_millis(250)).unwrap();
        assert_eq!(
            next.to_string(),
            "1 restore refused in the last 250 ms: unknown 0, revoked 0, expired 0, \
             used single-use 1; most recent caller an anonymous caller"
        );
        assert_eq!(
            tally.totals(),
            RefusalCounts {
                unknown: 3,
                revoked: 1,
                expired: 1,
                used: 1
            }
        );
    }
}
