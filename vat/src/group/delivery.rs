//! Which failures prove that a call was never delivered, so that the group
//! may send it to another member.
//!
//! A call that may have reached its member is never sent again: the member
//! may have acted on it, and only the caller knows whether repeating it is
//! safe. A failure proves non-delivery only in these cases:
//!
//! 1. **At once, from a connection that was already gone.** The member is a
//!    capability of an RPC connection (capnp-rpc's import, brand non-zero)
//!    and the call failed with [`Disconnected`](ErrorKind::Disconnected)
//!    before the group let go of it: the group polls the member's promise
//!    once, right after handing it the call, and capnp-rpc fails a call at
//!    that point only when the connection had ended before the call's
//!    message could be written. A `Disconnected` error that comes later may
//!    belong to a call the member received (the connection died while it
//!    ran), so it is the caller's.
//! 2. **Refusals that say so.** An [`Overloaded`](ErrorKind::Overloaded)
//!    error from a bound that answers before delivering:
//!    - captp's calls-in-flight and bytes-in-flight bounds (the serving vat
//!      answers the call at once, without delivering it; the reason begins
//!      `overloaded: `);
//!    - a supervised child's stable reference whose waiting calls are at
//!      their bound or waited too long ("this call was not delivered");
//!    - a healing reference whose waiting calls are at their bound ("calls
//!      already wait").
//!
//!    An `Overloaded` error from a connection that captp ended because the
//!    peer broke a bound ("connection limit … exceeded") is not a refusal:
//!    calls in flight on it may have been delivered.
//!
//!    A call on a remote member made through the group's fast path (see
//!    `direct`) has its params in the member's own message, so such a
//!    refusal goes to the caller instead.
//!
//! Members the group already believes unreachable are not picked while a
//! reachable one is left, so most calls never meet a dead member at all.

use crate::error::{Error, ErrorKind};

/// Whether `error`, from a call on a member, proves the call was never
/// delivered. `at_once`: it came from the poll right after the call was
/// handed to the member; `remote`: the member is a connection's capability.
pub(crate) fn refused_before_delivery(error: &Error, at_once: bool, remote: bool) -> bool {
    match error.kind() {
        ErrorKind::Disconnected => at_once && remote,
        ErrorKind::Overloaded => is_refusal(error.message()),
        _ => false,
    }
}

/// The reasons of the `Overloaded` refusals listed in the module docs.
fn is_refusal(reason: &str) -> bool {
    reason.starts_with("overloaded: ")
        || reason.contains("this call was not delivered")
        || reason.contains("calls already wait")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overloaded(reason: &str) -> Error {
        Error::new(ErrorKind::Overloaded, reason)
    }

    #[test]
    fn refusals_before_delivery_are_recognised() {
        for reason in [
            "overloaded: 16384 calls from this connection are in flight (max_calls_in_flight is 16384); retry later",
            "overloaded: this call was pipelined on a call the vat refused",
            "supervised child `a` did not come back within 5s; this call was not delivered",
            "1024 calls already wait for the reference to vat abc to reconnect",
        ] {
            assert!(refused_before_delivery(&overloaded(reason), false, true), "{reason}");
        }
    }

    #[test]
    fn failures_that_may_follow_delivery_are_not() {
        let exceeded =
            overloaded("connection limit max_questions exceeded: questions reached 9 (at most 8)");
        assert!(!refused_before_delivery(&exceeded, true, true));
        let late = Error::new(ErrorKind::Disconnected, "peer disconnected");
        assert!(!refused_before_delivery(&late, false, true));
        // A local member's method may fail at once after acting.
        assert!(!refused_before_delivery(&late, true, false));
        let crashed = Error::new(ErrorKind::Crashed, "object #3 crashed");
        assert!(!refused_before_delivery(&crashed, true, true));
        assert!(refused_before_delivery(&late, true, true));
    }
}
