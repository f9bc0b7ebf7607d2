//! The connection manager: one connection between two vats, used both
//! ways; simultaneous dials resolved alike on both sides; idle connections
//! closed, and busy ones kept.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use capnp::capability::FromClientHook;
use schema::demo_capnp::counter;
use sturdyrefs::{SturdyRef, VatId};
use vat::demo::DurableCounter;
use vat::net::{tls, Identity, Limits};
use vat::sturdy::{connections, object_ref, restore, vat_id, ConnectionInfo, Persistence};
use vat::{Root, VatHandle};

/// A counter reference kept inside a vat between steps.
struct Held(counter::Client);

/// A vat that serves a durable counter and restores other vats' tokens,
/// with one identity for both.
struct Node {
    vat: VatHandle,
    identity: Identity,
    limits: Limits,
    port: u16,
    token: String,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(name: &str, limits: Limits) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate().unwrap();
        let vat = VatHandle::start(name).unwrap();
        let (path, id) = (dir.path().to_path_buf(), identity.clone());
        let (port, token) = vat
            .run_async(move || async move {
                let persistence = Persistence::open(&path, vat_id(id.public_key())).unwrap();
                persistence.durable::<DurableCounter>(1).unwrap();
                let listener = tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &id)
                    .await
                    .unwrap();
                let addr = listener.local_addr();
                persistence.set_hints(vec![addr.to_string().parse().unwrap()]);
                persistence.serve(listener, limits);
                let counter = object_ref("counter", 1).unwrap();
                let token = persistence.mint(&counter, Default::default()).await;
                (addr.port(), token.unwrap().to_string())
            })
            .wait()
            .unwrap();
        Node {
            vat,
            identity,
            limits,
            port,
            token,
            _dir: dir,
        }
    }

    fn id(&self) -> VatId {
        vat_id(self.identity.public_key())
    }

    /// Restores `token` (another node's counter) and keeps the reference.
    fn restore(&self, token: &str) -> Arc<Root<Held>> {
        let token: SturdyRef = token.parse().unwrap();
        let (identity, limits) = (self.identity.clone(), self.limits);
        let kept = self
            .vat
            .run_async(move || async move {
                let (object, _kind) = restore(&token, Some(&identity), limits).await.unwrap();
                let held = vat::spawn(Held(object.cast_to()));
                vat::current().root(&held)
            })
            .wait()
            .unwrap();
        Arc::new(kept)
    }

    /// Adds 1 through a kept reference; the counter's new value.
    fn add(&self, held: &Arc<Root<Held>>) -> i64 {
        let held = Arc::clone(held);
        self.vat
            .run_async(move || async move {
                let counter = held.get().unwrap().call(|h| h.0.clone()).unwrap();
                let mut request = counter.add_request();
                request.get().set_by(1);
                let response = request.send().promise.await.map_err(|e| e.to_string())?;
                response
                    .get()
                    .map(|r| r.get_value())
                    .map_err(|e| e.to_string())
            })
            .wait()
            .unwrap()
            .unwrap()
    }

    /// The open connections this node's manager holds to `peer`.
    fn connections_to(&self, peer: VatId) -> Vec<ConnectionInfo> {
        self.vat
            .run(move || {
                connections()
                    .into_iter()
                    .filter(|c| c.peer == peer)
                    .collect()
            })
            .wait()
            .unwrap()
    }
}

/// Established TCP connections between the listening ports `ports` and
/// anything: each connection accepted on one of them, counted once (the
/// accepting end's socket).
fn accepted_sockets(ports: &[u16]) -> usize {
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
    let ports: HashSet<u16> = ports.iter().copied().collect();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1]
                .rsplit_once(':')
                .map(|(_, p)| u16::from_str_radix(p, 16).unwrap())
                .unwrap();
            fields[3] == "01" && ports.contains(&local_port)
        })
        .count()
}

/// Waits up to `patience` for `done`.
fn eventually(patience: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The vat whose key is smaller, as 32 bytes.
fn smaller<'a>(a: &'a Node, b: &'a Node) -> &'a Node {
    if a.identity.public_key().to_bytes() < b.identity.public_key().to_bytes() {
        a
    } else {
        b
    }
}

#[test]
fn a_vat_restores_over_the_connection_the_peer_dialled_to_it() {
    let (a, b) = (
        Node::start("a", Limits::default()),
        Node::start("b", Limits::default()),
    );
    let on_a = a.restore(&b.token);
    assert_eq!(a.add(&on_a), 1);
    // b registers the connection a dialled once a's gateway answered.
    assert!(eventually(Duration::from_secs(3), || a
        .connections_to(b.id())
        .len()
        == 1
        && b.connections_to(a.id()).len() == 1));
    let accepted = b.connections_to(a.id());
    assert!(!accepted[0].dialled_here && accepted[0].kept);

    let on_b = b.restore(&a.token);
    assert_eq!(b.add(&on_b), 1);
    assert_eq!(a.add(&on_a), 2);
    let after = b.connections_to(a.id());
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].serial, accepted[0].serial, "the same connection");
    assert_eq!(
        accepted_sockets(&[a.port, b.port]),
        1,
        "one TLS connection carries both directions"
    );
}

#[test]
fn simultaneous_dials_end_with_one_connection_kept_alike_on_both_sides() {
    let (a, b) = (
        Node::start("a", Limits::default()),
        Node::start("b", Limits::default()),
    );
    // Each restores the other's token at the same moment: both dial.
    let start = Arc::new(Barrier::new(2));
    let (on_a, on_b) = std::thread::scope(|s| {
        let one = s.spawn(|| {
            start.wait();
            a.restore(&b.token)
        });
        let two = s.spawn(|| {
            start.wait();
            b.restore(&a.token)
        });
        (one.join().unwrap(), two.join().unwrap())
    });
    let during = accepted_sockets(&[a.port, b.port]);
    // References restored over either connection keep working.
    assert_eq!(a.add(&on_a), 1);
    assert_eq!(b.add(&on_b), 1);
    drop((on_a, on_b));

    // Once the references are gone, the duplicate (if the dials crossed)
    // is closed and both vats keep the one the smaller vat dialled.
    let one_left = || {
        a.connections_to(b.id()).len() == 1
            && b.connections_to(a.id()).len() == 1
            && accepted_sockets(&[a.port, b.port]) == 1
    };
    assert!(
        eventually(Duration::from_secs(5), one_left),
        "a: {:?}, b: {:?}, sockets: {}",
        a.connections_to(b.id()),
        b.connections_to(a.id()),
        accepted_sockets(&[a.port, b.port])
    );
    let low = smaller(&a, &b).id();
    for (node, peer) in [(&a, &b), (&b, &a)] {
        let kept = node.connections_to(peer.id());
        assert!(kept[0].kept);
        assert_eq!(
            kept[0].dialled_here,
            node.id() == low,
            "both keep the connection dialled by the smaller vat"
        );
    }
    eprintln!("sockets right after the simultaneous dials: {during}");

    // Both directions now go over the one left.
    let serials = (
        a.connections_to(b.id())[0].serial,
        b.connections_to(a.id())[0].serial,
    );
    let on_a = a.restore(&b.token);
    let on_b = b.restore(&a.token);
    assert_eq!(a.add(&on_a), 2);
    assert_eq!(b.add(&on_b), 2);
    assert_eq!(
        (
            a.connections_to(b.id())[0].serial,
            b.connections_to(a.id())[0].serial
        ),
        serials
    );
    assert_eq!(accepted_sockets(&[a.port, b.port]), 1);
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout_and_a_later_restore_dials_again() {
    let idle = Limits {
        idle_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    let (a, b) = (Node::start("a", idle), Node::start("b", Limits::default()));
    let held = a.restore(&b.token);
    assert_eq!(a.add(&held), 1);
    let first = a.connections_to(b.id());
    assert_eq!(first.len(), 1);
    drop(held);

    let closed_at = Instant::now();
    assert!(
        // A hang guard: how soon it closes is checked in the simulator
        // (tests/tests/sim_timing.rs).
        eventually(Duration::from_secs(60), || a
            .connections_to(b.id())
            .is_empty()
            && accepted_sockets(&[a.port, b.port]) == 0),
        "{:?}",
        a.connections_to(b.id())
    );
    let after = closed_at.elapsed();
    assert!(
        after >= Duration::from_millis(500),
        "closed after {after:?}"
    );

    let held = a.restore(&b.token);
    assert_eq!(a.add(&held), 2);
    let second = a.connections_to(b.id());
    assert_eq!(second.len(), 1);
    assert!(second[0].serial > first[0].serial, "a new connection");
    assert_eq!(accepted_sockets(&[a.port, b.port]), 1);
}

#[test]
fn a_connection_with_a_live_reference_is_not_closed_as_idle() {
    let idle = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (a, b) = (Node::start("a", idle), Node::start("b", idle));
    let held = a.restore(&b.token);
    assert_eq!(a.add(&held), 1);
    let before = a.connections_to(b.id());
    assert_eq!(before[0].idle_for, None, "a held reference is a use");
    std::thread::sleep(Duration::from_millis(1500));
    let after = a.connections_to(b.id());
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].serial, before[0].serial);
    assert_eq!(a.add(&held), 2);
    assert_eq!(accepted_sockets(&[a.port, b.port]), 1);
}
