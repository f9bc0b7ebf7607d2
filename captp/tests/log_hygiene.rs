#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure here is a failed test

//! What peers can make a vat log: their words only escaped, on the line
//! they belong to.

#[path = "support/raw_peer.rs"]
mod raw_peer;
#[allow(dead_code)] // each test file uses a part
mod support;

use capnp::message::{Builder, HeapAllocator};
use capnp_rpc::rpc_capnp::{exception, message};
use captp::{Limits, Listener};

use raw_peer::RawPeer;
use support::{echo_host, in_vat, localhost, Logs};

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
