//! The network layer of the vat system.
//!
//! A [`Connection`] runs one Cap'n Proto RPC session (the two-party protocol
//! of capnp-rpc, with promise pipelining and embargoes) over any byte stream:
//! a TLS connection from [`tls::dial`] or a [`tls::TlsListener`], a plain TCP
//! socket from [`dial`] or a [`Listener`], or one end of an in-memory
//! [`pipe`] between two vats of the same process. Each side may offer a
//! bootstrap capability; the other side gets it from [`Connection::peer`].
//!
//! Each vat has an [`Identity`], an ed25519 key pair kept in its data folder,
//! whose [`PublicKey`] names it. Over [`tls`], a dialler reaches a vat only if
//! it proves the key dialled, and a caller may prove its own key to the vat
//! it calls ([`Connection::peer_key`]); see the [`tls`] module for the
//! scheme. Plain TCP proves nothing and hides nothing, and logs a warning
//! saying so.
//!
//! Everything read from the network is bounded by [`Limits`], per
//! connection: message size and nesting, calls in flight, the bytes queued
//! for a peer that does not read, and the sizes of the question, answer,
//! import and export tables. A peer beyond the calls-in-flight bounds gets
//! `overloaded` errors for its further calls; a peer that breaks another
//! bound loses its connection with a clear error and a log line. The vat
//! goes on serving its other connections.
//!
//! Connections must be opened from inside a vat (a thread running a tokio
//! `LocalSet`), because capnp-rpc objects are `!Send`: the session is spawned
//! as a local task of the calling thread.
//!
//! ```no_run
//! # async fn f() -> Result<(), captp::NetError> {
//! // Inside a vat: dial a peer and call its bootstrap object.
//! let connection = captp::dial("127.0.0.1:4000".parse().unwrap(), None, captp::Limits::default()).await?;
//! let host: capnp::capability::Client = connection.peer();
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod connection;
pub mod delivery;
mod error;
mod identity;
mod limits;
pub mod log;
mod pipe;
mod public_key;
mod session;
mod socket;
mod tcp;
pub mod tls;
mod transport;

pub use connection::{Connection, Side};
pub use error::{DialStage, NetError};
pub use identity::{Identity, IdentityError};
pub use limits::Limits;
pub use pipe::{pipe, PipeEnd};
pub use public_key::PublicKey;
pub use session::{partial_messages, PartialMessages};
pub use socket::DEFAULT_DIAL_TIMEOUT;
pub use tcp::{dial, dial_within, Listener};
pub use transport::{DialRequest, Transport};
