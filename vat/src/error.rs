//! Typed errors carried by broken promises, locally and across the network.

use std::fmt;

/// What kind of failure broke a promise. Callers match on this; the message
/// says the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The connection to the target's vat is gone (the peer closed it, the
    /// network failed, or the peer's vat stopped).
    Disconnected,
    /// The target object panicked, in this turn or an earlier one; it takes
    /// no more messages.
    Crashed,
    /// The target does not implement the interface or method called.
    Unimplemented,
    /// The message was malformed or an argument was unacceptable.
    InvalidArgument,
    /// The target's vat was stopped before the message was delivered or answered.
    VatStopped,
    /// A limit was reached; the same call may succeed later.
    Overloaded,
    /// A near call reached an object already running further up the same
    /// call stack; Rust's aliasing rules forbid re-entering it.
    Reentrant,
    /// A sturdyref names nothing this vat will restore: it was never minted
    /// here, or it is bound to another vat than the caller.
    UnknownToken,
    /// The sturdyref was revoked; references restored from it are dead.
    Revoked,
    /// The sturdyref's lifetime is over; references restored from it are dead.
    Expired,
    /// Any other failure the target reported.
    Failed,
}

impl ErrorKind {
    /// The tag that marks this kind inside a Cap'n Proto exception reason, for
    /// the kinds Cap'n Proto has no exception type of its own for.
    fn wire_tag(self) -> Option<&'static str> {
        match self {
            ErrorKind::Crashed => Some("[crashed] "),
            ErrorKind::InvalidArgument => Some("[invalid argument] "),
            ErrorKind::VatStopped => Some("[vat stopped] "),
            ErrorKind::Reentrant => Some("[reentrant] "),
            ErrorKind::UnknownToken => Some("[unknown token] "),
            ErrorKind::Revoked => Some("[revoked] "),
            ErrorKind::Expired => Some("[expired] "),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::Crashed => "crashed",
            ErrorKind::Unimplemented => "unimplemented",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::VatStopped => "vat stopped",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Reentrant => "reentrant call",
            ErrorKind::UnknownToken => "unknown token",
            ErrorKind::Revoked => "revoked",
            ErrorKind::Expired => "expired",
            ErrorKind::Failed => "failed",
        })
    }
}

/// Why a promise broke or a call failed.
///
/// ```
/// use vat::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::Crashed, "object #3 (Counter) crashed: overflow");
/// assert_eq!(e.kind(), ErrorKind::Crashed);
/// assert_eq!(e.to_string(), "crashed: object #3 (Counter) crashed: overflow");
/// // Across the network the kind survives the trip through a Cap'n Proto exception.
/// let back = Error::from(capnp::Error::from(e.clone()));
/// assert_eq!(back.kind(), ErrorKind::Crashed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    undelivered: bool,
}

impl Error {
    /// An error of `kind` with a message a person can act on.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            undelivered: false,
        }
    }

    /// An error of `kind` for a call that was refused before it was
    /// delivered: its target never saw it, so sending it again, or to
    /// another target, cannot run it twice. See
    /// [`is_undelivered`](Error::is_undelivered).
    pub fn undelivered(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            undelivered: true,
            ..Error::new(kind, message)
        }
    }

    /// Whether the call was refused before delivery (a bound that answers
    /// without delivering, a reference whose waiting calls are full). The
    /// fact travels with the error across vats (the `[not delivered] ` tag,
    /// docs/PROTOCOL.md); groups read it to send a call to another member.
    /// `false` says nothing: the call may have run.
    ///
    /// ```
    /// use vat::{Error, ErrorKind};
    /// let refused = Error::undelivered(ErrorKind::Overloaded, "1024 calls already wait");
    /// let back = Error::from(capnp::Error::from(refused));
    /// assert!(back.is_undelivered());
    /// assert!(!Error::new(ErrorKind::Overloaded, "busy").is_undelivered());
    /// ```
    pub fn is_undelivered(&self) -> bool {
        self.undelivered
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The details.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn vat_stopped(what: &str) -> Error {
        Error::new(
            ErrorKind::VatStopped,
            format!("{what}: the vat was stopped"),
        )
    }
}

impl From<std::io::Error> for Error {
    /// An input/output failure of a vat program (a socket, a file): a
    /// connection that was refused, reset or cut is
    /// [`Disconnected`](ErrorKind::Disconnected), anything else
    /// [`Failed`](ErrorKind::Failed).
    fn from(error: std::io::Error) -> Error {
        use std::io::ErrorKind as Io;
        let kind = match error.kind() {
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::TimedOut => ErrorKind::Disconnected,
            _ => ErrorKind::Failed,
        };
        Error::new(kind, error.to_string())
    }
}

/// The kinds that travel as a tag in an exception's reason.
const TAGGED: [ErrorKind; 7] = [
    ErrorKind::Crashed,
    ErrorKind::InvalidArgument,
    ErrorKind::VatStopped,
    ErrorKind::Reentrant,
    ErrorKind::UnknownToken,
    ErrorKind::Revoked,
    ErrorKind::Expired,
];

/// Strips the prefixes capnp-rpc adds to an exception each time it crosses a
/// connection, leaving the reason the object gave.
fn strip_remote(mut reason: &str) -> &str {
    while let Some(rest) = reason.strip_prefix("remote exception: ") {
        reason = rest;
    }
    reason
}

impl From<capnp::Error> for Error {
    fn from(error: capnp::Error) -> Error {
        let reason = strip_remote(&error.extra);
        match captp::delivery::strip_not_delivered(reason) {
            Some(rest) => Error {
                undelivered: true,
                ..decode(&error, rest)
            },
            None => decode(&error, reason),
        }
    }
}

/// The error whose exception is `error` and whose reason, past the remote
/// prefixes and the delivery tag, is `reason`.
fn decode(error: &capnp::Error, reason: &str) -> Error {
    let tagged = TAGGED.into_iter().find_map(|kind| {
        let tag = kind.wire_tag()?;
        reason.strip_prefix(tag).map(|rest| (kind, rest))
    });
    if let Some((kind, rest)) = tagged {
        return Error::new(kind, rest);
    }
    let kind = match error.kind {
        capnp::ErrorKind::Disconnected => ErrorKind::Disconnected,
        capnp::ErrorKind::Unimplemented => ErrorKind::Unimplemented,
        capnp::ErrorKind::Overloaded => ErrorKind::Overloaded,
        capnp::ErrorKind::Failed => ErrorKind::Failed,
        // The byte stream ended mid-message, or (TLS) without its closing
        // alert: the peer's vat stopped or the link died.
        capnp::ErrorKind::PrematureEndOfFile => {
            return Error::new(
                ErrorKind::Disconnected,
                format!("the connection ended abruptly: {reason}"),
            )
        }
        // Every other kind is a decoding error: the message did not match the schema.
        _ => return Error::new(ErrorKind::InvalidArgument, error.to_string()),
    };
    Error::new(kind, reason)
}

impl From<Error> for capnp::Error {
    fn from(error: Error) -> capnp::Error {
        let reason = match error.kind.wire_tag() {
            Some(tag) => format!("{tag}{}", error.message),
            None => error.message,
        };
        let reason = if error.undelivered {
            captp::delivery::not_delivered(&reason)
        } else {
            reason
        };
        match error.kind {
            ErrorKind::Disconnected | ErrorKind::VatStopped => capnp::Error::disconnected(reason),
            ErrorKind::Unimplemented => capnp::Error::unimplemented(reason),
            ErrorKind::Overloaded => capnp::Error::overloaded(reason),
            ErrorKind::Crashed
            | ErrorKind::InvalidArgument
            | ErrorKind::Reentrant
            | ErrorKind::UnknownToken
            | ErrorKind::Revoked
            | ErrorKind::Expired
            | ErrorKind::Failed => capnp::Error::failed(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_a_round_trip_through_capnp() {
        for kind in [
            ErrorKind::Disconnected,
            ErrorKind::Crashed,
            ErrorKind::Unimplemented,
            ErrorKind::InvalidArgument,
            ErrorKind::VatStopped,
            ErrorKind::Overloaded,
            ErrorKind::Reentrant,
            ErrorKind::UnknownToken,
            ErrorKind::Revoked,
            ErrorKind::Expired,
            ErrorKind::Failed,
        ] {
            let original = Error::new(kind, "details");
            let mut wire = capnp::Error::from(original.clone());
            // What the receiving side of a connection sees.
            wire.extra = format!("remote exception: {}", wire.extra);
            assert_eq!(Error::from(wire), original, "{kind}");
        }
    }

    #[test]
    fn a_refusal_before_delivery_keeps_its_mark_and_its_kind_across_the_wire() {
        for kind in [
            ErrorKind::Overloaded,
            ErrorKind::Disconnected,
            ErrorKind::Crashed,
        ] {
            let original = Error::undelivered(kind, "details");
            let mut wire = capnp::Error::from(original.clone());
            assert!(wire.extra.starts_with("[not delivered] "), "{}", wire.extra);
            wire.extra = format!("remote exception: remote exception: {}", wire.extra);
            let back = Error::from(wire);
            assert_eq!(back, original, "{kind}");
            assert!(back.is_undelivered());
        }
    }

    #[test]
    fn a_stream_that_ends_abruptly_is_a_disconnection() {
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no close_notify");
        let error = Error::from(capnp::Error::from(eof));
        assert_eq!(error.kind(), ErrorKind::Disconnected);
        assert!(error.message().contains("no close_notify"), "{error}");
    }

    #[test]
    fn decoding_errors_are_invalid_arguments() {
        let e = capnp::Error::from_kind(capnp::ErrorKind::MessageIsTooDeeplyNested);
        assert_eq!(Error::from(e).kind(), ErrorKind::InvalidArgument);
    }
}
