//! The supervisor: starts its children, learns when one ends, and restarts
//! it (and its siblings, by the strategy) within the restart intensity, or
//! gives up.
//!
//! Each supervisor runs one task in its vat. Everything that changes it —
//! a child ending, a start, a halt — arrives there as an event, so its
//! steps never interleave.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use capnp::capability::FromClientHook;
use captp::log::Untrusted;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::backoff::Backoff;
use super::context::{ChildContext, Ender, Ending};
use super::crash_log::{CrashEntry, CrashLog};
use super::incarnation::{start_local, unwatch, Factory};
use super::intensity::{Intensity, Window};
use super::policy::{Restart, Strategy};
use super::spawner::{start_remote, watch_remote, SpawnerRef};
use super::spec::{ChildSpec, Start, SupervisorBuilder};
use super::stable::{Slot, WaitLimits};
use crate::error::{Error, ErrorKind};
use crate::heap::ObjectId;

/// What a supervisor with no supervisor above it does when it gives up.
pub(crate) type GiveUpHook = Rc<dyn Fn(&Error)>;

/// Where a supervisor is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorState {
    /// Starting its children.
    Starting,
    /// Supervising.
    Running,
    /// It gave up; its children are stopped and its own supervisor decides.
    Failed,
    /// Stopped for good (shut down, or gave up with nobody above it).
    Stopped,
}

/// Where a child is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    /// An incarnation answers.
    Running,
    /// Between incarnations: calls wait.
    Restarting,
    /// It exited normally and its policy does not restart it.
    Exited,
    /// Stopped for good: it crashed and is not restarted, or its
    /// supervisor stopped.
    Stopped,
}

impl ChildStatus {
    /// The status as the `Supervisor` interface spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildStatus::Running => "running",
            ChildStatus::Restarting => "restarting",
            ChildStatus::Exited => "exited",
            ChildStatus::Stopped => "stopped",
        }
    }
}

/// A snapshot of one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its name.
    pub name: String,
    /// Its restart policy.
    pub restart: Restart,
    /// Where it is in its life.
    pub status: ChildStatus,
    /// Restarts so far.
    pub restarts: u64,
    /// Its current (or last) incarnation: 1 for the first start.
    pub incarnation: u64,
}

/// A running supervisor, inside its vat (`!Send`); clones share it.
///
/// Built with [`SupervisorBuilder`]. Its children are reached through
/// stable references ([`child`](Supervisor::child)); its crash log and
/// children can be read here or through its capability
/// ([`service`](Supervisor::service)).
#[derive(Clone)]
pub struct Supervisor {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("name", &self.inner.name)
            .field("state", &self.inner.state.get())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    name: String,
    strategy: Strategy,
    intensity: Intensity,
    backoff: Backoff,
    limits: WaitLimits,
    children: RefCell<Vec<Child>>,
    window: RefCell<Window>,
    log: RefCell<CrashLog>,
    state: Cell<SupervisorState>,
    events: mpsc::UnboundedSender<Event>,
    parent: RefCell<Option<ParentLink>>,
    on_give_up: Option<GiveUpHook>,
    service: RefCell<Option<capnp::capability::Client>>,
}

struct Child {
    name: String,
    restart: Restart,
    kind: Kind,
    slot: Rc<Slot>,
    /// Starts so far: the current incarnation's number.
    generation: u64,
    status: ChildStatus,
    watching: Option<Watching>,
}

#[derive(Clone)]
enum Kind {
    Local(Factory),
    Remote {
        factory: String,
        spawners: Vec<SpawnerRef>,
        timeout: std::time::Duration,
    },
    Supervisor(Supervisor),
}

/// How the current incarnation is watched.
enum Watching {
    Local(ObjectId),
    Remote(tokio::task::JoinHandle<()>),
    Supervisor,
}

#[derive(Clone)]
struct ParentLink {
    events: mpsc::UnboundedSender<Event>,
    child: usize,
    generation: u64,
}

enum Event {
    Ended {
        child: usize,
        generation: u64,
        ending: Ending,
    },
    Start {
        retry: bool,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Halt {
        error: Error,
        for_good: bool,
        reply: oneshot::Sender<()>,
    },
    Add {
        spec: ChildSpec,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// The vat's root supervisor, where one was started.
#[derive(Default)]
struct Root(RefCell<Option<Weak<Inner>>>);

/// Runs `f` on the current vat's root supervisor slot.
fn with_root<R>(f: impl FnOnce(&RefCell<Option<Weak<Inner>>>) -> R) -> R {
    f(&crate::core::vat_local::<Root>().0)
}

/// The current vat's root supervisor, if one was started
/// ([`SupervisorBuilder::start_root`]) and still runs. Not public: a
/// supervisor is authority over its children, which the program hands on
/// as the [`Supervisor`] that `start_root` returned, not a name any code of
/// the vat may look up.
pub(crate) fn root() -> Option<Supervisor> {
    with_root(|r| r.borrow().as_ref().and_then(Weak::upgrade)).map(|inner| Supervisor { inner })
}

impl Supervisor {
    fn build(builder: SupervisorBuilder) -> Supervisor {
        let (events, inbox) = mpsc::unbounded_channel();
        let limits = builder.limits;
        let children = builder
            .children
            .into_iter()
            .map(|spec| Child::new(spec, limits))
            .collect();
        let inner = Rc::new(Inner {
            name: builder.name,
            strategy: builder.strategy,
            intensity: builder.intensity,
            backoff: builder.backoff,
            limits,
            children: RefCell::new(children),
            window: RefCell::default(),
            log: RefCell::new(CrashLog::new(builder.log_capacity)),
            state: Cell::new(SupervisorState::Starting),
            events,
            parent: RefCell::new(None),
            on_give_up: builder.on_give_up,
            service: RefCell::new(None),
        });
        let span = tracing::info_span!("supervisor", name = %inner.name);
        vat_env::spawn(run(inner.clone(), inbox).instrument(span));
        Supervisor { inner }
    }

    pub(crate) async fn start(
        mut builder: SupervisorBuilder,
        as_root: bool,
    ) -> Result<Supervisor, Error> {
        if as_root {
            if root().is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "this vat already has a root supervisor",
                ));
            }
            if builder.on_give_up.is_none() {
                builder.on_give_up = Some(Rc::new(super::root::exit_process));
            }
        }
        let supervisor = Supervisor::build(builder);
        supervisor.start_children(false).await?;
        if as_root {
            with_root(|r| *r.borrow_mut() = Some(Rc::downgrade(&supervisor.inner)));
        }
        Ok(supervisor)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where it is in its life.
    pub fn state(&self) -> SupervisorState {
        self.inner.state.get()
    }

    /// A stable reference to the child `name`, as a capability of type `C`:
    /// it reaches whichever incarnation is current, now and after every
    /// restart. Fails with [`InvalidArgument`](ErrorKind::InvalidArgument)
    /// for an unknown name.
    pub fn child<C: FromClientHook>(&self, name: &str) -> Result<C, Error> {
        let children = self.inner.children.borrow();
        let child = children.iter().find(|c| c.name == name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("supervisor `{}` has no child `{name}`", self.inner.name),
            )
        })?;
        Ok(C::new(child.slot.client().hook))
    }

    /// The child supervisor `name`, to reach its own children.
    pub fn supervisor(&self, name: &str) -> Option<Supervisor> {
        self.inner
            .children
            .borrow()
            .iter()
            .find_map(|c| match &c.kind {
                Kind::Supervisor(sub) if c.name == name => Some(sub.clone()),
                _ => None,
            })
    }

    /// Every child, in start order.
    pub fn children(&self) -> Vec<ChildInfo> {
        self.inner
            .children
            .borrow()
            .iter()
            .map(|c| ChildInfo {
                name: c.name.clone(),
                restart: c.restart,
                status: c.status,
                restarts: c.generation.saturating_sub(1),
                incarnation: c.generation,
            })
            .collect()
    }

    /// The last crashes, oldest first.
    pub fn crash_log(&self) -> Vec<CrashEntry> {
        self.inner.log.borrow().entries()
    }

    /// The supervisor's capability (`Supervisor` in
    /// `schema/capnp/supervise.capnp`): its crash log, its children, and
    /// stable references to them, for other vats and tools.
    pub fn service(&self) -> schema::supervise_capnp::supervisor::Client {
        let mut service = self.inner.service.borrow_mut();
        let client = service.get_or_insert_with(|| {
            let served: schema::supervise_capnp::supervisor::Client =
                crate::export(super::service::Service::new(Rc::downgrade(&self.inner)));
            served.client
        });
        FromClientHook::new(client.hook.add_ref())
    }

    /// Starts one more child (after those it has), and supervises it like
    /// the others. Fails if the name is taken or the child cannot start.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Add { spec, reply });
        answer.await.map_err(|_| gone(&self.inner.name))?
    }

    /// Stops every child (last started first) and the supervisor, for good:
    /// calls on stable references to its children fail from now on.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Shutdown { reply });
        let _ = answer.await;
        with_root(|r| {
            let mut root = r.borrow_mut();
            if root
                .as_ref()
                .is_some_and(|w| w.ptr_eq(&Rc::downgrade(&self.inner)))
            {
                *root = None;
            }
        });
    }

    async fn start_children(&self, retry: bool) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Start { retry, reply });
        answer.await.map_err(|_| gone(&self.inner.name))?
    }

    async fn halt(&self, error: Error, for_good: bool) {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Halt {
            error,
            for_good,
            reply,
        });
        let _ = answer.await;
    }

    fn send(&self, event: Event) {
        // A supervisor whose task is gone (its vat is stopping) drops the
        // event, and with it the reply channel: the caller sees that.
        let _ = self.inner.events.send(event);
    }

    pub(crate) fn from_inner(inner: Rc<Inner>) -> Supervisor {
        Supervisor { inner }
    }
}

fn gone(name: &str) -> Error {
    Error::vat_stopped(&format!("supervisor `{name}`"))
}

impl Child {
    fn new(spec: ChildSpec, limits: WaitLimits) -> Child {
        let slot = Slot::new(&spec.name, limits);
        let kind = match spec.start {
            Start::Local(factory) => Kind::Local(factory),
            Start::Remote {
                factory,
                spawners,
                timeout,
            } => Kind::Remote {
                factory,
                spawners,
                timeout,
            },
            Start::Supervisor(builder) => Kind::Supervisor(Supervisor::build(*builder)),
        };
        Child {
            name: spec.name,
            restart: spec.restart,
            kind,
            slot,
            generation: 0,
            status: ChildStatus::Restarting,
            watching: None,
        }
    }
}

async fn run(inner: Rc<Inner>, mut inbox: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = inbox.recv().await {
        match event {
            Event::Ended {
                child,
                generation,
                ending,
            } => inner.ended(child, generation, ending).await,
            Event::Start { retry, reply } => {
                let started = inner.start_all(retry).await;
                let _ = reply.send(started);
            }
            Event::Halt {
                error,
                for_good,
                reply,
            } => {
                inner.halt_all(&error, for_good).await;
                inner.state.set(if for_good {
                    SupervisorState::Stopped
                } else {
                    SupervisorState::Failed
                });
                let _ = reply.send(());
            }
            Event::Add { spec, reply } => {
                let added = inner.add(spec).await;
                let _ = reply.send(added);
            }
            Event::Shutdown { reply } => {
                let error = Error::new(
                    ErrorKind::VatStopped,
                    format!("supervisor `{}` was shut down", inner.name),
                );
                inner.halt_all(&error, true).await;
                inner.state.set(SupervisorState::Stopped);
                tracing::info!("shut down");
                let _ = reply.send(());
                return;
            }
        }
    }
}

impl Inner {
    fn child_name(&self, i: usize) -> String {
        self.children.borrow()[i].name.clone()
    }

    /// Calls `ender` when the incarnation `generation` of child `i` ends:
    /// at once its stable references stop using it, then the supervisor's
    /// task hears of it.
    fn ender(&self, i: usize, generation: u64) -> Ender {
        let (slot, name) = {
            let children = self.children.borrow();
            (children[i].slot.clone(), children[i].name.clone())
        };
        let events = self.events.clone();
        let fired = Cell::new(false);
        Rc::new(move |ending: Ending| {
            if fired.replace(true) {
                return;
            }
            slot.end_generation(generation, ending.caller_error(&name));
            let _ = events.send(Event::Ended {
                child: i,
                generation,
                ending,
            });
        })
    }

    /// Starts the next incarnation of child `i`.
    async fn start_child(self: &Rc<Self>, i: usize, retry: bool) -> Result<(), Error> {
        let (name, kind, slot, generation) = {
            let mut children = self.children.borrow_mut();
            let child = &mut children[i];
            child.generation += 1;
            (
                child.name.clone(),
                child.kind.clone(),
                child.slot.clone(),
                child.generation,
            )
        };
        let ender = self.ender(i, generation);
        let (hook, watching) = match kind {
            Kind::Local(factory) => {
                let ctx = ChildContext::new(&name, generation, ender.clone());
                let local = start_local(&factory, &ctx, ender)?;
                (local.client.hook, Watching::Local(local.id))
            }
            Kind::Remote {
                factory,
                spawners,
                timeout,
            } => {
                let remote = start_remote(&factory, generation, &spawners, timeout).await?;
                let watch = remote.watch;
                let task = vat_env::spawn(async move {
                    let ending = watch_remote(watch).await;
                    ender(ending);
                });
                (remote.client.hook, Watching::Remote(task))
            }
            Kind::Supervisor(sub) => {
                *sub.inner.parent.borrow_mut() = Some(ParentLink {
                    events: self.events.clone(),
                    child: i,
                    generation,
                });
                sub.start_children(retry).await?;
                (sub.service().client.hook, Watching::Supervisor)
            }
        };
        {
            let mut children = self.children.borrow_mut();
            children[i].watching = Some(watching);
            children[i].status = ChildStatus::Running;
        }
        // Outside any borrow: the calls that waited run their first poll here.
        slot.go_live(hook, generation);
        tracing::info!(child = %name, incarnation = generation, "child started");
        Ok(())
    }

    /// Starts child `i`, and on failure tries again after the backoff, each
    /// attempt counted as a restart, until it starts or the intensity is
    /// exceeded (then the supervisor gives up and this returns its error).
    async fn start_with_retry(self: &Rc<Self>, i: usize, escalate: bool) -> Result<(), Error> {
        loop {
            match self.start_child(i, true).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let name = self.child_name(i);
                    tracing::warn!(child = %name, error = %Untrusted(&error), "child failed to start");
                    self.log_crash(i, format!("failed to start: {error}"));
                    if !self.record_restart() {
                        let why = format!("child `{name}` failed to start: {error}");
                        return Err(self.give_up(&why, escalate).await);
                    }
                    self.pause().await;
                }
            }
        }
    }

    async fn start_all(self: &Rc<Self>, retry: bool) -> Result<(), Error> {
        self.state.set(SupervisorState::Starting);
        self.window.borrow_mut().clear();
        let count = self.children.borrow().len();
        for i in 0..count {
            let skip = {
                let children = self.children.borrow();
                let child = &children[i];
                // A temporary child that has ended is never started again.
                child.watching.is_some()
                    || (child.restart == Restart::Temporary && child.generation > 0)
            };
            if skip {
                continue;
            }
            self.children.borrow()[i].slot.reopen();
            let started = if retry {
                self.start_with_retry(i, false).await
            } else {
                self.start_child(i, false).await.map_err(|error| {
                    Error::new(
                        error.kind(),
                        format!(
                            "supervisor `{}` could not start child `{}`: {}",
                            self.name,
                            self.child_name(i),
                            error.message()
                        ),
                    )
                })
            };
            if let Err(error) = started {
                if !retry {
                    tracing::error!(%error, "start failed");
                    self.halt_all(&error, true).await;
                    self.state.set(SupervisorState::Stopped);
                }
                return Err(error);
            }
        }
        self.state.set(SupervisorState::Running);
        tracing::info!(children = count, strategy = %self.strategy, "supervising");
        Ok(())
    }

    async fn add(self: &Rc<Self>, spec: ChildSpec) -> Result<(), Error> {
        if self.children.borrow().iter().any(|c| c.name == spec.name) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "supervisor `{}` already has a child `{}`",
                    self.name, spec.name
                ),
            ));
        }
        let i = {
            let mut children = self.children.borrow_mut();
            children.push(Child::new(spec, self.limits));
            children.len() - 1
        };
        if let Err(error) = self.start_child(i, false).await {
            let slot = {
                let mut children = self.children.borrow_mut();
                children[i].status = ChildStatus::Stopped;
                children[i].slot.clone()
            };
            slot.stop(error.clone());
            return Err(error);
        }
        Ok(())
    }

    /// Stops watching child `i`'s incarnation; returns whether it had one.
    fn retire(&self, i: usize) -> Option<Kind> {
        let (watching, kind) = {
            let mut children = self.children.borrow_mut();
            (children[i].watching.take(), children[i].kind.clone())
        };
        match watching? {
            Watching::Local(id) => unwatch(id),
            Watching::Remote(task) => task.abort(),
            Watching::Supervisor => {}
        }
        Some(kind)
    }

    async fn ended(self: &Rc<Self>, i: usize, generation: u64, ending: Ending) {
        let (name, restart, slot, current) = {
            let children = self.children.borrow();
            let Some(child) = children.get(i) else { return };
            (
                child.name.clone(),
                child.restart,
                child.slot.clone(),
                child.generation == generation && child.watching.is_some(),
            )
        };
        if !current {
            tracing::debug!(child = %name, generation, "a retired incarnation ended");
            return;
        }
        slot.end_generation(generation, ending.caller_error(&name));
        let kind = self.retire(i);
        let abnormal = ending.is_abnormal();
        match &ending {
            Ending::Crashed(error) => {
                tracing::warn!(child = %name, incarnation = generation, error = %Untrusted(error), "child crashed")
            }
            Ending::Lost(error) => {
                tracing::warn!(child = %name, incarnation = generation, error = %Untrusted(error), "child lost")
            }
            Ending::Exited => {
                tracing::info!(child = %name, incarnation = generation, "child exited normally")
            }
        }
        if abnormal {
            self.log_crash(i, ending.describe());
        }
        if !restart.restarts_after(abnormal) {
            let kind_of_error = match &ending {
                Ending::Crashed(error) | Ending::Lost(error) => error.kind(),
                Ending::Exited => ErrorKind::Failed,
            };
            let error = Error::new(
                kind_of_error,
                format!(
                    "supervised child `{name}` is not restarted ({restart}): {}",
                    ending.describe()
                ),
            );
            {
                let mut children = self.children.borrow_mut();
                children[i].status = if abnormal {
                    ChildStatus::Stopped
                } else {
                    ChildStatus::Exited
                };
            }
            slot.stop(error.clone());
            if let Some(Kind::Supervisor(sub)) = kind {
                sub.halt(error, true).await;
            }
            tracing::info!(child = %name, policy = %restart, "child not restarted");
            return;
        }
        self.restart(i, &ending.describe()).await;
    }

    /// Restarts child `i` and its siblings by the strategy.
    async fn restart(self: &Rc<Self>, i: usize, why: &str) {
        let name = self.child_name(i);
        if !self.record_restart() {
            self.give_up(&format!("child `{name}`: {why}"), true).await;
            return;
        }
        let running: Vec<usize> = self
            .children
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.watching.is_some())
            .map(|(j, _)| j)
            .collect();
        let set = self.strategy.restart_set(i, &running);
        let mut restart = Vec::new();
        for &j in set.iter().rev() {
            if j == i {
                restart.push(j);
                continue;
            }
            let sibling = self.child_name(j);
            let error = Error::new(
                ErrorKind::Crashed,
                format!(
                    "supervised child `{sibling}` was stopped to restart with `{name}` ({}): {why}",
                    self.strategy
                ),
            );
            let temporary = self.children.borrow()[j].restart == Restart::Temporary;
            self.terminate(j, error.clone(), temporary).await;
            if !temporary {
                restart.push(j);
            }
        }
        restart.reverse();
        for &j in &restart {
            self.children.borrow_mut()[j].status = ChildStatus::Restarting;
        }
        self.pause().await;
        for j in restart {
            tracing::info!(child = %self.child_name(j), "restarting child");
            if self.start_with_retry(j, true).await.is_err() {
                return;
            }
        }
    }

    /// Stops child `i` (for a sibling's restart): its calls in progress
    /// fail with `error`; new calls wait, or fail if it stops `for_good`.
    async fn terminate(&self, i: usize, error: Error, for_good: bool) {
        let slot = self.children.borrow()[i].slot.clone();
        let kind = self.retire(i);
        if for_good {
            slot.stop(error.clone());
            self.children.borrow_mut()[i].status = ChildStatus::Stopped;
        } else {
            slot.suspend(error.clone());
            self.children.borrow_mut()[i].status = ChildStatus::Restarting;
        }
        if let Some(Kind::Supervisor(sub)) = kind {
            sub.halt(error, for_good).await;
        }
    }

    /// Stops every child, last started first.
    async fn halt_all(&self, error: &Error, for_good: bool) {
        let count = self.children.borrow().len();
        for i in (0..count).rev() {
            let (status, slot, kind) = {
                let children = self.children.borrow();
                (
                    children[i].status,
                    children[i].slot.clone(),
                    children[i].kind.clone(),
                )
            };
            let was_running = self.retire(i).is_some();
            if for_good {
                slot.stop(error.clone());
                if status != ChildStatus::Exited {
                    self.children.borrow_mut()[i].status = ChildStatus::Stopped;
                }
            } else if was_running {
                slot.suspend(error.clone());
                self.children.borrow_mut()[i].status = ChildStatus::Restarting;
            }
            if let Kind::Supervisor(sub) = kind {
                if was_running || for_good {
                    sub.halt(error.clone(), for_good).await;
                }
            }
        }
    }

    /// Gives up: stops every child and tells the supervisor above (or runs
    /// the give-up hook). Returns the error it gave up with.
    async fn give_up(self: &Rc<Self>, why: &str, escalate: bool) -> Error {
        let error = Error::new(
            ErrorKind::Crashed,
            format!(
                "supervisor `{}` gave up after more than {} restarts in {:?}; the last: {why}",
                self.name, self.intensity.max_restarts, self.intensity.period
            ),
        );
        tracing::error!(%error, "supervisor gave up");
        self.state.set(SupervisorState::Failed);
        let parent = self.parent.borrow().clone();
        self.halt_all(&error, parent.is_none()).await;
        if escalate {
            match parent {
                Some(link) => {
                    let _ = link.events.send(Event::Ended {
                        child: link.child,
                        generation: link.generation,
                        ending: Ending::Crashed(error.clone()),
                    });
                }
                None => {
                    self.state.set(SupervisorState::Stopped);
                    if let Some(hook) = &self.on_give_up {
                        hook(&error);
                    }
                }
            }
        }
        error
    }

    /// Records a restart; `false` if it exceeds the intensity.
    fn record_restart(&self) -> bool {
        self.window
            .borrow_mut()
            .record(self.intensity, vat_env::now())
    }

    /// Waits the backoff before a restart.
    async fn pause(&self) {
        let earlier = self.window.borrow().len().saturating_sub(1);
        let delay = self.backoff.delay(earlier);
        if !delay.is_zero() {
            vat_env::sleep(delay).await;
        }
    }

    fn log_crash(&self, i: usize, error: String) {
        let (child, restarts) = {
            let children = self.children.borrow();
            (
                children[i].name.clone(),
                children[i].generation.saturating_sub(1),
            )
        };
        self.log.borrow_mut().push(CrashEntry {
            time: vat_env::wall(),
            child,
            error,
            restarts,
        });
    }
}
