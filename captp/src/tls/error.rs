//! What a peer did wrong during a TLS handshake, and how to tell.

use std::io;
use std::time::Duration;

use rustls::{CertificateError, OtherError};

use super::verify::Rejection;
use super::{ALPN_PROTOCOL, SERVER_NAME};
use crate::PublicKey;

/// Why a TLS handshake with a peer failed, from this vat's point of view.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer did not complete the handshake in the time allowed: it is
    /// slow, silent, or not speaking TLS at all.
    #[error("it did not complete the TLS handshake within {0:?}")]
    TimedOut(Duration),
    /// The caller did not send its whole ClientHello (the first message of
    /// the handshake) in the time allowed: it is silent, trickling bytes, or
    /// not speaking TLS at all.
    #[error("it did not send its TLS ClientHello within {0:?}")]
    NoClientHello(Duration),
    /// The peer's certificate does not carry a key it could prove.
    #[error("its certificate is unacceptable: {0}")]
    Certificate(#[source] CertificateProblem),
    /// The peer completed TLS but did not agree to speak the vat protocol
    /// (its ALPN protocol was missing or another one).
    #[error(
        "it does not speak {} (ALPN protocol agreed: {found})",
        protocol_name(ALPN_PROTOCOL)
    )]
    Protocol {
        /// The ALPN protocol agreed, quoted, or `none`.
        found: String,
    },
    /// TLS itself failed: the peer sent bytes that are not TLS 1.3, sent an
    /// alert (it refused us), or its handshake signature did not verify.
    #[error("{0}")]
    Tls(#[source] rustls::Error),
    /// The connection broke or closed before the handshake completed.
    #[error("the connection failed: {0}")]
    Io(#[source] io::Error),
}

/// What is wrong with the certificate a peer presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// The peer sent a chain of certificates; a vat sends exactly one,
    /// self-signed.
    #[error("it sent {0} certificates; a vat sends exactly one, self-signed")]
    Chain(usize),
    /// The certificate is not well-formed X.509 v3.
    #[error("it is not a well-formed X.509 v3 certificate ({0})")]
    Malformed(String),
    /// The certificate's subject public key is not an ed25519 key.
    #[error("its subject public key is not an ed25519 key ({0})")]
    NotEd25519(String),
}

/// A failed handshake, explained.
pub(crate) enum Explained {
    /// The peer proved a key, but not the one dialled.
    NotThatVat {
        /// The key it proved.
        found: PublicKey,
    },
    /// Any other failure.
    Failed(HandshakeError),
}

/// Turns the error tokio-rustls returns for a failed handshake into what the
/// peer did wrong: our own verifiers' rejections are recovered from inside
/// rustls's error.
pub(crate) fn explain(error: io::Error) -> Explained {
    if !error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
    {
        return Explained::Failed(HandshakeError::Io(error));
    }
    let tls = match error
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(tls)) => *tls,
        // Unreachable: checked above. Report something true anyway.
        Some(Err(other)) => return Explained::Failed(HandshakeError::Io(io::Error::other(other))),
        None => {
            return Explained::Failed(HandshakeError::Io(io::Error::other(
                "the TLS handshake failed",
            )))
        }
    };
    if let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) = &tls {
        match inner.downcast_ref::<Rejection>() {
            Some(Rejection::WrongKey { found }) => return Explained::NotThatVat { found: *found },
            Some(Rejection::Problem(problem)) => {
                return Explained::Failed(HandshakeError::Certificate(problem.clone()))
            }
            None => {}
        }
    }
    if let rustls::Error::NoApplicationProtocol = tls {
        return Explained::Failed(HandshakeError::Protocol {
            found: "none in common with what it offered".to_string(),
        });
    }
    Explained::Failed(HandshakeError::Tls(tls))
}

/// Checks that the handshake agreed on the vat protocol.
pub(crate) fn check_protocol(agreed: Option<&[u8]>) -> Result<(), HandshakeError> {
    match agreed {
        Some(protocol) if protocol == ALPN_PROTOCOL => Ok(()),
        Some(other) => Err(HandshakeError::Protocol {
            found: format!("{:?}", protocol_name(other)),
        }),
        None => Err(HandshakeError::Protocol {
            found: "none".to_string(),
        }),
    }
}

/// An ALPN protocol id as text, for messages.
fn protocol_name(id: &[u8]) -> String {
    String::from_utf8_lossy(id).into_owned()
}

/// Why a vat's TLS configuration could not be built from its identity.
///
/// With a key from [`Identity`](crate::Identity) this does not happen; the
/// variants exist so that nothing on this path has to panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The self-signed certificate for the vat's key could not be made.
    #[error("cannot make a certificate for the vat's key: {0}")]
    Certificate(String),
    /// The SNI placeholder is not a valid server name.
    #[error("the server name {SERVER_NAME:?} is refused: {0}")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vat_protocol_is_accepted() {
        assert!(check_protocol(Some(ALPN_PROTOCOL)).is_ok());
    }

    #[test]
    fn a_missing_or_other_protocol_is_refused_and_named() {
        let none = check_protocol(None).unwrap_err().to_string();
        assert_eq!(
            none,
            "it does not speak capnp-vat/1 (ALPN protocol agreed: none)"
        );
        let h2 = check_protocol(Some(b"h2")).unwrap_err().to_string();
        assert_eq!(
            h2,
            "it does not speak capnp-vat/1 (ALPN protocol agreed: \"h2\")"
        );
    }

    #[test]
    fn a_plain_io_error_is_reported_as_such() {
        let error = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(
            explain(error),
            Explained::Failed(HandshakeError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset
        ));
    }
}
