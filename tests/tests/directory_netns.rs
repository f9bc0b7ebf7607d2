//! The directory across a real network: members are `vat-directory serve`
//! processes, each on a host of its own (a network namespace on a LAN of
//! two switches), driven by the tool's client commands run on those hosts.
//! The LAN is split into two partitions and healed, and a leader's host is
//! cut off alone and let back.
//!
//! Every wait is a poll with a generous deadline: the members notice a
//! partition within about a second, but a busy machine may take longer,
//! and nothing here asserts speed.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tests::netns::Lan;

/// Where every member listens, on its own host's address.
const PORT: u16 = 4100;
/// How long any one wait may take before the test fails: a hang guard.
const PATIENCE: Duration = Duration::from_secs(90);

fn tool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vat_directory"))
}

/// A `vat-directory serve` process, killed when dropped.
struct Member {
    child: Child,
    /// Its member token (captp://...).
    token: String,
    /// Its vat id, as `status` names members.
    vat: String,
}

impl Member {
    /// Starts a member on host `i` of `lan`, with its data in `dir`, and
    /// waits for its token and its `serving` line.
    fn serve(lan: &Lan, i: usize, dir: &Path) -> Member {
        let mut command = lan.command(i, tool());
        command
            .arg("serve")
            .arg("--data")
            .arg(dir)
            .arg("--listen")
            .arg(format!("{}:{PORT}", lan.addr(i)))
            // openraft warns of every heartbeat a partition loses.
            .env("RUST_LOG", "warn,openraft=error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start vat-directory serve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        // Its log, marked with its host, among the test's output.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[member {i}] {line}");
            }
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut member = Member {
            child,
            token: String::new(),
            vat: String::new(),
        };
        let first = lines
            .recv_timeout(PATIENCE)
            .expect("the member's token line");
        member.token = first
            .strip_prefix("member-token ")
            .unwrap_or_else(|| panic!("member {i} printed {first:?}, not its token"))
            .to_owned();
        let second = lines
            .recv_timeout(PATIENCE)
            .expect("the member's serving line");
        member.vat = second
            .strip_prefix("serving directory member ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("member {i} printed {second:?}, not `serving ...`"))
            .to_owned();
        // The rest of its output is not needed, but must be read.
        std::thread::spawn(move || for _ in lines {});
        member
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of a client command did.
#[derive(Debug)]
struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The tool's one-line failure message (`vat-directory: ...`), if any.
    fn failure(&self) -> Option<&str> {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("vat-directory: "))
    }

    fn expect_ok(self, what: &str) -> Outcome {
        assert!(self.ok, "{what} failed: {self:?}");
        self
    }
}

/// Runs `vat-directory ARGS...` on host `host` and waits for it to exit
/// (killing it after [`PATIENCE`]: every client call has a deadline of its
/// own, well inside that).
fn run(lan: &Lan, host: usize, args: &[&str]) -> Outcome {
    let mut child = lan
        .command(host, tool())
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a vat-directory client command");
    let drain = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = from.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`vat-directory {}` on host {host} hung", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        ok: status.success(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `attempt` until it answers `Ok`, or panics naming `what` and the
/// last thing seen after [`PATIENCE`].
fn poll<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = match attempt() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "gave up waiting: {what}; last seen: {seen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `Ok(())` if `done`, else what was seen instead.
fn seen(done: bool, what: impl std::fmt::Debug) -> Result<(), String> {
    if done {
        Ok(())
    } else {
        Err(format!("{what:?}"))
    }
}

/// Starts a member on each host of `lan` and makes them one cluster;
/// returns the members and the admin token.
fn cluster(lan: &Lan, data: &Path) -> (Vec<Member>, String) {
    let members: Vec<Member> = (0..lan.len())
        .map(|i| Member::serve(lan, i, &data.join(format!("member-{i}"))))
        .collect();
    let mut args = vec!["init"];
    args.extend(members.iter().map(|m| m.token.as_str()));
    let init = run(lan, 0, &args).expect_ok("init");
    let admin = init.stdout.trim().to_owned();
    assert!(admin.starts_with("vatdir://"), "init printed {admin:?}");
    (members, admin)
}

/// `put TOKEN KEY --ref R` through host `host`'s client, pinned to member
/// `member` if given.
fn put(lan: &Lan, host: usize, token: &str, key: &str, member: Option<usize>) -> Outcome {
    let reference = format!("captp://{}", key.replace('/', "-"));
    let pin = member.map(|m| m.to_string());
    let mut args = vec!["put", token, key, "--ref", &reference];
    if let Some(pin) = &pin {
        args.extend(["--member", pin]);
    }
    run(lan, host, &args)
}

/// One record as `list` prints it: key, log index, record.
type Row = (String, u64, String);

/// What member `i` has applied, read by a client on its own host (`list
/// --any --member i`); what it printed if it did not answer.
fn records(lan: &Lan, i: usize, token: &str) -> Result<Vec<Row>, String> {
    let pin = i.to_string();
    let out = run(lan, i, &["list", token, "--any", "--member", &pin]);
    if !out.ok {
        return Err(format!("member {i}: {out:?}"));
    }
    let rows = out
        .stdout
        .lines()
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let key = fields.next().unwrap().to_owned();
            let index = fields
                .next()
                .and_then(|i| i.parse().ok())
                .unwrap_or_else(|| panic!("a list line without an index: {line:?}"));
            let record = fields.next().unwrap_or_default().to_owned();
            (key, index, record)
        })
        .collect();
    Ok(rows)
}

/// The leader member `member` names in its status, asked from host
/// `host` (`None`: it knows of none); what it printed if it did not
/// answer.
fn leader_seen_by(
    lan: &Lan,
    host: usize,
    token: &str,
    member: usize,
) -> Result<Option<String>, String> {
    let pin = member.to_string();
    let out = run(lan, host, &["status", token, "--member", &pin]);
    if !out.ok {
        return Err(format!("member {member}: {out:?}"));
    }
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("leader "))
        .unwrap_or_else(|| panic!("a status without a leader line: {out:?}"))
        .trim()
        .to_owned();
    Ok((line != "(none known)").then_some(line))
}

#[test]
fn a_two_three_partition_refuses_the_minority_serves_the_majority_and_heals_alone() {
    let lan = Lan::new(&[2, 3]);
    let data = tempfile::tempdir().unwrap();
    let (members, admin) = cluster(&lan, data.path());
    let before: Vec<String> = (0..3).map(|i| format!("names/before-{i}")).collect();
    for key in &before {
        put(&lan, 0, &admin, key, None).expect_ok("a write before the split");
    }

    lan.split();

    // The minority: a write through member 0 is refused at once for want
    // of a quorum once member 0 has noticed it reaches only side A. What
    // failed otherwise before that (a timeout) may or may not commit later;
    // what was refused for want of a quorum was never proposed.
    let no_quorum = "no quorum: this member reaches 2 of 5 members";
    let mut refused = Vec::new();
    let mut attempt = 0;
    poll(
        "a write through member 0 refused for want of a quorum",
        || {
            attempt += 1;
            let key = format!("names/minority-{attempt}");
            let out = put(&lan, 0, &admin, &key, Some(0));
            assert!(
                !out.ok,
                "side A's 2 of 5 members committed a write: {out:?}"
            );
            let why = out.failure().map(str::to_owned);
            refused.push((key, why.clone()));
            seen(why.as_deref() == Some(no_quorum), &out)
        },
    );
    let never_proposed: Vec<String> = refused
        .iter()
        .filter(|(_, why)| why.as_deref() == Some(no_quorum))
        .map(|(key, _)| key.clone())
        .collect();
    // Member 1 is on side A too.
    let out = put(&lan, 1, &admin, "names/minority-via-1", Some(1));
    assert_eq!(out.failure(), Some(no_quorum), "{out:?}");
    // A linearizable read there is refused the same way.
    let out = run(
        &lan,
        0,
        &["get", &admin, before[0].as_str(), "--member", "0"],
    );
    assert!(!out.ok, "side A served a linearizable read: {out:?}");
    assert_eq!(out.failure(), Some(no_quorum), "{out:?}");

    // The majority: writes through member 2 commit, once side B has a
    // leader (a new one if the old one was on side A).
    let majority: Vec<String> = (0..3).map(|i| format!("names/majority-{i}")).collect();
    poll("a write through member 2 during the split", || {
        let out = put(&lan, 2, &admin, &majority[0], Some(2));
        seen(out.ok, &out)
    });
    for key in &majority[1..] {
        put(&lan, 3, &admin, key, Some(3)).expect_ok("a write on side B");
    }

    lan.join();

    // With no operator action, every member converges on the same records,
    // side B's writes among them.
    let converged = poll("all five members show the same records", || {
        let views: Vec<Vec<Row>> = (0..members.len())
            .map(|i| records(&lan, i, &admin))
            .collect::<Result<_, _>>()?;
        let first = &views[0];
        let keys: Vec<&str> = first.iter().map(|(k, _, _)| k.as_str()).collect();
        let complete = before
            .iter()
            .chain(&majority)
            .all(|k| keys.contains(&k.as_str()));
        seen(complete && views.iter().all(|v| v == first), &views)?;
        Ok(first.clone())
    });
    for key in &never_proposed {
        assert!(
            converged.iter().all(|(k, _, _)| k != key),
            "{key} was refused for want of a quorum, yet is in the directory: {converged:?}"
        );
    }
    assert!(converged
        .iter()
        .all(|(k, _, _)| k != "names/minority-via-1"));
    // And the cluster takes writes through side A's members again.
    poll("a write through member 0 after the join", || {
        let out = put(&lan, 0, &admin, "names/after-join", Some(0));
        seen(out.ok, &out)
    });
}

#[test]
fn an_isolated_leader_stops_leading_the_others_elect_and_it_catches_up() {
    let lan = Lan::new(&[1, 2]);
    let data = tempfile::tempdir().unwrap();
    let (members, admin) = cluster(&lan, data.path());
    put(&lan, 0, &admin, "names/before", None).expect_ok("a write before the isolation");

    // The leader, as member 0 sees it once one is elected.
    let leader_vat = poll("a leader", || {
        leader_seen_by(&lan, 0, &admin, 0)?.ok_or_else(|| "no leader".to_owned())
    });
    let leader = members
        .iter()
        .position(|m| m.vat == leader_vat)
        .unwrap_or_else(|| panic!("the leader {leader_vat} is not a member"));
    let others: Vec<usize> = (0..members.len()).filter(|i| *i != leader).collect();

    lan.isolate(leader);

    // The isolated member stops claiming to lead (a client on its own host
    // still reaches it) ...
    poll("the isolated member stops naming itself leader", || {
        let named = leader_seen_by(&lan, leader, &admin, leader)?;
        seen(named.as_deref() != Some(leader_vat.as_str()), &named)
    });
    // ... and never accepts a write: each attempt fails, until it refuses
    // for want of a quorum.
    let no_quorum = "no quorum: this member reaches 1 of 3 members";
    let mut attempt = 0;
    poll("a write through the isolated member refused", || {
        attempt += 1;
        let key = format!("names/isolated-{attempt}");
        let out = put(&lan, leader, &admin, &key, Some(leader));
        assert!(!out.ok, "the isolated member accepted a write: {out:?}");
        seen(out.failure() == Some(no_quorum), &out)
    });

    // The other two elect a new leader among themselves.
    let new_leader = poll("the others elect a new leader", || {
        let named = others
            .iter()
            .map(|&i| leader_seen_by(&lan, i, &admin, i))
            .collect::<Result<Vec<_>, _>>()?;
        match &named[..] {
            [Some(a), Some(b)] if a == b && *a != leader_vat => Ok(a.clone()),
            _ => Err(format!("{named:?}")),
        }
    });
    assert!(others.iter().any(|&i| members[i].vat == new_leader));

    // A client holding the whole token, on a host that is not cut off,
    // finds a member that answers and commits.
    put(&lan, others[0], &admin, "names/while-isolated", None)
        .expect_ok("an unpinned write from a connected host");

    lan.rejoin(leader);

    poll("the old leader catches up", || {
        let rows = records(&lan, leader, &admin)?;
        seen(
            rows.iter().any(|(k, _, _)| k == "names/while-isolated"),
            &rows,
        )
    });
}

#[test]
fn a_write_cut_off_in_flight_is_never_answered_as_refused_for_want_of_a_quorum() {
    let lan = Lan::new(&[1, 2]);
    let data = tempfile::tempdir().unwrap();
    let (members, admin) = cluster(&lan, data.path());
    put(&lan, 0, &admin, "names/before", None).expect_ok("a write before the cut");
    let leader_vat = poll("a leader", || {
        leader_seen_by(&lan, 0, &admin, 0)?.ok_or_else(|| "no leader".to_owned())
    });
    let follower = members.iter().position(|m| m.vat != leader_vat).unwrap();

    // Cut the follower off and write through it at once: it forwards the
    // write to the leader before it notices it reaches no quorum, and the
    // forward waits in its connection, unanswered, to be delivered when
    // the cable is back.
    lan.isolate(follower);
    let cut_off = put(&lan, follower, &admin, "names/cut-off", Some(follower));
    assert!(
        !cut_off.ok,
        "a cut-off member committed a write: {cut_off:?}"
    );
    lan.rejoin(follower);

    // A write after it through the same member travels behind it.
    poll("a write through the follower after the rejoin", || {
        let out = put(&lan, follower, &admin, "names/after", Some(follower));
        seen(out.ok, &out)
    });
    let rows = poll("all three members show the same records", || {
        let views: Vec<Vec<Row>> = (0..members.len())
            .map(|i| records(&lan, i, &admin))
            .collect::<Result<_, _>>()?;
        let first = &views[0];
        let complete = first.iter().any(|(k, _, _)| k == "names/after");
        seen(complete && views.iter().all(|v| v == first), &views)?;
        Ok(first.clone())
    });
    let applied = rows.iter().any(|(k, _, _)| k == "names/cut-off");
    let failure = cut_off.failure().unwrap_or_default();
    println!("the cut-off write was applied: {applied}; its answer: {failure}");
    // `NoQuorum` says the write was not applied: it must not answer one
    // that may have been.
    assert!(
        !(applied && failure.starts_with("no quorum")),
        "the write was applied, yet answered as refused for want of a quorum: {failure}"
    );
}
