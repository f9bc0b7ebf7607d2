//! The simulator: vats, network and disks of a whole federation on one
//! thread, on tokio's paused clock, every choice drawn from one seed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use captp::{Identity, Limits, PublicKey};
use futures::future::LocalBoxFuture;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sturdyrefs::{LocationHint, RedbStore, Store, StoreError};
use tokio::task::LocalSet;
use vat::sturdy::Persistence;
use vat::{HostedVat, VatBuilder};
use vat_env::InjectedBug;

use crate::disk::Disk;
use crate::event;
use crate::log::EventLog;
use crate::net::{LinkConfig, Listener, Network};
use crate::transport::{hello, key_of, SimTransport};
use crate::world::VatWorld;

/// The file of a vat's store on its simulated disk.
const STORE_FILE: &str = "vat.redb";

/// The longest a scenario may run in simulated time before the run is
/// called hung.
const DEFAULT_MAX_SIMULATED: Duration = Duration::from_secs(3600);

/// How a simulation is set up: its seed, network, disks and planted bugs.
#[derive(Debug, Clone)]
pub struct SimBuilder {
    seed: u64,
    link: LinkConfig,
    disk_delay: (Duration, Duration),
    bugs: Vec<InjectedBug>,
    restart_exited_after: Option<Duration>,
    max_simulated: Duration,
    echo: bool,
}

impl SimBuilder {
    /// A simulation whose every choice follows from `seed`.
    pub fn new(seed: u64) -> SimBuilder {
        SimBuilder {
            seed,
            link: LinkConfig::default(),
            disk_delay: (Duration::from_micros(200), Duration::from_millis(3)),
            bugs: Vec::new(),
            restart_exited_after: Some(Duration::from_secs(1)),
            max_simulated: DEFAULT_MAX_SIMULATED,
            echo: false,
        }
    }

    /// The link every pair of hosts starts with.
    pub fn link(mut self, link: LinkConfig) -> SimBuilder {
        self.link = link;
        self
    }

    /// How long a durable write takes, drawn uniformly between `low` and
    /// `high` for each commit (default 0.2 ms to 3 ms).
    pub fn disk_delay(mut self, low: Duration, high: Duration) -> SimBuilder {
        self.disk_delay = (low, high);
        self
    }

    /// Plants `bug` in every vat, to check that a property run finds it.
    pub fn inject(mut self, bug: InjectedBug) -> SimBuilder {
        self.bugs.push(bug);
        self
    }

    /// Starts a vat that stopped by itself (its root supervisor gave up)
    /// again after `delay`, as systemd's `Restart=on-failure` would
    /// (`None`: leave it down). Default: 1 s.
    pub fn restart_exited_after(mut self, delay: Option<Duration>) -> SimBuilder {
        self.restart_exited_after = delay;
        self
    }

    /// The simulated time after which a scenario that has not finished is
    /// stopped as hung (default: one hour).
    pub fn max_simulated(mut self, limit: Duration) -> SimBuilder {
        self.max_simulated = limit;
        self
    }

    /// Prints every event to standard error as it happens (for replays).
    pub fn echo(mut self, echo: bool) -> SimBuilder {
        self.echo = echo;
        self
    }

    /// Builds the simulation's runtime, network and log.
    ///
    /// # Errors
    /// If tokio cannot build a runtime.
    pub fn build(self) -> io::Result<Sim> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()?;
        let log = EventLog::new();
        log.echo(self.echo);
        let rng = Rc::new(RefCell::new(ChaCha8Rng::seed_from_u64(
            crate::world::stream_seed(self.seed, "network", 0),
        )));
        let start = runtime.block_on(async { tokio::time::Instant::now() });
        let net = Network::new(rng, log.clone());
        net.set_default_link(self.link);
        let state = Rc::new(State {
            scenario_rng: RefCell::new(ChaCha8Rng::seed_from_u64(crate::world::stream_seed(
                self.seed, "scenario", 0,
            ))),
            config: self,
            log,
            net,
            vats: RefCell::new(BTreeMap::new()),
            start,
        });
        Ok(Sim {
            runtime,
            root: LocalSet::new(),
            state,
        })
    }
}

/// A built simulation, ready to run one scenario.
pub struct Sim {
    runtime: tokio::runtime::Runtime,
    root: LocalSet,
    state: Rc<State>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Report<T> {
    /// What the scenario returned, or `None` if it did not finish within
    /// the simulated time allowed.
    pub outcome: Option<T>,
    /// The SHA-256 of the whole event log.
    pub hash: String,
    /// How many events the log holds.
    pub events: u64,
    /// The simulated time the run took.
    pub simulated: Duration,
    /// The last events, for a failure report.
    pub tail: Vec<String>,
}

impl Sim {
    /// Runs `scenario` to its end (or until the simulated time allowed
    /// runs out), then stops every vat.
    pub fn run<F, Fut, T>(self, scenario: F) -> Report<T>
    where
        F: FnOnce(SimHandle) -> Fut,
        Fut: Future<Output = T> + 'static,
        T: 'static,
    {
        let handle = SimHandle {
            state: self.state.clone(),
        };
        let limit = self.state.config.max_simulated;
        let pump = self.state.net.run();
        let scenario = scenario(handle.clone());
        let teardown = handle.clone();
        let outcome = self.root.block_on(&self.runtime, async move {
            tokio::task::spawn_local(pump);
            let outcome = tokio::time::timeout(limit, scenario).await.ok();
            if outcome.is_none() {
                event!(teardown.state.log, "sim hung: not done after {limit:?}");
            }
            teardown.stop_all();
            // Let the vats' last tasks see their streams go.
            tokio::task::yield_now().await;
            outcome
        });
        let log = &self.state.log;
        Report {
            outcome,
            hash: log.hash(),
            events: log.len(),
            simulated: self
                .runtime
                .block_on(async { tokio::time::Instant::now() })
                .saturating_duration_since(self.state.start),
            tail: log.tail(40),
        }
    }
}

struct State {
    config: SimBuilder,
    log: EventLog,
    net: Network,
    scenario_rng: RefCell<ChaCha8Rng>,
    vats: RefCell<BTreeMap<String, Slot>>,
    start: tokio::time::Instant,
}

type Program = Rc<dyn Fn(VatContext) -> LocalBoxFuture<'static, ()>>;

struct Slot {
    program: Program,
    disk: Disk,
    identity: Option<Identity>,
    incarnation: u32,
    running: Option<HostedVat>,
}

/// The scenario's hold on the simulation: vats, faults, time, randomness.
/// Call it from the scenario (not from inside a vat).
#[derive(Clone)]
pub struct SimHandle {
    state: Rc<State>,
}

impl SimHandle {
    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.state.config.seed
    }

    /// The event log.
    pub fn log(&self) -> &EventLog {
        &self.state.log
    }

    /// Records a scenario event: `sim.note(format_args!(..))`.
    pub fn note(&self, event: std::fmt::Arguments<'_>) {
        self.state.log.record(event);
    }

    /// The simulated network (links, statistics).
    pub fn network(&self) -> &Network {
        &self.state.net
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.state.start)
    }

    /// A choice of the scenario's own random stream.
    pub fn random<R>(&self, draw: impl FnOnce(&mut ChaCha8Rng) -> R) -> R {
        draw(&mut self.state.scenario_rng.borrow_mut())
    }

    /// A duration drawn uniformly between `low` and `high`.
    pub fn random_duration(&self, low: Duration, high: Duration) -> Duration {
        let (low, high) = (low.as_micros() as u64, high.as_micros() as u64);
        let micros = self.random(|rng| rng.random_range(low..=high.max(low)));
        Duration::from_micros(micros)
    }

    /// Adds the vat `name` and starts it: `program` runs inside it at every
    /// start (the first and each restart), as a vat process's `main` does.
    pub fn add_vat<F, Fut>(&self, name: &str, program: F)
    where
        F: Fn(VatContext) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let program: Program = Rc::new(move |context| Box::pin(program(context)));
        self.state.net.add_host(name);
        self.state.vats.borrow_mut().insert(
            name.to_owned(),
            Slot {
                program,
                disk: Disk::new(),
                identity: None,
                incarnation: 0,
                running: None,
            },
        );
        self.start(name);
    }

    /// Whether the vat `name` is running.
    pub fn is_up(&self, name: &str) -> bool {
        self.state
            .vats
            .borrow()
            .get(name)
            .is_some_and(|slot| slot.running.is_some())
    }

    /// The names of the vats, in order.
    pub fn vats(&self) -> Vec<String> {
        self.state.vats.borrow().keys().cloned().collect()
    }

    /// The public key of the vat `name` (known once it first started).
    pub fn key(&self, name: &str) -> Option<PublicKey> {
        let vats = self.state.vats.borrow();
        vats.get(name)?.identity.as_ref().map(Identity::public_key)
    }

    /// Kills the vat `name` as `kill -9` would: its connections reset, its
    /// disk keeps only what was synced, nothing more runs in it.
    pub fn crash(&self, name: &str) {
        let (vat, disk) = {
            let mut vats = self.state.vats.borrow_mut();
            let Some(slot) = vats.get_mut(name) else {
                return;
            };
            let Some(vat) = slot.running.take() else {
                return;
            };
            (vat, slot.disk.clone())
        };
        event!(self.state.log, "kill {name}");
        // Cut it off first, so nothing it does while its tasks drop gets out.
        self.state.net.crash_host(name);
        disk.crash();
        vat.stop();
    }

    /// Starts the vat `name` again from its data folder, if it is down.
    pub fn restart(&self, name: &str) {
        if !self.is_up(name) {
            self.start(name);
        }
    }

    /// Cuts the link between `a` and `b` both ways.
    pub fn partition(&self, a: &str, b: &str) {
        self.state.net.partition(a, b);
    }

    /// Cuts the link from `from` to `to` only.
    pub fn partition_oneway(&self, from: &str, to: &str) {
        self.state.net.partition_oneway(from, to);
    }

    /// Heals the link between `a` and `b`.
    pub fn heal(&self, a: &str, b: &str) {
        self.state.net.heal(a, b);
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        self.state.net.heal_all();
    }

    /// Runs `work` inside the vat `name` and returns its result; `None` if
    /// the vat is down or stops before the work is done.
    pub async fn within<F, Fut, T>(&self, name: &str, work: F) -> Option<T>
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = T> + 'static,
        T: 'static,
    {
        let (tx, rx) = futures::channel::oneshot::channel();
        {
            let vats = self.state.vats.borrow();
            let vat = vats.get(name)?.running.as_ref()?;
            vat.spawn(async move {
                let _ = tx.send(work().await);
            });
        }
        rx.await.ok()
    }

    fn start(&self, name: &str) {
        let config = &self.state.config;
        let (program, disk, incarnation, known) = {
            let mut vats = self.state.vats.borrow_mut();
            let Some(slot) = vats.get_mut(name) else {
                return;
            };
            slot.incarnation += 1;
            let known = slot.identity.clone();
            (
                slot.program.clone(),
                slot.disk.clone(),
                slot.incarnation,
                known,
            )
        };
        let world = Rc::new(VatWorld::new(
            config.seed,
            name,
            incarnation,
            self.state.start,
            config.disk_delay,
            config.bugs.clone(),
        ));
        let transport = Rc::new(SimTransport {
            network: self.state.net.clone(),
            host: name.into(),
        });
        let vat = VatBuilder::new(name)
            .world(world)
            .transport(transport)
            .host();
        // The key is made in the vat's own world (so from the seed) once,
        // and kept as a key file would be.
        let identity = match known {
            Some(identity) => identity,
            None => match vat.enter(Identity::generate) {
                Ok(identity) => identity,
                Err(error) => {
                    event!(self.state.log, "start {name} failed: {error}");
                    return;
                }
            },
        };
        event!(self.state.log, "start {name} #{incarnation}");
        let context = VatContext {
            name: name.into(),
            incarnation,
            identity: identity.clone(),
            disk,
            network: self.state.net.clone(),
            log: self.state.log.clone(),
        };
        let program = vat.enter(|| program(context));
        vat.spawn(program);
        let drive = vat.run();
        {
            let mut vats = self.state.vats.borrow_mut();
            if let Some(slot) = vats.get_mut(name) {
                slot.identity = Some(identity);
                slot.running = Some(vat);
            }
        }
        let sim = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_local(async move {
            drive.await;
            sim.exited(&name, incarnation).await;
        });
    }

    /// The vat's loop ended: by [`crash`](SimHandle::crash), or by itself
    /// (its root supervisor gave up), which is its process exiting.
    async fn exited(&self, name: &str, incarnation: u32) {
        let vat = {
            let mut vats = self.state.vats.borrow_mut();
            match vats.get_mut(name) {
                Some(slot) if slot.incarnation == incarnation => slot.running.take(),
                _ => None,
            }
        };
        let Some(vat) = vat else {
            return;
        };
        event!(self.state.log, "exit {name} #{incarnation}");
        self.state.net.crash_host(name);
        drop(vat);
        if let Some(delay) = self.state.config.restart_exited_after {
            tokio::time::sleep(delay).await;
            let current = self
                .state
                .vats
                .borrow()
                .get(name)
                .map(|slot| slot.incarnation);
            if current == Some(incarnation) {
                self.restart(name);
            }
        }
    }

    fn stop_all(&self) {
        let running: Vec<HostedVat> = self
            .state
            .vats
            .borrow_mut()
            .values_mut()
            .filter_map(|slot| slot.running.take())
            .collect();
        for vat in running {
            vat.stop();
        }
    }
}

/// What a vat's program gets at each start: its name, key, disk and
/// network.
pub struct VatContext {
    name: Rc<str>,
    incarnation: u32,
    identity: Identity,
    disk: Disk,
    network: Network,
    log: EventLog,
}

impl VatContext {
    /// The vat's name (its host name on the network).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times the vat has started, this start included.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The vat's identity, the same at every start.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The event log (for a program's own events).
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The vat's store: redb on its simulated disk, as it was left.
    ///
    /// # Errors
    /// As [`RedbStore::open`].
    pub fn store(&self) -> Result<Arc<dyn Store>, StoreError> {
        let backend = self.disk.backend(STORE_FILE);
        let store = RedbStore::open_backend(backend, format!("{}/{STORE_FILE}", self.name))?;
        Ok(Arc::new(store))
    }

    /// A redb storage backend for the file `file` on the vat's simulated
    /// disk, for a program's own database beside its store (a directory
    /// member's log): `redb::Database::builder().create_with_backend(..)`.
    pub fn backend(&self, file: &str) -> crate::disk::FileBackend {
        self.disk.backend(file)
    }

    /// The vat's store, opened as the vat's [`Persistence`].
    ///
    /// # Errors
    /// If the store cannot be opened.
    pub fn persistence(&self) -> Result<Persistence, vat::Error> {
        let store = self
            .store()
            .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
        Persistence::with_store(store, vat::sturdy::vat_id(self.identity.public_key()))
    }

    /// The location hint of this vat's `port` (`name:port`).
    ///
    /// # Errors
    /// If the vat's name is not a host name.
    pub fn hint(&self, port: u16) -> Result<LocationHint, sturdyrefs::HintError> {
        LocationHint::parse(&format!("{}:{port}", self.name))
    }

    /// Listens on `port`, announcing this vat's key to whoever connects.
    ///
    /// # Errors
    /// If the port is taken.
    pub fn listen(&self, port: u16) -> io::Result<Listener> {
        self.network
            .listen(&self.name, port, hello(Some(self.identity.public_key())))
    }

    /// Serves `persistence`'s gateway on `port` to every caller, each with
    /// the key its hello named, and sets the persistence's hints to it.
    ///
    /// # Errors
    /// If the port is taken.
    pub fn serve(&self, persistence: &Persistence, port: u16, limits: Limits) -> io::Result<()> {
        let hint = self
            .hint(port)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = self.listen(port)?;
        persistence.set_hints(vec![hint]);
        let ours = self.identity.public_key();
        // At once, not at the first accept: a connection this vat dials
        // before then would otherwise offer the vat dialled no gateway, and
        // that vat would restore this one's tokens over it in vain.
        persistence.offer_gateway(ours);
        let persistence = persistence.clone();
        vat_env::spawn(async move {
            while let Ok((stream, accepted)) = listener.accept().await {
                let caller = key_of(&accepted.hello);
                persistence.serve_authenticated(ours, stream, caller, accepted.peer_host, limits);
            }
        });
        Ok(())
    }
}
