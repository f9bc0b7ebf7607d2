//! What a program prints when one of its objects panics: the vat catches
//! the panic, and the program's output gets one line for it, not Rust's
//! `thread … panicked at` report or a backtrace.
//!
//! Each case runs this test binary again as a child process (selected by
//! an environment variable), since a panic hook belongs to the process.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Names the case a child process runs.
const CASE: &str = "VAT_PANIC_OUTPUT_CASE";

/// In a child: a vat whose object panics in a turn of its own; the program
/// goes on and says so.
fn child(standard_hook: bool) {
    let vat = vat::VatBuilder::new("quiet")
        .standard_panic_hook(standard_hook)
        .start()
        .unwrap();
    let crashed = vat
        .run_async(|| async {
            let object = vat::spawn(0u32);
            object
                .send(|_| -> u32 { panic!("the object gave up") })
                .await
        })
        .wait()
        .unwrap();
    assert_eq!(crashed.unwrap_err().kind(), vat::ErrorKind::Crashed);
    vat.stop().unwrap();
    println!("went on");
}

/// Runs `case` in a child with `RUST_BACKTRACE=1`; its standard error.
fn run_child(case: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "children", "--nocapture"])
        .env(CASE, case)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("went on"), "{stdout}\n{stderr}");
    stderr
}

/// The entry point of the child processes; does nothing in the parent.
#[test]
fn children() {
    match std::env::var(CASE).as_deref() {
        Ok("quiet") => child(false),
        Ok("standard") => child(true),
        _ => {}
    }
}

#[test]
fn a_panic_caught_in_a_turn_prints_one_line_and_no_backtrace() {
    let stderr = run_child("quiet");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("panic")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("the object gave up"), "{stderr}");
    assert!(lines[0].contains("panic_output.rs"), "where: {stderr}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
}

#[test]
fn a_vat_may_keep_the_standard_panic_hook() {
    let stderr = run_child("standard");
    assert!(stderr.contains("panicked at"), "{stderr}");
    assert!(stderr.contains("the object gave up"), "{stderr}");
}
