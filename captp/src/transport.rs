//! How a vat dials other vats: by default TLS over TCP ([`crate::tls`]);
//! a simulator supplies a transport of its own, whose network tells each
//! end which key the other proved.

use futures::future::LocalBoxFuture;

use crate::{Connection, Identity, Limits, NetError, PublicKey};

/// What a dial needs: where, whom, as whom, and what to offer.
#[derive(Clone)]
pub struct DialRequest {
    /// The host part of a location hint (a name or an address).
    pub host: String,
    /// The port of the location hint.
    pub port: u16,
    /// The key the peer must prove.
    pub expected: PublicKey,
    /// The identity this vat proves, or `None` to call anonymously.
    pub identity: Option<Identity>,
    /// The capability offered to the peer as this end's bootstrap.
    pub offer: Option<capnp::capability::Client>,
    /// The limits of the connection.
    pub limits: Limits,
}

/// A way to reach other vats. A vat without one dials with TLS over TCP.
pub trait Transport {
    /// Opens a connection to the vat that proves `request.expected` at
    /// `request.host`:`request.port`, or says why not.
    fn dial(&self, request: DialRequest) -> LocalBoxFuture<'static, Result<Connection, NetError>>;
}
