//! Mutually authenticated connections between vats: TLS 1.3 with pinned
//! ed25519 keys.
//!
//! # The scheme
//!
//! Every vat has an [`Identity`](crate::Identity), an ed25519 key pair; its
//! public key ([`PublicKey`](crate::PublicKey)) *is* the vat's name. Whoever
//! can reach a vat learned its key together with its address (a sturdyref
//! carries both), so a dialler knows exactly which key the vat at the other
//! end must hold. That is why there is no certificate authority: a CA would
//! vouch that a key belongs to a name, but here the key is the name. Trusting
//! a CA would only add a third party able to impersonate any vat.
//!
//! So each side presents a self-signed X.509 certificate that is no more
//! than an envelope for its ed25519 key, and proves it holds the private half
//! the usual TLS 1.3 way, by signing the handshake transcript
//! (CertificateVerify). Then:
//!
//! - the **dialler** ([`dial`]) accepts the server only if the key in its
//!   certificate is the key dialled (key pinning), and fails with
//!   [`NetError::NotThatVat`](crate::NetError::NotThatVat) otherwise;
//! - the **acceptor** ([`TlsListener`]) asks callers for a certificate but
//!   does not require one. A caller with a certificate must hold an ed25519
//!   key and prove it; the accepting vat then knows the caller's key
//!   ([`Connection::peer_key`](crate::Connection::peer_key)). A caller
//!   without one is **anonymous**: it is let in (`peer_key` is `None`), since
//!   in a capability system what a caller may do depends on the capabilities
//!   it holds (a sturdyref's secret, say), not on who it is. The key matters
//!   when a vat wants to know who it talks to: for logs, quotas, or to hand
//!   out capabilities of its own to that peer.
//!
//! Names, validity dates, issuer and extensions of certificates are not
//! checked: they carry no trust when the key itself is pinned, and ignoring
//! them spares vats clock and naming troubles.
//!
//! # Parameters
//!
//! TLS 1.3 only (TLS 1.2 is refused); signatures ed25519 only; the ALPN
//! protocol [`ALPN_PROTOCOL`] is required on both sides; the client sends the
//! placeholder [`SERVER_NAME`] in SNI, which the server ignores; no session
//! resumption or early data, so every connection proves its keys afresh.
//! Handshakes are bounded in time ([`DEFAULT_HANDSHAKE_TIMEOUT`], settable on
//! the listener with [`TlsListener::with_handshake_timeout`]) and, in
//! [`TlsListener::serve`], in number, so slow or silent callers cannot hold
//! the listener; a failed handshake is logged and the listener goes on.
//!
//! ```no_run
//! # async fn f(vat_key: captp::PublicKey) -> Result<(), Box<dyn std::error::Error>> {
//! // Inside a vat: prove who we are and dial a vat whose key we know.
//! let me = captp::Identity::load_or_create("/var/lib/my-vat")?;
//! let addr = "127.0.0.1:4000".parse()?;
//! let connection =
//!     captp::tls::dial(addr, vat_key, Some(&me), None, captp::Limits::default()).await?;
//! assert_eq!(connection.peer_key(), Some(vat_key));
//! # Ok(()) }
//! ```

use std::time::Duration;

mod config;
mod dial;
mod error;
mod listener;
mod verify;

pub use dial::dial;
pub use error::{CertificateProblem, HandshakeError, SetupError};
pub use listener::TlsListener;

/// The ALPN protocol id of the vat protocol (Cap'n Proto two-party RPC over
/// TLS). Both sides must agree on it; a peer offering none or another is
/// refused.
pub const ALPN_PROTOCOL: &[u8] = b"capnp-vat/1";

/// The server name a dialler sends in SNI. It is a fixed placeholder (in the
/// reserved `.invalid` domain): a vat is named by its key, not by a host
/// name, and servers ignore SNI.
pub const SERVER_NAME: &str = "capnp-vat.invalid";

/// How long a peer may take to complete a TLS handshake, on either side,
/// unless the listener is set otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many handshakes [`TlsListener::serve`] runs at once, unless set
/// otherwise.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 64;
