//! The network layer of the vat system.
//!
//! A [`Connection`] runs one Cap'n Proto RPC session (the two-party protocol
//! of capnp-rpc, with promise pipelining and embargoes) over any byte stream:
//! a TCP socket from [`dial`] or a [`Listener`], or one end of an in-memory
//! [`pipe`] between two vats of the same process. Each side may offer a
//! bootstrap capability; the other side gets it from [`Connection::peer`].
//!
//! Everything read from the network is bounded by [`Limits`]: a message larger
//! than the limit, or nested deeper, ends the connection with a clear error and
//! a log line, and the vat goes on serving its other connections.
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
mod error;
mod limits;
mod pipe;
mod tcp;

pub use connection::{Connection, Side};
pub use error::NetError;
pub use limits::Limits;
pub use pipe::{pipe, PipeEnd};
pub use tcp::{dial, Listener};
