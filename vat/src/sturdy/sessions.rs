//! The vat's connection manager: at most one connection to each other vat,
//! used in both directions, and closed once idle.
//!
//! A vat keeps the connections it dialled to restore tokens and, when it
//! serves a [`Persistence`](super::Persistence), the connections other vats
//! dialled to it after proving their keys. Each connection carries both
//! vats' gateways (the dialler offers its own when it has one), so either
//! vat restores the other's tokens over it.
//!
//! When two vats dial each other at the same moment, each ends up with two
//! connections to the other. Both pick the same one to keep: the one
//! dialled by the vat whose key is smaller (compared as 32 bytes); between
//! two dialled by the same vat, the newer (the older one may be the corpse
//! of a connection from before a restart). New restores go over the kept
//! one; the other is closed once nothing uses it — no question, answer or
//! capability other than the two bootstraps outstanding — for
//! [`DUPLICATE_GRACE`], so no reference in use is ever cut.
//!
//! A kept connection that has been idle in the same sense for
//! [`Limits::idle_timeout`] is closed too; the next restore of a token of
//! that vat dials again.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use captp::{Connection, Identity, Limits, PublicKey, Side};
use sturdyrefs::{SturdyRef, VatId};

use super::restore::{dial_offering, vat_id, vat_key, RestoreError};

/// How long a duplicate connection must have been unused before it is
/// closed: long enough for a restore the other vat sent on it before it
/// learnt of the duplicate to arrive (and so to count as a use).
pub const DUPLICATE_GRACE: Duration = Duration::from_secs(1);

/// The longest pause between two sweeps of the connections.
const MAX_SWEEP: Duration = Duration::from_secs(15);

/// A managed connection is to one vat, made (or accepted) proving one key
/// of this vat's (or none: an anonymous dial).
pub(crate) type SessionKey = (VatId, Option<PublicKey>);

/// The key of the session `token` is restored over, with `identity`.
pub(crate) fn session_key(token: &SturdyRef, identity: Option<&Identity>) -> SessionKey {
    (*token.vat(), identity.map(Identity::public_key))
}

/// What offers this vat's gateway to a peer: given the peer's id, the
/// capability to bootstrap it with.
type GatewayOffer = Rc<dyn Fn(VatId) -> Option<capnp::capability::Client>>;

struct Entry {
    connection: Rc<Connection>,
    dialled_here: bool,
    serial: u64,
    idle_timeout: Duration,
}

/// Ordered maps: the sweep closes connections in key order, the same in
/// every run of a simulation.
#[derive(Default)]
struct Manager {
    sessions: BTreeMap<SessionKey, Vec<Entry>>,
    /// One dial at a time per key, so restores started together share it.
    dialling: BTreeMap<SessionKey, Rc<tokio::sync::Mutex<()>>>,
    /// The gateways this vat offers when it dials, by the key it proves.
    gateways: BTreeMap<PublicKey, GatewayOffer>,
    next_serial: u64,
    sweeping: bool,
    /// Wakes the sweeper when a connection is added (it may be a duplicate,
    /// or have a shorter idle timeout than the sweeper waits).
    added: Rc<tokio::sync::Notify>,
}

/// Runs `f` on the current vat's manager.
fn with_manager<R>(f: impl FnOnce(&RefCell<Manager>) -> R) -> R {
    f(&crate::core::vat_local::<RefCell<Manager>>())
}

/// A connection the manager holds, as [`connections`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The vat at the other end.
    pub peer: VatId,
    /// The key this vat proved on it (`None`: dialled anonymously).
    pub as_vat: Option<VatId>,
    /// Whether this vat dialled it (else the peer did).
    pub dialled_here: bool,
    /// Whether new restores go over it; `false` for a duplicate waiting to
    /// be closed.
    pub kept: bool,
    /// How long it has been idle (see [`Connection::idle_for`]).
    pub idle_for: Option<Duration>,
    /// A number no other connection of this vat had, to tell a connection
    /// from a later one to the same vat.
    pub serial: u64,
}

/// The open connections this vat's manager holds, for operators and tests.
/// Must be called inside a vat (each vat has its own).
pub fn connections() -> Vec<ConnectionInfo> {
    with_manager(|m| {
        let manager = m.borrow();
        let mut out = Vec::new();
        for (key, entries) in &manager.sessions {
            let kept = winner(key, entries).map(|e| e.serial);
            for entry in entries.iter().filter(|e| !e.connection.is_closed()) {
                out.push(ConnectionInfo {
                    peer: key.0,
                    as_vat: key.1.map(vat_id),
                    dialled_here: entry.dialled_here,
                    kept: kept == Some(entry.serial),
                    idle_for: entry.connection.idle_for(),
                    serial: entry.serial,
                });
            }
        }
        out.sort_by_key(|c| c.serial);
        out
    })
}

/// Offers `gateway` (given the peer's id) as this vat's bootstrap on every
/// connection it dials proving `ours`.
pub(crate) fn offer_gateway(
    ours: PublicKey,
    gateway: impl Fn(VatId) -> Option<capnp::capability::Client> + 'static,
) {
    with_manager(|m| m.borrow_mut().gateways.insert(ours, Rc::new(gateway)));
}

/// The connection new restores for `key` go over, if one is open.
fn kept(key: &SessionKey) -> Option<Rc<Connection>> {
    with_manager(|m| {
        let manager = m.borrow();
        let entries = manager.sessions.get(key)?;
        winner(key, entries).map(|e| Rc::clone(&e.connection))
    })
}

/// The open connection to `token`'s vat that restores go over: the kept
/// one, or a new one dialled (offering this vat's gateway if it serves one
/// as `identity`).
pub(crate) async fn session(
    token: &SturdyRef,
    identity: Option<&Identity>,
    limits: Limits,
) -> Result<Rc<Connection>, RestoreError> {
    let key = session_key(token, identity);
    if let Some(connection) = kept(&key) {
        return Ok(connection);
    }
    let lock = with_manager(|m| {
        Rc::clone(
            m.borrow_mut()
                .dialling
                .entry(key)
                .or_insert_with(|| Rc::new(tokio::sync::Mutex::new(()))),
        )
    });
    let guard = lock.lock().await;
    // Another restore may have dialled, or the peer may have, meanwhile.
    let found = kept(&key);
    let result = match found {
        Some(connection) => Ok(connection),
        None => {
            let offer = key.1.and_then(|ours| {
                let gateway = with_manager(|m| m.borrow().gateways.get(&ours).cloned());
                gateway.and_then(|g| g(key.0))
            });
            match dial_offering(token, identity, offer, limits).await {
                Ok(connection) => Ok(register(key, Rc::new(connection), true, limits)),
                Err(error) => Err(error),
            }
        }
    };
    drop(guard);
    with_manager(|m| {
        let mut manager = m.borrow_mut();
        // Only the map and this task hold it: nobody waits to dial.
        if Rc::strong_count(&lock) == 2 {
            manager.dialling.remove(&key);
        }
    });
    result
}

/// Forgets `connection` as a session for `key` (it failed as disconnected),
/// so that the next restore dials afresh or takes another.
pub(crate) fn forget(key: &SessionKey, connection: &Rc<Connection>) {
    with_manager(|m| {
        if let Some(entries) = m.borrow_mut().sessions.get_mut(key) {
            entries.retain(|e| !Rc::ptr_eq(&e.connection, connection));
        }
    });
}

/// Takes a connection this vat accepted as `ours` from a caller: if the
/// caller proved its key and offers a gateway, it becomes this vat's
/// session to that vat (reused for restores of its tokens), subject to the
/// duplicate rule and the idle timeout. Must be called inside a vat.
pub(crate) fn accepted(ours: PublicKey, connection: Connection, limits: Limits) {
    let Some(theirs) = connection.peer_key() else {
        return;
    };
    // A caller proving this vat's own key is its operator (or the vat
    // itself): not another vat to share connections with.
    if theirs == ours {
        return;
    }
    vat_env::spawn(async move {
        if !connection.peer_offers_bootstrap().await || connection.is_closed() {
            return;
        }
        let key = (vat_id(theirs), Some(ours));
        register(key, Rc::new(connection), false, limits);
    });
}

/// Adds `connection` to the sessions for `key`; returns the one new
/// restores go over (it, or the one it duplicates).
fn register(
    key: SessionKey,
    connection: Rc<Connection>,
    dialled_here: bool,
    limits: Limits,
) -> Rc<Connection> {
    let (kept, start_sweeping) = with_manager(|m| {
        let mut manager = m.borrow_mut();
        let serial = manager.next_serial;
        manager.next_serial += 1;
        let entries = manager.sessions.entry(key).or_default();
        entries.retain(|e| !e.connection.is_closed());
        entries.push(Entry {
            connection: Rc::clone(&connection),
            dialled_here,
            serial,
            idle_timeout: limits.idle_timeout,
        });
        let kept = match winner(&key, entries) {
            Some(kept) => kept,
            None => return (connection, false),
        };
        if entries.len() > 1 {
            tracing::info!(
                peer = %key.0,
                connections = entries.len(),
                kept_dialled_here = kept.dialled_here,
                kept = %kept.connection.label(),
                "two connections between this vat and the peer; new restores use the one \
                 dialled by the vat with the smaller key, the other closes once unused"
            );
        }
        let kept = Rc::clone(&kept.connection);
        let start = !manager.sweeping;
        manager.sweeping = true;
        manager.added.notify_waiters();
        (kept, start)
    });
    if start_sweeping {
        vat_env::spawn(sweep_while_any());
    }
    kept
}

/// Which of the open `entries` for `key` both vats keep.
fn winner<'a>(key: &SessionKey, entries: &'a [Entry]) -> Option<&'a Entry> {
    let (peer, ours) = key;
    let peer_key = vat_key(peer);
    let smaller = ours.map(|ours| {
        if ours.to_bytes() < peer_key.to_bytes() {
            ours
        } else {
            peer_key
        }
    });
    entries
        .iter()
        .filter(|e| !e.connection.is_closed())
        .max_by_key(|e| {
            let dialler = if e.dialled_here {
                *ours
            } else {
                Some(peer_key)
            };
            (dialler.is_some() && dialler == smaller, e.serial)
        })
}

/// Closes duplicates and idle connections, every so often, for as long as
/// the manager holds any.
async fn sweep_while_any() {
    let added = with_manager(|m| Rc::clone(&m.borrow().added));
    loop {
        let woken = added.notified();
        let pause = with_manager(|m| sweep(&mut m.borrow_mut()));
        let Some(pause) = pause else {
            with_manager(|m| m.borrow_mut().sweeping = false);
            return;
        };
        tokio::select! {
            biased;
            () = vat_env::sleep(pause) => {}
            () = woken => {}
        }
    }
}

/// One sweep; returns how long to wait for the next, or `None` once no
/// connection is left.
fn sweep(manager: &mut Manager) -> Option<Duration> {
    let mut pause = MAX_SWEEP;
    manager.sessions.retain(|key, entries| {
        entries.retain(|e| !e.connection.is_closed());
        let Some(kept) = winner(key, entries).map(|e| e.serial) else {
            return false;
        };
        entries.retain(|entry| {
            let idle = entry.connection.idle_for();
            let side = match entry.connection.side() {
                Side::Dialer => "dialled here",
                Side::Acceptor => "accepted",
            };
            if entry.serial != kept {
                pause = pause.min(DUPLICATE_GRACE / 4);
                if idle.is_some_and(|idle| idle >= DUPLICATE_GRACE) {
                    tracing::info!(peer = %key.0, connection = %entry.connection.label(), side,
                        "closing the duplicate connection to the peer: it is unused");
                    entry.connection.shut_down();
                    return false;
                }
                return true;
            }
            pause = pause.min(entry.idle_timeout / 4);
            match idle {
                Some(idle) if idle >= entry.idle_timeout => {
                    tracing::info!(peer = %key.0, connection = %entry.connection.label(), side,
                        idle_timeout = ?entry.idle_timeout,
                        "closing the connection to the peer: idle for the idle timeout");
                    entry.connection.shut_down();
                    false
                }
                _ => true,
            }
        });
        !entries.is_empty()
    });
    if manager.sessions.is_empty() {
        return None;
    }
    Some(pause.max(Duration::from_millis(10)))
}
