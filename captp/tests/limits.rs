#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure here is a failed test

//! Limits per connection on real sockets: each bound produces its
//! documented error or disconnection, with a log line naming it, while
//! another client of the same listener is served as before.

#[path = "support/raw_peer.rs"]
mod raw_peer;
#[allow(dead_code)] // each test file uses a part
mod support;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use capnp_rpc::rpc_capnp::exception;
use captp::{Connection, Limits, Listener};
use schema::demo_capnp::{counter, host};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use raw_peer::{bootstrap, echo as echo_call, RawPeer, Target};
use support::{echo, in_vat, localhost, Logs};

/// Calls to `echo` with an odd value wait here until it opens.
#[derive(Clone, Default)]
struct Gate(Rc<GateState>);

#[derive(Default)]
struct GateState {
    open: Cell<bool>,
    waiting: Cell<usize>,
    served: Cell<u64>,
    opened: Notify,
}

impl Gate {
    fn open(&self) {
        self.0.open.set(true);
        self.0.opened.notify_waiters();
    }

    async fn wait_for_waiting(&self, count: usize) {
        tokio::time::timeout(support::HANG_GUARD, async {
            while self.0.waiting.get() < count {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the calls reach the host");
    }
}

/// A host whose `echo` waits at the gate for odd values and whose
/// `counter` hands out a fresh counter each time.
struct GatedHost(Gate);

struct Counter;

impl counter::Server for Counter {}

impl host::Server for GatedHost {
    async fn echo(
        self: Rc<Self>,
        params: host::EchoParams,
        mut results: host::EchoResults,
    ) -> Result<(), capnp::Error> {
        let value = params.get()?.get_value();
        let gate = &self.0 .0;
        if value % 2 == 1 {
            gate.waiting.set(gate.waiting.get() + 1);
            loop {
                let opened = gate.opened.notified();
                if gate.open.get() {
                    break;
                }
                opened.await;
            }
        }
        gate.served.set(gate.served.get() + 1);
        results.get().set_value(value);
        Ok(())
    }

    async fn counter(
        self: Rc<Self>,
        _: host::CounterParams,
        mut results: host::CounterResults,
    ) -> Result<(), capnp::Error> {
        results
            .get()
            .set_counter(capnp_rpc::new_client::<counter::Client, _>(Counter));
        Ok(())
    }
}

/// Serves a gated host on loopback with `limits`; returns its address.
async fn serve(gate: &Gate, limits: Limits) -> SocketAddr {
    let listener = Listener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr();
    let host = capnp_rpc::new_client::<host::Client, _>(GatedHost(gate.clone()));
    listener.serve(host.client, limits);
    addr
}

/// A well-behaved client, with default limits.
async fn client(addr: SocketAddr) -> Connection {
    captp::dial(addr, None, Limits::default()).await.unwrap()
}

/// Checks that a fresh client of `addr` is served.
async fn another_client_is_served(addr: SocketAddr) {
    let other = client(addr).await;
    assert_eq!(echo(&other, 42).await.unwrap(), 42);
}

#[test]
fn calls_beyond_max_calls_in_flight_are_refused_with_overloaded_and_others_are_served() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let gate = Gate::default();
        let limits = Limits {
            max_calls_in_flight: 4,
            ..Limits::default()
        };
        let addr = serve(&gate, limits).await;
        let connection = client(addr).await;
        let host: host::Client = connection.peer();
        let held: Vec<_> = (0..4u64)
            .map(|i| {
                let mut request = host.echo_request();
                request.get().set_value(2 * i + 1);
                request.send().promise
            })
            .collect();
        gate.wait_for_waiting(4).await;

        // The fifth call is answered at once with overloaded, naming the bound.
        let error = echo(&connection, 8).await.unwrap_err();
        assert_eq!(error.kind, capnp::ErrorKind::Overloaded, "{error}");
        assert!(
            error.to_string().contains("max_calls_in_flight is 4"),
            "{error}"
        );
        // It says, as data any client can read, that it was not delivered.
        let reason = error.extra.trim_start_matches("remote exception: ");
        assert!(
            captp::delivery::strip_not_delivered(reason).is_some(),
            "{reason}"
        );
        let log = logs.wait_for("too many calls in flight", 1).await;
        assert!(log.contains("WARN"), "{log}");

        // Another client of the same listener is served meanwhile.
        another_client_is_served(addr).await;

        // Once the held calls are answered, the peer's calls are accepted again.
        gate.open();
        for (i, call) in held.into_iter().enumerate() {
            assert_eq!(
                call.await.unwrap().get().unwrap().get_value(),
                2 * i as u64 + 1
            );
        }
        assert_eq!(echo(&connection, 10).await.unwrap(), 10);
        logs.wait_for("calls are accepted again", 1).await;
        assert!(!connection.is_closed());
    });
}

#[test]
fn a_call_pipelined_on_a_refused_call_is_refused_too() {
    in_vat(async {
        let gate = Gate::default();
        let limits = Limits {
            max_calls_in_flight: 2,
            ..Limits::default()
        };
        let addr = serve(&gate, limits).await;
        let mut peer = RawPeer::connect(addr).await;
        // Bootstrap (answered at once), two held calls, then a call for a
        // counter that is refused, and a call pipelined on that counter.
        peer.send(&[
            bootstrap(0),
            echo_call(1, Target::Answer(0), 1, &[]),
            echo_call(2, Target::Answer(0), 3, &[]),
        ])
        .await
        .unwrap();
        gate.wait_for_waiting(2).await;
        peer.send(&[
            raw_peer::counter(3, Target::Answer(0)),
            echo_call(4, Target::Answer(3), 2, &[]),
        ])
        .await
        .unwrap();
        let (kind, reason) = peer.exception_for(3).await.expect("refused");
        assert_eq!(kind, exception::Type::Overloaded);
        assert!(reason.contains("max_calls_in_flight"), "{reason}");
        let (kind, reason) = peer.exception_for(4).await.expect("refused");
        assert_eq!(kind, exception::Type::Overloaded);
        assert!(
            reason.contains("pipelined on a call the vat refused"),
            "{reason}"
        );
        another_client_is_served(addr).await;
    });
}

#[test]
fn a_peer_that_never_finishes_its_questions_is_disconnected_at_max_answers() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let gate = Gate::default();
        let limits = Limits {
            max_answers: 8,
            ..Limits::default()
        };
        let addr = serve(&gate, limits).await;
        let mut peer = RawPeer::connect(addr).await;
        // Each bootstrap is answered with a capability, so its answer stays
        // until a finish that never comes.
        let questions: Vec<_> = (0..9).map(bootstrap).collect();
        peer.send(&questions).await.unwrap();
        let reason = peer.abort_reason().await.expect("an abort message");
        assert!(
            reason.contains("connection limit max_answers exceeded"),
            "{reason}"
        );
        let log = logs.wait_for("the peer broke a connection limit", 1).await;
        assert!(log.contains("limit=\"max_answers\""), "{log}");
        assert!(log.contains("count=9 max=8"), "{log}");
        another_client_is_served(addr).await;
    });
}

#[test]
fn a_call_carrying_too_many_capabilities_breaks_max_imports() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let gate = Gate::default();
        let limits = Limits {
            max_imports: 4,
            ..Limits::default()
        };
        let addr = serve(&gate, limits).await;
        let mut peer = RawPeer::connect(addr).await;
        peer.send(&[
            bootstrap(0),
            echo_call(1, Target::Answer(0), 2, &[10, 11, 12, 13, 14]),
        ])
        .await
        .unwrap();
        let reason = peer.abort_reason().await.expect("an abort message");
        assert!(
            reason.contains("connection limit max_imports exceeded"),
            "{reason}"
        );
        let log = logs.wait_for("the peer broke a connection limit", 1).await;
        assert!(log.contains("count=5 max=4"), "{log}");
        another_client_is_served(addr).await;
    });
}

#[test]
fn a_peer_that_keeps_every_capability_it_is_given_breaks_max_exports() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let gate = Gate::default();
        let limits = Limits {
            max_exports: 3,
            ..Limits::default()
        };
        let addr = serve(&gate, limits).await;
        let connection = client(addr).await;
        let host: host::Client = connection.peer();
        // Counters it holds (and perhaps the host) fill the table; one
        // more than the bound ends the connection.
        let mut counters = Vec::new();
        for _ in 0..5 {
            let response = host.counter_request().send().promise.await;
            match response {
                Ok(response) => counters.push(response.get().unwrap().get_counter().unwrap()),
                Err(_) => break,
            }
        }
        // The reply that broke the bound is still sent, before the abort.
        assert!(counters.len() <= 4, "{} counters", counters.len());
        let error = tokio::time::timeout(support::HANG_GUARD, connection.closed())
            .await
            .expect("the connection ends")
            .unwrap_err();
        assert!(
            error.contains("connection limit max_exports exceeded"),
            "{error}"
        );
        let log = logs.wait_for("the peer broke a connection limit", 1).await;
        assert!(log.contains("count=4 max=3"), "{log}");
        another_client_is_served(addr).await;
    });
}

#[test]
fn a_peer_that_answers_nothing_breaks_max_questions() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        // A peer that reads everything and answers nothing.
        let silent = tokio::net::TcpListener::bind(localhost()).await.unwrap();
        let addr = silent.local_addr().unwrap();
        tokio::task::spawn_local(async move {
            let (mut stream, _) = silent.accept().await.unwrap();
            let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
        });
        let limits = Limits {
            max_questions: 3,
            ..Limits::default()
        };
        let connection = captp::dial(addr, None, limits).await.unwrap();
        let host: host::Client = connection.peer();
        // The bootstrap and two calls fit; the third call does not.
        let calls: Vec<_> = (0..3u64)
            .map(|value| {
                let mut request = host.echo_request();
                request.get().set_value(value);
                request.send().promise
            })
            .collect();
        for call in calls {
            let error = tokio::time::timeout(support::HANG_GUARD, call)
                .await
                .expect("the calls break")
                .map(|_| ())
                .unwrap_err();
            assert!(error.to_string().contains("max_questions"), "{error}");
        }
        let log = logs.wait_for("the peer broke a connection limit", 1).await;
        assert!(log.contains("limit=\"max_questions\""), "{log}");
        assert!(log.contains(&addr.to_string()), "{log}");
    });
}

#[test]
fn a_peer_that_does_not_read_its_replies_is_paused_then_disconnected() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let gate = Gate::default();
        let limits = Limits {
            max_queued_bytes: 16 * 1024,
            write_stall_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let addr = serve(&gate, limits).await;
        let sent = 150_000u32;
        let peer = RawPeer::connect_with_small_buffer(addr).await;
        let mut stream = peer.into_stream();
        let mut calls = vec![bootstrap(0)];
        calls.extend((1..=sent).map(|q| echo_call(q, Target::Answer(0), 2, &[])));
        let bytes = raw_peer::wire(&calls);
        drop(calls);
        // Writes until the vat stops reading, then waits; never reads.
        let flood = tokio::task::spawn_local(async move {
            let _ = stream.write_all(&bytes).await;
            stream
        });

        logs.wait_for("the peer is not reading its replies", 1)
            .await;
        let served_when_paused = gate.0.served.get();
        assert!(
            served_when_paused < u64::from(sent),
            "the vat stopped reading before all {sent} calls ({served_when_paused} served)"
        );
        // Served while the flood is stuck.
        another_client_is_served(addr).await;

        let log = logs.wait_for("disconnecting it", 1).await;
        assert!(log.contains("limit=\"write_stall_timeout\""), "{log}");
        assert!(log.contains("the peer took no bytes for 500ms"), "{log}");
        // Nothing more was read from it.
        assert!(gate.0.served.get() < u64::from(sent));
        drop(tokio::time::timeout(support::HANG_GUARD, flood).await);
        another_client_is_served(addr).await;
    });
}

#[test]
fn a_message_over_max_message_bytes_ends_only_its_connection() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let gate = Gate::default();
        let limits = Limits {
            max_message_bytes: 64 * 1024,
            ..Limits::default()
        };
        let addr = serve(&gate, limits).await;
        let bystander = client(addr).await;
        assert_eq!(echo(&bystander, 2).await.unwrap(), 2);

        let mut peer = RawPeer::connect(addr).await;
        // One segment of a million words: 8 MiB announced, none sent.
        let mut header = 0u32.to_le_bytes().to_vec();
        header.extend_from_slice(&(1u32 << 20).to_le_bytes());
        peer.send_bytes(&header).await.unwrap();
        let reason = peer.abort_reason().await.expect("an abort message");
        assert!(
            reason.contains("larger than the limit of 65536 bytes"),
            "{reason}"
        );
        let log = logs.wait_for("max_message_bytes", 1).await;
        assert!(log.contains("session closed with an error"), "{log}");

        // The connection open before is unaffected, and new ones are served.
        assert_eq!(echo(&bystander, 4).await.unwrap(), 4);
        another_client_is_served(addr).await;
    });
}
