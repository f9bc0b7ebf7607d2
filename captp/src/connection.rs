use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use capnp::capability::FromClientHook;
use capnp_rpc::{rpc_twoparty_capnp, RpcSystem};
use futures::io::BufReader;
use futures::AsyncReadExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::compat::TokioAsyncReadCompatExt;
use tracing::Instrument;

use crate::log::Untrusted;
use crate::session::Usage;
use crate::{Limits, PublicKey};

/// Which end of a connection this vat is: the one that dialled or the one
/// that accepted. Only the bootstrap exchange looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This vat dialled.
    Dialer,
    /// This vat accepted.
    Acceptor,
}

impl Side {
    fn ours(self) -> rpc_twoparty_capnp::Side {
        match self {
            Side::Dialer => rpc_twoparty_capnp::Side::Client,
            Side::Acceptor => rpc_twoparty_capnp::Side::Server,
        }
    }

    fn theirs(self) -> rpc_twoparty_capnp::Side {
        match self {
            Side::Dialer => rpc_twoparty_capnp::Side::Server,
            Side::Acceptor => rpc_twoparty_capnp::Side::Client,
        }
    }
}

/// How a connection ended: `None` while it is open.
type Closure = Option<Result<(), String>>;

/// One Cap'n Proto RPC session with a peer vat.
///
/// The session runs as a local task of the vat that opened it and ends when
/// the stream closes, the peer breaks a [`Limits`] bound that ends
/// connections (see [`Limits`] for which do), or [`close`] is called. Dropping the `Connection` does not end the session: capabilities
/// obtained through it keep it alive.
///
/// [`close`]: Connection::close
pub struct Connection {
    label: String,
    side: Side,
    peer_key: Option<PublicKey>,
    peer: capnp::capability::Client,
    closed: watch::Receiver<Closure>,
    disconnector: capnp_rpc::Disconnector<rpc_twoparty_capnp::Side>,
    /// A second disconnector, for [`Connection::shut_down`] through a
    /// shared reference.
    spare_disconnector: RefCell<Option<capnp_rpc::Disconnector<rpc_twoparty_capnp::Side>>>,
    usage: Usage,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.label)
            .field("peer_key", &self.peer_key)
            .field("closed", &self.closed.borrow().is_some())
            .finish()
    }
}

impl Connection {
    /// Starts an RPC session over `stream`, offering `bootstrap` (if any) to
    /// the peer. `label` names the peer in logs.
    ///
    /// Must be called on a thread running a tokio `LocalSet` (inside a vat).
    ///
    /// The stream is taken as it is: the connection knows no
    /// [`peer_key`](Connection::peer_key). Authenticated connections come
    /// from [`tls`](crate::tls).
    pub fn open<S>(
        stream: S,
        side: Side,
        bootstrap: Option<capnp::capability::Client>,
        limits: Limits,
        label: impl Into<String>,
    ) -> Connection
    where
        S: AsyncRead + AsyncWrite + 'static,
    {
        Connection::open_authenticated(stream, side, bootstrap, limits, label, None)
    }

    /// [`Connection::open`] on a stream whose peer proved `peer_key`: by
    /// TLS ([`tls`](crate::tls) calls it), or by a transport that
    /// authenticates the peer itself (the simulator's network, which knows
    /// who dialled whom). Whoever calls it vouches for `peer_key`.
    pub fn open_authenticated<S>(
        stream: S,
        side: Side,
        bootstrap: Option<capnp::capability::Client>,
        limits: Limits,
        label: impl Into<String>,
        peer_key: Option<PublicKey>,
    ) -> Connection
    where
        S: AsyncRead + AsyncWrite + 'static,
    {
        let label = label.into();
        let (reader, writer) = stream.compat().split();
        let (network, usage) = crate::session::network(
            BufReader::new(reader),
            writer,
            side.ours(),
            limits,
            label.clone(),
        );
        let mut system = RpcSystem::new(network, bootstrap);
        let peer: capnp::capability::Client = system.bootstrap(side.theirs());
        let disconnector = system.get_disconnector();
        let spare_disconnector = RefCell::new(Some(system.get_disconnector()));
        let (tx, closed) = watch::channel(None);
        let span = tracing::info_span!(
            "connection",
            peer = %label,
            side = ?side,
            peer_key = ?peer_key
        );
        vat_env::spawn(
            async move {
                tracing::debug!("session open");
                let result = system.await;
                match &result {
                    Ok(()) => tracing::info!("session closed"),
                    // The error may carry the peer's own words (its abort
                    // reason), so it is escaped.
                    Err(error) => {
                        tracing::warn!(error = %Untrusted(error), "session closed with an error")
                    }
                }
                // Nobody may be watching any more; that is fine.
                let _ = tx.send(Some(result.map_err(|e| e.to_string())));
            }
            .instrument(span),
        );
        Connection {
            label,
            side,
            peer_key,
            peer,
            closed,
            disconnector,
            spare_disconnector,
            usage,
        }
    }

    /// The capability the peer offered at bootstrap, as the client type `C`.
    ///
    /// If the peer offered none, calls on it fail with an error saying so.
    pub fn peer<C: FromClientHook>(&self) -> C {
        self.peer.clone().cast_to()
    }

    /// The label given when the connection was opened (usually the peer's address).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The ed25519 key the peer proved when the connection was made, if any.
    ///
    /// `Some` for a connection made through [`tls`](crate::tls) with a peer
    /// that proved its key: always when dialling, and when accepting a caller
    /// that presented a certificate. `None` for an anonymous TLS caller, and
    /// for plain TCP and in-memory pipes, which prove nothing.
    pub fn peer_key(&self) -> Option<PublicKey> {
        self.peer_key
    }

    /// Whether this vat dialled or accepted the connection.
    pub fn side(&self) -> Side {
        self.side
    }

    /// How long the connection has been idle: no message has passed and
    /// nothing but the two bootstrap capabilities is outstanding (no
    /// question either way awaiting its answer or finish, no capability of
    /// one side held by the other). `None` while anything is in use.
    ///
    /// The counts come from the connection's ledger, which mirrors
    /// capnp-rpc's tables, so a reference held on either side keeps the
    /// connection in use. An ended session is idle for `Duration::MAX`.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.is_closed() {
            return Some(Duration::MAX);
        }
        self.usage.idle_for()
    }

    /// Waits for the peer's answer to the bootstrap request; returns whether
    /// the peer offered a capability (`false` if it offered none or the
    /// session ended first).
    pub async fn peer_offers_bootstrap(&self) -> bool {
        tokio::select! {
            biased;
            offered = self.usage.peer_bootstrap() => offered,
            _ = self.closed() => false,
        }
    }

    /// Starts ending the session without waiting, through a shared
    /// reference: the same clean shutdown as [`close`](Connection::close).
    /// Calls on it after this fail; [`closed`](Connection::closed) resolves
    /// once it has ended. Calling it again does nothing.
    pub fn shut_down(&self) {
        if let Some(disconnector) = self.spare_disconnector.borrow_mut().take() {
            let label = self.label.clone();
            vat_env::spawn(async move {
                if let Err(error) = disconnector.await {
                    tracing::debug!(peer = %label, error = %Untrusted(&error), "the shutdown ended with an error");
                }
            });
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Waits until the session ends; returns the error that ended it, if any.
    pub async fn closed(&self) -> Result<(), String> {
        let mut closed = self.closed.clone();
        loop {
            if let Some(result) = closed.borrow_and_update().clone() {
                return result;
            }
            if closed.changed().await.is_err() {
                return Err("the session task was dropped (its vat stopped)".to_string());
            }
        }
    }

    /// Ends the session: outstanding calls on both sides break with a
    /// disconnected error. Resolves once the shutdown has completed.
    pub async fn close(self) -> Result<(), capnp::Error> {
        self.disconnector.await
    }
}
