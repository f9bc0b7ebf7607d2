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
//! A dial gives up if the TCP connection and the handshake together take
//! longer than [`DEFAULT_DIAL_TIMEOUT`](crate::DEFAULT_DIAL_TIMEOUT)
//! ([`dial_within`] sets another). The listener accepts every caller at
//! once; a caller must send its ClientHello within
//! [`DEFAULT_CLIENT_HELLO_TIMEOUT`] and complete the handshake within
//! [`DEFAULT_HANDSHAKE_TIMEOUT`]. In [`TlsListener::serve`] handshakes are
//! also bounded in number ([`DEFAULT_MAX_PENDING_HANDSHAKES`],
//! [`DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE`]), the oldest silent socket
//! giving way to a newcomer, so slow, silent or numerous callers cannot keep
//! others out. A failed handshake is logged (rate-limited, the peer's words
//! escaped) and the listener goes on.
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
mod pending;
mod verify;

pub use dial::{dial, dial_within};
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

/// How long a caller may take to complete a TLS handshake with a
/// [`TlsListener`], from the moment it is accepted, unless the listener is
/// set otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller may take to send its whole ClientHello to a
/// [`TlsListener`], from the moment it is accepted, unless the listener is
/// set otherwise. A client sends it at once, so this is short: idle and
/// trickling sockets are dropped well before the handshake timeout.
pub const DEFAULT_CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// How many handshakes [`TlsListener::serve`] keeps in progress at once,
/// unless set otherwise; a newer caller takes the place of the oldest one
/// still waiting for its ClientHello. Half the usual soft limit of 1,024
/// file descriptors per process, so that pending handshakes alone cannot
/// exhaust it.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 512;

/// How many of [`DEFAULT_MAX_PENDING_HANDSHAKES`] the callers of one source
/// (an IPv4 address, an IPv6 /64) may hold, unless set otherwise.
pub const DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE: usize = 128;
