//! The settings of a vat's persistence: handoff lifetime and quotas, and
//! the timers of its housekeeping.

use std::time::Duration;

use super::quota::HandoffQuota;

/// How long a handoff token works by default: long enough for the
/// introducer to pass it on and the recipient to dial, short enough that a
/// lost one soon dies.
pub const HANDOFF_LIFETIME: Duration = Duration::from_secs(60);

/// The shortest interval the housekeeping timers accept; shorter settings
/// are raised to it, so a zero cannot spin the vat.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// How a [`Persistence`](super::Persistence) bounds what callers can make
/// it keep, and how often it cleans up.
///
/// ```
/// use std::time::Duration;
/// use vat::sturdy::PersistenceConfig;
/// let config = PersistenceConfig {
///     sweep_interval: Duration::from_secs(10),
///     ..PersistenceConfig::default()
/// };
/// assert_eq!(config.handoff_quota.per_caller, 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistenceConfig {
    /// How long a handoff token works. Default [`HANDOFF_LIFETIME`] (60 s).
    pub handoff_lifetime: Duration,
    /// The most unused handoff tokens outstanding: 64 per caller, 256 per
    /// object, 4096 per vat by default.
    pub handoff_quota: HandoffQuota,
    /// How often the sweep deletes expired and used single-use token
    /// records. Default 60 s.
    pub sweep_interval: Duration,
    /// The most records one sweep pass (one transaction) looks at; a sweep
    /// with more due goes on in further passes, each its own transaction,
    /// with other commits in between. Default 512.
    pub sweep_batch: usize,
    /// How often refused restores are summarised in one WARN line (when any
    /// were). Default 60 s.
    pub refusal_summary_interval: Duration,
}

impl Default for PersistenceConfig {
    fn default() -> PersistenceConfig {
        PersistenceConfig {
            handoff_lifetime: HANDOFF_LIFETIME,
            handoff_quota: HandoffQuota::default(),
            sweep_interval: Duration::from_secs(60),
            sweep_batch: 512,
            refusal_summary_interval: Duration::from_secs(60),
        }
    }
}
