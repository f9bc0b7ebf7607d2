#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure here is a failed test

//! The flood acceptance test: a peer sends 10,000 pipelined calls and never
//! reads a reply. The target vat runs in a process of its own (this test
//! binary, started again to run `flood_target` only), so that its memory
//! can be measured; it must stay bounded, and another client's median
//! latency must stay within twice its unloaded median.
//!
//! `cargo test -p captp --release --test flood -- --nocapture` prints the
//! figures recorded in BENCHMARKS.md.

#[path = "support/raw_peer.rs"]
mod raw_peer;
#[allow(dead_code)] // each test file uses a part
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use captp::{Limits, Listener};
use tokio::io::AsyncWriteExt;

use raw_peer::{bootstrap, echo as echo_call, RawPeer, Target};
use support::{echo, echo_host, in_vat, localhost};

/// Set in the environment of the target process.
const TARGET_ENV: &str = "CAPTP_FLOOD_TARGET";
/// The line on which the target process announces its address.
const ADDR_LINE: &str = "FLOOD_TARGET_ADDR ";
/// Pipelined calls the flooding peer sends.
const FLOOD_CALLS: u32 = 10_000;
/// Echo round trips timed for each median.
const SAMPLES: usize = 5_000;
/// How much the target's peak resident memory may exceed its idle
/// resident memory.
const MEMORY_BOUND: u64 = 64 * 1024 * 1024;

/// The target vat: an echo host behind a plain TCP listener with default
/// limits. Does nothing unless started by the flood test.
#[test]
#[ignore = "the flood test's target process; the flood test starts it"]
fn flood_target() {
    if std::env::var_os(TARGET_ENV).is_none() {
        return;
    }
    in_vat(async {
        let listener = Listener::bind(localhost()).await.unwrap();
        println!("{ADDR_LINE}{}", listener.local_addr());
        listener.serve(echo_host(), Limits::default());
        std::future::pending::<()>().await;
    });
}

/// The target process; killed when dropped.
struct TargetProcess {
    child: Child,
    addr: SocketAddr,
}

impl TargetProcess {
    fn start() -> TargetProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["flood_target", "--exact", "--ignored", "--nocapture"])
            .env(TARGET_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the target announces its address")
                .unwrap();
            if let Some(addr) = line.strip_prefix(ADDR_LINE) {
                break addr.parse().unwrap();
            }
        };
        TargetProcess { child, addr }
    }

    /// A field of /proc/<pid>/status, in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        status_bytes(self.child.id(), field)
    }
}

impl Drop for TargetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Times `SAMPLES` echo round trips; returns the median and the highest.
async fn echo_latencies(connection: &captp::Connection) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES as u64 {
        let started = Instant::now();
        assert_eq!(echo(connection, i).await.unwrap(), i);
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    (samples[SAMPLES / 2], samples[SAMPLES - 1])
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[test]
fn ten_thousand_pipelined_calls_from_a_peer_that_never_reads_cost_bounded_memory_and_latency() {
    let target = TargetProcess::start();
    let addr = target.addr;
    in_vat(async move {
        let client = captp::dial(addr, None, Limits::default()).await.unwrap();
        // Warm up both sides, then measure the idle target.
        echo_latencies(&client).await;
        let idle_rss = target.status_bytes("VmRSS:");
        let (unloaded, unloaded_max) = echo_latencies(&client).await;

        // The flood: a bootstrap and 10,000 echo calls pipelined on it, in
        // one write; the peer never reads.
        let mut calls = vec![bootstrap(0)];
        calls.extend((1..=FLOOD_CALLS).map(|q| echo_call(q, Target::Answer(0), u64::from(q), &[])));
        let bytes = raw_peer::wire(&calls);
        let flood_bytes = bytes.len();
        drop(calls);
        let flood_started = Instant::now();
        let mut stream = RawPeer::connect(addr).await.into_stream();
        let flood = tokio::task::spawn_local(async move {
            stream.write_all(&bytes).await.unwrap();
            let written = flood_started.elapsed();
            // Stay connected, never reading.
            (stream, written)
        });
        let (loaded, loaded_max) = echo_latencies(&client).await;
        let (stream, flood_written) = flood.await.unwrap();
        // Let the target answer everything it read, then take its peak.
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The kernel's high-water mark of resident memory: the exact peak.
        let peak = target.status_bytes("VmHWM:");

        // Only now, with the figures taken, read the flood's replies: the
        // target answered every call.
        let mut flooder = RawPeer::from_stream(stream);
        let mut returns = 0;
        while returns < FLOOD_CALLS + 1 {
            let reply = tokio::time::timeout(Duration::from_secs(10), flooder.receive())
                .await
                .expect("the replies are all there")
                .expect("the connection is open");
            if let Ok(capnp_rpc::rpc_capnp::message::Return(_)) = raw_peer::body(&reply).which() {
                returns += 1;
            }
        }
        let ratio = loaded.as_secs_f64() / unloaded.as_secs_f64();

        println!(
            "flood of {FLOOD_CALLS} pipelined calls, never read: {flood_bytes} bytes, taken by \
             the target in {flood_written:?}"
        );
        println!(
            "target RSS: idle {:.1} MiB, peak {:.1} MiB (+{:.1} MiB; bound +{:.0} MiB)",
            mib(idle_rss),
            mib(peak),
            mib(peak.saturating_sub(idle_rss)),
            mib(MEMORY_BOUND)
        );
        println!(
            "other client's echo over {SAMPLES} calls: unloaded median {unloaded:?} (max \
             {unloaded_max:?}), during the flood median {loaded:?} (max {loaded_max:?}), \
             ratio {ratio:.2}"
        );
        assert!(
            peak.saturating_sub(idle_rss) < MEMORY_BOUND,
            "peak {peak} bytes over idle {idle_rss} bytes"
        );
        assert!(
            ratio <= 2.0,
            "loaded median {loaded:?} vs unloaded {unloaded:?}"
        );
        assert!(!client.is_closed());
    });
}
