//! What a supervisor is told to supervise: child specifications and the
//! supervisor's own settings.

use std::rc::Rc;
use std::time::Duration;

use super::backoff::Backoff;
use super::context::ChildContext;
use super::incarnation::Factory;
use super::intensity::Intensity;
use super::policy::{Restart, Strategy};
use super::spawner::SpawnerRef;
use super::stable::WaitLimits;
use super::supervisor::{GiveUpHook, Supervisor};
use crate::error::Error;
use crate::sturdy::{Durable, Persistence};

/// How to start one child, and when to restart it.
pub struct ChildSpec {
    pub(crate) name: String,
    pub(crate) restart: Restart,
    pub(crate) start: Start,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

pub(crate) enum Start {
    Local(Factory),
    Remote {
        factory: String,
        spawners: Vec<SpawnerRef>,
        timeout: Duration,
    },
    Supervisor(Box<SupervisorBuilder>),
}

impl ChildSpec {
    /// A child in this vat, built by `factory`.
    ///
    /// The factory must return an object it exported itself while it ran
    /// ([`vat::export`](crate::export)): that object is what the supervisor
    /// watches for a crash.
    ///
    /// ```
    /// use schema::demo_capnp::counter;
    /// use vat::supervise::{ChildSpec, Restart};
    /// let spec = ChildSpec::local("counter", Restart::Permanent, |_ctx| {
    ///     Ok(vat::export::<counter::Client, _>(vat::demo::Counter::default()).client)
    /// });
    /// # drop(spec);
    /// ```
    pub fn local(
        name: impl Into<String>,
        restart: Restart,
        factory: impl Fn(&ChildContext) -> Result<capnp::capability::Client, Error> + 'static,
    ) -> ChildSpec {
        ChildSpec {
            name: name.into(),
            restart,
            start: Start::Local(Rc::new(factory)),
        }
    }

    /// A persistent child in this vat: the object `id` of kind `K`, revived
    /// at each start from its last committed state in `persistence`.
    pub fn durable<K: Durable>(
        name: impl Into<String>,
        restart: Restart,
        persistence: Persistence,
        id: u64,
    ) -> ChildSpec {
        ChildSpec::local(name, restart, durable_factory::<K>(persistence, id))
    }

    /// A child started in another vat by the factory named `factory` of the
    /// first of `spawners` that answers (in order, at every start). If the
    /// child's vat dies, the child is restarted by the supervisor's
    /// strategy: in that vat once it is back (a [`SpawnerRef::Token`] is
    /// restored afresh each time), or through the next spawner.
    pub fn remote(
        name: impl Into<String>,
        restart: Restart,
        factory: impl Into<String>,
        spawners: Vec<SpawnerRef>,
    ) -> ChildSpec {
        ChildSpec {
            name: name.into(),
            restart,
            start: Start::Remote {
                factory: factory.into(),
                spawners,
                timeout: Duration::from_secs(5),
            },
        }
    }

    /// A supervisor as a child: a subtree. When it gives up, this
    /// supervisor sees that child crash.
    pub fn supervisor(restart: Restart, builder: SupervisorBuilder) -> ChildSpec {
        ChildSpec {
            name: builder.name.clone(),
            restart,
            start: Start::Supervisor(Box::new(builder)),
        }
    }

    /// For a remote child: how long one spawner may take to restore and
    /// answer before the next is tried (5 s by default).
    pub fn spawn_timeout(mut self, timeout: Duration) -> ChildSpec {
        if let Start::Remote { timeout: t, .. } = &mut self.start {
            *t = timeout;
        }
        self
    }
}

/// A factory for the persistent object `id` of kind `K`: each call revives
/// a fresh incarnation from the last committed state (never the crashed
/// one). For [`ChildSpec::local`] and [`Spawner::factory`](super::Spawner::factory).
pub fn durable_factory<K: Durable>(
    persistence: Persistence,
    id: u64,
) -> impl Fn(&ChildContext) -> Result<capnp::capability::Client, Error> + 'static {
    move |_ctx| {
        let object = crate::sturdy::object_ref(K::KIND, id)?;
        persistence.forget(&object);
        persistence.durable::<K>(id)
    }
}

/// Configures a supervisor and its children.
///
/// ```
/// use std::time::Duration;
/// use schema::demo_capnp::counter;
/// use vat::supervise::{Backoff, ChildSpec, Intensity, Restart, Strategy, SupervisorBuilder};
///
/// let vat = vat::VatHandle::start("doc").unwrap();
/// let value = vat.run_async(|| async {
///     let supervisor = SupervisorBuilder::new("app")
///         .strategy(Strategy::OneForOne)
///         .intensity(Intensity::new(5, Duration::from_secs(10)))
///         .backoff(Backoff::fixed(Duration::from_millis(10)))
///         .child(ChildSpec::local("counter", Restart::Permanent, |_| {
///             Ok(vat::export::<counter::Client, _>(vat::demo::Counter::default()).client)
///         }))
///         .start()
///         .await?;
///     // A stable reference: it outlives every restart of the counter.
///     let counter: counter::Client = supervisor.child("counter")?;
///     let mut add = counter.add_request();
///     add.get().set_by(2);
///     Ok::<_, vat::Error>(add.send().promise.await?.get()?.get_value())
/// }).wait().unwrap().unwrap();
/// assert_eq!(value, 2);
/// vat.stop().unwrap();
/// ```
pub struct SupervisorBuilder {
    pub(crate) name: String,
    pub(crate) strategy: Strategy,
    pub(crate) intensity: Intensity,
    pub(crate) backoff: Backoff,
    pub(crate) limits: WaitLimits,
    pub(crate) log_capacity: usize,
    pub(crate) children: Vec<ChildSpec>,
    pub(crate) on_give_up: Option<GiveUpHook>,
}

impl std::fmt::Debug for SupervisorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorBuilder")
            .field("name", &self.name)
            .field("strategy", &self.strategy)
            .field("intensity", &self.intensity)
            .field("backoff", &self.backoff)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

impl SupervisorBuilder {
    /// A supervisor named `name`: one-for-one, at most 3 restarts in 5 s,
    /// no backoff, calls wait for a restarting child up to 1024 at a time
    /// and 5 s each, and a crash log of the last 32 crashes.
    pub fn new(name: impl Into<String>) -> SupervisorBuilder {
        SupervisorBuilder {
            name: name.into(),
            strategy: Strategy::default(),
            intensity: Intensity::default(),
            backoff: Backoff::default(),
            limits: WaitLimits::default(),
            log_capacity: 32,
            children: Vec::new(),
            on_give_up: None,
        }
    }

    /// Which children restart together.
    pub fn strategy(mut self, strategy: Strategy) -> SupervisorBuilder {
        self.strategy = strategy;
        self
    }

    /// How many restarts within what time make the supervisor give up.
    pub fn intensity(mut self, intensity: Intensity) -> SupervisorBuilder {
        self.intensity = intensity;
        self
    }

    /// The pause before each restart.
    pub fn backoff(mut self, backoff: Backoff) -> SupervisorBuilder {
        self.backoff = backoff;
        self
    }

    /// How many calls may wait for a restarting child, and how long.
    pub fn wait_limits(mut self, limits: WaitLimits) -> SupervisorBuilder {
        self.limits = limits;
        self
    }

    /// How many crashes the crash log keeps.
    pub fn crash_log_capacity(mut self, capacity: usize) -> SupervisorBuilder {
        self.log_capacity = capacity;
        self
    }

    /// Adds a child; children start in the order added.
    pub fn child(mut self, spec: ChildSpec) -> SupervisorBuilder {
        self.children.push(spec);
        self
    }

    /// What happens when this supervisor gives up and has no supervisor of
    /// its own to escalate to. A root supervisor's default stops the vat
    /// and exits the process with [`ROOT_GAVE_UP_EXIT`](super::ROOT_GAVE_UP_EXIT);
    /// any other's default only logs.
    pub fn on_give_up(mut self, hook: impl Fn(&Error) + 'static) -> SupervisorBuilder {
        self.on_give_up = Some(Rc::new(hook));
        self
    }

    /// Starts the supervisor and its children, in order, in the current
    /// vat. If a child cannot start, the ones started are stopped and the
    /// error is returned.
    ///
    /// # Panics
    /// Outside a vat.
    pub async fn start(self) -> Result<Supervisor, Error> {
        Supervisor::start(self, false).await
    }

    /// Starts the supervisor as the current vat's root supervisor: when it
    /// gives up, the vat stops and the process exits with
    /// [`ROOT_GAVE_UP_EXIT`](super::ROOT_GAVE_UP_EXIT), unless
    /// [`on_give_up`](SupervisorBuilder::on_give_up) says otherwise. A vat
    /// has at most one root supervisor; hand on the `Supervisor` this
    /// returns to whoever may manage its children.
    pub async fn start_root(self) -> Result<Supervisor, Error> {
        Supervisor::start(self, true).await
    }
}
