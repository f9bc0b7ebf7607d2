#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure here is a failed test

//! Messages that begin to arrive and do not finish, on real sockets: a
//! body that never comes ends its connection after
//! `Limits::message_body_timeout`, and the buffers of a vat's partial
//! messages stay within `Limits::max_partial_bytes_per_vat`, while other
//! clients' calls are answered.

#[path = "support/raw_peer.rs"]
mod raw_peer;
#[allow(dead_code)] // each test file uses a part
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use captp::{partial_messages, Limits, Listener, PartialMessages};
use schema::demo_capnp::host;
use tokio::task::JoinHandle;

use raw_peer::RawPeer;
use support::{echo, echo_host, in_vat, localhost, Logs, HANG_GUARD};

/// The first 64 KiB of a message's buffer, which never wait for the
/// vat's budget.
const FREE_BYTES: usize = 64 * 1024;

/// Serves an echo host on loopback with `limits`; returns its address.
async fn serve(limits: Limits) -> SocketAddr {
    let listener = Listener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr();
    listener.serve(echo_host(), limits);
    addr
}

/// A segment table announcing one segment of `bytes` bytes, then `sent`
/// bytes of it.
fn start_of_message(bytes: usize, sent: usize) -> Vec<u8> {
    let mut wire = 0u32.to_le_bytes().to_vec();
    wire.extend_from_slice(&u32::try_from(bytes / 8).unwrap().to_le_bytes());
    wire.resize(8 + sent, 0);
    wire
}

/// Waits until this vat's partial messages satisfy `condition`.
async fn wait_for_partial(what: &str, condition: impl Fn(PartialMessages) -> bool) {
    tokio::time::timeout(HANG_GUARD, async {
        while !condition(partial_messages()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} (hang guard); now {:?}", partial_messages()));
}

/// A peer that sends the start of a message from a task of its own (the
/// vat may stop reading it, and its writes then wait); aborting the task
/// closes the connection.
fn send_in_background(mut peer: RawPeer, bytes: Vec<u8>) -> JoinHandle<RawPeer> {
    tokio::task::spawn_local(async move {
        peer.send_bytes(&bytes).await.unwrap();
        std::future::pending::<()>().await;
        peer
    })
}

#[test]
fn a_message_whose_body_never_comes_ends_its_connection_after_message_body_timeout() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let timeout = Duration::from_millis(300);
        let addr = serve(Limits {
            message_body_timeout: timeout,
            ..Limits::default()
        })
        .await;
        let bystander = captp::dial(addr, None, Limits::default()).await.unwrap();
        assert_eq!(echo(&bystander, 1).await.unwrap(), 1);

        // 1 MiB announced, 100 bytes of it sent, and nothing more.
        let mut peer = RawPeer::connect(addr).await;
        let started = Instant::now();
        peer.send_bytes(&start_of_message(1024 * 1024, 100))
            .await
            .unwrap();
        // The vat reads the start, and serves others meanwhile.
        wait_for_partial("the vat reads the start of the message", |p| {
            p.received_bytes >= 108
        })
        .await;
        assert_eq!(echo(&bystander, 2).await.unwrap(), 2);

        let reason = peer.abort_reason().await.expect("an abort message");
        assert!(started.elapsed() >= timeout, "not before the bound");
        assert!(
            reason.contains("connection limit message_body_timeout exceeded"),
            "{reason}"
        );
        assert!(
            reason.contains("108 of a message's 1048584 bytes arrived within 300ms"),
            "{reason}"
        );
        let log = logs.wait_for("disconnecting it", 1).await;
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("limit=\"message_body_timeout\""), "{log}");
        assert!(log.contains(&addr.to_string()), "{log}");

        // Its buffer is given back; the others go on being served.
        wait_for_partial("the abandoned message is given back", |p| {
            p == PartialMessages::default()
        })
        .await;
        assert_eq!(echo(&bystander, 3).await.unwrap(), 3);
        let other = captp::dial(addr, None, Limits::default()).await.unwrap();
        assert_eq!(echo(&other, 4).await.unwrap(), 4);
    });
}

#[test]
fn messages_beyond_max_partial_bytes_per_vat_wait_in_line_and_small_calls_are_answered() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        // Room for two messages of 192 KiB: each reserves 128 KiB beyond
        // its free 64 KiB.
        let message = 3 * FREE_BYTES;
        let reservation = message - FREE_BYTES;
        let budget = 2 * reservation;
        let addr = serve(Limits {
            max_partial_bytes_per_vat: budget,
            // Only the test ends these messages.
            message_body_timeout: 5 * HANG_GUARD,
            ..Limits::default()
        })
        .await;
        let honest = captp::dial(addr, None, Limits::default()).await.unwrap();
        assert_eq!(echo(&honest, 1).await.unwrap(), 1);

        // Four peers send 100 KiB of such a message each, one after the
        // other: the first two reserve what they need and read all they
        // are sent, the other two wait for room after their free 64 KiB.
        let sent = 100 * 1024;
        let mut floods = Vec::new();
        for expected in [(reservation, 0), (budget, 0), (budget, 1), (budget, 2)] {
            let peer = RawPeer::connect(addr).await;
            floods.push(send_in_background(peer, start_of_message(message, sent)));
            wait_for_partial("the message is read as far as it may be", |p| {
                (p.reserved_bytes, p.waiting) == expected
            })
            .await;
        }
        let header = 8;
        wait_for_partial("the waiting messages hold only their free bytes", |p| {
            p.received_bytes == 2 * (header + sent) + 2 * (header + FREE_BYTES)
        })
        .await;
        let log = logs
            .wait_for("reading no more of this message until others complete", 2)
            .await;
        assert!(log.contains("limit=\"max_partial_bytes_per_vat\""), "{log}");

        // Small calls are answered all the while, from old and new clients.
        for value in 2..50 {
            assert_eq!(echo(&honest, value).await.unwrap(), value);
        }
        let newcomer = captp::dial(addr, None, Limits::default()).await.unwrap();
        assert_eq!(echo(&newcomer, 50).await.unwrap(), 50);
        let counts = partial_messages();
        assert_eq!((counts.messages, counts.waiting), (4, 2), "{counts:?}");
        assert_eq!(counts.reserved_bytes, budget, "{counts:?}");

        // The first peer gives up: its room goes to the first that waited,
        // which reads all it was sent; the last goes on waiting.
        floods.remove(0).abort();
        wait_for_partial("the first waiting message gets room", |p| {
            p.messages == 3
                && p.waiting == 1
                && p.received_bytes == 2 * (header + sent) + header + FREE_BYTES
        })
        .await;
        assert_eq!(partial_messages().reserved_bytes, budget);
        assert_eq!(echo(&honest, 51).await.unwrap(), 51);
    });
}

#[test]
fn a_large_call_is_read_whole_and_answered() {
    in_vat(async {
        let addr = serve(Limits::default()).await;
        let client = captp::dial(addr, None, Limits::default()).await.unwrap();
        // 3 MiB of text: the vat's buffer for it grows a dozen times. The
        // echo host has no `crash`, so the answer says so, which it can
        // only do once the whole message has been read and decoded.
        let host: host::Client = client.peer();
        let mut request = host.crash_request();
        request
            .get()
            .set_message("x".repeat(3 * 1024 * 1024).as_str());
        let error = request.send().promise.await.map(|_| ()).unwrap_err();
        assert_eq!(error.kind, capnp::ErrorKind::Unimplemented, "{error}");
        assert_eq!(partial_messages(), PartialMessages::default());
        assert_eq!(echo(&client, 5).await.unwrap(), 5);
    });
}
