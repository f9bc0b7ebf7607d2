//! A five-vat federation in the simulator, over many seeds, under random
//! partitions, crashes and restarts.
//!
//! Three counter vats each serve a durable counter supervised by their
//! root supervisor, reached by token; two client vats call each counter
//! through a healing reference and all three through a group. A counter
//! crashes when asked to add 0, so supervision restarts it (and, past its
//! intensity, the vat exits and comes back as a process would). After
//! each seed the invariants below are checked; a failure names its seed
//! and the command that replays it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use captp::Limits;
use rand::Rng;
use schema::demo_capnp::counter;
use sturdyrefs::SturdyRef;
use vat::demo::DurableCounter;
use vat::group::{Group, Strategy};
use vat::sturdy::{healing, object_ref, Durable, HealOptions, StateCell};
use vat::supervise::{ChildSpec, Intensity, Restart, SupervisorBuilder};
use vat_sim::net::LinkConfig;
use vat_sim::property::{self, Verdict};
use vat_sim::{Report, SimBuilder, SimHandle, VatContext};

const COUNTERS: [&str; 3] = ["counter-1", "counter-2", "counter-3"];
const CLIENTS: [&str; 2] = ["client-1", "client-2"];
const PORT: u16 = 7000;
/// What the counters' root supervisors allow.
const INTENSITY: Intensity = Intensity {
    max_restarts: 3,
    period: Duration::from_secs(10),
};
/// Fault phases, each followed by a calm phase that checks recovery.
const PHASES: usize = 2;
const FAULT_PHASE: Duration = Duration::from_secs(12);
/// How long any call may stay unsettled once the network has healed.
const SETTLE: Duration = Duration::from_secs(60);
/// How long a healing reference may take to come back in a calm phase.
const RECOVERY: Duration = Duration::from_secs(20);
const REPLAY: &str = "cargo test -p tests --test sim_federation -- --nocapture";

/// The durable counter of `vat::demo`, panicking when asked to add 0 (the
/// scenario's way to crash it).
struct CrashyCounter {
    counter: Rc<DurableCounter>,
}

impl Durable for CrashyCounter {
    const KIND: &'static str = "counter";
    type State = i64;

    fn revive(value: StateCell<i64>) -> capnp::capability::Client {
        let counter = Rc::new(DurableCounter::new(value));
        vat::export::<counter::Client, _>(CrashyCounter { counter }).client
    }
}

impl counter::Server for CrashyCounter {
    async fn add(
        self: Rc<Self>,
        params: counter::AddParams,
        results: counter::AddResults,
    ) -> Result<(), capnp::Error> {
        assert!(params.get()?.get_by() != 0, "asked to crash");
        counter::Server::add(self.counter.clone(), params, results).await
    }

    async fn get(
        self: Rc<Self>,
        params: counter::GetParams,
        results: counter::GetResults,
    ) -> Result<(), capnp::Error> {
        counter::Server::get(self.counter.clone(), params, results).await
    }
}

/// Where a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Counter(usize),
    Group,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Value(i64),
    Failed(String),
}

#[derive(Debug)]
struct Call {
    client: usize,
    target: Target,
    by: i64,
    outcome: Option<Outcome>,
}

/// What the scenario observes, shared by every vat of the run (they all
/// run on this one thread).
#[derive(Default)]
struct Observed {
    tokens: RefCell<BTreeMap<usize, SturdyRef>>,
    calls: RefCell<Vec<Call>>,
    /// Child starts, by (counter, vat incarnation): simulated times.
    starts: RefCell<BTreeMap<(usize, u32), Vec<Duration>>>,
    /// Each client's healing reference to each counter.
    healing: RefCell<BTreeMap<(usize, usize), counter::Client>>,
    traffic: Cell<bool>,
    crash_calls: Cell<bool>,
    start: Cell<Option<tokio::time::Instant>>,
}

impl Observed {
    fn elapsed(&self) -> Duration {
        let now = tokio::time::Instant::now();
        now.saturating_duration_since(self.start.get().unwrap_or(now))
    }
}

/// The program of counter vat `index`, run at each of its starts.
async fn counter_vat(index: usize, seen: Rc<Observed>, ctx: VatContext) {
    let persistence = match ctx.persistence() {
        Ok(persistence) => persistence,
        Err(error) => {
            ctx.log()
                .record(format_args!("{}: no store: {error}", ctx.name()));
            return;
        }
    };
    let revive = persistence.clone();
    let incarnation = ctx.incarnation();
    let starts = seen.clone();
    let supervisor = SupervisorBuilder::new("counters")
        .intensity(INTENSITY)
        .child(ChildSpec::local("counter", Restart::Permanent, move |_| {
            let at = starts.elapsed();
            starts
                .starts
                .borrow_mut()
                .entry((index, incarnation))
                .or_default()
                .push(at);
            let object = object_ref(CrashyCounter::KIND, 1)?;
            revive.forget(&object);
            revive.durable::<CrashyCounter>(1)
        }))
        .start_root()
        .await;
    let supervisor = match supervisor {
        Ok(supervisor) => supervisor,
        Err(error) => {
            ctx.log()
                .record(format_args!("{}: no supervisor: {error}", ctx.name()));
            return;
        }
    };
    let Ok(stable) = supervisor.child::<counter::Client>("counter") else {
        return;
    };
    let Ok(front) = object_ref("front", 1) else {
        return;
    };
    persistence.provide(front.clone(), stable.client);
    if let Err(error) = ctx.serve(&persistence, PORT, Limits::default()) {
        ctx.log()
            .record(format_args!("{}: cannot serve: {error}", ctx.name()));
        return;
    }
    // The token is minted once, at the first start, and kept (in
    // the store) across every restart, as an operator would.
    if !seen.tokens.borrow().contains_key(&index) {
        match persistence.mint(&front, Default::default()).await {
            Ok(token) => {
                seen.tokens.borrow_mut().insert(index, token);
            }
            Err(error) => {
                ctx.log()
                    .record(format_args!("{}: cannot mint: {error}", ctx.name()));
                return;
            }
        }
    }
    // The program's locals keep the supervisor and store alive.
    let _keep = (supervisor, persistence);
    std::future::pending::<()>().await;
}

/// The program of client vat `index`.
async fn client_vat(index: usize, seen: Rc<Observed>, ctx: VatContext) {
    while seen.tokens.borrow().len() < COUNTERS.len() {
        vat_env::sleep(Duration::from_millis(100)).await;
    }
    let tokens: Vec<SturdyRef> = seen.tokens.borrow().values().cloned().collect();
    let counters: Vec<counter::Client> = tokens
        .into_iter()
        .map(|token| healing(token, Some(ctx.identity().clone()), HealOptions::default()).cast_to())
        .collect();
    for (target, reference) in counters.iter().enumerate() {
        seen.healing
            .borrow_mut()
            .insert((index, target), reference.clone());
    }
    let group = Group::new("counters", Strategy::RoundRobin);
    let _members: Vec<_> = counters.iter().map(|c| group.join(c.clone())).collect();
    let via_group: counter::Client = group.client();
    while seen.traffic.get() {
        let pause = 20 + vat_env::random_below(180);
        vat_env::sleep(Duration::from_millis(pause as u64)).await;
        if !seen.traffic.get() {
            break;
        }
        let pick = vat_env::random_below(COUNTERS.len() + 1);
        let (target, client) = match counters.get(pick) {
            Some(counter) => (Target::Counter(pick), counter.clone()),
            None => (Target::Group, via_group.clone()),
        };
        let by = if seen.crash_calls.get() && vat_env::random_below(40) == 0 {
            0
        } else {
            1
        };
        let id = {
            let mut calls = seen.calls.borrow_mut();
            calls.push(Call {
                client: index,
                target,
                by,
                outcome: None,
            });
            calls.len() - 1
        };
        ctx.log().record(format_args!(
            "client-{} call #{id} {target:?} add({by})",
            index + 1
        ));
        let mut request = client.add_request();
        request.get().set_by(by);
        let promise = request.send().promise;
        let seen = seen.clone();
        let log = ctx.log().clone();
        vat_env::spawn(async move {
            let outcome = match promise.await {
                Ok(response) => match response.get() {
                    Ok(result) => Outcome::Value(result.get_value()),
                    Err(error) => Outcome::Failed(format!("{:?}", error.kind)),
                },
                Err(error) => Outcome::Failed(format!("{:?}", error.kind)),
            };
            log.record(format_args!("call #{id} -> {outcome:?}"));
            if let Some(call) = seen.calls.borrow_mut().get_mut(id) {
                call.outcome = Some(outcome);
            }
        });
    }
    let _keep = (counters, group, via_group);
    std::future::pending::<()>().await;
}

/// Asks counter `target`'s committed value through `client`'s own healing
/// reference to it, until it answers or `within` passes.
async fn read_counter(
    sim: &SimHandle,
    seen: &Rc<Observed>,
    client: usize,
    target: usize,
    within: Duration,
) -> Result<Option<i64>, String> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let seen = seen.clone();
        let value = sim
            .within(CLIENTS[client], move || async move {
                let reference = seen.healing.borrow().get(&(client, target)).cloned()?;
                let call = reference.get_request().send().promise;
                match vat_env::timeout(SETTLE, call).await {
                    Err(_elapsed) => Some(Err(())),
                    Ok(reply) => reply.ok()?.get().ok().map(|r| Ok(r.get_value())),
                }
            })
            .await
            .flatten();
        match value {
            Some(Ok(value)) => return Ok(Some(value)),
            Some(Err(())) => return Err(format!(
                "promises: a get through client-{}'s healing reference to {} did not settle within {SETTLE:?}",
                client + 1,
                COUNTERS[target]
            )),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(None)
}

/// Checks that restarts within any window of the intensity's period never
/// exceeded its maximum.
fn check_intensity(seen: &Observed) -> Verdict {
    for ((counter, incarnation), starts) in seen.starts.borrow().iter() {
        let restarts = starts.get(1..).unwrap_or_default();
        for (i, first) in restarts.iter().enumerate() {
            let within = restarts[i..]
                .iter()
                .take_while(|t| t.saturating_sub(*first) < INTENSITY.period)
                .count();
            if within > INTENSITY.max_restarts {
                return Err(format!(
                    "supervision: {} #{incarnation} restarted its child {within} times within {:?} from {first:?} (intensity allows {})",
                    COUNTERS[*counter], INTENSITY.period, INTENSITY.max_restarts
                ));
            }
        }
    }
    Ok(())
}

/// Checks the calls against the counters' final values.
fn check_calls(seen: &Observed, finals: &[i64]) -> Verdict {
    let calls = seen.calls.borrow();
    if let Some((id, call)) = calls.iter().enumerate().find(|(_, c)| c.outcome.is_none()) {
        return Err(format!(
            "promises: call #{id} ({:?} from client-{}) never settled",
            call.target,
            call.client + 1
        ));
    }
    let sent = calls.iter().filter(|c| c.by == 1).count() as i64;
    let acked = calls
        .iter()
        .filter(|c| c.by == 1 && matches!(c.outcome, Some(Outcome::Value(_))))
        .count() as i64;
    let total: i64 = finals.iter().sum();
    if total < acked {
        return Err(format!(
            "durability: {acked} adds were acknowledged but the counters hold {total} in all ({finals:?})"
        ));
    }
    if total > sent {
        return Err(format!(
            "exactly once: {sent} adds were sent but the counters hold {total} in all ({finals:?}): some add was applied twice"
        ));
    }
    for (counter, final_value) in finals.iter().enumerate() {
        let mut values = BTreeMap::new();
        for (client, _) in CLIENTS.iter().enumerate() {
            let mut last = None;
            for (id, call) in calls.iter().enumerate() {
                if call.client != client || call.target != Target::Counter(counter) || call.by != 1
                {
                    continue;
                }
                let Some(Outcome::Value(value)) = call.outcome else {
                    continue;
                };
                if let Some(before) = values.insert(value, id) {
                    return Err(format!(
                        "durability: {} acknowledged the value {value} twice (calls #{before} and #{id}): an acknowledged add was lost",
                        COUNTERS[counter]
                    ));
                }
                if value > *final_value {
                    return Err(format!(
                        "durability: {} acknowledged {value} (call #{id}) but holds {final_value}",
                        COUNTERS[counter]
                    ));
                }
                if let Some((before_id, before)) = last {
                    if value <= before {
                        return Err(format!(
                            "E-order: client-{} got {before} for call #{before_id} and then {value} for the later call #{id} on its reference to {}",
                            client + 1,
                            COUNTERS[counter]
                        ));
                    }
                }
                last = Some((id, value));
            }
        }
    }
    Ok(())
}

/// One run of the scenario from `builder`'s seed.
fn run(builder: SimBuilder) -> Report<Verdict> {
    let sim = match builder.build() {
        Ok(sim) => sim,
        Err(error) => panic!("cannot build the simulation: {error}"),
    };
    sim.run(|sim| async move {
        let seen = Rc::new(Observed::default());
        seen.start.set(Some(tokio::time::Instant::now()));
        seen.traffic.set(true);
        seen.crash_calls.set(true);
        for (index, name) in COUNTERS.iter().enumerate() {
            let seen = seen.clone();
            sim.add_vat(name, move |ctx| counter_vat(index, seen.clone(), ctx));
        }
        for (index, name) in CLIENTS.iter().enumerate() {
            let seen = seen.clone();
            sim.add_vat(name, move |ctx| client_vat(index, seen.clone(), ctx));
        }
        while seen.tokens.borrow().len() < COUNTERS.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let names: Vec<&str> = COUNTERS.iter().chain(CLIENTS.iter()).copied().collect();
        // Every link of its own kind, drawn from the seed: latency, jitter,
        // and loss (a lost chunk is retransmitted, delaying its stream).
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                let link = LinkConfig {
                    latency: sim.random_duration(Duration::from_micros(200), Duration::from_millis(8)),
                    jitter: sim.random_duration(Duration::ZERO, Duration::from_millis(4)),
                    loss: sim.random(|rng| rng.random_range(0.0..0.03)),
                    ..LinkConfig::default()
                };
                sim.network().set_link(a, b, link);
            }
        }
        for phase in 0..PHASES {
            let end = sim.elapsed() + FAULT_PHASE;
            while sim.elapsed() < end {
                let pause = sim.random_duration(Duration::from_millis(200), Duration::from_secs(3));
                tokio::time::sleep(pause).await;
                let (a, b, fault) = sim.random(|rng| {
                    let a = rng.random_range(0..names.len());
                    let b = (a + rng.random_range(1..names.len())) % names.len();
                    (a, b, rng.random_range(0..6u8))
                });
                match fault {
                    0 => sim.partition(names[a], names[b]),
                    1 => sim.partition_oneway(names[a], names[b]),
                    2 => sim.heal(names[a], names[b]),
                    3 | 4 => {
                        let victim = COUNTERS[a % COUNTERS.len()];
                        sim.crash(victim);
                        let down = sim.random_duration(Duration::from_millis(300), Duration::from_secs(4));
                        let restarter = sim.clone();
                        tokio::task::spawn_local(async move {
                            tokio::time::sleep(down).await;
                            restarter.restart(victim);
                        });
                    }
                    _ => sim.heal_all(),
                }
            }
            // Calm: every link healed, every vat up, no crash calls; each
            // client's healing references must come back.
            seen.crash_calls.set(false);
            sim.heal_all();
            for name in COUNTERS {
                sim.restart(name);
            }
            for client in 0..CLIENTS.len() {
                for (counter, name) in COUNTERS.iter().enumerate() {
                    if read_counter(&sim, &seen, client, counter, RECOVERY).await?.is_none() {
                        return Err(format!(
                            "healing: after the heal of phase {phase}, client-{} could not reach {name} within {RECOVERY:?}",
                            client + 1,
                        ));
                    }
                }
            }
            seen.crash_calls.set(true);
        }
        // The end: traffic stops, everything heals, every promise must
        // settle and the counters must add up.
        seen.traffic.set(false);
        seen.crash_calls.set(false);
        sim.heal_all();
        for name in COUNTERS {
            sim.restart(name);
        }
        tokio::time::sleep(Duration::from_secs(40)).await;
        let mut finals = Vec::new();
        for (counter, name) in COUNTERS.iter().enumerate() {
            match read_counter(&sim, &seen, 0, counter, RECOVERY).await? {
                Some(value) => finals.push(value),
                None => return Err(format!("healing: {name} unreachable at the end")),
            }
        }
        sim.note(format_args!("finals {finals:?}"));
        check_intensity(&seen)?;
        check_calls(&seen, &finals)
    })
}

/// The 500 seeds in two shares, one per core: the harness runs the two
/// tests on threads of their own.
#[test]
fn five_vats_keep_every_invariant_under_partitions_crashes_and_restarts_even_seeds() {
    property::check_share("five_vats", REPLAY, 500, (0, 2), run);
}

#[test]
fn five_vats_keep_every_invariant_under_partitions_crashes_and_restarts_odd_seeds() {
    property::check_share("five_vats", REPLAY, 500, (1, 2), run);
}

#[test]
fn one_seed_gives_one_history_and_another_seed_another() {
    let first = run(SimBuilder::new(7));
    let again = run(SimBuilder::new(7));
    let other = run(SimBuilder::new(8));
    assert!(matches!(first.outcome, Some(Ok(()))), "{:?}", first.outcome);
    assert!(
        first.events > 1000,
        "a run this short proves nothing: {} events",
        first.events
    );
    assert_eq!(first.hash, again.hash, "seed 7 twice: two histories");
    assert_eq!(first.events, again.events);
    assert_ne!(first.hash, other.hash, "seeds 7 and 8: one history");
}

#[test]
fn an_acknowledgement_before_commit_is_caught_and_its_seed_replays_it() {
    let planted = |builder: SimBuilder| run(builder.inject(vat_env::InjectedBug::AckBeforeCommit));
    let (summary, failure) = property::find_failure(0..500, false, planted);
    let Some((seed, reason, report)) = failure else {
        panic!("500 seeds ran with the bug planted ({summary:?}) and none failed");
    };
    eprintln!(
        "the planted bug broke seed {seed} (after {} runs): {reason}",
        summary.seeds
    );
    assert!(reason.starts_with("durability"), "seed {seed}: {reason}");
    let replay = planted(SimBuilder::new(seed));
    assert_eq!(
        replay.hash, report.hash,
        "seed {seed} replayed another history"
    );
    assert_eq!(replay.outcome, Some(Err(reason)));
}
