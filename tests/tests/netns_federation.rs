//! Federation across real network hosts: vats in separate network
//! namespaces joined by a veth pair, links cut and healed, processes killed
//! and restarted.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tests::netns::Hosts;
use tests::PeerProcess;

/// A child process whose output lines arrive with the instant they were read.
struct Lines {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Lines {
    fn spawn(mut command: Command) -> Lines {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the process");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Lines { child, lines }
    }

    /// Lines until one starts with `prefix` (included), or `patience` runs out.
    fn until(&self, prefix: &str, patience: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + patience;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.1.starts_with(prefix);
                    seen.push(line);
                    if done {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        seen
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program(name: &str) -> &'static Path {
    match name {
        "sturdy_peer" => Path::new(env!("CARGO_BIN_EXE_sturdy_peer")),
        _ => Path::new(env!("CARGO_BIN_EXE_heal_client")),
    }
}

/// The token a `sturdy_peer` prints after its `listening` line.
fn token_of(peer: &PeerProcess) -> String {
    let line = peer
        .next_line(Duration::from_secs(30))
        .expect("the token line");
    line.strip_prefix("token ")
        .expect("a token line")
        .to_owned()
}

#[test]
fn a_partition_heals_calls_resume_within_a_second_and_none_runs_twice() {
    let hosts = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = hosts.on_b(program("sturdy_peer"));
    serve.arg(dir.path()).arg(format!("{}:7401", hosts.addr_b));
    let server = PeerProcess::spawn_command(serve);
    let token = token_of(&server);

    let mut call = hosts.on_a(program("heal_client"));
    call.arg(&token).arg("12");
    let client = Lines::spawn(call);
    let before = client.until("ok 5", Duration::from_secs(20));
    assert!(
        before.last().is_some_and(|(_, l)| l == "ok 5"),
        "calls went through before the cut: {before:?}"
    );

    hosts.cut();
    std::thread::sleep(Duration::from_secs(5));
    hosts.heal();
    let healed = Instant::now();

    let after = client.until("tally", Duration::from_secs(60));
    let first_ok = after
        .iter()
        .find(|(at, line)| *at >= healed && line.starts_with("ok "))
        .map(|(at, _)| at.duration_since(healed))
        .expect("calls resumed after the link healed");
    println!("healing to the first acknowledged call: {first_ok:?}");
    assert!(
        first_ok < Duration::from_secs(1),
        "the first call after healing came {first_ok:?} later"
    );

    let (final_value, acknowledged, failed) = ending(&after);
    // Every acknowledged add ran once; a call that failed at the cut ran at
    // most once (delivered or not); nothing was sent twice.
    assert!(
        final_value >= acknowledged && final_value <= acknowledged + failed,
        "counter {final_value}, acknowledged {acknowledged}, failed {failed}"
    );
    drop(server);
}

/// The `final` value and the `tally` of a `heal_client`'s last lines.
fn ending(lines: &[(Instant, String)]) -> (u64, u64, u64) {
    let field = |prefix: &str| -> String {
        lines
            .iter()
            .find(|(_, l)| l.starts_with(prefix))
            .map(|(_, l)| l[prefix.len()..].to_owned())
            .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
    };
    let final_value = field("final ").parse().unwrap();
    let tally = field("tally ");
    let (acknowledged, failed) = tally.split_once(' ').unwrap();
    (
        final_value,
        acknowledged.parse().unwrap(),
        failed.parse().unwrap(),
    )
}

#[test]
fn a_vat_killed_and_restarted_is_reached_again_with_no_action_by_the_caller() {
    let hosts = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("{}:7402", hosts.addr_b);
    let start = || {
        let mut serve = hosts.on_b(program("sturdy_peer"));
        serve.arg(dir.path()).arg(&listen);
        PeerProcess::spawn_command(serve)
    };
    let mut server = start();
    let token = token_of(&server);

    let mut call = hosts.on_a(program("heal_client"));
    call.arg(&token).arg("8");
    let client = Lines::spawn(call);
    let before = client.until("ok 5", Duration::from_secs(20));
    assert!(
        before.last().is_some_and(|(_, l)| l == "ok 5"),
        "{before:?}"
    );

    server.kill();
    std::thread::sleep(Duration::from_millis(500));
    let server = start();
    let restarted = Instant::now();

    let after = client.until("tally", Duration::from_secs(60));
    let first_ok = after
        .iter()
        .find(|(at, line)| *at >= restarted && line.starts_with("ok "))
        .map(|(at, _)| at.duration_since(restarted));
    assert!(
        first_ok.is_some(),
        "calls went through again after the restart: {after:?}"
    );
    println!("restart to the first acknowledged call: {first_ok:?}");
    let (final_value, acknowledged, failed) = ending(&after);
    // The counter is durable: every acknowledged add survived the kill;
    // a call cut off by it ran at most once.
    assert!(
        final_value >= acknowledged && final_value <= acknowledged + failed,
        "counter {final_value}, acknowledged {acknowledged}, failed {failed}"
    );
    drop(server);
}

#[test]
fn a_peer_gone_silent_is_noticed_within_the_bound_and_its_call_fails() {
    let hosts = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = hosts.on_b(program("sturdy_peer"));
    serve.arg(dir.path()).arg(format!("{}:7403", hosts.addr_b));
    let server = PeerProcess::spawn_command(serve);
    let token = token_of(&server);

    // Connections of the client notice a dead peer within 2 s.
    let bound = Duration::from_secs(2);
    let mut call = hosts.on_a(program("heal_client"));
    call.arg(&token).arg("10").arg(bound.as_secs().to_string());
    let client = Lines::spawn(call);
    let before = client.until("ok 5", Duration::from_secs(20));
    assert!(
        before.last().is_some_and(|(_, l)| l == "ok 5"),
        "{before:?}"
    );

    hosts.cut();
    let cut = Instant::now();
    let failed = client.until("err ", Duration::from_secs(8));
    let (at, line) = failed.last().expect("a line after the cut");
    assert!(line.starts_with("err disconnected"), "{failed:?}");
    let noticed = at.duration_since(cut);
    println!("cut to the failed call (dead peer noticed): {noticed:?}");
    assert!(
        noticed <= bound + Duration::from_millis(1500),
        "the dead peer was noticed {noticed:?} after the cut"
    );
    hosts.heal();
    let after = client.until("tally", Duration::from_secs(60));
    let (final_value, acknowledged, failed) = ending(&after);
    assert!(failed >= 1);
    assert!(
        final_value >= acknowledged && final_value <= acknowledged + failed,
        "counter {final_value}, acknowledged {acknowledged}, failed {failed}"
    );
    drop(server);
}
