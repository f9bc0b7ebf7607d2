//! A client in another language restores a sturdyref and calls the object:
//! `tests/python/restore_and_call.py`, written from `docs/PROTOCOL.md` with
//! Python's standard library and pycapnp, against the `sturdy_peer` binary
//! (a vat serving a durable counter on TLS).
//!
//! The test installs pycapnp itself, into a virtual environment in Cargo's
//! target folder that later runs reuse. Without `python3` (and its `venv`
//! module) or without access to PyPI the test fails and says why.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use capnp::capability::FromClientHook;
use schema::demo_capnp::counter;
use tests::{eventually, PeerProcess};
use vat::net::{Identity, Limits};
use vat::sturdy::{restore, vat_id};
use vat::VatHandle;

/// The pycapnp release the client is written for (it has manylinux wheels
/// for current CPython, so installing it compiles nothing).
const PYCAPNP: &str = "2.2.4";

/// How long the client may take: a few round trips on loopback.
const CLIENT_PATIENCE: Duration = Duration::from_secs(60);

/// The exit status the client uses when no hint led to the token's vat.
const EXIT_UNREACHABLE: i32 = 2;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of a virtual environment holding pycapnp, made on first use.
///
/// Tests of this file share it through a `OnceLock`; test processes running
/// at the same time share it through a lock file next to it.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| install_venv(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-venv")))
        .clone()
}

/// Whether `python` imports the expected pycapnp.
fn has_pycapnp(python: &Path) -> bool {
    let check =
        format!("import sys, capnp; sys.exit(0 if capnp.__version__ == {PYCAPNP:?} else 1)");
    Command::new(python)
        .args(["-c", &check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `command`; panics with `what` and its output if it fails.
fn run_step(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{what}: {command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Makes (or reuses) a virtual environment in `dir` with pycapnp installed.
fn install_venv(dir: &Path) -> PathBuf {
    let python = dir.join("bin").join("python");
    let lock_path = dir.with_extension("lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", lock_path.display()));
    // Held until this function returns: another test process installing at
    // the same time waits here, then finds the environment ready.
    lock.lock()
        .unwrap_or_else(|error| panic!("cannot lock {}: {error}", lock_path.display()));
    if has_pycapnp(&python) {
        return python;
    }

    match Command::new("python3").arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "`python3 --version` failed ({}): this test needs Python 3 to install pycapnp {PYCAPNP}",
            output.status
        ),
        Err(error) => panic!(
            "python3 cannot be run ({error}): this test needs Python 3 with its venv module \
             (Debian: apt-get install python3 python3-venv) to install pycapnp {PYCAPNP} \
             into {}",
            dir.display()
        ),
    }
    // A half-made environment from an interrupted run is started afresh.
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .unwrap_or_else(|error| panic!("cannot remove {}: {error}", dir.display()));
    }
    run_step(
        Command::new("python3").args(["-m", "venv"]).arg(dir),
        "creating a Python virtual environment (Debian needs the python3-venv package)",
    );
    run_step(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            &format!("pycapnp=={PYCAPNP}"),
        ]),
        &format!("installing pycapnp {PYCAPNP} from PyPI"),
    );
    assert!(
        has_pycapnp(&python),
        "pycapnp {PYCAPNP} was installed into {} but does not import",
        dir.display()
    );
    python
}

/// What one run of the Python client printed, and how it ended.
struct Run {
    status: ExitStatus,
    lines: Vec<String>,
    stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the client exited with {}; it printed:", self.status)?;
        for line in &self.lines {
            writeln!(f, "  {line}")?;
        }
        write!(f, "and on stderr:\n{}", self.stderr)
    }
}

impl Run {
    /// The line the client printed for `step` (one JSON object per line).
    fn step(&self, step: &str) -> &str {
        let key = format!("\"step\": \"{step}\"");
        self.lines
            .iter()
            .find(|line| line.contains(&key))
            .unwrap_or_else(|| panic!("no {step:?} line: {self}"))
    }
}

/// Runs the client on `token`, waiting up to [`CLIENT_PATIENCE`].
fn run_client(python: &Path, token: &str) -> Run {
    let mut child = Command::new(python)
        .arg(manifest_dir().join("python").join("restore_and_call.py"))
        .arg("--schema-dir")
        .arg(manifest_dir().join("..").join("schema").join("capnp"))
        .arg(token)
        // Keep the source tree free of __pycache__ folders.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python client");
    // The output is a few lines, far below a pipe's buffer: waiting before
    // reading cannot block the client.
    let exited = eventually(CLIENT_PATIENCE, || {
        child.try_wait().expect("poll the client").is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child
        .wait_with_output()
        .expect("collect the client's output");
    let run = Run {
        status,
        lines: String::from_utf8_lossy(&stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert!(
        exited,
        "the client took more than {CLIENT_PATIENCE:?}: {run}"
    );
    run
}

/// Starts the serving vat; returns its guard and the token it minted.
fn serve() -> (PeerProcess, String) {
    let peer = PeerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_sturdy_peer")));
    let line = peer
        .next_line(Duration::from_secs(30))
        .expect("the peer prints its token");
    let token = line
        .strip_prefix("token ")
        .unwrap_or_else(|| panic!("the peer printed {line:?}, not `token TOKEN`"))
        .to_owned();
    (peer, token)
}

/// The vat id a token names (the text between `captp://` and `@`).
fn vat_of(token: &str) -> &str {
    let rest = token.strip_prefix("captp://").expect("a captp:// token");
    rest.split_once('@').expect("a vat id before '@'").0
}

/// What `counter#1` holds, as a Rust holder of `token` reads it.
fn value_seen_from_rust(token: &str) -> i64 {
    let token = token.to_owned();
    let holder = VatHandle::start("rust-holder").unwrap();
    let value = holder
        .run_async(move || async move {
            let token = token.parse().unwrap();
            let (object, _kind) = restore(&token, None, Limits::default()).await.unwrap();
            let counter: counter::Client = object.cast_to();
            let response = counter.get_request().send().promise.await.unwrap();
            response.get().unwrap().get_value()
        })
        .wait()
        .unwrap();
    holder.stop().unwrap();
    value
}

#[test]
fn a_python_client_restores_a_token_and_pipelines_calls_on_it() {
    let python = python();
    let (_peer, token) = serve();
    let run = run_client(&python, &token);
    assert!(run.status.success(), "{run}");

    let connected = run.step("connected");
    for expected in [
        format!("\"vat_id\": \"{}\"", vat_of(&token)),
        "\"tls_version\": \"TLSv1.3\"".to_owned(),
        "\"alpn\": \"capnp-vat/1\"".to_owned(),
    ] {
        assert!(connected.contains(&expected), "{expected} missing: {run}");
    }
    // add(5) was sent on the restore's promised object, before its answer.
    assert_eq!(run.step("add"), r#"{"step": "add", "value": 5}"#, "{run}");
    assert_eq!(
        run.step("restore"),
        r#"{"kind": "counter", "step": "restore"}"#,
        "{run}"
    );
    assert_eq!(run.step("get"), r#"{"step": "get", "value": 5}"#, "{run}");
    assert_eq!(
        run.step("resolved get"),
        r#"{"step": "resolved get", "value": 5}"#,
        "{run}"
    );
    for step in ["tampered restore", "tampered call", "admin"] {
        let line = run.step(step);
        assert!(line.contains("\"type\": \"FAILED\""), "{step}: {run}");
        assert!(line.contains("[unknown token] "), "{step}: {run}");
    }

    // The Python client's add reached the very object a Rust holder restores.
    assert_eq!(value_seen_from_rust(&token), 5);
}

#[test]
fn the_python_client_refuses_a_vat_that_proves_another_key() {
    let python = python();
    let (_peer, token) = serve();
    let real = vat_of(&token).to_owned();
    let other = vat_id(Identity::generate().unwrap().public_key()).to_string();
    let wrong = token.replacen(&real, &other, 1);

    let run = run_client(&python, &wrong);
    assert_eq!(run.status.code(), Some(EXIT_UNREACHABLE), "{run}");
    let refused = run.step("refused");
    assert!(
        refused.contains(&format!("\"found\": \"{real}\"")),
        "the refusal names the key the server proved: {run}"
    );
    assert!(
        !run.lines.iter().any(|line| line.contains("\"connected\"")),
        "{run}"
    );
}
