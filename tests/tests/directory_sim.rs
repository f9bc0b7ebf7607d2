//! The directory in the simulator: three members and three clients over
//! many seeds, under random partitions, crashes and restarts, every key's
//! history checked for linearizability.
//!
//! Each member vat serves its persistence, keeps its Raft log on its
//! simulated disk and runs a `DirectoryMember`; the cluster is made once,
//! from the seed. Each client vat holds the admin token and puts and reads
//! (linearizably) a few keys, recording for each operation when it was
//! invoked and when it completed (virtual time) and what it answered. A
//! write that failed without a definite refusal may or may not have taken
//! effect. After the faults heal, every member must hold the same records,
//! and the history of each key, final reads included, must be explained by
//! some order of its operations that respects real time.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use captp::Limits;
use rand::Rng;
use sturdyrefs::{LocationHint, SwissNumber, VatId};
use vat::sturdy::vat_id;
use vat_directory::client::Consistency;
use vat_directory::error::RefusalKind;
use vat_directory::machine::Stored;
use vat_directory::member::RaftTimeouts;
use vat_directory::record::{NameRecord, Record};
use vat_directory::types::Member;
use vat_directory::{
    Cluster, DirectoryClient, DirectoryError, DirectoryMember, DirectoryToken, MemberConfig,
};
use vat_sim::net::LinkConfig;
use vat_sim::property::{self, Verdict};
use vat_sim::{Report, SimBuilder, SimHandle, VatContext};

const MEMBERS: [&str; 3] = ["dir-1", "dir-2", "dir-3"];
const CLIENTS: [&str; 3] = ["client-1", "client-2", "client-3"];
const PORT: u16 = 7100;
const KEYS: [&str; 3] = ["names/a", "names/b", "names/c"];
/// The most operations the clients make on one key in a run (the final
/// read comes on top): small enough for the checker's search.
const OPS_PER_KEY: usize = 24;
/// How long the faults go on.
const FAULT_PHASE: Duration = Duration::from_secs(6);
/// How long a client's call keeps trying members before it answers
/// `Unavailable` (shorter than the client's default, so that a run sees
/// writes whose outcome is unknown).
const CALL_DEADLINE: Duration = Duration::from_secs(8);
/// How long, once everything healed, the members may take to agree and
/// the last operations to complete.
const SETTLE: Duration = Duration::from_secs(60);
const REPLAY: &str = "cargo test -p tests --test directory_sim -- --nocapture";

/// A bug planted in the clients, to show the checker catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    /// None: the clients record what they saw.
    Honest,
    /// A write answered `Unavailable` is taken as not applied: recorded as
    /// refused, and the client writes again under a new request id.
    UnavailableIsNotApplied,
    /// Reads are served by whichever member answers (`Consistency::Any`)
    /// but recorded as linearizable.
    StaleReadAsLinearizable,
}

/// What one operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Not completed yet.
    Pending,
    /// The write was acknowledged (committed).
    Written,
    /// The write failed in a way that does not say whether it was applied.
    Unknown,
    /// The write was refused: nothing was applied.
    Refused,
    /// The read saw this value (`None`: no record).
    Read(Option<u64>),
    /// The read failed: it has no effect, and is left out.
    ReadFailed,
}

/// One operation on one key.
#[derive(Debug, Clone)]
struct Operation {
    client: usize,
    key: usize,
    /// `Some(v)`: a put of value `v` (unique in the run); `None`: a get.
    write: Option<u64>,
    invoked: Duration,
    completed: Option<Duration>,
    outcome: Outcome,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self
            .completed
            .map_or_else(|| "...".to_owned(), |t| format!("{}", t.as_millis()));
        match self.write {
            Some(value) => write!(f, "c{} put v{value}", self.client + 1)?,
            None => write!(f, "c{} get", self.client + 1)?,
        }
        write!(
            f,
            " [{}..{end}] {:?}",
            self.invoked.as_millis(),
            self.outcome
        )
    }
}

/// What the run's vats share (they all run on this one thread).
struct Shared {
    plant: Plant,
    start: tokio::time::Instant,
    cluster: RefCell<Option<Cluster>>,
    admin: RefCell<Option<DirectoryToken>>,
    /// Each member vat's member, as of its latest start.
    members: RefCell<BTreeMap<usize, DirectoryMember>>,
    operations: RefCell<Vec<Operation>>,
    next_value: Cell<u64>,
    traffic: Cell<bool>,
}

impl Shared {
    /// The run's shared state, with every member vat added to `sim`.
    fn with_members(sim: &SimHandle, plant: Plant, traffic: bool) -> Rc<Shared> {
        let shared = Rc::new(Shared {
            plant,
            start: tokio::time::Instant::now(),
            cluster: RefCell::new(None),
            admin: RefCell::new(None),
            members: RefCell::new(BTreeMap::new()),
            operations: RefCell::new(Vec::new()),
            next_value: Cell::new(0),
            traffic: Cell::new(traffic),
        });
        for (index, name) in MEMBERS.iter().enumerate() {
            let shared = shared.clone();
            sim.add_vat(name, move |ctx| member_vat(index, shared.clone(), ctx));
        }
        shared
    }

    fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.start)
    }

    /// Records the invocation of an operation; its index.
    fn invoke(&self, client: usize, key: usize, write: Option<u64>) -> usize {
        let mut operations = self.operations.borrow_mut();
        operations.push(Operation {
            client,
            key,
            write,
            invoked: self.elapsed(),
            completed: None,
            outcome: Outcome::Pending,
        });
        operations.len() - 1
    }

    fn complete(&self, id: usize, outcome: Outcome) {
        let at = self.elapsed();
        if let Some(operation) = self.operations.borrow_mut().get_mut(id) {
            operation.completed = Some(at);
            operation.outcome = outcome;
        }
    }

    fn value(&self) -> u64 {
        let value = self.next_value.get() + 1;
        self.next_value.set(value);
        value
    }

    fn ops_on(&self, key: usize) -> usize {
        self.operations
            .borrow()
            .iter()
            .filter(|o| o.key == key)
            .count()
    }

    fn pending(&self) -> usize {
        self.operations
            .borrow()
            .iter()
            .filter(|o| o.outcome == Outcome::Pending)
            .count()
    }
}

fn record_of(value: u64) -> Record {
    Record::Name(NameRecord {
        refs: vec![format!("v{value}")],
    })
}

/// The value a read saw; `Err` if the record is none the workload wrote.
fn value_of(record: &Record) -> Result<u64, String> {
    match record {
        Record::Name(NameRecord { refs }) => refs
            .first()
            .and_then(|r| r.strip_prefix('v'))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("a record no client wrote: {refs:?}")),
        other => Err(format!("a record no client wrote: {other:?}")),
    }
}

/// The program of member vat `index`, run at each of its starts.
async fn member_vat(index: usize, shared: Rc<Shared>, ctx: VatContext) {
    let fail = |what: &str, error: &dyn fmt::Display| {
        ctx.log()
            .record(format_args!("{}: {what}: {error}", ctx.name()));
    };
    let persistence = match ctx.persistence() {
        Ok(persistence) => persistence,
        Err(error) => return fail("no store", &error),
    };
    if let Err(error) = ctx.serve(&persistence, PORT, Limits::default()) {
        return fail("cannot serve", &error);
    }
    let db = match redb::Database::builder().create_with_backend(ctx.backend("directory.redb")) {
        Ok(db) => db,
        Err(error) => return fail("no database", &error),
    };
    let member = DirectoryMember::start(MemberConfig {
        identity: ctx.identity().clone(),
        persistence: persistence.clone(),
        db,
        limits: Limits::default(),
        timeouts: RaftTimeouts::default(),
    })
    .await;
    let member = match member {
        Ok(member) => member,
        Err(error) => return fail("member did not start", &error),
    };
    // A restarted member finds its cluster in its store; a first start
    // (or one whose store lost it) is handed it.
    if member.cluster().is_none() {
        let Some(cluster) = shared.cluster.borrow().clone() else {
            return fail("no cluster", &"the scenario made none");
        };
        if let Err(error) = member.run(cluster, true).await {
            return fail("cannot run the cluster", &error);
        }
    }
    shared.members.borrow_mut().insert(index, member.clone());
    let _keep = (member, persistence);
    std::future::pending::<()>().await;
}

/// What a failed write says of its effect.
fn write_failure(error: &DirectoryError) -> Outcome {
    match error {
        // A refusal is the state machine's answer to the request itself,
        // the same at every attempt: nothing was applied. Except a retry
        // the directory no longer remembers, which may have been.
        DirectoryError::Refused { kind, .. } if *kind != RefusalKind::Forgotten => Outcome::Refused,
        DirectoryError::Token(_) => Outcome::Refused,
        // NoQuorum ends the client's retries, but an earlier attempt of the
        // same call may have reached a leader: unknown, as Unavailable.
        _ => Outcome::Unknown,
    }
}

/// The program of client vat `index`: puts and reads until traffic stops.
async fn client_vat(index: usize, shared: Rc<Shared>, ctx: VatContext) {
    let Some(token) = shared.admin.borrow().clone() else {
        return;
    };
    let client =
        DirectoryClient::new(token, Some(ctx.identity().clone())).with_deadline(CALL_DEADLINE);
    while shared.traffic.get() {
        let pause = 20 + vat_env::random_below(300);
        vat_env::sleep(Duration::from_millis(pause as u64)).await;
        let open: Vec<usize> = (0..KEYS.len())
            .filter(|k| shared.ops_on(*k) < OPS_PER_KEY)
            .collect();
        if !shared.traffic.get() || open.is_empty() {
            break;
        }
        let key = open[vat_env::random_below(open.len())];
        if vat_env::random_below(2) == 0 {
            let value = shared.value();
            let id = shared.invoke(index, key, Some(value));
            ctx.log().record(format_args!(
                "client-{} op #{id} put {} v{value}",
                index + 1,
                KEYS[key]
            ));
            let outcome = match client.put(KEYS[key], record_of(value)).await {
                Ok(_) => Outcome::Written,
                Err(DirectoryError::Unavailable { .. })
                    if shared.plant == Plant::UnavailableIsNotApplied =>
                {
                    Outcome::Refused
                }
                Err(error) => write_failure(&error),
            };
            ctx.log()
                .record(format_args!("client-{} op #{id} -> {outcome:?}", index + 1));
            shared.complete(id, outcome);
        } else {
            let id = shared.invoke(index, key, None);
            ctx.log().record(format_args!(
                "client-{} op #{id} get {}",
                index + 1,
                KEYS[key]
            ));
            let consistency = match shared.plant {
                Plant::StaleReadAsLinearizable => Consistency::Any,
                _ => Consistency::Linearizable,
            };
            let outcome = match client.get(KEYS[key], consistency).await {
                Ok(read) => match read.value.map(|entry| value_of(&entry.record)).transpose() {
                    Ok(value) => Outcome::Read(value),
                    Err(reason) => {
                        ctx.log()
                            .record(format_args!("client-{}: {reason}", index + 1));
                        // Recorded as the impossible read it is.
                        Outcome::Read(Some(0))
                    }
                },
                Err(_) => Outcome::ReadFailed,
            };
            ctx.log()
                .record(format_args!("client-{} op #{id} -> {outcome:?}", index + 1));
            shared.complete(id, outcome);
        }
    }
    std::future::pending::<()>().await;
}

/// The cluster of `MEMBERS`, with its admin facet's swiss number, drawn
/// from the scenario's seeded stream (`Cluster::generate` draws from the
/// operating system).
fn make_cluster(sim: &SimHandle) -> Result<(Cluster, SwissNumber, DirectoryToken), String> {
    let mut members = Vec::new();
    let mut refs: Vec<(VatId, Vec<LocationHint>)> = Vec::new();
    for name in MEMBERS {
        let key = sim.key(name).ok_or(format!("{name} has no key"))?;
        let vat = vat_id(key);
        let hint = format!("{name}:{PORT}");
        members.push(Member {
            vat: vat.to_string(),
            hints: vec![hint.clone()],
        });
        let hint = LocationHint::parse(&hint).map_err(|e| e.to_string())?;
        refs.push((vat, vec![hint]));
    }
    let (id, admin, peers) = sim.random(|rng| {
        let (mut id, mut admin, mut peers) = ([0u8; 16], [0u8; 32], [0u8; 32]);
        rng.fill(&mut id);
        rng.fill(&mut admin);
        rng.fill(&mut peers);
        (id, admin, peers)
    });
    let admin = SwissNumber::from_bytes(admin);
    let cluster = Cluster {
        id,
        members,
        admin: *admin.hash().as_bytes(),
        peers,
    };
    cluster.check().map_err(|e| e.to_string())?;
    let token = DirectoryToken::new(&refs, &admin).map_err(|e| e.to_string())?;
    Ok((cluster, admin, token))
}

/// What one member holds, read inside its vat.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    records: BTreeMap<String, Stored>,
    /// Its Raft state, for a failure's report.
    status: String,
}

/// Each member's records, read inside its vat; `None` for a member down
/// or not started.
async fn held(sim: &SimHandle, shared: &Rc<Shared>) -> Vec<Option<Held>> {
    let mut all = Vec::new();
    for (index, name) in MEMBERS.iter().enumerate() {
        let shared = shared.clone();
        let records = sim
            .within(name, move || async move {
                let member = shared.members.borrow().get(&index).cloned()?;
                let machine = member.machine();
                let records = machine.borrow().records().clone();
                let status = match (member.status(), member.raft()) {
                    (Ok(status), Some(raft)) => {
                        let metrics = raft.metrics();
                        let metrics =
                            openraft::async_runtime::WatchReceiver::borrow_watched(&metrics);
                        format!(
                            "{:?} term {} last log {:?} committed {} applied {} leader {:?}",
                            metrics.state,
                            status.term,
                            metrics.last_log_index,
                            status.commit_index,
                            status.applied_index,
                            status.leader.as_deref().map(|l| &l[..8])
                        )
                    }
                    (Err(error), _) => format!("no status: {error}"),
                    (_, None) => "not running".to_owned(),
                };
                Some(Held { records, status })
            })
            .await
            .flatten();
        all.push(records);
    }
    all
}

/// A linearizable read of every key by the first client, recorded in the
/// history like the clients' own. A read that fails (a member restarted a
/// moment ago reaches no quorum yet) has no effect and is tried again, up
/// to [`SETTLE`].
async fn final_reads(sim: &SimHandle, shared: &Rc<Shared>) -> Verdict {
    let Some(token) = shared.admin.borrow().clone() else {
        return Err("no admin token".to_owned());
    };
    let deadline = sim.elapsed() + SETTLE;
    for (key, name) in KEYS.iter().enumerate() {
        loop {
            let (shared, token) = (shared.clone(), token.clone());
            let read = sim
                .within(CLIENTS[0], move || async move {
                    let client = DirectoryClient::new(token, None);
                    let invoked = shared.elapsed();
                    let read = client.get(name, Consistency::Linearizable).await;
                    let read = read.map_err(|e| e.to_string())?;
                    let value = read.value.map(|e| value_of(&e.record)).transpose()?;
                    shared.operations.borrow_mut().push(Operation {
                        client: 0,
                        key,
                        write: None,
                        invoked,
                        completed: Some(shared.elapsed()),
                        outcome: Outcome::Read(value),
                    });
                    Ok::<(), String>(())
                })
                .await;
            match read {
                Some(Ok(())) => break,
                Some(Err(reason)) if sim.elapsed() >= deadline => {
                    return Err(format!(
                        "availability: {name} still unreadable {SETTLE:?} after the heal: {reason}"
                    ))
                }
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
                None => return Err(format!("{} is down", CLIENTS[0])),
            }
        }
    }
    Ok(())
}

/// One run of the scenario from `builder`'s seed, with `plant` in the
/// clients.
fn scenario(builder: SimBuilder, plant: Plant) -> Report<Verdict> {
    let sim = match builder.max_simulated(Duration::from_secs(600)).build() {
        Ok(sim) => sim,
        Err(error) => panic!("cannot build the simulation: {error}"),
    };
    sim.run(move |sim| async move {
        let shared = Shared::with_members(&sim, plant, true);
        // Every member's key exists once it started: the cluster can be
        // made before any of their programs runs.
        let (cluster, _admin, token) = make_cluster(&sim)?;
        *shared.cluster.borrow_mut() = Some(cluster);
        *shared.admin.borrow_mut() = Some(token);
        for (index, name) in CLIENTS.iter().enumerate() {
            let shared = shared.clone();
            sim.add_vat(name, move |ctx| client_vat(index, shared.clone(), ctx));
        }
        let names: Vec<&str> = MEMBERS.iter().chain(CLIENTS.iter()).copied().collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                let link = LinkConfig {
                    latency: sim.random_duration(Duration::from_micros(200), Duration::from_millis(8)),
                    jitter: sim.random_duration(Duration::ZERO, Duration::from_millis(4)),
                    loss: sim.random(|rng| rng.random_range(0.0..0.02)),
                    ..LinkConfig::default()
                };
                sim.network().set_link(a, b, link);
            }
        }
        // Faults: a link cut (one way or both), a heal, or a member killed
        // and started again a little later.
        let end = sim.elapsed() + FAULT_PHASE;
        while sim.elapsed() < end {
            let pause = sim.random_duration(Duration::from_millis(200), Duration::from_millis(2500));
            tokio::time::sleep(pause).await;
            let (member, other, fault) = sim.random(|rng| {
                let member = rng.random_range(0..MEMBERS.len());
                let other = (member + rng.random_range(1..names.len())) % names.len();
                (member, other, rng.random_range(0..6u8))
            });
            let (a, b) = (MEMBERS[member], names[other]);
            match fault {
                0 => sim.partition(a, b),
                1 => sim.partition_oneway(a, b),
                2 => sim.heal(a, b),
                3 | 4 => {
                    sim.crash(a);
                    let down = sim.random_duration(Duration::from_millis(300), Duration::from_secs(4));
                    let restarter = sim.clone();
                    tokio::task::spawn_local(async move {
                        tokio::time::sleep(down).await;
                        restarter.restart(a);
                    });
                }
                _ => sim.heal_all(),
            }
        }
        // The end: traffic stops, everything heals, every operation must
        // complete and every member must come to hold the same records.
        shared.traffic.set(false);
        sim.heal_all();
        for name in MEMBERS {
            sim.restart(name);
        }
        let deadline = sim.elapsed() + SETTLE;
        while shared.pending() > 0 {
            if sim.elapsed() >= deadline {
                return Err(format!(
                    "liveness: {} operations still pending {SETTLE:?} after the heal",
                    shared.pending()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        final_reads(&sim, &shared).await?;
        let deadline = sim.elapsed() + SETTLE;
        loop {
            let all = held(&sim, &shared).await;
            let records = |h: &Option<Held>| h.as_ref().map(|h| h.records.clone());
            if all.iter().all(|h| h.is_some() && records(h) == records(&all[0])) {
                break;
            }
            if sim.elapsed() >= deadline {
                let summary: Vec<String> = all
                    .iter()
                    .zip(MEMBERS)
                    .map(|(h, name)| match h {
                        None => format!("{name}: down"),
                        Some(held) => {
                            let values: Vec<String> = held
                                .records
                                .iter()
                                .map(|(k, v)| format!("{k}={:?}@{}", value_of(&v.record), v.index))
                                .collect();
                            format!("{name}: {} [{}]", held.status, values.join(" "))
                        }
                    })
                    .collect();
                return Err(format!(
                    "agreement: {SETTLE:?} after the heal the members still hold different records:\n  {}",
                    summary.join("\n  ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let operations = shared.operations.borrow().clone();
        sim.note(format_args!("{} operations", operations.len()));
        for (key, name) in KEYS.iter().enumerate() {
            let history: Vec<Operation> = operations
                .iter()
                .filter(|o| o.key == key)
                .cloned()
                .collect();
            check_register(&history).map_err(|reason| format!("linearizability: {name}: {reason}"))?;
        }
        Ok(())
    })
}

// ---- the checker -----------------------------------------------------------

/// One operation as the checker sees it.
#[derive(Debug, Clone, Copy)]
struct Event {
    invoked: Duration,
    /// `None`: a write whose outcome is unknown, which may take effect at
    /// any point after its invocation, or never.
    completed: Option<Duration>,
    /// `Some(v)`: writes `v`; `None`: a read.
    write: Option<u64>,
    /// What a read saw.
    read: Option<u64>,
}

/// Whether the history of one register (one key, initially absent) is
/// linearizable: some order of its operations, each taking effect at one
/// point between its invocation and its completion, in which every read
/// sees the latest write. Refused writes and failed reads are left out;
/// unknown writes may take effect (once) or not. A search over which
/// operations have taken effect and the register's value, memoised
/// (Wing & Gong, with Lowe's cache).
fn check_register(history: &[Operation]) -> Verdict {
    let mut events: Vec<Event> = Vec::new();
    for op in history {
        let event = match (op.write, op.outcome) {
            (Some(value), Outcome::Written) => Event {
                invoked: op.invoked,
                completed: op.completed,
                write: Some(value),
                read: None,
            },
            (Some(value), Outcome::Unknown) => Event {
                invoked: op.invoked,
                completed: None,
                write: Some(value),
                read: None,
            },
            (None, Outcome::Read(value)) => Event {
                invoked: op.invoked,
                completed: op.completed,
                write: None,
                read: value,
            },
            (_, Outcome::Refused | Outcome::ReadFailed) => continue,
            (_, outcome) => return Err(format!("operation {op} ended as {outcome:?}")),
        };
        events.push(event);
    }
    events.sort_by_key(|e| e.invoked);
    if events.len() > 64 {
        return Err(format!(
            "{} operations: more than the checker takes",
            events.len()
        ));
    }
    // A read of a value nobody (possibly) wrote cannot be explained.
    let written: HashSet<u64> = events.iter().filter_map(|e| e.write).collect();
    if let Some(op) = history.iter().find(|o| match o.outcome {
        Outcome::Read(Some(v)) => !written.contains(&v),
        _ => false,
    }) {
        return Err(format!(
            "{op} saw a value no write that may have happened wrote"
        ));
    }
    let required: u64 = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.completed.is_some())
        .fold(0, |mask, (i, _)| mask | 1 << i);
    let mut seen = HashSet::new();
    if linearize(&events, required, 0, None, &mut seen) {
        return Ok(());
    }
    let lines: Vec<String> = history.iter().map(|o| o.to_string()).collect();
    Err(format!(
        "no order explains its {} operations:\n    {}",
        history.len(),
        lines.join("\n    ")
    ))
}

/// Whether the events not in `done` can follow, from the register holding
/// `value`, with every event of `required` taking effect.
fn linearize(
    events: &[Event],
    required: u64,
    done: u64,
    value: Option<u64>,
    seen: &mut HashSet<(u64, Option<u64>)>,
) -> bool {
    if done & required == required {
        return true;
    }
    if !seen.insert((done, value)) {
        return false;
    }
    // Whatever takes effect next must have been invoked before the first
    // completion among the operations still to take effect.
    let horizon = events
        .iter()
        .enumerate()
        .filter(|(i, _)| done & (1 << i) == 0)
        .filter_map(|(_, e)| e.completed)
        .min();
    for (i, event) in events.iter().enumerate() {
        if done & (1 << i) != 0 {
            continue;
        }
        if horizon.is_some_and(|h| event.invoked > h) {
            break;
        }
        let next = match event.write {
            Some(written) => Some(written),
            None if event.read == value => value,
            None => continue,
        };
        if linearize(events, required, done | 1 << i, next, seen) {
            return true;
        }
    }
    false
}

// ---- the tests -------------------------------------------------------------

fn honest(builder: SimBuilder) -> Report<Verdict> {
    scenario(builder, Plant::Honest)
}

/// The 500 seeds in two shares, one per core: the harness runs the two
/// tests on threads of their own.
#[test]
fn every_key_stays_linearizable_under_partitions_crashes_and_restarts_even_seeds() {
    property::check_share("directory", REPLAY, 500, (0, 2), honest);
}

#[test]
fn every_key_stays_linearizable_under_partitions_crashes_and_restarts_odd_seeds() {
    property::check_share("directory", REPLAY, 500, (1, 2), honest);
}

#[test]
fn one_seed_gives_one_history() {
    let first = honest(SimBuilder::new(11));
    let again = honest(SimBuilder::new(11));
    assert!(matches!(first.outcome, Some(Ok(()))), "{:?}", first.outcome);
    assert!(
        first.events > 1000,
        "a run this short proves nothing: {} events",
        first.events
    );
    assert_eq!(first.events, again.events, "seed 11 twice: two histories");
    assert_eq!(first.hash, again.hash, "seed 11 twice: two histories");
}

fn operation(
    key: usize,
    write: Option<u64>,
    span: (u64, Option<u64>),
    outcome: Outcome,
) -> Operation {
    Operation {
        client: 0,
        key,
        write,
        invoked: Duration::from_millis(span.0),
        completed: span.1.map(Duration::from_millis),
        outcome,
    }
}

#[test]
fn the_checker_accepts_and_refuses_what_it_should() {
    use Outcome::{Read, Refused, Unknown, Written};
    let put = |v, from, to, outcome| operation(0, Some(v), (from, Some(to)), outcome);
    let get = |seen, from, to| operation(0, None, (from, Some(to)), Read(seen));
    // Sequential: a read sees the last write.
    assert!(check_register(&[put(1, 0, 10, Written), get(Some(1), 20, 30)]).is_ok());
    // A stale read after a completed write.
    assert!(check_register(&[
        put(1, 0, 10, Written),
        put(2, 20, 30, Written),
        get(Some(1), 40, 50)
    ])
    .is_err());
    // Overlapping writes: either order.
    assert!(check_register(&[
        put(1, 0, 30, Written),
        put(2, 10, 40, Written),
        get(Some(1), 50, 60)
    ])
    .is_ok());
    // A read of an absent key before any write; then not after one.
    assert!(check_register(&[get(None, 0, 5), put(1, 10, 20, Written)]).is_ok());
    assert!(check_register(&[put(1, 0, 10, Written), get(None, 20, 30)]).is_err());
    // An unknown write may take effect late, or never.
    assert!(check_register(&[
        put(1, 0, 10, Unknown),
        get(None, 20, 30),
        get(Some(1), 40, 50)
    ])
    .is_ok());
    assert!(check_register(&[put(1, 0, 10, Unknown), get(None, 20, 30)]).is_ok());
    // ... but at most once: it cannot be seen, replaced, then seen again.
    assert!(check_register(&[
        put(1, 0, 10, Unknown),
        get(Some(1), 20, 30),
        put(2, 40, 50, Written),
        get(Some(2), 60, 70),
        get(Some(1), 80, 90)
    ])
    .is_err());
    // A refused write never takes effect.
    assert!(check_register(&[put(1, 0, 10, Refused), get(Some(1), 20, 30)]).is_err());
    // Two reads that saw the writes in opposite orders.
    assert!(check_register(&[
        put(1, 0, 100, Written),
        put(2, 0, 100, Written),
        get(Some(1), 10, 20),
        get(Some(2), 30, 40),
        get(Some(1), 50, 60)
    ])
    .is_err());
}

/// Runs `plant` over seeds until the checker fails one; asserts the failure
/// is a linearizability violation and that the seed replays it.
fn planted_bug_is_caught(plant: Plant) {
    let planted = |builder: SimBuilder| scenario(builder, plant);
    let (summary, failure) = property::find_failure(0..500, false, planted);
    let Some((seed, reason, report)) = failure else {
        panic!("500 seeds ran with {plant:?} planted ({summary:?}) and none failed");
    };
    eprintln!(
        "{plant:?} broke seed {seed} (after {} runs): {reason}",
        summary.seeds
    );
    assert!(
        reason.starts_with("linearizability"),
        "seed {seed}: {reason}"
    );
    let replay = planted(SimBuilder::new(seed));
    assert_eq!(
        replay.hash, report.hash,
        "seed {seed} replayed another history"
    );
    assert_eq!(replay.outcome, Some(Err(reason)));
}

// The first seed this breaks is 477 (about four minutes): writes answered
// `Unavailable` that did commit, and are then read, are rare. Run it with
// `-- --ignored`.
#[test]
#[ignore = "first caught at seed 477 of 500: too slow for CI"]
fn a_client_taking_unavailable_for_not_applied_is_caught_and_its_seed_replays_it() {
    planted_bug_is_caught(Plant::UnavailableIsNotApplied);
}

#[test]
fn a_stale_read_recorded_as_linearizable_is_caught_and_its_seed_replays_it() {
    planted_bug_is_caught(Plant::StaleReadAsLinearizable);
}

/// A member whose links are slower than one heartbeat's round trip (a far
/// region) still gets every write: openraft bounds an append by the
/// heartbeat interval, which alone would time every append to it out.
#[test]
fn a_member_behind_a_link_slower_than_a_heartbeat_still_catches_up() {
    const WRITES: usize = 30;
    let sim = SimBuilder::new(7)
        .max_simulated(Duration::from_secs(120))
        .build()
        .unwrap_or_else(|error| panic!("cannot build the simulation: {error}"));
    let report = sim.run(move |sim| async move {
        let shared = Shared::with_members(&sim, Plant::Honest, false);
        let (cluster, _admin, token) = make_cluster(&sim)?;
        *shared.cluster.borrow_mut() = Some(cluster);
        sim.add_vat(CLIENTS[0], |_ctx| std::future::pending::<()>());
        let heartbeat = RaftTimeouts::default().heartbeat;
        let fast = LinkConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            ..LinkConfig::default()
        };
        // One way alone takes a heartbeat: no answer comes back within it.
        let slow = LinkConfig {
            latency: heartbeat,
            ..fast
        };
        let names: Vec<&str> = MEMBERS.iter().chain(&CLIENTS[..1]).copied().collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                let far = *a == MEMBERS[2] || *b == MEMBERS[2];
                let link = if far && !b.starts_with("client") {
                    slow
                } else {
                    fast
                };
                sim.network().set_link(a, b, link);
            }
        }
        let written = sim
            .within(CLIENTS[0], move || async move {
                let client = DirectoryClient::new(token, None);
                let mut last = 0;
                for n in 0..WRITES {
                    last = client
                        .put(&format!("names/far/{n}"), record_of(n as u64))
                        .await
                        .map_err(|e| format!("write {n}: {e}"))?;
                }
                Ok::<u64, String>(last)
            })
            .await
            .ok_or("the client is down")??;
        let deadline = sim.elapsed() + SETTLE;
        loop {
            let all = held(&sim, &shared).await;
            let far = all[2].as_ref().map_or(0, |h| h.records.len());
            if far == WRITES {
                return Ok(());
            }
            if sim.elapsed() >= deadline {
                return Err(format!(
                    "the far member holds {far} of {WRITES} records {SETTLE:?} after write {written} \
                     was acknowledged: {:?}",
                    all[2].as_ref().map(|h| &h.status)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    assert!(
        matches!(report.outcome, Some(Ok(()))),
        "{:?}",
        report.outcome
    );
}
