//! A vat's housekeeping for its persistence: two tasks of the vat, each
//! holding the persistence weakly, so that they end when it is dropped or
//! the vat stops.
//!
//! - The **sweep**, every [`PersistenceConfig::sweep_interval`]: passes of
//!   [`Persistence::sweep`](super::Persistence::sweep), each one
//!   transaction over at most [`PersistenceConfig::sweep_batch`] records,
//!   one after the other until none is due. The commit thread runs the
//!   commits queued meanwhile between two passes.
//! - The **refusal summary**, every
//!   [`PersistenceConfig::refusal_summary_interval`]: one WARN line if any
//!   restore was refused since the last, and one if any handoff was over
//!   quota.
//!
//! [`PersistenceConfig::sweep_interval`]: super::PersistenceConfig::sweep_interval
//! [`PersistenceConfig::sweep_batch`]: super::PersistenceConfig::sweep_batch
//! [`PersistenceConfig::refusal_summary_interval`]: super::PersistenceConfig::refusal_summary_interval

use super::persistence::{Persistence, WeakPersistence};

/// What one sweep pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Token records deleted from the store.
    pub purged: usize,
    /// Entries dropped from memory: handoffs expired or purged, used marks,
    /// standings no reference holds.
    pub released: usize,
    /// Whether more records were due than the pass could take.
    pub more: bool,
}

/// Starts both tasks for `persistence`, in the current vat.
pub(super) fn start(persistence: &Persistence) {
    vat_env::spawn(sweep_every(persistence.downgrade()));
    vat_env::spawn(summarise_every(persistence.downgrade()));
}

async fn sweep_every(weak: WeakPersistence) {
    loop {
        let Some(interval) = weak.upgrade().map(|p| p.config().sweep_interval) else {
            return;
        };
        vat_env::sleep(interval).await;
        loop {
            let Some(pass) = weak.upgrade().map(|p| p.sweep()) else {
                return;
            };
            match pass.await {
                Ok(report) => {
                    if report.purged > 0 || report.released > 0 {
                        tracing::debug!(
                            purged = report.purged,
                            released = report.released,
                            more = report.more,
                            "sweep pass"
                        );
                    }
                    if !report.more {
                        break;
                    }
                }
                Err(error) => {
                    // A stopping vat closes its store: nothing to sweep.
                    if weak.upgrade().is_some_and(|p| p.is_open()) {
                        tracing::warn!(%error, "the sweep failed; it tries again next interval");
                    }
                    break;
                }
            }
        }
    }
}

async fn summarise_every(weak: WeakPersistence) {
    loop {
        let Some(interval) = weak.upgrade().map(|p| p.config().refusal_summary_interval) else {
            return;
        };
        vat_env::sleep(interval).await;
        let Some(persistence) = weak.upgrade() else {
            return;
        };
        let vat = persistence.vat();
        let (restores, over_quota) = persistence.take_refusal_summary();
        if let Some(summary) = restores {
            let counts = summary.counts;
            tracing::warn!(
                %vat,
                refused = counts.total(),
                unknown = counts.unknown,
                revoked = counts.revoked,
                expired = counts.expired,
                used = counts.used,
                "{summary}"
            );
        }
        if over_quota > 0 {
            tracing::warn!(
                %vat,
                refused = over_quota,
                "{over_quota} handoffs refused over quota in the last {} ms",
                interval.as_millis()
            );
        }
    }
}
