#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure here is a failed test

//! What peers can make a vat log: their words only escaped, on the line
//! they belong to, and floods of failures as a bounded number of lines.

#[path = "support/raw_peer.rs"]
mod raw_peer;
#[allow(dead_code)] // each test file uses a part
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use capnp::message::{Builder, HeapAllocator};
use capnp_rpc::rpc_capnp::{exception, message};
use captp::log::{DEFAULT_WARN_BURST, DEFAULT_WARN_INTERVAL};
use captp::tls::TlsListener;
use captp::{Identity, Limits, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use raw_peer::RawPeer;
use support::{echo_host, in_vat, localhost, Logs, HANG_GUARD};

/// A forged log line with a colour escape, as a peer's abort reason.
const FORGED: &str = "bye\n2026-01-01T00:00:00Z  INFO fake line\x1b[31m";

/// `Abort` with `reason`.
fn abort(reason: &str) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
    let mut abort = m.init_root::<message::Builder>().init_abort();
    abort.set_reason(reason);
    abort.set_type(exception::Type::Failed);
    m
}

#[test]
fn a_peers_abort_reason_is_logged_escaped_on_one_line() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let listener = Listener::bind(localhost()).await.unwrap();
        let addr = listener.local_addr();
        listener.serve(echo_host(), Limits::default());

        let mut peer = RawPeer::connect(addr).await;
        peer.send(&[abort(FORGED)]).await.unwrap();
        let text = logs.wait_for("session closed with an error", 1).await;

        assert!(!text.contains('\x1b'), "no raw ESC byte: {text:?}");
        let mentions: Vec<&str> = text.lines().filter(|l| l.contains("fake line")).collect();
        assert_eq!(mentions.len(), 1, "one line: {text}");
        assert!(
            mentions[0].contains(r"bye\n2026-01-01T00:00:00Z  INFO fake line\u{1b}[31m"),
            "escaped: {}",
            mentions[0]
        );
        assert!(
            mentions[0].contains("session closed with an error"),
            "{}",
            mentions[0]
        );
        assert!(
            !text.lines().any(|l| l.starts_with("2026-01-01")),
            "no forged line: {text}"
        );
    });
}

#[test]
fn a_very_long_abort_reason_is_cut_and_the_rest_counted() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let listener = Listener::bind(localhost()).await.unwrap();
        let addr = listener.local_addr();
        listener.serve(echo_host(), Limits::default());

        let reason = "x".repeat(100_000);
        let mut peer = RawPeer::connect(addr).await;
        peer.send(&[abort(&reason)]).await.unwrap();
        let text = logs.wait_for("session closed with an error", 1).await;
        let line = text
            .lines()
            .find(|l| l.contains("session closed with an error"))
            .unwrap();
        assert!(line.contains(" more bytes)"), "{line}");
        assert!(line.len() < 2_000, "{} bytes", line.len());
    });
}

/// How many junk connections the flood test makes.
const JUNK: usize = 2_000;

#[test]
fn two_thousand_junk_connections_make_a_few_warnings_and_a_summary_with_the_count() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server).await.unwrap();
        let addr = listener.local_addr();
        listener.serve(|_| Some(echo_host()), Limits::default());

        let started = Instant::now();
        // A few at a time, each answered (an alert, then the close) before
        // the next: every one is a failed handshake, none is shed.
        let senders: Vec<_> = (0..8)
            .map(|_| tokio::task::spawn_local(send_junk(addr, JUNK / 8)))
            .collect();
        for sender in senders {
            sender.await.unwrap();
        }

        // Every failure is accounted for: logged, or counted in a summary.
        let (logged, summarised, text) = loop {
            let text = logs.text();
            let logged = text
                .matches("TLS handshake failed; connection dropped")
                .count();
            let summarised: usize = summaries(&text).iter().sum();
            if logged + summarised >= JUNK {
                break (logged, summarised, text);
            }
            assert!(
                started.elapsed() < HANG_GUARD + DEFAULT_WARN_INTERVAL,
                "{logged} logged and {summarised} summarised of {JUNK}; logs:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let elapsed = started.elapsed();
        assert_eq!(logged + summarised, JUNK);
        let lines = text.lines().filter(|l| l.contains("WARN")).count();
        // Each interval the flood spanned: its burst and one summary.
        let intervals = elapsed.as_secs() / DEFAULT_WARN_INTERVAL.as_secs() + 1;
        let bound = (DEFAULT_WARN_BURST as u64 + 1) * intervals;
        assert!(
            lines as u64 <= bound,
            "{lines} warning lines in {elapsed:?}, more than {bound}:\n{text}"
        );
        let summary = text
            .lines()
            .find(|l| {
                l.contains(
                    "more failed TLS handshakes in the last 10s (most recent from 127.0.0.1:",
                )
            })
            .expect("a summary line");
        assert!(summary.contains("suppressed="), "{summary}");
        println!("{JUNK} junk connections in {elapsed:?}: {lines} warning lines");
    });
}

/// Opens `count` connections to `addr`, one after another, each sending
/// bytes that are not TLS and reading until the listener closes it.
async fn send_junk(addr: SocketAddr, count: usize) {
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The listener may close first; that is fine.
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut answer))
            .await
            .expect("the listener closes the junk connection (hang guard)");
    }
}

/// The counts of the summary lines in `text`.
fn summaries(text: &str) -> Vec<usize> {
    text.lines()
        .filter(|l| l.contains("more failed TLS handshakes"))
        .filter_map(|l| l.split("suppressed=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|n| n.parse().unwrap())
        .collect()
}
