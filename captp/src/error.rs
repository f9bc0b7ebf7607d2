use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::tls::{HandshakeError, SetupError};
use crate::PublicKey;

/// What went wrong while setting up or running a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Binding a listening socket failed (address in use, no permission, …).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Dialling a peer failed (refused, unreachable, …).
    #[error("cannot connect to {addr}: {source}")]
    Dial {
        /// The address dialled.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Dialling did not complete within its deadline
    /// ([`DEFAULT_DIAL_TIMEOUT`](crate::DEFAULT_DIAL_TIMEOUT) unless set
    /// otherwise): the peer's address does not answer (a dead host, a
    /// dropped route, a full backlog) or the peer does not finish its
    /// handshake. No RPC message was sent, so retrying is safe.
    #[error(
        "cannot connect to {addr}: no connection within {timeout:?} (still {stage}); \
         nothing was sent, so retrying is safe"
    )]
    DialTimedOut {
        /// The address dialled.
        addr: SocketAddr,
        /// The deadline that passed, for connection and handshake together.
        timeout: Duration,
        /// What was still under way when it passed.
        stage: DialStage,
    },
    /// The peer dialled proved that it is another vat: it holds the private
    /// key of `found`, not of `expected`.
    #[error("the peer at {addr} is not vat {expected:?}: it proved it is vat {found:?}")]
    NotThatVat {
        /// The address dialled.
        addr: SocketAddr,
        /// The key dialled.
        expected: PublicKey,
        /// The key the peer proved instead.
        found: PublicKey,
    },
    /// The TLS handshake with the peer at `addr` failed, so it proved
    /// nothing; `reason` says what it did wrong.
    #[error("the peer at {addr} failed the TLS handshake: {reason}")]
    Handshake {
        /// The peer's address.
        addr: SocketAddr,
        /// What went wrong.
        #[source]
        reason: HandshakeError,
    },
    /// This vat's TLS configuration could not be built.
    #[error("cannot set up TLS: {0}")]
    TlsSetup(#[from] SetupError),
    /// Another socket-level failure.
    #[error("network I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How far a dial had got when its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialStage {
    /// The TCP connection was not yet established.
    Connecting,
    /// The TCP connection was established; the TLS handshake was not done.
    Handshaking,
}

impl fmt::Display for DialStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DialStage::Connecting => "connecting",
            DialStage::Handshaking => "in the TLS handshake",
        })
    }
}
