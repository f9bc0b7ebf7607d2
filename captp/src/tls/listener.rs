//! Accepting TLS connections: handshakes bounded in time and in number.

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::error::{check_protocol, explain, Explained, HandshakeError};
use super::verify::key_of;
use super::{config, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_PENDING_HANDSHAKES};
use crate::{Connection, Identity, Limits, NetError, PublicKey, Side};

/// A listening TCP socket whose connections are TLS 1.3 sessions carrying
/// RPC, with this vat proving its [`Identity`] and callers proving theirs
/// (or connecting anonymously).
#[derive(Debug)]
pub struct TlsListener {
    socket: TcpListener,
    addr: SocketAddr,
    key: PublicKey,
    handshaker: Handshaker,
    max_pending: usize,
}

impl TlsListener {
    /// Binds `addr` (port 0 picks a free port; see
    /// [`TlsListener::local_addr`]) to accept connections as `identity`.
    pub async fn bind(addr: SocketAddr, identity: &Identity) -> Result<TlsListener, NetError> {
        let config = config::server(identity)?;
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|source| NetError::Bind { addr, source })?;
        let addr = socket.local_addr()?;
        Ok(TlsListener {
            socket,
            addr,
            key: identity.public_key(),
            handshaker: Handshaker {
                acceptor: TlsAcceptor::from(Arc::new(config)),
                timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            },
            max_pending: DEFAULT_MAX_PENDING_HANDSHAKES,
        })
    }

    /// Sets how long a caller may take to complete its handshake before it
    /// is dropped (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsListener {
        self.handshaker.timeout = timeout;
        self
    }

    /// Sets how many handshakes [`serve`](TlsListener::serve) runs at once
    /// (default [`DEFAULT_MAX_PENDING_HANDSHAKES`], at least 1). While all
    /// are in progress, new callers wait in the socket's backlog.
    pub fn with_max_pending_handshakes(mut self, max: usize) -> TlsListener {
        self.max_pending = max.max(1);
        self
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key this listener proves to its callers: the vat's own.
    pub fn public_key(&self) -> PublicKey {
        self.key
    }

    /// Accepts one connection, completes its handshake and starts its RPC
    /// session, offering `bootstrap`. The caller's proven key is the
    /// connection's [`peer_key`](Connection::peer_key) (`None` if it came
    /// anonymously).
    ///
    /// A caller that fails the handshake or does not complete it in time is
    /// dropped and reported as [`NetError::Handshake`]; the listener itself
    /// is unaffected. To pick the bootstrap capability by the caller's key,
    /// or to handshake with several callers at once, use
    /// [`serve`](TlsListener::serve).
    pub async fn accept(
        &self,
        bootstrap: Option<capnp::capability::Client>,
        limits: Limits,
    ) -> Result<Connection, NetError> {
        let (stream, peer) = self.socket.accept().await?;
        crate::socket::prepare(&stream, &limits).map_err(|source| NetError::Handshake {
            addr: peer,
            reason: HandshakeError::Io(source),
        })?;
        let (stream, key) = self
            .handshaker
            .run(stream)
            .await
            .map_err(|reason| NetError::Handshake { addr: peer, reason })?;
        Ok(open(stream, peer, key, bootstrap, limits))
    }

    /// Accepts connections for as long as the calling vat runs. Each
    /// caller's handshake runs as its own local task, bounded in time; once
    /// it completes, `bootstrap` is called with the caller's proven key
    /// (`None` for an anonymous caller) and what it returns is offered to
    /// that caller.
    ///
    /// A failed handshake is logged (with the caller's address and the
    /// reason) and the loop goes on serving others.
    pub fn serve<F>(self, bootstrap: F, limits: Limits)
    where
        F: Fn(Option<PublicKey>) -> Option<capnp::capability::Client> + 'static,
    {
        self.serve_with(bootstrap, |_connection| {}, limits);
    }

    /// [`serve`](TlsListener::serve), handing each connection to `accepted`
    /// once its session has started, so that the vat can keep it (to reuse
    /// it for its own calls to that caller, or to close it later). The
    /// session runs whether or not `accepted` keeps the connection.
    pub fn serve_with<F, G>(self, bootstrap: F, accepted: G, limits: Limits)
    where
        F: Fn(Option<PublicKey>) -> Option<capnp::capability::Client> + 'static,
        G: Fn(Connection) + 'static,
    {
        let span = tracing::info_span!("tls_listener", addr = %self.addr, vat = ?self.key);
        tokio::task::spawn_local(
            async move {
                tracing::info!("accepting TLS connections");
                let bootstrap = Rc::new(bootstrap);
                let accepted = Rc::new(accepted);
                let slots = Arc::new(Semaphore::new(self.max_pending));
                loop {
                    let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                        // Unreachable: the semaphore is never closed.
                        return;
                    };
                    let (stream, peer) = match self.socket.accept().await {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            // Back off briefly so that a persistent failure
                            // (out of file descriptors) does not spin.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if let Err(error) = crate::socket::prepare(&stream, &limits) {
                        tracing::warn!(%peer, %error, "cannot set up the accepted socket; connection dropped");
                        continue;
                    }
                    let handshaker = self.handshaker.clone();
                    let bootstrap = Rc::clone(&bootstrap);
                    let accepted = Rc::clone(&accepted);
                    let handshake = async move {
                        let result = handshaker.run(stream).await;
                        drop(slot);
                        match result {
                            Ok((stream, key)) => {
                                let connection = open(stream, peer, key, bootstrap(key), limits);
                                tracing::info!(vat = ?key, "accepted");
                                accepted(connection);
                            }
                            Err(reason) => {
                                tracing::warn!(%peer, %reason, "TLS handshake failed; connection dropped");
                            }
                        }
                    };
                    tokio::task::spawn_local(
                        handshake.instrument(tracing::info_span!("handshake", %peer)),
                    );
                }
            }
            .instrument(span),
        );
    }
}

/// Starts the RPC session of an accepted, authenticated connection.
fn open(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    key: Option<PublicKey>,
    bootstrap: Option<capnp::capability::Client>,
    limits: Limits,
) -> Connection {
    Connection::open_proven(
        stream,
        Side::Acceptor,
        bootstrap,
        limits,
        peer.to_string(),
        key,
    )
}

/// The server side of the TLS handshake, bounded in time.
#[derive(Clone)]
struct Handshaker {
    acceptor: TlsAcceptor,
    timeout: Duration,
}

impl fmt::Debug for Handshaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshaker")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Handshaker {
    /// Completes the handshake on `stream`; returns the TLS stream and the
    /// key the caller proved, if it presented one.
    async fn run(
        &self,
        stream: TcpStream,
    ) -> Result<(TlsStream<TcpStream>, Option<PublicKey>), HandshakeError> {
        let stream = match tokio::time::timeout(self.timeout, self.acceptor.accept(stream)).await {
            Err(_elapsed) => return Err(HandshakeError::TimedOut(self.timeout)),
            Ok(Err(error)) => {
                return Err(match explain(error) {
                    Explained::Failed(reason) => reason,
                    // Servers pin no key; report it plainly if it ever happens.
                    Explained::NotThatVat { found } => HandshakeError::Tls(rustls::Error::General(
                        format!("unexpected key mismatch (it proved {found:?})"),
                    )),
                });
            }
            Ok(Ok(stream)) => stream,
        };
        let session = stream.get_ref().1;
        check_protocol(session.alpn_protocol())?;
        let key = match session.peer_certificates() {
            None | Some([]) => None,
            Some([end_entity, intermediates @ ..]) => {
                Some(key_of(end_entity, intermediates).map_err(HandshakeError::Certificate)?)
            }
        };
        Ok((stream, key))
    }
}
