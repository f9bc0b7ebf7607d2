//! Plain TCP: dialling and listening without authentication or encryption.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::{Connection, Limits, NetError, Side, DEFAULT_DIAL_TIMEOUT};

/// Dials `addr` over plain TCP and starts an RPC session, offering
/// `bootstrap` (if any) to the peer.
///
/// The connection is neither authenticated nor encrypted (and a warning says
/// so in the log): anyone on the path can read and change it, and the peer
/// may be any program. Use [`tls::dial`](crate::tls::dial) between vats;
/// plain TCP is for trusted networks and tests.
///
/// Gives up with [`NetError::DialTimedOut`] if the connection is not made
/// within [`DEFAULT_DIAL_TIMEOUT`]. Must be awaited inside a vat.
pub async fn dial(
    addr: SocketAddr,
    bootstrap: Option<capnp::capability::Client>,
    limits: Limits,
) -> Result<Connection, NetError> {
    dial_within(DEFAULT_DIAL_TIMEOUT, addr, bootstrap, limits).await
}

/// [`dial`], giving up after `timeout` instead of [`DEFAULT_DIAL_TIMEOUT`].
pub async fn dial_within(
    timeout: Duration,
    addr: SocketAddr,
    bootstrap: Option<capnp::capability::Client>,
    limits: Limits,
) -> Result<Connection, NetError> {
    tracing::warn!(%addr, "{PLAIN_TCP_WARNING}");
    let deadline = vat_env::now() + timeout;
    let stream = crate::socket::connect(addr, deadline, timeout).await?;
    crate::socket::prepare(&stream, &limits)?;
    Ok(Connection::open(
        stream,
        Side::Dialer,
        bootstrap,
        limits,
        addr.to_string(),
    ))
}

/// What is logged, once per dial and per listener, about plain TCP.
const PLAIN_TCP_WARNING: &str =
    "plain TCP: this connection is neither authenticated nor encrypted (use captp::tls)";

/// A listening TCP socket whose accepted connections are RPC sessions.
///
/// Its connections are neither authenticated nor encrypted (a warning says
/// so in the log when it is bound). Use [`TlsListener`](crate::tls::TlsListener)
/// between vats; plain TCP is for trusted networks and tests.
#[derive(Debug)]
pub struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port; see [`Listener::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> Result<Listener, NetError> {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|source| NetError::Bind { addr, source })?;
        let addr = socket.local_addr()?;
        tracing::warn!(%addr, "{PLAIN_TCP_WARNING}");
        Ok(Listener { socket, addr })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts one connection and starts its RPC session, offering `bootstrap`.
    pub async fn accept(
        &self,
        bootstrap: Option<capnp::capability::Client>,
        limits: Limits,
    ) -> Result<Connection, NetError> {
        let (stream, peer) = self.socket.accept().await?;
        crate::socket::prepare(&stream, &limits)?;
        Ok(Connection::open(
            stream,
            Side::Acceptor,
            bootstrap,
            limits,
            peer.to_string(),
        ))
    }

    /// Accepts connections for as long as the calling vat runs, offering each
    /// peer `bootstrap`. Runs as a local task; failures to accept one
    /// connection are logged and do not stop the loop.
    pub fn serve(self, bootstrap: capnp::capability::Client, limits: Limits) {
        let span = tracing::info_span!("listener", addr = %self.addr);
        vat_env::spawn(tracing::Instrument::instrument(
            async move {
                tracing::info!("accepting connections");
                loop {
                    match self.accept(Some(bootstrap.clone()), limits).await {
                        Ok(connection) => {
                            tracing::info!(peer = connection.label(), "accepted");
                        }
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            // Back off briefly so that a persistent failure
                            // (out of file descriptors) does not spin.
                            vat_env::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                }
            },
            span,
        ));
    }
}
