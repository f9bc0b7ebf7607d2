//! The directory as a real deployment: every member is a `vat-directory
//! serve` process of its own on loopback, made a cluster with `init`, and
//! driven by in-process clients (which record what each write answered)
//! and by the tool itself.
//!
//! What is proven: a killed leader loses no acknowledged write and applies
//! none twice, with 3 and with 5 members; a cluster killed whole comes back
//! from its data folders with every record; a rolling restart under writes
//! loses nothing; members are added and removed at run time; facets allow
//! only what they say, and bad input is refused with nothing applied; and
//! the tool's commands print what they promise.
//!
//! Waits are polls with generous deadlines, never sleeps: the tests hold on
//! a machine whose cores are kept busy.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tests::{eventually, loopback};
use vat::{Completion, VatHandle};
use vat_directory::client::{Consistency, Entry};
use vat_directory::convert::StatusInfo;
use vat_directory::record::{NameRecord, Record};
use vat_directory::{DirectoryClient, DirectoryError, DirectoryToken};

/// How long anything that should happen may take, on a busy machine.
const PATIENCE: Duration = Duration::from_secs(90);
/// Acknowledged writes each client must see after a fault before it stops.
const WRITES_AFTER_FAULT: usize = 10;

fn tool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vat_directory"))
}

// ---------------------------------------------------------------------------
// One member process.

/// A `vat-directory serve` process, killed when dropped.
struct MemberProcess {
    child: Child,
    /// Its stdout lines after the two it starts with.
    lines: mpsc::Receiver<String>,
    vat: String,
    addr: SocketAddr,
    /// `captp://...`: what `init` and `add-member` take.
    token: String,
}

impl MemberProcess {
    /// Starts a member in `dir` listening on `listen` (port 0: any), its
    /// standard error appended to `log`, and waits for its two lines.
    fn spawn(dir: &Path, listen: SocketAddr, log: &Path) -> MemberProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(tool())
            .arg("serve")
            .arg("--data")
            .arg(dir)
            .arg("--listen")
            .arg(listen.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start vat-directory serve");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut member = MemberProcess {
            child,
            lines,
            vat: String::new(),
            addr: listen,
            token: String::new(),
        };
        let first = member.line();
        member.token = first
            .strip_prefix("member-token ")
            .unwrap_or_else(|| panic!("serve printed {first:?}, not its member token"))
            .to_owned();
        let second = member.line();
        let (vat, addr) = second
            .strip_prefix("serving directory member ")
            .and_then(|rest| rest.split_once(" on "))
            .unwrap_or_else(|| panic!("serve printed {second:?}, not what it serves"));
        member.vat = vat.to_owned();
        member.addr = addr.parse().unwrap();
        assert!(
            member.token.contains(&member.vat) && member.token.contains(addr),
            "the member token {} names the vat and the bound address",
            member.token
        );
        member
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("the member prints its next line")
    }

    /// `kill -9`: the process ends at once, without a word.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit and its last line.
    fn terminate(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}", self.child.id());
        let mut exit = None;
        assert!(
            eventually(PATIENCE, || {
                exit = self.child.try_wait().unwrap();
                exit.is_some()
            }),
            "the member stops after SIGTERM"
        );
        assert!(exit.unwrap().success(), "SIGTERM ends serve cleanly");
        let last = self.line();
        assert_eq!(
            last,
            format!("SIGTERM: directory member {} stopped", self.vat)
        );
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// A cluster of member processes.

/// Members in processes of their own, each in a data folder under one
/// temporary folder; a vat of the test's own for status and reads.
struct Cluster {
    root: tempfile::TempDir,
    members: Vec<MemberProcess>,
    /// The admin token `init` printed.
    admin: String,
    driver: VatHandle,
}

impl Cluster {
    /// `count` members on loopback, made a cluster with `init`.
    fn start(count: usize) -> Cluster {
        let mut cluster = Cluster {
            root: tempfile::tempdir().unwrap(),
            members: Vec::new(),
            admin: String::new(),
            driver: VatHandle::start("directory-test").unwrap(),
        };
        for _ in 0..count {
            cluster.spawn_member();
        }
        let tokens: Vec<String> = cluster.members.iter().map(|m| m.token.clone()).collect();
        let mut args = vec!["init".to_owned()];
        args.extend(tokens);
        let init = cluster.tool(&args);
        assert!(init.status.success(), "init: {}", describe(&init));
        cluster.admin = stdout(&init).trim().to_owned();
        assert!(
            cluster.admin.starts_with("vatdir://"),
            "{}",
            describe(&init)
        );
        cluster
    }

    fn dir(&self, member: usize) -> PathBuf {
        self.root.path().join(format!("member-{member}"))
    }

    fn log(&self, member: usize) -> PathBuf {
        self.root.path().join(format!("member-{member}.log"))
    }

    /// Starts one more member process (not yet in the cluster); its index.
    fn spawn_member(&mut self) -> usize {
        let index = self.members.len();
        let member = MemberProcess::spawn(&self.dir(index), loopback(), &self.log(index));
        self.members.push(member);
        index
    }

    /// Starts member `index` again on its data folder and address; it
    /// prints the same token.
    fn restart(&mut self, index: usize) {
        let before = self.members[index].token.clone();
        let addr = self.members[index].addr;
        let member = MemberProcess::spawn(&self.dir(index), addr, &self.log(index));
        assert_eq!(member.token, before, "a restarted member keeps its token");
        // The old process is gone; dropping its guard reaps it.
        self.members[index] = member;
    }

    /// The admin facet at only the given members, in that order.
    fn token_at(&self, members: &[usize]) -> String {
        let (_, swiss) = self.admin.rsplit_once('/').unwrap();
        let authorities: Vec<String> = members
            .iter()
            .map(|&i| format!("{}@{}", self.members[i].vat, self.members[i].addr))
            .collect();
        format!("vatdir://{}/{swiss}", authorities.join("+"))
    }

    /// Runs the tool with `args`.
    fn tool(&self, args: &[String]) -> Output {
        Command::new(tool())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// What member `index` alone says of the cluster.
    fn status(&self, index: usize) -> Result<StatusInfo, DirectoryError> {
        let token = self.token_at(&[index]);
        self.in_vat(
            move |token| async move {
                DirectoryClient::pinned(token, None, 0)
                    .with_deadline(Duration::from_secs(5))
                    .status()
                    .await
            },
            token,
        )
    }

    /// Runs `work` with the parsed `token` in the test's vat.
    fn in_vat<R, F, Fut>(&self, work: F, token: String) -> R
    where
        F: FnOnce(DirectoryToken) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + 'static,
        R: Send + 'static,
    {
        self.driver
            .run_async(move || work(DirectoryToken::parse(&token).unwrap()))
            .wait()
            .unwrap()
    }

    /// The member that leads among `candidates` (it says so itself), and
    /// its status, waiting for one.
    fn leader(&self, candidates: &[usize]) -> (usize, StatusInfo) {
        let mut found = None;
        let agreed = eventually(PATIENCE, || {
            found = candidates.iter().find_map(|&i| {
                let status = self.status(i).ok()?;
                (status.leader.as_deref() == Some(self.members[i].vat.as_str()))
                    .then_some((i, status))
            });
            found.is_some()
        });
        assert!(agreed, "one of members {candidates:?} leads");
        found.unwrap()
    }

    /// Every entry under `prefix`, read linearizably through the admin
    /// token, waiting for the cluster to answer.
    fn list(&self, prefix: &str) -> Vec<Entry> {
        let prefix = prefix.to_owned();
        let mut last = None;
        let mut entries = None;
        let answered = eventually(PATIENCE, || {
            let prefix = prefix.clone();
            let read = self.in_vat(
                move |token| async move {
                    DirectoryClient::new(token, None)
                        .list(&prefix, Consistency::Linearizable, 0)
                        .await
                },
                self.admin.clone(),
            );
            match read {
                Ok(read) => {
                    assert!(!read.value.1, "the test lists fewer entries than a page");
                    entries = Some(read.value.0);
                    true
                }
                Err(error) => {
                    last = Some(error);
                    false
                }
            }
        });
        assert!(answered, "the cluster answers a list: {last:?}");
        entries.unwrap()
    }

    /// Writes `count` records under `prefix` through the admin token, one
    /// after the other; their keys and indexes.
    fn put_many(&self, prefix: &str, count: usize) -> Vec<(String, u64)> {
        let prefix = prefix.to_owned();
        self.in_vat(
            move |token| async move {
                let client = DirectoryClient::new(token, None);
                let mut written = Vec::new();
                for n in 0..count {
                    let key = format!("{prefix}{n}");
                    let index = client.put(&key, name_record(&key)).await.unwrap();
                    written.push((key, index));
                }
                written
            },
            self.admin.clone(),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
        let _ = self.driver.stop();
        if std::thread::panicking() {
            // What the members logged is what explains a failure.
            for index in 0..self.members.len() {
                if let Ok(text) = std::fs::read_to_string(self.log(index)) {
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    eprintln!("--- member {index}'s log (last lines, newest first):");
                    for line in tail {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

fn name_record(key: &str) -> Record {
    Record::Name(NameRecord {
        refs: vec![format!("captp://written-by-the-test/{key}")],
    })
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "{}; stdout {:?}; stderr {:?}",
        output.status,
        stdout(output),
        stderr(output)
    )
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------
// Clients that write and record what each write answered.

/// One write a client made.
#[derive(Debug, Clone)]
struct Attempt {
    key: String,
    /// The committed index, if the write was acknowledged; `None`: it
    /// failed, and may or may not have been applied.
    acked: Option<u64>,
    /// Whether it began after the fault.
    after_fault: bool,
}

/// A client in a vat of its own writing `names/c<k>/<n>` until stopped.
struct Writer {
    vat: VatHandle,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: Arc<AtomicBool>,
    done: Option<Completion<()>>,
}

impl Writer {
    fn start(k: usize, token: &str, fault: Arc<AtomicBool>) -> Writer {
        let vat = VatHandle::start(format!("writer-{k}")).unwrap();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let token = token.to_owned();
        let (log, stopped) = (Arc::clone(&attempts), Arc::clone(&stop));
        let done = vat.run_async(move || async move {
            let client = DirectoryClient::new(DirectoryToken::parse(&token).unwrap(), None)
                .with_deadline(Duration::from_secs(20));
            let mut n = 0;
            while !stopped.load(Ordering::SeqCst) {
                let key = format!("names/c{k}/{n}");
                let after_fault = fault.load(Ordering::SeqCst);
                let acked = client.put(&key, name_record(&key)).await.ok();
                log.lock().unwrap().push(Attempt {
                    key,
                    acked,
                    after_fault,
                });
                n += 1;
            }
        });
        Writer {
            vat,
            attempts,
            stop,
            done: Some(done),
        }
    }

    fn acked_after_fault(&self) -> usize {
        let attempts = self.attempts.lock().unwrap();
        attempts
            .iter()
            .filter(|a| a.after_fault && a.acked.is_some())
            .count()
    }

    fn acked(&self) -> usize {
        let attempts = self.attempts.lock().unwrap();
        attempts.iter().filter(|a| a.acked.is_some()).count()
    }

    /// Stops after the write in flight; every attempt.
    fn finish(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(done) = self.done.take() {
            done.wait().unwrap();
        }
        self.vat.stop().unwrap();
        let attempts = self.attempts.lock().unwrap().clone();
        attempts
    }
}

/// The checker: every acknowledged write is present once, at the index it
/// was acknowledged with; an unacknowledged one may be present or not; no
/// key was made up; no log index holds two records.
fn check_history(cluster: &Cluster, histories: &[Vec<Attempt>]) {
    let mut indexes = BTreeSet::new();
    for (k, attempts) in histories.iter().enumerate() {
        let entries = cluster.list(&format!("names/c{k}/"));
        let mut present: BTreeMap<String, Entry> = BTreeMap::new();
        for entry in entries {
            assert!(
                indexes.insert(entry.index),
                "log index {} holds one record only: {entry:?}",
                entry.index
            );
            let again = present.insert(entry.key.clone(), entry.clone());
            assert!(again.is_none(), "{} is listed once", entry.key);
        }
        let attempted: BTreeMap<&str, &Attempt> =
            attempts.iter().map(|a| (a.key.as_str(), a)).collect();
        for (key, entry) in &present {
            assert!(
                attempted.contains_key(key.as_str()),
                "{key} exists but client {k} never wrote it"
            );
            assert_eq!(
                entry.record,
                name_record(key),
                "{key} holds what was written"
            );
        }
        for attempt in attempts {
            if let Some(index) = attempt.acked {
                let entry = present
                    .get(&attempt.key)
                    .unwrap_or_else(|| panic!("acknowledged {attempt:?} is present"));
                assert_eq!(
                    entry.index, index,
                    "{} is at the index its write was acknowledged with",
                    attempt.key
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The tests.

fn leader_killed_under_four_writers(size: usize) {
    let mut cluster = Cluster::start(size);
    let everyone: Vec<usize> = (0..size).collect();
    let fault = Arc::new(AtomicBool::new(false));
    let writers: Vec<Writer> = (0..4)
        .map(|k| Writer::start(k, &cluster.admin, Arc::clone(&fault)))
        .collect();
    assert!(
        eventually(PATIENCE, || writers.iter().all(|w| w.acked() >= 5)),
        "every client writes before the kill"
    );

    let (old, before) = cluster.leader(&everyone);
    cluster.members[old].kill();
    fault.store(true, Ordering::SeqCst);

    assert!(
        eventually(PATIENCE * 2, || writers
            .iter()
            .all(|w| w.acked_after_fault() >= WRITES_AFTER_FAULT)),
        "every client has {WRITES_AFTER_FAULT} writes acknowledged after the kill"
    );
    let histories: Vec<Vec<Attempt>> = writers.into_iter().map(Writer::finish).collect();

    let survivors: Vec<usize> = everyone.iter().copied().filter(|&i| i != old).collect();
    let (new, after) = cluster.leader(&survivors);
    assert_ne!(new, old);
    assert!(
        after.term > before.term,
        "the new leader's term {} is past {}",
        after.term,
        before.term
    );
    check_history(&cluster, &histories);
}

#[test]
fn killing_the_leader_of_three_loses_no_acknowledged_write() {
    leader_killed_under_four_writers(3);
}

#[test]
fn killing_the_leader_of_five_loses_no_acknowledged_write() {
    leader_killed_under_four_writers(5);
}

#[test]
fn a_cluster_killed_whole_comes_back_with_every_record() {
    let mut cluster = Cluster::start(3);
    let written = cluster.put_many("names/kept/", 40);
    let before = cluster.list("names/");
    assert_eq!(before.len(), 40);
    for (key, index) in &written {
        assert!(before.iter().any(|e| &e.key == key && e.index == *index));
    }

    for member in &mut cluster.members {
        member.kill();
    }
    for index in 0..3 {
        cluster.restart(index);
    }
    let after = cluster.list("names/");
    assert_eq!(
        after, before,
        "every record, with its index, survives kill -9"
    );
}

#[test]
fn a_rolling_restart_under_writes_loses_nothing() {
    let mut cluster = Cluster::start(3);
    let fault = Arc::new(AtomicBool::new(false));
    let writer = Writer::start(0, &cluster.admin, Arc::clone(&fault));
    assert!(eventually(PATIENCE, || writer.acked() >= 5));

    for index in 0..3 {
        let acked = writer.acked();
        cluster.members[index].terminate();
        cluster.restart(index);
        let vat = cluster.members[index].vat.clone();
        // Back: the leader reaches it, and it applied what was committed
        // when it came back.
        let commit = cluster.leader(&[0, 1, 2]).1.commit_index;
        assert!(
            eventually(PATIENCE, || {
                let (_, status) = cluster.leader(&[0, 1, 2]);
                let listed = status.members.iter().any(|m| m.vat == vat && m.reachable);
                let applied = cluster
                    .status(index)
                    .is_ok_and(|s| s.applied_index >= commit);
                listed && applied
            }),
            "member {index} is back and caught up"
        );
        assert!(
            eventually(PATIENCE, || writer.acked() >= acked + 5),
            "writes go on after member {index} restarted"
        );
    }
    let history = writer.finish();
    check_history(&cluster, &[history]);
}

#[test]
fn members_are_added_and_removed_at_run_time() {
    let mut cluster = Cluster::start(3);
    let fourth = cluster.spawn_member();
    let added = cluster.tool(&[
        "add-member".to_owned(),
        cluster.admin.clone(),
        cluster.members[fourth].token.clone(),
    ]);
    assert!(added.status.success(), "add-member: {}", describe(&added));
    assert!(
        stdout(&added).starts_with("member added at index "),
        "{}",
        describe(&added)
    );

    let vat = cluster.members[fourth].vat.clone();
    let everyone = [0, 1, 2, fourth];
    assert!(
        eventually(PATIENCE, || {
            let (_, status) = cluster.leader(&everyone);
            status
                .members
                .iter()
                .any(|m| m.vat == vat && m.voter && m.lag == 0 && m.reachable)
        }),
        "the leader lists the new member as a voter, caught up"
    );
    // Every member counts the new one when it counts a quorum, not only
    // the leader that added it.
    for index in everyone {
        assert!(
            eventually(PATIENCE, || cluster.status(index).is_ok_and(|s| s
                .members
                .iter()
                .any(|m| m.vat == vat && m.reachable))),
            "member {index} reaches the new member"
        );
    }

    // Replace a dead member: kill one that does not lead, then remove it.
    let (leader, _) = cluster.leader(&everyone);
    let victim = [0, 1, 2].into_iter().find(|&i| i != leader).unwrap();
    cluster.members[victim].kill();
    let gone = cluster.members[victim].vat.clone();
    let removed = cluster.tool(&[
        "remove-member".to_owned(),
        cluster.admin.clone(),
        gone.clone(),
    ]);
    assert!(
        removed.status.success(),
        "remove-member: {}",
        describe(&removed)
    );
    assert!(stdout(&removed).starts_with("member removed at index "));

    let rest: Vec<usize> = everyone.into_iter().filter(|&i| i != victim).collect();
    assert!(
        eventually(PATIENCE, || cluster
            .leader(&rest)
            .1
            .members
            .iter()
            .all(|m| m.vat != gone)),
        "the status no longer lists the removed member"
    );
    let token = cluster.token_at(&rest);
    let put = cluster.tool(&args(&[
        "put",
        &token,
        "names/after-removal",
        "--ref",
        "captp://x",
    ]));
    assert!(put.status.success(), "a write commits: {}", describe(&put));
    assert!(stdout(&put).starts_with("committed at index "));
}

#[test]
fn facets_allow_what_they_say_and_bad_input_is_refused() {
    let cluster = Cluster::start(3);
    let admin = cluster.admin.clone();
    let run = |items: &[&str]| cluster.tool(&args(items));
    let refused = |output: &Output, needle: &str| {
        assert_eq!(output.status.code(), Some(1), "{}", describe(output));
        assert!(stdout(output).is_empty(), "{}", describe(output));
        let text = stderr(output);
        assert!(
            text.starts_with("vat-directory: ") && text.contains(needle),
            "the error mentions {needle:?}: {text:?}"
        );
    };
    let absent = |key: &str| {
        let got = run(&["get", &admin, key]);
        assert!(got.status.success(), "{}", describe(&got));
        assert_eq!(
            stdout(&got),
            "(no record)\n",
            "nothing was applied to {key}"
        );
    };
    let put = run(&["put", &admin, "names/shop", "--ref", "captp://shop"]);
    assert!(put.status.success(), "{}", describe(&put));

    // A reader reads, and may not write.
    let minted = run(&["mint", &admin, "--reader", "names/"]);
    assert!(minted.status.success(), "{}", describe(&minted));
    let reader = stdout(&minted).trim().to_owned();
    let got = run(&["get", &reader, "names/shop"]);
    assert!(got.status.success(), "{}", describe(&got));
    assert!(
        stdout(&got).starts_with("names/shop\t"),
        "{}",
        describe(&got)
    );
    refused(
        &run(&["put", &reader, "names/thief", "--ref", "captp://x"]),
        "NotPermitted",
    );
    absent("names/thief");

    // A host writes its own vat's record, not another's.
    let (own, other) = (&cluster.members[0].vat, &cluster.members[1].vat);
    let minted = run(&["mint", &admin, "--host", own]);
    assert!(minted.status.success(), "{}", describe(&minted));
    let host = stdout(&minted).trim().to_owned();
    let own_key = format!("vats/{own}");
    let other_key = format!("vats/{other}");
    let lease = ["--vat-hint", "127.0.0.1:1", "--lease-ms", "600000"];
    let mine = run(&[&["put", &host, &own_key][..], &lease].concat());
    assert!(mine.status.success(), "{}", describe(&mine));
    refused(
        &run(&[&["put", &host, &other_key][..], &lease].concat()),
        "NotPermitted",
    );
    absent(&other_key);

    // A revoked facet is refused afterwards.
    let revoked = run(&["revoke", &admin, &host]);
    assert!(revoked.status.success(), "{}", describe(&revoked));
    assert!(stdout(&revoked).starts_with("revoked at index "));
    refused(&run(&["get", &host, &own_key]), "does not know this token");
    refused(
        &run(&[&["put", &host, &own_key][..], &lease].concat()),
        "does not know this token",
    );

    // An oversized record and an overlong key apply nothing.
    let big_ref = format!("captp://{}", "r".repeat(1000));
    let mut big = vec!["put", &admin, "names/big"];
    for _ in 0..20 {
        big.extend(["--ref", big_ref.as_str()]);
    }
    refused(&run(&big), "TooLarge");
    absent("names/big");
    let long_key = format!("names/{}", "k".repeat(300));
    refused(
        &run(&["put", &admin, &long_key, "--ref", "captp://x"]),
        "256 bytes",
    );
    let listed = run(&["list", &admin, "names/"]);
    assert_eq!(
        stdout(&listed).lines().count(),
        1,
        "only names/shop: {}",
        describe(&listed)
    );

    // A garbage token does not parse.
    refused(
        &run(&["get", "vatdir://garbage", "names/shop"]),
        "bad token",
    );
    refused(&run(&["get", "not a token", "names/shop"]), "bad token");
}

#[test]
fn the_tool_prints_what_it_promises() {
    let cluster = Cluster::start(3);
    let admin = cluster.admin.clone();
    let run = |items: &[&str]| {
        let output = cluster.tool(&args(items));
        assert!(output.status.success(), "{items:?}: {}", describe(&output));
        stdout(&output)
    };

    // status: the leader, term, commit, and each member with its lag.
    let (leader, _) = cluster.leader(&[0, 1, 2]);
    let status = run(&["status", &cluster.token_at(&[leader])]);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("status prints {name}: {status}"))
    };
    // Leadership may have moved since (a busy machine): whoever leads is a
    // member.
    let named = field("leader ");
    assert!(
        cluster.members.iter().any(|m| m.vat == named),
        "status names a member as leader: {status}"
    );
    assert!(field("term ").parse::<u64>().unwrap() >= 1);
    assert!(field("commit ").parse::<u64>().unwrap() >= 1);
    for member in &cluster.members {
        let line = status
            .lines()
            .find(|l| l.contains(&member.vat) && l.contains("lag="))
            .unwrap_or_else(|| panic!("status lists {} with its lag: {status}", member.vat));
        assert!(line.contains("voter"), "{line}");
    }

    // put, get, list, rm.
    let committed = run(&["put", &admin, "names/a", "--ref", "captp://a"]);
    let index: u64 = committed
        .trim()
        .strip_prefix("committed at index ")
        .unwrap()
        .parse()
        .unwrap();
    run(&[
        "put",
        &admin,
        "names/b",
        "--ref",
        "captp://b1",
        "--ref",
        "captp://b2",
    ]);
    assert_eq!(
        run(&["get", &admin, "names/a"]),
        format!("names/a\t{index}\tname captp://a\n")
    );
    let listed = run(&["list", &admin, "names/"]);
    let keys: Vec<&str> = listed
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(keys, ["names/a", "names/b"], "{listed}");
    assert!(listed.contains("name captp://b1 captp://b2"), "{listed}");
    assert!(run(&["rm", &admin, "names/a"]).starts_with("committed at index "));
    assert_eq!(run(&["get", &admin, "names/a"]), "(no record)\n");

    // watch --count 2 sees two changes made after it started, in order.
    let mut watch = Command::new(tool())
        .args(["watch", &admin, "names/", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    // From index 0 the watch begins with the prefix's state: it is live.
    let state = lines.next().unwrap().unwrap();
    assert!(state.starts_with("state at index "), "{state}");
    let held = lines.next().unwrap().unwrap();
    assert!(
        held.starts_with("  names/b\t"),
        "the state holds names/b: {held}"
    );
    run(&["put", &admin, "names/c", "--ref", "captp://c"]);
    run(&["rm", &admin, "names/b"]);
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let first: Vec<&str> = first.split('\t').collect();
    let second: Vec<&str> = second.split('\t').collect();
    assert_eq!(first[1..], ["put", "names/c", "name captp://c"]);
    assert_eq!(second[1..], ["delete", "names/b"]);
    assert!(
        first[0].parse::<u64>().unwrap() < second[0].parse::<u64>().unwrap(),
        "changes arrive in log order"
    );
    let mut exit = None;
    assert!(eventually(PATIENCE, || {
        exit = watch.try_wait().unwrap();
        exit.is_some()
    }));
    assert!(
        exit.unwrap().success(),
        "watch --count 2 ends after two changes"
    );

    // get --any from one member answers, and says how stale it may be.
    let follower = [0, 1, 2].into_iter().find(|&i| i != leader).unwrap();
    let member = follower.to_string();
    let token = cluster.token_at(&[0, 1, 2]);
    let any = cluster.tool(&args(&[
        "get", &token, "names/c", "--any", "--member", &member,
    ]));
    assert!(any.status.success(), "{}", describe(&any));
    assert!(stdout(&any).starts_with("names/c\t"), "{}", describe(&any));
    let note = stderr(&any);
    assert!(
        note.contains(&format!("served by {}", cluster.members[follower].vat))
            && note.contains("may be stale by"),
        "{note:?}"
    );
}
