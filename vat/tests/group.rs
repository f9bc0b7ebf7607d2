//! Groups in one process: each strategy's spread, keyed calls, call-all
//! with errors, join and leave, members in other vats (a refused call goes
//! elsewhere, a delivered one never does, an unreachable member is skipped),
//! supervised members that crash, and a sturdyref naming a group.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use schema::demo_capnp::counter;
use vat::group::{Group, MemberId, Strategy};
use vat::net::{Connection, Limits, Side};
use vat::supervise::{ChildSpec, Intensity, Restart, SupervisorBuilder};
use vat::{ErrorKind, VatHandle};

/// How a worker answers `add`.
#[derive(Clone, Copy)]
enum Pace {
    /// At once.
    Fast,
    /// After this long.
    Slow(Duration),
    /// Never.
    Hang,
}

/// A counter that tallies the calls it served (shared with the test, which
/// may be on another thread) and panics on `add(-1)`.
struct Worker {
    served: Arc<AtomicU64>,
    pace: Pace,
    value: std::cell::Cell<i64>,
}

impl Worker {
    fn export(served: &Arc<AtomicU64>, pace: Pace) -> counter::Client {
        vat::export(Worker {
            served: served.clone(),
            pace,
            value: std::cell::Cell::new(0),
        })
    }
}

impl counter::Server for Worker {
    async fn add(
        self: Rc<Self>,
        params: counter::AddParams,
        mut results: counter::AddResults,
    ) -> Result<(), capnp::Error> {
        let by = params.get()?.get_by();
        self.served.fetch_add(1, Ordering::SeqCst);
        assert!(by != -1, "asked to crash");
        match self.pace {
            Pace::Fast => {}
            Pace::Slow(pause) => tokio::time::sleep(pause).await,
            Pace::Hang => futures::future::pending::<()>().await,
        }
        self.value.set(self.value.get() + by);
        results.get().set_value(self.value.get());
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        _: counter::GetParams,
        mut results: counter::GetResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_value(self.value.get());
        Ok(())
    }
}

async fn add(counter: &counter::Client, by: i64) -> Result<i64, vat::Error> {
    let mut request = counter.add_request();
    request.get().set_by(by);
    Ok(request.send().promise.await?.get()?.get_value())
}

/// Runs `test` inside a fresh vat and stops the vat afterwards.
fn in_vat<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let vat = VatHandle::start("grouping").unwrap();
    vat.run_async(test).wait().unwrap();
    vat.stop().unwrap();
}

fn tallies(n: usize) -> Vec<Arc<AtomicU64>> {
    (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect()
}

fn counts(tallies: &[Arc<AtomicU64>]) -> Vec<u64> {
    tallies.iter().map(|t| t.load(Ordering::SeqCst)).collect()
}

/// A group of `n` fast local workers, kept for the group's lifetime.
fn local_group(strategy: Strategy, tallies: &[Arc<AtomicU64>]) -> Group {
    let group = Group::new("local", strategy);
    for tally in tallies {
        group.join(Worker::export(tally, Pace::Fast)).keep();
    }
    group
}

#[test]
fn round_robin_spreads_exactly() {
    in_vat(|| async {
        let served = tallies(3);
        let group = local_group(Strategy::RoundRobin, &served);
        let workers: counter::Client = group.client();
        for _ in 0..300 {
            add(&workers, 1).await.unwrap();
        }
        assert_eq!(counts(&served), [100, 100, 100]);
        let infos = group.members();
        assert!(infos
            .iter()
            .all(|m| m.calls == 100 && m.in_flight == 0 && m.reachable));
    });
}

#[test]
fn random_stays_within_statistical_bounds() {
    in_vat(|| async {
        const CALLS: u64 = 3000;
        let served = tallies(3);
        let group = local_group(Strategy::Random, &served);
        let workers: counter::Client = group.client();
        for _ in 0..CALLS {
            add(&workers, 1).await.unwrap();
        }
        // Each count is binomial(3000, 1/3): mean 1000, standard deviation
        // 25.8. Five deviations either side fails about once in 3.5 million runs.
        let sd = (CALLS as f64 * (1.0 / 3.0) * (2.0 / 3.0)).sqrt();
        let counts = counts(&served);
        assert_eq!(counts.iter().sum::<u64>(), CALLS);
        for count in &counts {
            let off = (*count as f64 - CALLS as f64 / 3.0).abs();
            assert!(off <= 5.0 * sd, "{counts:?}");
        }
    });
}

#[test]
fn least_in_flight_avoids_a_slow_member() {
    in_vat(|| async {
        let served = tallies(3);
        let group = Group::new("mixed", Strategy::LeastInFlight);
        group
            .join(Worker::export(
                &served[0],
                Pace::Slow(Duration::from_millis(20)),
            ))
            .keep();
        group.join(Worker::export(&served[1], Pace::Fast)).keep();
        group.join(Worker::export(&served[2], Pace::Fast)).keep();
        let workers: counter::Client = group.client();
        // Eight callers, each making its calls one after another.
        let callers = (0..8).map(|_| {
            let workers = workers.clone();
            async move {
                for _ in 0..50 {
                    add(&workers, 1).await.unwrap();
                }
            }
        });
        futures::future::join_all(callers).await;
        let counts = counts(&served);
        assert_eq!(counts.iter().sum::<u64>(), 400);
        // Round-robin would give the slow member a third (133); it holds
        // each call 20 ms while the others answer at once.
        assert!(counts[0] <= 20, "{counts:?}");
    });
}

#[test]
fn a_key_reaches_one_member_while_the_membership_stays() {
    in_vat(|| async {
        let served = tallies(4);
        let group = local_group(Strategy::RoundRobin, &served);
        let mut owners = std::collections::HashSet::new();
        for key in 0..40u32 {
            let keyed: counter::Client = group.with_key(key.to_le_bytes());
            let before = counts(&served);
            for _ in 0..5 {
                add(&keyed, 1).await.unwrap();
            }
            let after = counts(&served);
            let moved: Vec<usize> = (0..4).filter(|&i| after[i] != before[i]).collect();
            assert_eq!(moved.len(), 1, "key {key} reached {moved:?}");
            assert_eq!(after[moved[0]] - before[moved[0]], 5);
            owners.insert(moved[0]);
        }
        assert_eq!(owners.len(), 4, "40 keys should reach every member");
        // Over the wire: `caller(key)` gives the same view.
        let service = group.service();
        let mut request = service.caller_request();
        request.get().set_key(&3u32.to_le_bytes());
        let response = request.send().promise.await.unwrap();
        let remote_view: counter::Client = response
            .get()
            .unwrap()
            .get_caller()
            .get_as_capability()
            .unwrap();
        let local_view: counter::Client = group.with_key(3u32.to_le_bytes());
        let before = counts(&served);
        add(&remote_view, 1).await.unwrap();
        add(&local_view, 1).await.unwrap();
        let after = counts(&served);
        let moved: Vec<u64> = (0..4).map(|i| after[i] - before[i]).collect();
        assert!(moved.contains(&2), "{moved:?}");
    });
}

#[test]
fn call_all_returns_one_entry_per_member_errors_included() {
    in_vat(|| async {
        let served = tallies(3);
        let group = local_group(Strategy::RoundRobin, &served);
        // Crash the second member: it refuses every call from now on.
        let second = group.members()[1].id;
        let replies = group
            .call_all(|worker: counter::Client| async move {
                Ok(worker
                    .get_request()
                    .send()
                    .promise
                    .await?
                    .get()?
                    .get_value())
            })
            .await;
        assert_eq!(replies.len(), 3);
        let crashed = crash_member(&group, second).await;
        assert_eq!(crashed.kind(), ErrorKind::Crashed);

        let replies = group
            .call_all(|worker: counter::Client| async move {
                let mut request = worker.add_request();
                request.get().set_by(10);
                Ok(request.send().promise.await?.get()?.get_value())
            })
            .await;
        let ids: Vec<MemberId> = replies.iter().map(|r| r.member).collect();
        assert_eq!(
            ids,
            group.members().iter().map(|m| m.id).collect::<Vec<_>>()
        );
        assert_eq!(replies[0].outcome, Ok(10));
        assert_eq!(
            replies[1].outcome.as_ref().unwrap_err().kind(),
            ErrorKind::Crashed
        );
        assert_eq!(replies[2].outcome, Ok(10));

        // The same over the wire: `callAll` with `Counter.get`'s empty params.
        let service = group.service();
        let mut request = service.call_all_request();
        request.get().set_interface_id(counter_interface_id());
        request.get().set_method_id(1);
        request
            .get()
            .init_params()
            .init_as::<capnp::any_pointer::Builder>();
        let response = request.send().promise.await.unwrap();
        let replies = response.get().unwrap().get_replies().unwrap();
        assert_eq!(replies.len(), 3);
        let mut errors = 0;
        for reply in replies.iter() {
            match reply.which().unwrap() {
                schema::group_capnp::reply::Ok(answer) => {
                    let value: counter::get_results::Reader = answer.get_as().unwrap();
                    assert_eq!(value.get_value(), 10);
                }
                schema::group_capnp::reply::Error(text) => {
                    errors += 1;
                    let text = text.unwrap().to_str().unwrap().to_owned();
                    assert!(text.starts_with("crashed: "), "{text}");
                    assert_eq!(reply.get_member(), second.get());
                }
            }
        }
        assert_eq!(errors, 1);
    });
}

fn counter_interface_id() -> u64 {
    <counter::Client as capnp::traits::HasTypeId>::TYPE_ID
}

/// Crashes the member `id` by calling it alone with `add(-1)`.
async fn crash_member(group: &Group, id: MemberId) -> vat::Error {
    // `call_all` hands out each member's own capability.
    let replies = group
        .call_all(|worker: counter::Client| async move { Ok(worker) })
        .await;
    let worker = replies
        .into_iter()
        .find(|r| r.member == id)
        .unwrap()
        .outcome
        .unwrap();
    add(&worker, -1).await.unwrap_err()
}

#[test]
fn members_join_and_leave_at_run_time() {
    in_vat(|| async {
        let served = tallies(3);
        let group = Group::new("changing", Strategy::RoundRobin);
        let workers: counter::Client = group.client();
        assert_eq!(
            add(&workers, 1).await.unwrap_err().kind(),
            ErrorKind::Disconnected
        );
        let a = group.join(Worker::export(&served[0], Pace::Fast));
        let b = group.join(Worker::export(&served[1], Pace::Fast));
        for _ in 0..4 {
            add(&workers, 1).await.unwrap();
        }
        assert_eq!(counts(&served), [2, 2, 0]);
        drop(a);
        let c = group.join(Worker::export(&served[2], Pace::Fast));
        for _ in 0..4 {
            add(&workers, 1).await.unwrap();
        }
        assert_eq!(counts(&served), [2, 4, 2]);
        b.leave();
        // Over the wire: the member stays while its membership is held.
        let service = group.service();
        let extra = tallies(1);
        let mut join = service.join_request();
        join.get()
            .init_member()
            .set_as_capability(Worker::export(&extra[0], Pace::Fast).client.hook);
        let membership = join
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_membership()
            .unwrap();
        assert_eq!(group.len(), 2);
        for _ in 0..4 {
            add(&workers, 1).await.unwrap();
        }
        assert_eq!(counts(&served), [2, 4, 4]);
        assert_eq!(counts(&extra), [2]);
        drop(membership);
        // The release travels through capnp-rpc's local machinery.
        for _ in 0..100 {
            if group.len() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(group.len(), 1);
        drop(c);
        assert!(group.is_empty());
    });
}

/// A vat serving one worker over an in-memory pipe.
struct MemberVat {
    vat: VatHandle,
    served: Arc<AtomicU64>,
}

impl MemberVat {
    /// Starts it; returns it and the end of the pipe to dial.
    fn start(name: &str, pace: Pace) -> (MemberVat, vat::net::PipeEnd) {
        let vat = VatHandle::start(name).unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let (ours, theirs) = vat::net::pipe();
        let tally = served.clone();
        vat.run(move || {
            let worker = Worker::export(&tally, pace);
            let _session = Connection::open(
                theirs,
                Side::Acceptor,
                Some(worker.client),
                Limits::default(),
                "pipe",
            );
        })
        .wait()
        .unwrap();
        (MemberVat { vat, served }, ours)
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

/// Joins the worker at the other end of `end` to `group`; returns the connection.
fn join_remote(group: &Group, end: vat::net::PipeEnd) -> Rc<Connection> {
    let connection = Connection::open(end, Side::Dialer, None, Limits::default(), "pipe");
    let worker: counter::Client = connection.peer();
    group.join(worker).keep();
    Rc::new(connection)
}

/// Waits (briefly, for liveness only) until `condition` holds.
async fn until(mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the condition did not hold within 5 s");
}

#[test]
fn a_call_refused_by_a_member_whose_vat_is_gone_goes_to_another() {
    let (dead, dead_end) = MemberVat::start("dead", Pace::Fast);
    let (alive, alive_end) = MemberVat::start("alive", Pace::Fast);
    in_vat(move || async move {
        let group = Group::new("two", Strategy::RoundRobin);
        let gone = join_remote(&group, dead_end);
        let _kept = join_remote(&group, alive_end);
        let workers: counter::Client = group.client();
        add(&workers, 1).await.unwrap();
        add(&workers, 1).await.unwrap();
        assert_eq!((dead.served(), alive.served()), (1, 1));
        let dead_served = dead.served.clone();
        dead.vat.stop().unwrap();
        gone.closed().await.ok();
        // The group has not noticed yet: the next call goes to the dead
        // member, whose connection refuses it at once, unsent.
        assert!(group.members()[0].reachable);
        for _ in 0..10 {
            add(&workers, 1).await.unwrap();
        }
        assert_eq!(alive.served(), 11);
        assert_eq!(dead_served.load(Ordering::SeqCst), 1);
        let infos = group.members();
        assert!(!infos[0].reachable && infos[1].reachable, "{infos:?}");
        // Skipped from then on: one call reached it, refused.
        assert_eq!(infos[0].calls, 2);
        alive.vat.stop().unwrap();
    });
}

#[test]
fn a_call_that_may_have_been_delivered_is_never_sent_again() {
    let (hanging, hanging_end) = MemberVat::start("hanging", Pace::Hang);
    let (other, other_end) = MemberVat::start("other", Pace::Fast);
    in_vat(move || async move {
        let group = Group::new("two", Strategy::RoundRobin);
        let _a = join_remote(&group, hanging_end);
        let _b = join_remote(&group, other_end);
        let workers: counter::Client = group.client();
        let call = tokio::task::spawn_local(async move { add(&workers, 1).await });
        let served = hanging.served.clone();
        until(|| served.load(Ordering::SeqCst) == 1).await;
        hanging.vat.stop().unwrap();
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Disconnected, "{error}");
        assert_eq!(other.served(), 0, "the delivered call was sent again");
        assert!(!group.members()[0].reachable);
        other.vat.stop().unwrap();
    });
}

#[test]
fn an_unreachable_member_is_skipped_and_comes_back_when_it_answers() {
    in_vat(|| async {
        let served = tallies(3);
        let supervisor = SupervisorBuilder::new("pool")
            .intensity(Intensity::new(1000, Duration::from_secs(60)))
            .child(worker_spec("a", &served[0], Pace::Fast))
            .child(worker_spec(
                "b",
                &served[1],
                Pace::Slow(Duration::from_millis(30)),
            ))
            .start()
            .await
            .unwrap();
        let group = Group::new("pool", Strategy::RoundRobin);
        for name in ["a", "b"] {
            group
                .join(supervisor.child::<counter::Client>(name).unwrap())
                .keep();
        }
        let workers: counter::Client = group.client();
        // A call in progress on b when b crashes fails with the crash.
        add(&workers, 1).await.unwrap();
        let in_progress = tokio::task::spawn_local({
            let workers = workers.clone();
            async move { add(&workers, 1).await }
        });
        until(|| served[1].load(Ordering::SeqCst) == 1).await;
        let b: counter::Client = supervisor.child("b").unwrap();
        assert_eq!(add(&b, -1).await.unwrap_err().kind(), ErrorKind::Crashed);
        let error = in_progress.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Crashed, "{error}");
        assert!(!group.members()[1].reachable);
        // Skipped meanwhile; back once a probe reaches its next incarnation.
        let before = served[1].load(Ordering::SeqCst);
        add(&workers, 1).await.unwrap();
        add(&workers, 1).await.unwrap();
        assert_eq!(served[1].load(Ordering::SeqCst), before);
        until(|| group.members()[1].reachable).await;
        add(&workers, 1).await.unwrap();
        add(&workers, 1).await.unwrap();
        assert_eq!(served[1].load(Ordering::SeqCst), before + 1);
        supervisor.shutdown().await;
    });
}

fn worker_spec(name: &str, served: &Arc<AtomicU64>, pace: Pace) -> ChildSpec {
    let served = served.clone();
    ChildSpec::local(name, Restart::Permanent, move |_ctx| {
        Ok(Worker::export(&served, pace).client)
    })
}

#[test]
fn a_group_of_supervised_members_keeps_working_while_one_restarts() {
    in_vat(|| async {
        let served = tallies(3);
        let pace = Pace::Slow(Duration::from_millis(2));
        let supervisor = SupervisorBuilder::new("pool")
            .intensity(Intensity::new(1000, Duration::from_secs(60)))
            .child(worker_spec("a", &served[0], pace))
            .child(worker_spec("b", &served[1], pace))
            .child(worker_spec("c", &served[2], pace))
            .start()
            .await
            .unwrap();
        let group = Group::new("pool", Strategy::RoundRobin);
        for name in ["a", "b", "c"] {
            group
                .join(supervisor.child::<counter::Client>(name).unwrap())
                .keep();
        }
        let workers: counter::Client = group.client();
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let workers = workers.clone();
                tokio::task::spawn_local(async move {
                    let mut outcomes = Vec::new();
                    for _ in 0..50 {
                        outcomes.push(add(&workers, 1).await);
                    }
                    outcomes
                })
            })
            .collect();
        let b: counter::Client = supervisor.child("b").unwrap();
        let mut crashes = 0;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(add(&b, -1).await.unwrap_err().kind(), ErrorKind::Crashed);
            crashes += 1;
        }
        let mut failed = 0;
        for caller in callers {
            for outcome in caller.await.unwrap() {
                if let Err(error) = outcome {
                    // Only calls in progress on b at one of its crashes.
                    assert_eq!(error.kind(), ErrorKind::Crashed, "{error}");
                    failed += 1;
                }
            }
        }
        // At most the four callers' calls in progress at each crash.
        assert!(failed <= 4 * crashes, "{failed} calls failed");
        assert!(supervisor.crash_log().len() >= crashes);
        for _ in 0..30 {
            add(&workers, 1).await.unwrap();
        }
        supervisor.shutdown().await;
    });
}

#[test]
fn a_sturdyref_can_name_a_group() {
    use vat::sturdy::{object_ref, restore, vat_id, Persistence};
    let dir = tempfile::tempdir().unwrap();
    let server = VatHandle::start("server").unwrap();
    let served = tallies(3);
    let path = dir.path().to_path_buf();
    let tally = served.clone();
    let token = server
        .run_async(move || async move {
            let identity = vat::net::Identity::generate().unwrap();
            let persistence = Persistence::open(&path, vat_id(identity.public_key())).unwrap();
            let group = local_group(Strategy::RoundRobin, &tally);
            let object = object_ref("group", 1).unwrap();
            persistence.provide(object.clone(), group.client());
            let listener = vat::net::tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &identity)
                .await
                .unwrap();
            persistence.set_hints(vec![listener.local_addr().to_string().parse().unwrap()]);
            persistence.serve(listener, Limits::default());
            persistence
                .mint(&object, Default::default())
                .await
                .unwrap()
                .to_string()
        })
        .wait()
        .unwrap();
    let holder = VatHandle::start("holder").unwrap();
    let values = holder
        .run_async(move || async move {
            let token = token.parse().unwrap();
            let (object, kind) = restore(&token, None, Limits::default()).await.unwrap();
            assert_eq!(kind, "group");
            let workers: counter::Client = object.cast_to();
            let mut values = Vec::new();
            for _ in 0..6 {
                values.push(add(&workers, 1).await.unwrap());
            }
            values
        })
        .wait()
        .unwrap();
    // Three fresh counters, each called twice in turn.
    assert_eq!(values, [1, 1, 1, 2, 2, 2]);
    assert_eq!(counts(&served), [2, 2, 2]);
    holder.stop().unwrap();
    server.stop().unwrap();
}
