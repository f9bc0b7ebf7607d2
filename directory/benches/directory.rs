//! The directory's figures (BENCHMARKS.md, "The directory"):
//!
//! - `failover`: three member processes on loopback; a client writes in a
//!   loop; the leader is killed with SIGKILL; the time from the kill to the
//!   client's first write committed after it, over 20 trials.
//! - `throughput`: acknowledged writes per second on three members (each
//!   write fsynced on a quorum), 1 client and 64 clients, beside the floor:
//!   one redb write transaction, fsynced, per write, on the same disk.
//! - `reads`: a linearizable read's latency beside an `any` read's.
//!
//! `cargo bench -p vat-directory --bench directory [-- failover|throughput|reads]`.
//! Whole operations against real processes, sockets and disks: printed
//! medians, not criterion (each sample is seconds long).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark's setup failing is a crash

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sturdyrefs::SturdyRef;
use vat::VatHandle;
use vat_directory::client::Consistency;
use vat_directory::member::RaftTimeouts;
use vat_directory::operator::LocalMembers;
use vat_directory::record::{NameRecord, Record};
use vat_directory::{DirectoryClient, DirectoryToken};

fn record(n: usize) -> Record {
    Record::Name(NameRecord {
        refs: vec![format!("captp://bench/{n}")],
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// A member process of the tool.
struct MemberProcess {
    child: Child,
    token: SturdyRef,
    dir: PathBuf,
    addr: String,
}

impl MemberProcess {
    fn start(dir: &Path, listen: &str) -> MemberProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vat-directory"))
            .args(["serve", "--data"])
            .arg(dir)
            .args(["--listen", listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a member");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let token_line = lines.next().unwrap().unwrap();
        let serving = lines.next().unwrap().unwrap();
        let token = token_line
            .strip_prefix("member-token ")
            .unwrap()
            .parse()
            .unwrap();
        let addr = serving.rsplit(' ').next().unwrap().to_owned();
        // Keep draining stdout so the member never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        MemberProcess {
            child,
            token,
            dir: dir.to_owned(),
            addr,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        *self = MemberProcess::start(&self.dir.clone(), &self.addr.clone());
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn failover() {
    let root = tempfile::tempdir().unwrap();
    let mut members: Vec<MemberProcess> = (0..3)
        .map(|i| MemberProcess::start(&root.path().join(format!("m{i}")), "127.0.0.1:0"))
        .collect();
    let client_vat = VatHandle::start("bench-client").unwrap();
    let tokens: Vec<SturdyRef> = members.iter().map(|m| m.token.clone()).collect();
    let admin: DirectoryToken = client_vat
        .block_on(move || async move {
            vat_directory::operator::form_cluster(&tokens, None, |_, _, _| {}).await
        })
        .unwrap();
    let commits: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (commits, stop, admin) = (Arc::clone(&commits), Arc::clone(&stop), admin.clone());
        let _writer = client_vat.run_async(move || async move {
            let client = DirectoryClient::new(admin, None);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if client
                    .put(&format!("names/failover/{n}"), record(n))
                    .await
                    .is_ok()
                {
                    commits.lock().unwrap().push(Instant::now());
                }
            }
        });
    }
    let mut gaps = Vec::new();
    for trial in 0..20 {
        // Writes flowing and every member back: then kill the leader.
        wait_for(|| commits.lock().unwrap().len() > trial * 10 + 10);
        let status_token = admin.clone();
        let leader = client_vat
            .block_on(
                move || async move { DirectoryClient::new(status_token, None).status().await },
            )
            .unwrap()
            .leader
            .unwrap();
        let victim = members
            .iter()
            .position(|m| m.token.vat().to_string() == leader)
            .unwrap();
        let killed_at = Instant::now();
        members[victim].kill();
        wait_for(|| {
            commits
                .lock()
                .unwrap()
                .last()
                .is_some_and(|at| *at > killed_at)
        });
        let first = *commits
            .lock()
            .unwrap()
            .iter()
            .find(|at| **at > killed_at)
            .unwrap();
        gaps.push((first - killed_at).as_secs_f64() * 1000.0);
        members[victim].restart();
        // Back: the restarted member answers, follows a leader and
        // reaches everyone.
        let check = admin.clone();
        wait_for(|| {
            let check = check.clone();
            client_vat
                .block_on(move || async move {
                    DirectoryClient::pinned(check, None, victim).status().await
                })
                .is_ok_and(|s| s.leader.is_some() && s.members.iter().all(|m| m.reachable))
        });
    }
    stop.store(true, Ordering::Relaxed);
    let max = gaps.iter().copied().fold(0.0, f64::max);
    let median = median(&mut gaps);
    println!("failover (kill -9 of the leader to the first write committed), 20 trials: median {median:.0} ms, max {max:.0} ms");
    let timeouts = RaftTimeouts::default();
    println!(
        "  timers: heartbeat {:?}, election {:?}..{:?}",
        timeouts.heartbeat, timeouts.election_min, timeouts.election_max
    );
    drop(members);
    let _ = client_vat.stop();
}

fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "the cluster did not get there in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Three members in this process (one vat each, real TLS on loopback,
/// redb on disk) and a client vat; answers the admin token.
fn in_process_cluster(root: &Path) -> (LocalMembers, VatHandle, DirectoryToken) {
    let members = LocalMembers::start(root, 3).unwrap();
    let client = VatHandle::start("bench-client").unwrap();
    let admin = members.form_cluster(&client).unwrap();
    (members, client, admin)
}

fn writes_per_second(
    client: &VatHandle,
    admin: &DirectoryToken,
    clients: usize,
    total: usize,
    round: usize,
) -> f64 {
    let admin = admin.clone();
    client
        .block_on(move || async move {
            let each = total / clients;
            let started = Instant::now();
            let writers = (0..clients).map(|c| {
                let directory = DirectoryClient::new(admin.clone(), None);
                async move {
                    for n in 0..each {
                        directory
                            .put(&format!("names/r{round}/c{c}/{n}"), record(n))
                            .await?;
                    }
                    Ok::<_, vat_directory::DirectoryError>(())
                }
            });
            futures::future::try_join_all(writers).await?;
            Ok::<_, vat_directory::DirectoryError>(
                (each * clients) as f64 / started.elapsed().as_secs_f64(),
            )
        })
        .unwrap()
}

fn redb_floor(root: &Path, writes: usize) -> f64 {
    const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("floor");
    let db = redb::Database::create(root.join("floor.redb")).unwrap();
    let value = vec![7u8; 64];
    let started = Instant::now();
    for n in 0..writes as u64 {
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TABLE).unwrap();
            table.insert(n, value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    writes as f64 / started.elapsed().as_secs_f64()
}

fn throughput() {
    let root = tempfile::tempdir().unwrap();
    let (members, client, admin) = in_process_cluster(root.path());
    // Warm the connections and the leader.
    writes_per_second(&client, &admin, 1, 50, 0);
    let (mut one, mut many, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=3 {
        one.push(writes_per_second(&client, &admin, 1, 300, round));
        many.push(writes_per_second(&client, &admin, 64, 64 * 100, round));
        floor.push(redb_floor(root.path(), 300));
    }
    println!(
        "acknowledged writes/s, 3 members, fsync: 1 client {:.0}, 64 clients {:.0}; floor (one fsynced redb transaction per write) {:.0}; medians of 3",
        median(&mut one),
        median(&mut many),
        median(&mut floor)
    );
    let _ = client.stop();
    drop(members);
}

fn reads() {
    let root = tempfile::tempdir().unwrap();
    let (members, client, admin) = in_process_cluster(root.path());
    let measured = client
        .block_on(move || async move {
            let directory = DirectoryClient::new(admin, None);
            directory.put("names/read", record(0)).await?;
            let mut times = [Vec::new(), Vec::new()];
            for (slot, how) in [(0, Consistency::Linearizable), (1, Consistency::Any)] {
                for _ in 0..50 {
                    directory.get("names/read", how).await?;
                }
                for _ in 0..500 {
                    let started = Instant::now();
                    directory.get("names/read", how).await?;
                    times[slot].push(started.elapsed().as_secs_f64() * 1e6);
                }
            }
            Ok::<_, vat_directory::DirectoryError>(times)
        })
        .unwrap();
    let [mut linearizable, mut any] = measured;
    let (l, a) = (median(&mut linearizable), median(&mut any));
    println!(
        "read latency, median of 500: linearizable {l:.0} us, any {a:.0} us (ratio {:.2})",
        l / a
    );
    let _ = client.stop();
    drop(members);
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    if run("throughput") {
        throughput();
    }
    if run("reads") {
        reads();
    }
    if run("failover") {
        failover();
    }
}
