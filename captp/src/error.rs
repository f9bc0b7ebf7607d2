use std::net::SocketAddr;

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
