//! Acknowledged state survives the process being killed mid-stream.
//!
//! The test re-runs its own binary as a child process (selected by an
//! environment variable) that commits a counter in a loop and prints each
//! value once its commit has returned. The parent kills it with SIGKILL
//! at some point, reopens the database, and checks that the state is the
//! last value acknowledged (or the one after, committed but not yet
//! printed), and that the two objects written in each batch agree.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sturdyrefs::{ObjectRef, RedbStore, StateBatch, Store};

/// Set to the database path in the child process.
const CHILD_ENV: &str = "STURDYREFS_CRASH_CHILD_DB";

/// What the child prints after each acknowledged commit.
const ACK: &str = "ACK ";

/// How long a child runs at most, should its parent fail to kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

#[allow(clippy::unwrap_used)]
fn counter() -> ObjectRef {
    ObjectRef::new("counter", 1).unwrap()
}

#[allow(clippy::unwrap_used)]
fn mirror() -> ObjectRef {
    ObjectRef::new("mirror", 1).unwrap()
}

#[allow(clippy::unwrap_used)]
fn read_value(store: &RedbStore, object: &ObjectRef) -> u64 {
    store
        .get_state(object)
        .unwrap()
        .map(|bytes| u64::from_be_bytes(bytes.try_into().unwrap()))
        .unwrap_or(0)
}

/// The child's work: commit counter and mirror together, then print the
/// value, until killed.
#[allow(clippy::unwrap_used)]
fn run_child(path: &Path) {
    let store = RedbStore::open(path).unwrap();
    let mut value = read_value(&store, &counter());
    let mut out = std::io::stdout().lock();
    let deadline = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < deadline {
        value += 1;
        let bytes = value.to_be_bytes().to_vec();
        let mut batch = StateBatch::new();
        batch.put(counter(), bytes.clone()).put(mirror(), bytes);
        store.commit(batch).unwrap();
        writeln!(out, "{ACK}{value}").unwrap();
        out.flush().unwrap();
    }
}

/// Runs as the child when started by the crash test; does nothing
/// otherwise.
#[test]
fn crash_child_writer() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        run_child(Path::new(&path));
    }
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_state_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = 0u64;
    for (round, acks_before_kill) in [40usize, 7, 73, 1, 25].into_iter().enumerate() {
        let child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();

        let mut seen = 0;
        while seen < acks_before_kill {
            let line = lines
                .next()
                .expect("the child ended before it was killed")
                .unwrap();
            if let Some(value) = line.strip_prefix(ACK) {
                let value: u64 = value.parse().unwrap();
                assert!(value > acknowledged, "values only grow");
                acknowledged = value;
                seen += 1;
            }
        }
        child.0.kill().unwrap();
        // Whatever the child printed before it died was acknowledged too.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(value) = line.strip_prefix(ACK) {
                acknowledged = value.parse().unwrap();
            }
        }
        let status = child.0.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "round {round}: {status:?}");

        let store = RedbStore::open(&path).unwrap();
        let value = read_value(&store, &counter());
        assert!(
            value == acknowledged || value == acknowledged + 1,
            "round {round}: acknowledged {acknowledged}, found {value}"
        );
        assert_eq!(
            read_value(&store, &mirror()),
            value,
            "a batch landed in part"
        );
        acknowledged = value;
    }
    assert!(acknowledged >= 146);
}
