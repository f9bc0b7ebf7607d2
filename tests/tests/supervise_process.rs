//! Supervision across processes: the root supervisor's give-up ends its
//! process with the documented status, and a child started in another
//! process comes back after that process is killed (`kill -9`), in the same
//! vat once it returns or in another vat.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use schema::demo_capnp::counter;
use sturdyrefs::SturdyRef;
use vat::supervise::{
    Backoff, ChildSpec, Intensity, Restart, SpawnerRef, Supervisor, SupervisorBuilder, WaitLimits,
    ROOT_GAVE_UP_EXIT,
};
use vat::{Root, VatHandle};

const PEER: &str = env!("CARGO_BIN_EXE_supervise_peer");

#[test]
fn the_root_supervisor_giving_up_ends_the_process_with_status_70() {
    let mut child = Command::new(PEER)
        .arg("give-up")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the peer did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(ROOT_GAVE_UP_EXIT, 70);
    assert_eq!(status.code(), Some(ROOT_GAVE_UP_EXIT), "{stderr}");
    assert!(
        stderr.contains("the root supervisor gave up (crashed: supervisor `root` gave up after more than 0 restarts"),
        "{stderr}"
    );
}

/// A spawner vat in a process of its own, killed when dropped.
struct SpawnerPeer {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    token: SturdyRef,
}

impl SpawnerPeer {
    fn start(dir: &Path, port: u16) -> SpawnerPeer {
        let mut child = Command::new(PEER)
            .arg("spawner")
            .arg(dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, heard) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let next = || {
            heard
                .recv_timeout(Duration::from_secs(30))
                .unwrap()
                .unwrap()
        };
        let listening = next();
        let token = next();
        let addr: std::net::SocketAddr = listening
            .strip_prefix("listening ")
            .unwrap()
            .parse()
            .unwrap();
        SpawnerPeer {
            child,
            _stdin: stdin,
            port: addr.port(),
            token: token.strip_prefix("token ").unwrap().parse().unwrap(),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SpawnerPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A vat supervising one remote child, `counter`, through `spawners`.
fn supervise(spawners: Vec<SturdyRef>) -> (VatHandle, Arc<Root<Supervisor>>) {
    let vat = VatHandle::start("supervisor").unwrap();
    let root = vat
        .run_async(move || async move {
            let spawners = spawners.into_iter().map(SpawnerRef::token).collect();
            let supervisor = SupervisorBuilder::new("remote")
                .intensity(Intensity::new(200, Duration::from_secs(60)))
                .backoff(Backoff::exponential(
                    Duration::from_millis(20),
                    Duration::from_millis(200),
                ))
                .wait_limits(WaitLimits {
                    max_calls: 16,
                    max_wait: Duration::from_secs(30),
                })
                .child(
                    ChildSpec::remote("counter", Restart::Permanent, "counter", spawners)
                        .spawn_timeout(Duration::from_secs(5)),
                )
                .start()
                .await
                .unwrap();
            vat::current().root(&vat::spawn(supervisor))
        })
        .wait()
        .unwrap();
    (vat, Arc::new(root))
}

/// Adds `by` to the supervised counter through its stable reference.
fn add(vat: &VatHandle, root: &Arc<Root<Supervisor>>, by: i64) -> Result<i64, vat::Error> {
    let root = Arc::clone(root);
    vat.run_async(move || async move {
        let supervisor = root.get()?.call(|s| s.clone())?;
        let counter: counter::Client = supervisor.child("counter")?;
        let mut request = counter.add_request();
        request.get().set_by(by);
        Ok(request.send().promise.await?.get()?.get_value())
    })
    .wait()
    .unwrap()
}

/// Waits until the supervisor has logged `crashes` crashes; returns the last.
fn crash_logged(vat: &VatHandle, root: &Arc<Root<Supervisor>>, crashes: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let root = Arc::clone(root);
        let log = vat
            .run(move || root.get().unwrap().call(|s| s.crash_log()).unwrap())
            .wait()
            .unwrap();
        if log.len() >= crashes {
            return log[crashes - 1].error.clone();
        }
        assert!(Instant::now() < deadline, "no crash logged within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_remote_child_comes_back_when_its_killed_vat_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut peer = SpawnerPeer::start(dir.path(), 0);
    let (port, token) = (peer.port, peer.token.clone());
    let (vat, root) = supervise(vec![token]);
    assert_eq!(add(&vat, &root, 5).unwrap(), 5);

    peer.kill();
    let lost = crash_logged(&vat, &root, 1);
    assert!(lost.starts_with("lost: disconnected"), "{lost}");
    // The same vat comes back on the same port and data folder; the
    // supervisor, retrying with backoff, finds it there.
    let _back = SpawnerPeer::start(dir.path(), port);
    // The call waits for the restart; the counter's state was on disk.
    assert_eq!(add(&vat, &root, 1).unwrap(), 6);
    assert_eq!(add(&vat, &root, 1).unwrap(), 7);
    drop(root);
    vat.stop().unwrap();
}

#[test]
fn a_remote_child_moves_to_another_spawner_when_its_vat_is_killed() {
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = SpawnerPeer::start(first_dir.path(), 0);
    let second = SpawnerPeer::start(second_dir.path(), 0);
    let (vat, root) = supervise(vec![first.token.clone(), second.token.clone()]);
    assert_eq!(add(&vat, &root, 5).unwrap(), 5);
    assert_eq!(add(&vat, &root, 5).unwrap(), 10);

    first.kill();
    crash_logged(&vat, &root, 1);
    // The second vat's counter has its own store: it starts from zero.
    assert_eq!(add(&vat, &root, 1).unwrap(), 1);
    let root_for_info = Arc::clone(&root);
    let info = vat
        .run(move || root_for_info.get().unwrap().call(|s| s.children()).unwrap())
        .wait()
        .unwrap();
    assert_eq!(info[0].incarnation, 2);
    drop(second);
    drop(root);
    vat.stop().unwrap();
}
