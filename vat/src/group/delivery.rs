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
//! 2. **Refusals that say so.** An error marked
//!    [undelivered](Error::is_undelivered) by whoever refused the call
//!    before delivering it: captp's calls-in-flight and bytes-in-flight
//!    bounds (the serving vat answers the call at once, tagged
//!    `[not delivered] ` on the wire), a supervised child's stable reference
//!    whose waiting calls are at their bound or waited too long, a healing
//!    reference whose waiting calls are at their bound, a group with no
//!    members. The mark is data, set where the refusal is made; the
//!    message's wording plays no part.
//!
//!    An `Overloaded` error from a connection that captp ended because the
//!    peer broke a bound ("connection limit … exceeded") carries no mark:
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
    error.is_undelivered() || (error.kind() == ErrorKind::Disconnected && at_once && remote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_marked_undelivered_are_recognised_whatever_their_words() {
        for reason in ["retry later", "", "this call was delivered, honest"] {
            let refused = Error::undelivered(ErrorKind::Overloaded, reason);
            assert!(refused_before_delivery(&refused, false, true), "{reason:?}");
            // Also once it has crossed a connection.
            let mut wire = capnp::Error::from(refused);
            wire.extra = format!("remote exception: {}", wire.extra);
            assert!(refused_before_delivery(&Error::from(wire), false, true));
        }
    }

    #[test]
    fn rewording_a_refusal_does_not_make_it_one() {
        // The words the refusals used to be recognised by, without the mark.
        for reason in [
            "overloaded: 16384 calls from this connection are in flight; retry later",
            "supervised child `a` did not come back within 5s; this call was not delivered",
            "1024 calls already wait for the reference to vat abc to reconnect",
        ] {
            let unmarked = Error::new(ErrorKind::Overloaded, reason);
            assert!(!refused_before_delivery(&unmarked, false, true), "{reason}");
        }
    }

    #[test]
    fn failures_that_may_follow_delivery_are_not() {
        let exceeded = Error::new(
            ErrorKind::Overloaded,
            "connection limit max_questions exceeded: questions reached 9 (at most 8)",
        );
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
