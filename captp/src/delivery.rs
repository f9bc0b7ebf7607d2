//! The one fact about a failed call that a caller may act on without
//! knowing the callee: whether the call was refused before it was
//! delivered, so that sending it elsewhere (or again) cannot run it twice.
//!
//! It travels in the exception's reason as a tag at its start,
//! `[not delivered] `, which every side of the protocol reads the same way
//! (docs/PROTOCOL.md, "Errors"): captp's own refusals carry it, and so do
//! the vat runtime's (`vat::Error::not_delivered`). A reason without the
//! tag says nothing either way: the call may have run.

/// The tag at the start of an exception's reason that says the call was
/// refused before delivery.
pub const NOT_DELIVERED_TAG: &str = "[not delivered] ";

/// `reason`, tagged as a refusal before delivery.
pub fn not_delivered(reason: &str) -> String {
    format!("{NOT_DELIVERED_TAG}{reason}")
}

/// The rest of `reason` if it is tagged as a refusal before delivery.
pub fn strip_not_delivered(reason: &str) -> Option<&str> {
    reason.strip_prefix(NOT_DELIVERED_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_round_trips_and_nothing_else_carries_it() {
        let tagged = not_delivered("overloaded: retry later");
        assert_eq!(
            strip_not_delivered(&tagged),
            Some("overloaded: retry later")
        );
        assert_eq!(strip_not_delivered("this call was not delivered"), None);
    }
}
