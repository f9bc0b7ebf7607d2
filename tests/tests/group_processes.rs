//! A group whose three members live in processes of their own, one of
//! which is killed (`kill -9`) under load: every call either succeeds, run
//! exactly once, or fails with `Disconnected` having been in flight on the
//! killed member; no call is run twice or lost, and calls after the kill
//! go on on the other two.
//!
//! The members are the `group_member` binary of this crate: each appends
//! the number of every call it runs to a log file before answering.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::time::Instant;

use schema::demo_capnp::counter;
use tests::PeerProcess;
use vat::group::{Group, Strategy};
use vat::net::Limits;
use vat::{ErrorKind, VatHandle};

const CALLERS: i64 = 8;
const CALLS_EACH: i64 = 60;
/// Calls answered before the kill.
const KILL_AFTER: usize = 150;

fn member(log: &Path) -> PeerProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_group_member"));
    command.arg(log);
    PeerProcess::spawn_command(command)
}

/// The call numbers in a member's log.
fn ran(log: &Path) -> Vec<i64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect()
}

/// One call through the group: its number, when it started, how it ended.
struct Outcome {
    id: i64,
    started: Instant,
    ended: Instant,
    result: Result<i64, vat::Error>,
}

async fn add(counter: &counter::Client, by: i64) -> Result<i64, vat::Error> {
    let mut request = counter.add_request();
    request.get().set_by(by);
    Ok(request.send().promise.await?.get()?.get_value())
}

#[test]
fn killing_one_of_three_member_vats_under_load_loses_no_undelivered_call() {
    let dir = tempfile::tempdir().unwrap();
    let logs: Vec<_> = ["a", "b", "c"].map(|n| dir.path().join(n)).into();
    let mut members: Vec<PeerProcess> = logs.iter().map(|log| member(log)).collect();
    let addrs: Vec<_> = members.iter().map(PeerProcess::addr).collect();
    // The survivors stay here (dropping a guard kills its process).
    let mut victim = Some(members.remove(1));

    let caller = VatHandle::start("caller").unwrap();
    let (outcomes, killed_at, after, reachable) = caller
        .run_async(move || async move {
            let group = Group::new("processes", Strategy::RoundRobin);
            let mut connections = Vec::new();
            for addr in addrs {
                let connection = vat::net::dial(addr, None, Limits::default()).await.unwrap();
                let worker: counter::Client = connection.peer();
                group.join(worker).keep();
                connections.push(connection);
            }
            let workers: counter::Client = group.client();
            let answered = Rc::new(Cell::new(0usize));
            let killed_at: Rc<RefCell<Option<Instant>>> = Rc::default();
            let callers: Vec<_> = (0..CALLERS)
                .map(|caller| {
                    let (workers, answered) = (workers.clone(), answered.clone());
                    let killed_at = killed_at.clone();
                    let mut victim = if caller == 0 { victim.take() } else { None };
                    tokio::task::spawn_local(async move {
                        let mut outcomes = Vec::new();
                        for i in 0..CALLS_EACH {
                            if answered.get() >= KILL_AFTER {
                                if let Some(mut process) = victim.take() {
                                    process.kill();
                                    *killed_at.borrow_mut() = Some(Instant::now());
                                }
                            }
                            let id = caller * 1000 + i + 1;
                            let started = Instant::now();
                            let result = add(&workers, id).await;
                            answered.set(answered.get() + 1);
                            let ended = Instant::now();
                            outcomes.push(Outcome {
                                id,
                                started,
                                ended,
                                result,
                            });
                        }
                        outcomes
                    })
                })
                .collect();
            let mut outcomes = Vec::new();
            for caller in callers {
                outcomes.extend(caller.await.unwrap());
            }
            // After the load: calls keep succeeding on the other two.
            let mut after = Vec::new();
            for i in 0..30 {
                after.push(add(&workers, 100_000 + i).await);
            }
            let reachable: Vec<bool> = group.members().iter().map(|m| m.reachable).collect();
            let killed_at = killed_at.borrow().expect("the member was killed");
            (outcomes, killed_at, after, reachable)
        })
        .wait()
        .unwrap();
    caller.stop().unwrap();

    let logs: Vec<Vec<i64>> = logs.iter().map(|log| ran(log)).collect();
    let mut runs: HashMap<i64, Vec<usize>> = HashMap::new();
    for (member, ids) in logs.iter().enumerate() {
        for id in ids {
            runs.entry(*id).or_default().push(member);
        }
    }
    // No call ran twice.
    for (id, members) in &runs {
        assert_eq!(members.len(), 1, "call {id} ran on members {members:?}");
    }
    // When the caller first saw a call fail: its connection to the killed
    // member had ended by then, so any call started later was refused at
    // once, unsent, and went to another member.
    let first_failure = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.ended)
        .min();
    let mut failed = 0;
    for outcome in &outcomes {
        let ran_on = runs.get(&outcome.id).cloned().unwrap_or_default();
        match &outcome.result {
            Ok(value) => {
                assert_eq!(*value, outcome.id);
                assert_eq!(
                    ran_on.len(),
                    1,
                    "call {} succeeded but ran on {ran_on:?}",
                    outcome.id
                );
            }
            Err(error) => {
                failed += 1;
                assert_eq!(
                    error.kind(),
                    ErrorKind::Disconnected,
                    "call {}: {error}",
                    outcome.id
                );
                // In flight on the killed member: never run elsewhere,
                // started before the first failure was seen, and after the
                // kill was decided.
                assert!(
                    ran_on.iter().all(|&m| m == 1),
                    "call {} ran on {ran_on:?}",
                    outcome.id
                );
                assert!(first_failure.is_some_and(|seen| outcome.started < seen));
                assert!(outcome.ended >= killed_at);
            }
        }
    }
    println!(
        "calls run per member: {:?}; failed (in flight at the kill): {failed}",
        logs.iter().map(Vec::len).collect::<Vec<_>>()
    );
    // At most one call per caller can be in flight on the victim at the kill.
    assert!(failed <= CALLERS as usize, "{failed} calls failed");
    assert_eq!(outcomes.len(), (CALLERS * CALLS_EACH) as usize);
    for (i, result) in after.iter().enumerate() {
        assert_eq!(
            result.as_ref().ok(),
            Some(&(100_000 + i as i64)),
            "{result:?}"
        );
    }
    assert_eq!(reachable, [true, false, true]);
    // Every member ran calls before the kill; the survivors after it.
    assert!(logs.iter().all(|ids| !ids.is_empty()));
    assert!(logs[0].iter().any(|id| *id >= 100_000) && logs[2].iter().any(|id| *id >= 100_000));
}
