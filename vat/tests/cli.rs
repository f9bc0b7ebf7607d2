//! The `vat` command-line tool, run as a real process.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn vat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vat"))
}

#[test]
fn demo_narrates_a_federation_and_exits_zero() {
    let output = vat().arg("demo").output().expect("run vat demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );

    // Every step the demo promises, in order, with the outcome it reports.
    let expected = [
        "Start three vats",
        "the sends' promises resolved in later turns, in the order sent: [\"near call\", \"first send\", \"second send\"]",
        "1 message delivered once it resolved (pipelining within a vat)",
        "the panicking send's promise broke: crashed: object #4 (vat::demo::Fragile) crashed: fragile gave up",
        "a send to another object in the same vat still ran",
        "dialling bob's address under carol's key is refused: the peer at 127.0.0.1:",
        "without waiting: the counter reads 42",
        "pipelined: depth 10 in",
        "bob called it and it answered: alice heard \"hello alice, from bob\"",
        "alice called it: bob heard \"thanks\"",
        "carol pipelined a chain on it and reached depth 5",
        "alice's call broke: crashed: object #1 (vat::demo::objects::Host) crashed: the demo asked bob's Host to panic",
        "still answers: 43",
        "through its stable reference echo(1) answers 1",
        "the call that crashed it broke: crashed: object #",
        "(vat::demo::objects::Host) crashed: the demo asked the supervised Host to panic",
        "echo(2) answers 2 (incarnation 2, restarts 1)",
        "crash log: child `host` after 0 restart(s): crashed:",
        "alice's next add on bob's counter: disconnected:",
        "the demo is over",
    ];
    let mut rest = &stdout[..];
    for line in expected {
        match rest.find(line) {
            Some(at) => rest = &rest[at + line.len()..],
            None => panic!("missing, or out of order: {line:?}\n--- stdout\n{stdout}"),
        }
    }
    // Caught panics are log lines, not raw panic reports.
    assert!(
        !stderr.contains("note: run with `RUST_BACKTRACE"),
        "{stderr}"
    );
    assert!(stderr.contains("object crashed"), "{stderr}");
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let output = vat().arg("nonsense").output().expect("run vat");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unrecognized subcommand 'nonsense'"),
        "{stderr}"
    );
}

#[test]
fn help_lists_the_demo() {
    let output = vat().arg("--help").output().expect("run vat --help");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("demo"), "{stdout}");
}
