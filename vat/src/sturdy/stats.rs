//! What a vat's persistence holds and has refused, for operators and tests.

use super::refusals::RefusalCounts;

/// A snapshot of a [`Persistence`](super::Persistence)'s counters and of
/// the sizes of what it keeps in memory
/// ([`Persistence::stats`](super::Persistence::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PersistenceStats {
    /// Restores refused since the persistence was opened, by reason.
    pub refused: RefusalCounts,
    /// Handoffs refused because a quota was reached, since it was opened.
    pub handoffs_over_quota: u64,
    /// Handoff tokens asked for and neither used nor expired: what the
    /// handoff quotas count.
    pub handoffs_outstanding: usize,
    /// Tokens with a standing kept in memory (restored, and a reference
    /// from them may be alive).
    pub standings: usize,
    /// Restored references whose object the vat remembers, for handoffs.
    pub restored: usize,
    /// Single-use tokens used whose revocation is not committed yet.
    pub used_pending: usize,
    /// Token records the sweep deleted from the store.
    pub purged: u64,
    /// Sweep passes run.
    pub sweep_passes: u64,
}
