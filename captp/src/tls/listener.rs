//! Accepting TLS connections: every caller accepted at once, handshakes
//! bounded in time (a short deadline for the ClientHello, a longer one for
//! the whole handshake) and in number (in all and per source, the oldest
//! silent socket giving way to a newcomer).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::AbortHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::Instrument;

use super::error::{check_protocol, explain, Explained, HandshakeError};
use super::pending::{Crowded, Id, Pending, Shed, Source};
use super::verify::key_of;
use super::{
    config, DEFAULT_CLIENT_HELLO_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_PENDING_HANDSHAKES, DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE,
};
use crate::log::{Throttled, Untrusted};
use crate::{Connection, Identity, Limits, NetError, PublicKey, Side};

/// A listening TCP socket whose connections are TLS 1.3 sessions carrying
/// RPC, with this vat proving its [`Identity`] and callers proving theirs
/// (or connecting anonymously).
///
/// [`serve`](TlsListener::serve) accepts every caller at once and runs its
/// handshake as a task of its own. A caller must send its ClientHello within
/// the ClientHello timeout and complete the handshake within the handshake
/// timeout. At most [`max_pending_handshakes`](TlsListener::with_max_pending_handshakes)
/// handshakes are in progress, and at most
/// [`max_pending_handshakes_per_source`](TlsListener::with_max_pending_handshakes_per_source)
/// from one source (an IPv4 address or an IPv6 /64); beyond either bound the
/// oldest socket of that scope still waiting for its ClientHello (or, if
/// none is, the oldest of the scope) is dropped to make room. So idle and
/// trickling sockets cost bounded memory and cannot keep out an honest
/// caller, even one sharing their address: it sends its ClientHello at once.
///
/// One pending handshake costs a file descriptor and the kernel's socket
/// (with what the caller sent into its receive buffer), and in this
/// process its task, its socket's registration and rustls's acceptor:
/// about 8 KiB measured with nothing received, about 16 KiB with a partial
/// ClientHello of 4 to 16 KiB buffered. At the default bound of 512 pending
/// handshakes, that is at most about 8 MiB.
#[derive(Debug)]
pub struct TlsListener {
    socket: TcpListener,
    addr: SocketAddr,
    key: PublicKey,
    handshaker: Handshaker,
    max_pending: usize,
    max_pending_per_source: usize,
}

impl TlsListener {
    /// Binds `addr` (port 0 picks a free port; see
    /// [`TlsListener::local_addr`]) to accept connections as `identity`.
    pub async fn bind(addr: SocketAddr, identity: &Identity) -> Result<TlsListener, NetError> {
        let config = config::server(identity)?;
        let socket = listen(addr).map_err(|source| NetError::Bind { addr, source })?;
        let addr = socket.local_addr()?;
        Ok(TlsListener {
            socket,
            addr,
            key: identity.public_key(),
            handshaker: Handshaker {
                config: Arc::new(config),
                hello_timeout: DEFAULT_CLIENT_HELLO_TIMEOUT,
                timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            },
            max_pending: DEFAULT_MAX_PENDING_HANDSHAKES,
            max_pending_per_source: DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE,
        })
    }

    /// Sets how long a caller may take to complete its handshake, from the
    /// moment it is accepted, before it is dropped (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsListener {
        self.handshaker.timeout = timeout;
        self
    }

    /// Sets how long a caller may take, from the moment it is accepted, to
    /// send its whole ClientHello (the first message of the handshake)
    /// before it is dropped (default [`DEFAULT_CLIENT_HELLO_TIMEOUT`]). A
    /// handshake timeout set shorter bounds this too.
    pub fn with_client_hello_timeout(mut self, timeout: Duration) -> TlsListener {
        self.handshaker.hello_timeout = timeout;
        self
    }

    /// Sets how many handshakes [`serve`](TlsListener::serve) keeps in
    /// progress at once (default [`DEFAULT_MAX_PENDING_HANDSHAKES`], at
    /// least 1). A caller accepted while all are in progress takes the place
    /// of the oldest one still waiting for its ClientHello, or failing that
    /// of the oldest one.
    pub fn with_max_pending_handshakes(mut self, max: usize) -> TlsListener {
        self.max_pending = max.max(1);
        self
    }

    /// Sets how many handshakes [`serve`](TlsListener::serve) keeps in
    /// progress at once for callers of one source, an IPv4 address or an
    /// IPv6 /64 (default [`DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE`], at
    /// least 1). Beyond it a caller takes the place of its source's oldest
    /// one, as with [`with_max_pending_handshakes`](TlsListener::with_max_pending_handshakes),
    /// so that one source cannot crowd out the others.
    pub fn with_max_pending_handshakes_per_source(mut self, max: usize) -> TlsListener {
        self.max_pending_per_source = max.max(1);
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
            .run(stream, || {})
            .await
            .map_err(|reason| NetError::Handshake { addr: peer, reason })?;
        Ok(open(stream, peer, key, bootstrap, limits))
    }

    /// Accepts connections for as long as the calling vat runs. Each
    /// caller's handshake runs as its own local task, bounded in time and
    /// in number (see [`TlsListener`]); once it completes, `bootstrap` is
    /// called with the caller's proven key (`None` for an anonymous caller)
    /// and what it returns is offered to that caller.
    ///
    /// A failed or shed handshake is logged as a warning (with the caller's
    /// address and the reason, escaped) and the loop goes on serving others.
    /// Warnings of one kind are rate-limited: at most
    /// [`DEFAULT_WARN_BURST`](crate::log::DEFAULT_WARN_BURST) per
    /// [`DEFAULT_WARN_INTERVAL`](crate::log::DEFAULT_WARN_INTERVAL), then
    /// one line counting the rest.
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
        let handshaker = self.handshaker;
        let pending = Pending::new(self.max_pending, self.max_pending_per_source);
        let socket = self.socket;
        vat_env::spawn(
            async move {
                tracing::info!("accepting TLS connections");
                let serving = Serving {
                    handshaker,
                    bootstrap: Rc::new(bootstrap),
                    accepted: Rc::new(accepted),
                    limits,
                    pending: Rc::new(RefCell::new(Handshakes {
                        pending,
                        tasks: HashMap::new(),
                    })),
                    // Created here, so that their summaries are logged in
                    // the listener's span.
                    warnings: Warnings::default(),
                };
                loop {
                    match socket.accept().await {
                        Ok((stream, peer)) => serving.admit(stream, peer),
                        Err(error) => serving.accept_failed(&error).await,
                    }
                    // Let the handshakes just started read what their
                    // callers already sent before more sockets come in.
                    tokio::task::yield_now().await;
                }
            }
            .instrument(span),
        );
    }
}

/// How many established connections the kernel queues for the listener
/// before dropping further SYNs (the system's `somaxconn` may lower it).
/// The listener accepts at once, so the queue only absorbs bursts; a deep
/// one keeps a burst of hostile connections from dropping an honest
/// caller's SYN, which would cost it a second or more of retransmission.
const LISTEN_BACKLOG: u32 = 1024;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As std and tokio do: a restarted vat can listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What [`TlsListener::serve_with`] works with.
struct Serving<F, G> {
    handshaker: Handshaker,
    bootstrap: Rc<F>,
    accepted: Rc<G>,
    limits: Limits,
    pending: Rc<RefCell<Handshakes>>,
    warnings: Warnings,
}

/// The handshakes in progress and the tasks running them.
struct Handshakes {
    pending: Pending,
    tasks: HashMap<Id, AbortHandle>,
}

impl Handshakes {
    /// Ends the handshake `shed` was chosen for.
    fn end(&mut self, shed: Shed) {
        if let Some(task) = self.tasks.remove(&shed.id) {
            task.abort();
        }
    }
}

/// The listener's warnings, each kind rate-limited on its own.
#[derive(Clone)]
struct Warnings {
    failed: Throttled,
    shed: Throttled,
    accept: Throttled,
}

impl Default for Warnings {
    fn default() -> Warnings {
        Warnings {
            failed: Throttled::new("failed TLS handshakes"),
            shed: Throttled::new("pending TLS handshakes dropped to make room"),
            accept: Throttled::new("failed accepts"),
        }
    }
}

impl<F, G> Serving<F, G>
where
    F: Fn(Option<PublicKey>) -> Option<capnp::capability::Client> + 'static,
    G: Fn(Connection) + 'static,
{
    /// Takes an accepted socket into the pending handshakes (dropping the
    /// ones that make room for it) and starts its handshake.
    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        if let Err(error) = crate::socket::prepare(&stream, &self.limits) {
            self.warnings.accept.warn(
                || format!("from {peer}: {error}"),
                || tracing::warn!(%peer, %error, "cannot set up the accepted socket; connection dropped"),
            );
            return;
        }
        let (id, shed) = self
            .pending
            .borrow_mut()
            .pending
            .admit(Source::of(peer.ip()));
        for dropped in shed {
            self.pending.borrow_mut().end(dropped);
            self.warn_shed(dropped, peer);
        }
        let task = vat_env::spawn(
            self.handshake(id, stream, peer)
                .instrument(tracing::info_span!("handshake", %peer)),
        );
        self.pending
            .borrow_mut()
            .tasks
            .insert(id, task.abort_handle());
    }

    /// The handshake of the socket admitted as `id`, then its session.
    fn handshake(
        &self,
        id: Id,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let handshaker = self.handshaker.clone();
        let bootstrap = Rc::clone(&self.bootstrap);
        let accepted = Rc::clone(&self.accepted);
        let pending = Rc::clone(&self.pending);
        let failed = self.warnings.failed.clone();
        let limits = self.limits;
        async move {
            let hello = || pending.borrow_mut().pending.hello_received(id);
            let result = handshaker.run(stream, hello).await;
            {
                let mut pending = pending.borrow_mut();
                pending.pending.finished(id);
                pending.tasks.remove(&id);
            }
            match result {
                Ok((stream, key)) => {
                    let connection = open(stream, peer, key, bootstrap(key), limits);
                    tracing::info!(vat = ?key, "accepted");
                    accepted(connection);
                }
                Err(reason) => failed.warn(
                    || format!("from {peer}: {}", Untrusted(&reason)),
                    || {
                        tracing::warn!(%peer, reason = %Untrusted(&reason), "TLS handshake failed; connection dropped");
                    },
                ),
            }
        }
    }

    /// Logs that `dropped` made room for a newer caller from `newcomer`.
    fn warn_shed(&self, dropped: Shed, newcomer: SocketAddr) {
        let scope = match dropped.crowded {
            Crowded::Source => "its source's share",
            Crowded::Listener => "the listener's total",
        };
        let state = if dropped.had_hello {
            "in its handshake"
        } else {
            "still without its ClientHello"
        };
        self.warnings.shed.warn(
            || format!("for {newcomer}: {scope} was full"),
            || {
                tracing::warn!(%newcomer, "a pending handshake {state} was dropped to make room: {scope} of pending handshakes was full");
            },
        );
    }

    /// Reports a failed `accept`. Out of file descriptors, the oldest socket
    /// still waiting for its ClientHello is dropped to free one; otherwise
    /// the loop backs off briefly so that a persistent failure does not spin.
    async fn accept_failed(&self, error: &io::Error) {
        self.warnings.accept.warn(
            || format!("of all: {error}"),
            || tracing::warn!(%error, "accept failed"),
        );
        let out_of_descriptors = matches!(error.raw_os_error(), Some(EMFILE | ENFILE));
        let shed = if out_of_descriptors {
            self.pending.borrow_mut().pending.shed_oldest_silent()
        } else {
            None
        };
        match shed {
            // The aborted task's socket closes once the runtime drops it,
            // which the caller's yield lets happen.
            Some(dropped) => self.pending.borrow_mut().end(dropped),
            None => vat_env::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// "Too many open files" in this process, and in the whole system (Linux
/// numbers, which are also those of the BSDs and macOS for EMFILE).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Starts the RPC session of an accepted, authenticated connection.
fn open(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    key: Option<PublicKey>,
    bootstrap: Option<capnp::capability::Client>,
    limits: Limits,
) -> Connection {
    Connection::open_authenticated(
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
    config: Arc<ServerConfig>,
    hello_timeout: Duration,
    timeout: Duration,
}

impl fmt::Debug for Handshaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshaker")
            .field("hello_timeout", &self.hello_timeout)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Handshaker {
    /// Completes the handshake on `stream`, calling `hello` once the
    /// caller's ClientHello has arrived; returns the TLS stream and the key
    /// the caller proved, if it presented one.
    async fn run(
        &self,
        stream: TcpStream,
        hello: impl FnOnce(),
    ) -> Result<(TlsStream<TcpStream>, Option<PublicKey>), HandshakeError> {
        let started = vat_env::now();
        let deadline = started + self.timeout;
        let hello_deadline = (started + self.hello_timeout).min(deadline);
        let awaiting_hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
        let start = match vat_env::timeout_at(hello_deadline, awaiting_hello).await {
            Err(_elapsed) if hello_deadline < deadline => {
                return Err(HandshakeError::NoClientHello(self.hello_timeout))
            }
            Err(_elapsed) => return Err(HandshakeError::TimedOut(self.timeout)),
            Ok(Err(error)) => return Err(failure(error)),
            Ok(Ok(start)) => start,
        };
        hello();
        let handshake = start.into_stream(Arc::clone(&self.config));
        let stream = match vat_env::timeout_at(deadline, handshake).await {
            Err(_elapsed) => return Err(HandshakeError::TimedOut(self.timeout)),
            Ok(Err(error)) => return Err(failure(error)),
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

/// What a failed server-side handshake says about the caller.
fn failure(error: io::Error) -> HandshakeError {
    match explain(error) {
        Explained::Failed(reason) => reason,
        // Servers pin no key; report it plainly if it ever happens.
        Explained::NotThatVat { found } => HandshakeError::Tls(rustls::Error::General(format!(
            "unexpected key mismatch (it proved {found:?})"
        ))),
    }
}
