//! Supervision in one process: each strategy and policy, the restart
//! intensity and its escalation, stable references across restarts, calls
//! waiting (bounded) for a restart, the crash log, persistent children.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use schema::demo_capnp::counter;
use schema::supervise_capnp::supervisor;
use vat::sturdy::{vat_id, Durable, Persistence, StateCell};
use vat::supervise::{
    Backoff, ChildContext, ChildSpec, ChildStatus, ExitHandle, Intensity, Restart, Strategy,
    SupervisorBuilder, SupervisorState, WaitLimits,
};
use vat::{ErrorKind, VatHandle};

/// What every incarnation of every test child saw: (child, incarnation,
/// argument of `add`), in delivery order.
type Journal = Rc<RefCell<Vec<(String, u64, i64)>>>;

/// `add(-1)` panics; `add(-2)` exits normally; `add(-3)` never answers;
/// any other `add` adds. `get` answers the incarnation number.
struct Fragile {
    name: String,
    incarnation: u64,
    value: Cell<i64>,
    exit: ExitHandle,
    journal: Journal,
}

const CRASH: i64 = -1;
const EXIT: i64 = -2;
const HANG: i64 = -3;

impl counter::Server for Fragile {
    async fn add(
        self: Rc<Self>,
        params: counter::AddParams,
        mut results: counter::AddResults,
    ) -> Result<(), capnp::Error> {
        let by = params.get()?.get_by();
        self.journal
            .borrow_mut()
            .push((self.name.clone(), self.incarnation, by));
        match by {
            CRASH => panic!("{} was asked to crash", self.name),
            EXIT => self.exit.exit_normally(),
            HANG => futures::future::pending::<()>().await,
            _ => self.value.set(self.value.get() + by),
        }
        results.get().set_value(self.value.get());
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        _: counter::GetParams,
        mut results: counter::GetResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_value(self.incarnation as i64);
        Ok(())
    }
}

fn fragile(name: &str, restart: Restart, journal: &Journal) -> ChildSpec {
    let journal = journal.clone();
    let child = name.to_owned();
    ChildSpec::local(name, restart, move |ctx: &ChildContext| {
        Ok(vat::export::<counter::Client, _>(Fragile {
            name: child.clone(),
            incarnation: ctx.incarnation(),
            value: Cell::new(0),
            exit: ctx.exit_handle(),
            journal: journal.clone(),
        })
        .client)
    })
}

async fn add(counter: &counter::Client, by: i64) -> Result<i64, vat::Error> {
    let mut request = counter.add_request();
    request.get().set_by(by);
    Ok(request.send().promise.await?.get()?.get_value())
}

/// The incarnation that answers a call on `counter` now.
async fn incarnation(counter: &counter::Client) -> Result<i64, vat::Error> {
    Ok(counter
        .get_request()
        .send()
        .promise
        .await?
        .get()?
        .get_value())
}

/// Makes `counter` crash; returns the error its call got.
async fn crash(counter: &counter::Client) -> vat::Error {
    add(counter, CRASH).await.unwrap_err()
}

/// Runs `test` inside a fresh vat and stops the vat afterwards.
fn in_vat<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let vat = VatHandle::start("supervising").unwrap();
    vat.run_async(test).wait().unwrap();
    vat.stop().unwrap();
}

/// Lets the supervisor's task run until `condition` holds (liveness only).
async fn until(mut condition: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the condition did not hold within 10 s");
}

fn lots() -> Intensity {
    Intensity::new(1000, Duration::from_secs(60))
}

/// Starts children a, b, c under `strategy`, crashes b, and returns the
/// incarnation of each afterwards.
async fn crash_the_middle_child(strategy: Strategy) -> [i64; 3] {
    let journal = Journal::default();
    let supervisor = SupervisorBuilder::new("three")
        .strategy(strategy)
        .intensity(lots())
        .child(fragile("a", Restart::Permanent, &journal))
        .child(fragile("b", Restart::Permanent, &journal))
        .child(fragile("c", Restart::Permanent, &journal))
        .start()
        .await
        .unwrap();
    let [a, b, c]: [counter::Client; 3] =
        ["a", "b", "c"].map(|name| supervisor.child(name).unwrap());
    for child in [&a, &b, &c] {
        assert_eq!(incarnation(child).await.unwrap(), 1);
    }
    let error = crash(&b).await;
    assert_eq!(error.kind(), ErrorKind::Crashed);
    assert!(error.message().contains("b was asked to crash"), "{error}");
    // A call made before the supervisor acts on the crash may still reach
    // a sibling's old incarnation: wait for the restart to be done.
    until(|| {
        let children = supervisor.children();
        children[1].incarnation == 2 && children.iter().all(|c| c.status == ChildStatus::Running)
    })
    .await;
    let after = [
        incarnation(&a).await.unwrap(),
        incarnation(&b).await.unwrap(),
        incarnation(&c).await.unwrap(),
    ];
    assert_eq!(supervisor.crash_log().len(), 1);
    supervisor.shutdown().await;
    after
}

#[test]
fn one_for_one_restarts_only_the_child_that_crashed() {
    in_vat(|| async {
        assert_eq!(crash_the_middle_child(Strategy::OneForOne).await, [1, 2, 1]);
    });
}

#[test]
fn one_for_all_restarts_every_child() {
    in_vat(|| async {
        assert_eq!(crash_the_middle_child(Strategy::OneForAll).await, [2, 2, 2]);
    });
}

#[test]
fn rest_for_one_restarts_the_child_and_those_started_after_it() {
    in_vat(|| async {
        assert_eq!(
            crash_the_middle_child(Strategy::RestForOne).await,
            [1, 2, 2]
        );
    });
}

#[test]
fn a_sibling_stopped_by_one_for_all_fails_its_call_in_progress() {
    in_vat(|| async {
        let journal = Journal::default();
        let supervisor = SupervisorBuilder::new("pair")
            .strategy(Strategy::OneForAll)
            .intensity(lots())
            .child(fragile("a", Restart::Permanent, &journal))
            .child(fragile("b", Restart::Permanent, &journal))
            .start()
            .await
            .unwrap();
        let a: counter::Client = supervisor.child("a").unwrap();
        let b: counter::Client = supervisor.child("b").unwrap();
        let hanging = tokio::task::spawn_local({
            let a = a.clone();
            async move { add(&a, HANG).await }
        });
        until(|| journal.borrow().len() == 1).await;
        crash(&b).await;
        let error = hanging.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Crashed);
        assert!(
            error
                .message()
                .contains("was stopped to restart with `b` (one-for-all)"),
            "{error}"
        );
        assert_eq!(incarnation(&a).await.unwrap(), 2);
        supervisor.shutdown().await;
    });
}

#[test]
fn permanent_children_restart_even_after_a_normal_exit() {
    in_vat(|| async {
        let journal = Journal::default();
        let supervisor = SupervisorBuilder::new("s")
            .intensity(lots())
            .child(fragile("p", Restart::Permanent, &journal))
            .start()
            .await
            .unwrap();
        let p: counter::Client = supervisor.child("p").unwrap();
        // The call that exits still gets its answer.
        assert_eq!(add(&p, EXIT).await.unwrap(), 0);
        assert_eq!(incarnation(&p).await.unwrap(), 2);
        crash(&p).await;
        assert_eq!(incarnation(&p).await.unwrap(), 3);
        // A normal exit is not a crash.
        assert_eq!(supervisor.crash_log().len(), 1);
        supervisor.shutdown().await;
    });
}

#[test]
fn transient_children_restart_after_a_crash_but_not_after_a_normal_exit() {
    in_vat(|| async {
        let journal = Journal::default();
        let supervisor = SupervisorBuilder::new("s")
            .intensity(lots())
            .child(fragile("t", Restart::Transient, &journal))
            .start()
            .await
            .unwrap();
        let t: counter::Client = supervisor.child("t").unwrap();
        crash(&t).await;
        assert_eq!(incarnation(&t).await.unwrap(), 2);
        assert_eq!(add(&t, EXIT).await.unwrap(), 0);
        let error = incarnation(&t).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Failed);
        assert!(
            error
                .message()
                .contains("is not restarted (transient): exited normally"),
            "{error}"
        );
        assert_eq!(supervisor.children()[0].status, ChildStatus::Exited);
        assert_eq!(supervisor.children()[0].incarnation, 2);
        supervisor.shutdown().await;
    });
}

#[test]
fn temporary_children_are_never_restarted_nor_with_their_siblings() {
    in_vat(|| async {
        let journal = Journal::default();
        let supervisor = SupervisorBuilder::new("s")
            .strategy(Strategy::OneForAll)
            .intensity(lots())
            .child(fragile("temp", Restart::Temporary, &journal))
            .child(fragile("perm", Restart::Permanent, &journal))
            .child(fragile("temp2", Restart::Temporary, &journal))
            .start()
            .await
            .unwrap();
        let temp: counter::Client = supervisor.child("temp").unwrap();
        let perm: counter::Client = supervisor.child("perm").unwrap();
        let temp2: counter::Client = supervisor.child("temp2").unwrap();
        crash(&temp).await;
        let error = incarnation(&temp).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Crashed);
        assert!(
            error.message().contains("is not restarted (temporary)"),
            "{error}"
        );
        // Its crash restarted nobody.
        assert_eq!(incarnation(&perm).await.unwrap(), 1);
        assert_eq!(incarnation(&temp2).await.unwrap(), 1);
        // perm's crash restarts perm; the temporary sibling stops for good.
        crash(&perm).await;
        assert_eq!(incarnation(&perm).await.unwrap(), 2);
        assert_eq!(
            incarnation(&temp2).await.unwrap_err().kind(),
            ErrorKind::Crashed
        );
        let statuses: Vec<ChildStatus> = supervisor.children().iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            [
                ChildStatus::Stopped,
                ChildStatus::Running,
                ChildStatus::Stopped
            ]
        );
        supervisor.shutdown().await;
    });
}

#[test]
fn the_intensity_limit_gives_up_exactly_when_exceeded() {
    in_vat(|| async {
        let journal = Journal::default();
        let gave_up: Rc<RefCell<Vec<String>>> = Rc::default();
        let heard = gave_up.clone();
        let supervisor = SupervisorBuilder::new("strict")
            .intensity(Intensity::new(3, Duration::from_secs(60)))
            .on_give_up(move |error| heard.borrow_mut().push(error.to_string()))
            .child(fragile("x", Restart::Permanent, &journal))
            .child(fragile("y", Restart::Permanent, &journal))
            .start()
            .await
            .unwrap();
        let x: counter::Client = supervisor.child("x").unwrap();
        let y: counter::Client = supervisor.child("y").unwrap();
        for expected in 2..=4 {
            crash(&x).await;
            assert_eq!(incarnation(&x).await.unwrap(), expected);
            assert!(
                gave_up.borrow().is_empty(),
                "gave up after {} restarts",
                expected - 1
            );
            assert_eq!(supervisor.state(), SupervisorState::Running);
        }
        // The fourth restart within the period is one too many.
        crash(&x).await;
        until(|| !gave_up.borrow().is_empty()).await;
        assert_eq!(gave_up.borrow().len(), 1);
        assert!(
            gave_up.borrow()[0].contains("supervisor `strict` gave up after more than 3 restarts"),
            "{:?}",
            gave_up.borrow()
        );
        assert_eq!(supervisor.state(), SupervisorState::Stopped);
        // Every child is stopped, the healthy one too, and calls fail.
        assert_eq!(
            incarnation(&y).await.unwrap_err().kind(),
            ErrorKind::Crashed
        );
        assert_eq!(
            incarnation(&x).await.unwrap_err().kind(),
            ErrorKind::Crashed
        );
        assert_eq!(supervisor.crash_log().len(), 4);
    });
}

#[test]
fn a_supervisor_that_gives_up_is_restarted_by_its_own_supervisor() {
    in_vat(|| async {
        let journal = Journal::default();
        let root_gave_up = Rc::new(Cell::new(false));
        let heard = root_gave_up.clone();
        let workers = SupervisorBuilder::new("workers")
            .intensity(Intensity::new(1, Duration::from_secs(60)))
            .child(fragile("w", Restart::Permanent, &journal));
        let root = SupervisorBuilder::new("root")
            .intensity(Intensity::new(5, Duration::from_secs(60)))
            .on_give_up(move |_| heard.set(true))
            .child(ChildSpec::supervisor(Restart::Permanent, workers))
            .start_root()
            .await
            .unwrap();
        // One root per vat.
        let second = SupervisorBuilder::new("second").start_root().await;
        assert!(second.is_err());
        let sub = root.supervisor("workers").unwrap();
        let w: counter::Client = sub.child("w").unwrap();
        crash(&w).await;
        assert_eq!(incarnation(&w).await.unwrap(), 2);
        assert!(root.crash_log().is_empty());
        // The second restart within the period exceeds `workers`' limit:
        // it gives up, and root restarts it with fresh children.
        crash(&w).await;
        assert_eq!(incarnation(&w).await.unwrap(), 3);
        let log = root.crash_log();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].child, "workers");
        assert!(
            log[0].error.contains("supervisor `workers` gave up"),
            "{}",
            log[0].error
        );
        assert_eq!(root.children()[0].incarnation, 2);
        assert_eq!(sub.state(), SupervisorState::Running);
        assert!(!root_gave_up.get());
        root.shutdown().await;
        // Its place is free again.
        let next = SupervisorBuilder::new("next").start_root().await.unwrap();
        next.shutdown().await;
    });
}

#[test]
fn a_stable_reference_keeps_working_across_100_restarts() {
    in_vat(|| async {
        let journal = Journal::default();
        let supervisor = SupervisorBuilder::new("s")
            .intensity(lots())
            .child(fragile("c", Restart::Permanent, &journal))
            .start()
            .await
            .unwrap();
        let c: counter::Client = supervisor.child("c").unwrap();
        for restart in 1..=100 {
            let error = crash(&c).await;
            assert_eq!(error.kind(), ErrorKind::Crashed, "{error}");
            assert_eq!(add(&c, 1).await.unwrap(), 1, "restart {restart}");
            assert_eq!(incarnation(&c).await.unwrap(), restart + 1);
        }
        assert_eq!(supervisor.children()[0].restarts, 100);
        // Each crash reached exactly one incarnation, once.
        let crashes = journal.borrow().iter().filter(|e| e.2 == CRASH).count();
        assert_eq!(crashes, 100);
        supervisor.shutdown().await;
    });
}

#[test]
fn a_call_in_progress_at_the_crash_fails_with_the_crash_error_and_is_not_rerun() {
    in_vat(|| async {
        let journal = Journal::default();
        let supervisor = SupervisorBuilder::new("s")
            .intensity(lots())
            .child(fragile("c", Restart::Permanent, &journal))
            .start()
            .await
            .unwrap();
        let c: counter::Client = supervisor.child("c").unwrap();
        let hanging = tokio::task::spawn_local({
            let c = c.clone();
            async move { add(&c, HANG).await }
        });
        until(|| journal.borrow().len() == 1).await;
        let crash_error = crash(&c).await;
        let in_progress = hanging.await.unwrap().unwrap_err();
        assert_eq!(in_progress, crash_error);
        assert_eq!(incarnation(&c).await.unwrap(), 2);
        assert_eq!(add(&c, 4).await.unwrap(), 4);
        let delivered: Vec<(u64, i64)> = journal.borrow().iter().map(|e| (e.1, e.2)).collect();
        assert_eq!(delivered, [(1, HANG), (1, CRASH), (2, 4)]);
        supervisor.shutdown().await;
    });
}

#[test]
fn calls_made_while_restarting_wait_and_arrive_in_order_within_their_bound() {
    in_vat(|| async {
        let journal = Journal::default();
        let supervisor = SupervisorBuilder::new("s")
            .intensity(lots())
            .backoff(Backoff::fixed(Duration::from_millis(200)))
            .wait_limits(WaitLimits {
                max_calls: 3,
                max_wait: Duration::from_secs(10),
            })
            .child(fragile("c", Restart::Permanent, &journal))
            .start()
            .await
            .unwrap();
        let c: counter::Client = supervisor.child("c").unwrap();
        crash(&c).await;
        until(|| supervisor.children()[0].status == ChildStatus::Restarting).await;
        let calls: Vec<_> = (1..=4)
            .map(|by| {
                let mut request = c.add_request();
                request.get().set_by(by);
                request.send().promise
            })
            .collect();
        // Polled together, in order: every call reaches the stable
        // reference before the child is back.
        let outcomes: Vec<Result<i64, vat::Error>> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| Ok(r?.get()?.get_value()))
            .collect();
        assert_eq!(
            outcomes[..3]
                .iter()
                .map(|o| o.clone().unwrap())
                .collect::<Vec<_>>(),
            [1, 3, 6]
        );
        let refused = outcomes[3].clone().unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Overloaded);
        assert!(
            refused.message().contains("3 calls already wait"),
            "{refused}"
        );
        let delivered: Vec<i64> = journal
            .borrow()
            .iter()
            .filter(|e| e.1 == 2)
            .map(|e| e.2)
            .collect();
        assert_eq!(delivered, [1, 2, 3]);
        supervisor.shutdown().await;
    });
}

#[test]
fn a_call_that_waits_too_long_fails_undelivered() {
    in_vat(|| async {
        let journal = Journal::default();
        let supervisor = SupervisorBuilder::new("s")
            .intensity(lots())
            .backoff(Backoff::fixed(Duration::from_millis(400)))
            .wait_limits(WaitLimits {
                max_calls: 10,
                max_wait: Duration::from_millis(50),
            })
            .child(fragile("c", Restart::Permanent, &journal))
            .start()
            .await
            .unwrap();
        let c: counter::Client = supervisor.child("c").unwrap();
        crash(&c).await;
        let late = add(&c, 9).await.unwrap_err();
        assert_eq!(late.kind(), ErrorKind::Overloaded);
        assert!(
            late.message().contains("did not come back within 50ms"),
            "{late}"
        );
        until(|| supervisor.children()[0].status == ChildStatus::Running).await;
        assert_eq!(add(&c, 1).await.unwrap(), 1);
        assert!(
            !journal.borrow().iter().any(|e| e.2 == 9),
            "{:?}",
            journal.borrow()
        );
        supervisor.shutdown().await;
    });
}

#[test]
fn the_crash_log_is_read_through_the_supervisors_capability() {
    in_vat(|| async {
        let journal = Journal::default();
        let supervisor = SupervisorBuilder::new("s")
            .intensity(lots())
            .crash_log_capacity(2)
            .child(fragile("c", Restart::Permanent, &journal))
            .child(fragile("d", Restart::Temporary, &journal))
            .start()
            .await
            .unwrap();
        let c: counter::Client = supervisor.child("c").unwrap();
        for _ in 0..3 {
            crash(&c).await;
            incarnation(&c).await.unwrap();
        }
        let service: supervisor::Client = supervisor.service();
        let response = service.crash_log_request().send().promise.await.unwrap();
        let entries = response.get().unwrap().get_entries().unwrap();
        // Capacity 2: the last two crashes.
        assert_eq!(entries.len(), 2);
        let last = entries.get(1);
        assert_eq!(last.get_child().unwrap().to_str().unwrap(), "c");
        assert_eq!(last.get_restarts(), 2);
        assert!(last
            .get_error()
            .unwrap()
            .to_str()
            .unwrap()
            .contains("c was asked to crash"));
        assert!(last.get_time() > 1_600_000_000_000);

        let response = service.children_request().send().promise.await.unwrap();
        let children = response.get().unwrap().get_children().unwrap();
        let listed: Vec<(String, String, u64)> = children
            .iter()
            .map(|c| {
                (
                    c.get_name().unwrap().to_string().unwrap(),
                    c.get_status().unwrap().to_string().unwrap(),
                    c.get_restarts(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("c".into(), "running".into(), 3),
                ("d".into(), "running".into(), 0)
            ]
        );
        // A stable reference through the capability.
        let mut request = service.child_request();
        request.get().set_name("c");
        let reached: counter::Client =
            capnp::capability::Client::new(request.send().pipeline.get_child().as_cap()).cast_to();
        assert_eq!(incarnation(&reached).await.unwrap(), 4);
        let mut request = service.child_request();
        request.get().set_name("nobody");
        let refused = request
            .send()
            .promise
            .await
            .err()
            .map(vat::Error::from)
            .unwrap();
        assert_eq!(refused.kind(), ErrorKind::InvalidArgument);
        supervisor.shutdown().await;
    });
}

#[test]
fn a_factory_must_return_an_object_it_exported() {
    in_vat(|| async {
        let made_before: counter::Client = vat::export(vat::demo::Counter::default());
        let error = SupervisorBuilder::new("s")
            .child(ChildSpec::local(
                "borrowed",
                Restart::Permanent,
                move |_| Ok(made_before.client.clone()),
            ))
            .start()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert!(error.message().contains("did not export"), "{error}");
    });
}

/// A persistent counter that panics on `add(-1)`.
struct Tally(StateCell<i64>);

impl Durable for Tally {
    const KIND: &'static str = "tally";
    type State = i64;
    fn revive(state: StateCell<i64>) -> capnp::capability::Client {
        vat::export::<counter::Client, _>(Tally(state)).client
    }
}

impl counter::Server for Tally {
    async fn add(
        self: Rc<Self>,
        params: counter::AddParams,
        mut results: counter::AddResults,
    ) -> Result<(), capnp::Error> {
        let by = params.get()?.get_by();
        assert!(by != CRASH, "the tally was asked to crash");
        let value = self
            .0
            .update(|n| {
                *n += by;
                *n
            })
            .await?;
        results.get().set_value(value);
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        _: counter::GetParams,
        mut results: counter::GetResults,
    ) -> Result<(), capnp::Error> {
        results
            .get()
            .set_value(self.0.read_committed(|n| *n).await?);
        Ok(())
    }
}

#[test]
fn a_persistent_child_comes_back_with_its_last_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    in_vat(move || async move {
        let identity = vat::net::Identity::generate().unwrap();
        let persistence = Persistence::open(&path, vat_id(identity.public_key())).unwrap();
        let supervisor = SupervisorBuilder::new("s")
            .intensity(lots())
            .child(ChildSpec::durable::<Tally>(
                "tally",
                Restart::Permanent,
                persistence,
                1,
            ))
            .start()
            .await
            .unwrap();
        let tally: counter::Client = supervisor.child("tally").unwrap();
        assert_eq!(add(&tally, 5).await.unwrap(), 5);
        assert_eq!(add(&tally, 2).await.unwrap(), 7);
        let error = crash(&tally).await;
        assert!(
            error.message().contains("the tally was asked to crash"),
            "{error}"
        );
        let value = tally
            .get_request()
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_value();
        assert_eq!(value, 7);
        assert_eq!(supervisor.children()[0].incarnation, 2);
        assert_eq!(add(&tally, 1).await.unwrap(), 8);
        supervisor.shutdown().await;
    });
}
