//! Connections between vats: mutually authenticated TLS, plain TCP and
//! in-memory pipes carrying Cap'n Proto RPC (the `captp` crate), and two
//! builders that make the common cases one line each with default
//! [`Limits`]:
//!
//! ```
//! use schema::demo_capnp::host;
//! use vat::net::{Dialer, Identity, Server};
//!
//! let vat = vat::VatHandle::start("doc").unwrap();
//! let echoed = vat.block_on(|| async {
//!     let identity = Identity::generate()?;
//!     let key = identity.public_key();
//!     let host: host::Client = vat::export(vat::demo::Host::new("doc"));
//!     // Serve `host` over TLS as this vat, for as long as the vat runs.
//!     let addr = Server::new(host.client).tls(([127, 0, 0, 1], 0).into(), &identity).await?;
//!     // Dial it, naming the key it must prove.
//!     let connection = Dialer::new(addr).tls(key).await?;
//!     let host: host::Client = connection.peer();
//!     let mut echo = host.echo_request();
//!     echo.get().set_value(7);
//!     Ok::<_, vat::Error>(echo.send().promise.await?.get()?.get_value())
//! }).unwrap();
//! assert_eq!(echoed, 7);
//! vat.stop().unwrap();
//! ```
//!
//! For more control (the caller's key choosing the bootstrap, handshake
//! bounds), use [`tls::TlsListener`] and [`tls::dial`] directly.

use std::net::SocketAddr;

pub use captp::{
    dial, pipe, tls, Connection, Identity, IdentityError, Limits, Listener, NetError, PipeEnd,
    PublicKey, Side,
};

use crate::error::{Error, ErrorKind};

/// Serves one bootstrap capability on a listening socket, TLS or plain TCP,
/// for as long as the calling vat runs.
#[derive(Clone)]
pub struct Server {
    bootstrap: capnp::capability::Client,
    limits: Limits,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Offers `bootstrap` to every caller, with default [`Limits`].
    pub fn new(bootstrap: capnp::capability::Client) -> Server {
        Server {
            bootstrap,
            limits: Limits::default(),
        }
    }

    /// Sets the bounds on what each caller may make the vat hold.
    pub fn limits(mut self, limits: Limits) -> Server {
        self.limits = limits;
        self
    }

    /// Listens on `addr` over mutual TLS, proving `identity`; returns the
    /// address bound (port 0 picks a free one). Callers may prove a key of
    /// their own or come anonymously; all get the bootstrap.
    pub async fn tls(self, addr: SocketAddr, identity: &Identity) -> Result<SocketAddr, NetError> {
        let listener = tls::TlsListener::bind(addr, identity).await?;
        let bound = listener.local_addr();
        let Server { bootstrap, limits } = self;
        listener.serve(move |_caller| Some(bootstrap.clone()), limits);
        Ok(bound)
    }

    /// Listens on `addr` over plain TCP, which proves and hides nothing (the
    /// log says so); returns the address bound.
    pub async fn tcp(self, addr: SocketAddr) -> Result<SocketAddr, NetError> {
        let listener = Listener::bind(addr).await?;
        let bound = listener.local_addr();
        listener.serve(self.bootstrap, self.limits);
        Ok(bound)
    }
}

/// Dials another vat, TLS or plain TCP, with default [`Limits`],
/// anonymously and offering nothing unless told otherwise.
#[derive(Clone)]
pub struct Dialer<'a> {
    addr: SocketAddr,
    identity: Option<&'a Identity>,
    offer: Option<capnp::capability::Client>,
    limits: Limits,
}

impl std::fmt::Debug for Dialer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("addr", &self.addr)
            .field("proving", &self.identity.map(Identity::public_key))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<'a> Dialer<'a> {
    /// Dials `addr`.
    pub fn new(addr: SocketAddr) -> Dialer<'a> {
        Dialer {
            addr,
            identity: None,
            offer: None,
            limits: Limits::default(),
        }
    }

    /// Proves `identity`'s key to the peer (TLS only), for tokens bound to
    /// it and for the peer to know who calls.
    pub fn proving(mut self, identity: &'a Identity) -> Dialer<'a> {
        self.identity = Some(identity);
        self
    }

    /// Offers `bootstrap` to the peer, which it may call back.
    pub fn offer(mut self, bootstrap: capnp::capability::Client) -> Dialer<'a> {
        self.offer = Some(bootstrap);
        self
    }

    /// Sets the bounds on what the peer may make this vat hold.
    pub fn limits(mut self, limits: Limits) -> Dialer<'a> {
        self.limits = limits;
        self
    }

    /// Dials over TLS; the peer must prove `key`.
    pub async fn tls(self, key: PublicKey) -> Result<Connection, NetError> {
        tls::dial(self.addr, key, self.identity, self.offer, self.limits).await
    }

    /// Dials over plain TCP, which proves nothing.
    pub async fn tcp(self) -> Result<Connection, NetError> {
        let connection = dial(self.addr, self.offer, self.limits).await?;
        Ok(connection)
    }
}

impl From<NetError> for Error {
    /// A connection that could not be made or a socket not bound, as a
    /// broken promise's error: dialling failures are
    /// [`Disconnected`](ErrorKind::Disconnected) (nothing was sent: retrying
    /// is safe), the rest [`Failed`](ErrorKind::Failed).
    fn from(error: NetError) -> Error {
        let kind = match &error {
            NetError::Dial { .. } | NetError::DialTimedOut { .. } => ErrorKind::Disconnected,
            _ => ErrorKind::Failed,
        };
        Error::new(kind, error.to_string())
    }
}

impl From<IdentityError> for Error {
    fn from(error: IdentityError) -> Error {
        Error::new(ErrorKind::Failed, error.to_string())
    }
}
