//! What an idle connection costs the vat it is made to: a serving vat in a
//! child process (`sturdy_peer`), and this process opening 1,000 TLS
//! connections to it, each restoring the counter's token and holding the
//! reference. The server's resident memory is read from
//! `/proc/<pid>/status` before and after.
//!
//! A measurement, not a check, so it is ignored by default:
//!
//! ```sh
//! cargo test -p tests --release --test connection_memory -- --ignored --nocapture
//! ```

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schema::gateway_capnp::gateway;
use sturdyrefs::SturdyRef;
use tests::status_kib;
use vat::net::Limits;
use vat::VatHandle;

const CONNECTIONS: usize = 1000;

/// This process's soft limit on open files.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap_or(u64::MAX)
}

/// What the test's vat holds: every connection and the reference restored
/// over it.
struct Holding(#[allow(dead_code)] Vec<(vat::net::Connection, capnp::capability::Client)>);

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn memory_per_idle_connection_with_a_thousand_connections_to_one_vat() {
    let needed = CONNECTIONS as u64 + 100;
    assert!(
        open_files_limit() >= needed,
        "raise the open-files limit to at least {needed} (ulimit -n 4096) and run again"
    );
    // The server gets a limit of its own through the shell that starts it.
    let server = env!("CARGO_BIN_EXE_sturdy_peer");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n 4096 2>/dev/null; exec {server}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines.next().unwrap().unwrap();
    let token: SturdyRef = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("token ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(listening.starts_with("listening "), "{listening}");
    std::thread::sleep(Duration::from_millis(500));
    let before = status_kib(pid, "VmRSS:");

    let vat = VatHandle::start("many-connections").unwrap();
    let started = Instant::now();
    let holding = vat
        .run_async(move || async move {
            let mut held = Vec::with_capacity(CONNECTIONS);
            for _ in 0..CONNECTIONS {
                let connection = vat::sturdy::connect(&token, None, Limits::default())
                    .await
                    .unwrap();
                let gateway: gateway::Client = connection.peer();
                let mut request = gateway.restore_request();
                request.get().set_swiss_number(token.swiss().as_bytes());
                let response = request.send().promise.await.unwrap();
                let object = response.get().unwrap().get_object().get_as_capability();
                held.push((connection, object.unwrap()));
            }
            let held = vat::spawn(Holding(held));
            vat::current().root(&held)
        })
        .wait()
        .unwrap();
    let opened = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");
    let per = (after.saturating_sub(before)) as f64 / CONNECTIONS as f64;
    println!(
        "{CONNECTIONS} connections opened in {opened:.2?}; server VmRSS {before} KiB before, \
         {after} KiB after (peak {peak} KiB): {per:.1} KiB per idle connection"
    );
    drop(holding);
    vat.stop().unwrap();
    let _ = child.kill();
    let _ = child.wait();
}
