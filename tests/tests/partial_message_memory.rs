//! The acceptance test for the memory a half-sent message costs: 150
//! connections to a vat in a child process (`partial_peer`, default
//! limits) each send a segment table announcing a 16 MiB message (the
//! default `Limits::max_message_bytes`) and 4 KiB of it, and no more. The
//! vat's resident memory (`VmRSS` in `/proc/<pid>/status`) may grow by
//! less than 64 MiB for all of them, where a buffer of the announced size
//! for each would pin 2.4 GB. An honest client is served meanwhile and
//! after.
//!
//! `cargo test -p tests --test partial_message_memory -- --nocapture`
//! prints the figures.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use schema::demo_capnp::host;
use tests::{status_kib, PeerProcess, Route};
use vat::VatHandle;

const CONNECTIONS: usize = 150;
/// What each connection's segment table announces: the default
/// `max_message_bytes`.
const ANNOUNCED: usize = 16 * 1024 * 1024;
/// What each connection sends of its message's body.
const SENT: usize = 4 * 1024;
/// How much the vat's resident memory may grow for all of them.
const MEMORY_BOUND_KIB: u64 = 64 * 1024;
/// How long to wait for something that must happen; only a hang guard.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The field `name` of a report of the peer's partial messages.
fn field(line: &str, name: &str) -> usize {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        .parse()
        .unwrap()
}

/// Waits for the peer to report partial messages satisfying `condition`;
/// returns that line.
fn wait_for_report(peer: &PeerProcess, what: &str, condition: impl Fn(&str) -> bool) -> String {
    loop {
        let line = peer
            .next_line(HANG_GUARD)
            .unwrap_or_else(|| panic!("{what}: no report within the hang guard"));
        if line.starts_with("partial ") && condition(&line) {
            return line;
        }
    }
}

/// Calls `echo` on the peer from a vat of this process.
fn honest_echo(addr: SocketAddr, value: u64) -> u64 {
    let vat = VatHandle::start("honest").unwrap();
    let echoed = vat
        .run_async(move || async move {
            let connection = Route::Tcp(addr).connect(None).await;
            let host: host::Client = connection.peer();
            let mut request = host.echo_request();
            request.get().set_value(value);
            let response = request.send().promise.await?;
            Ok::<_, capnp::Error>(response.get()?.get_value())
        })
        .wait()
        .unwrap()
        .unwrap();
    vat.stop().unwrap();
    echoed
}

/// The start of a message: a table of one segment of `ANNOUNCED` bytes,
/// then `SENT` bytes of it.
fn start_of_message() -> Vec<u8> {
    let mut wire = 0u32.to_le_bytes().to_vec();
    wire.extend_from_slice(&u32::try_from(ANNOUNCED / 8).unwrap().to_le_bytes());
    wire.resize(8 + SENT, 0);
    wire
}

#[test]
fn headers_announcing_16_mib_from_150_connections_cost_the_vat_a_bounded_amount_of_memory() {
    // The vat's own body timeout is far beyond the test, so that no
    // message is ended for being slow while the memory is measured.
    let mut command = Command::new(Path::new(env!("CARGO_BIN_EXE_partial_peer")));
    command.arg("600");
    let peer = PeerProcess::spawn_command(command);
    let pid: u32 = peer
        .next_line(HANG_GUARD)
        .and_then(|line| line.strip_prefix("pid ")?.parse().ok())
        .expect("the peer says its process id");
    let addr = peer.addr();
    assert_eq!(honest_echo(addr, 1), 1);
    let before = status_kib(pid, "VmRSS:");

    let flood: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(&start_of_message()).unwrap();
            stream
        })
        .collect();
    let report = wait_for_report(&peer, "the vat reads every start", |line| {
        field(line, "messages") == CONNECTIONS
            && field(line, "received") == CONNECTIONS * (8 + SENT)
    });
    let during = status_kib(pid, "VmRSS:");
    // Served while the messages are pending.
    assert_eq!(honest_echo(addr, 2), 2);

    drop(flood);
    wait_for_report(&peer, "the vat gives every partial message back", |line| {
        field(line, "messages") == 0
    });
    let after = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");
    println!(
        "{CONNECTIONS} connections announcing {ANNOUNCED} bytes and sending {SENT}: vat VmRSS \
         {before} KiB before, {during} KiB during ({report}), {after} KiB after; peak {peak} KiB"
    );
    assert!(
        during.saturating_sub(before) < MEMORY_BOUND_KIB,
        "the vat grew by {} KiB (from {before} KiB to {during} KiB)",
        during - before
    );
    assert!(
        peak.saturating_sub(before) < MEMORY_BOUND_KIB,
        "the vat's peak grew by {} KiB (from {before} KiB to {peak} KiB)",
        peak - before
    );
    assert_eq!(honest_echo(addr, 3), 3);
}
