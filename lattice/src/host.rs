//! A host: a vat joined to a lattice. It registers itself (a lease it
//! renews), starts and stops instances of the kinds its program registered
//! factories for, registers each in the directory, and keeps every
//! instance's bindings applied (see [`crate::apply`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use sturdyrefs::{MintOptions, SturdyRef};
use tokio::sync::Notify;
use vat::net::Identity;
use vat::sturdy::Persistence;
use vat_directory::record::{
    GrantKey, HostRecord, InstanceKey, InstanceRecord, Record, VatRecord, GRANTS, HOSTS, INSTANCES,
    VATS,
};

use crate::actor::{ActorContext, Links};
use crate::apply::Applied;
use crate::error::LatticeError;
use crate::kind::{Kind, Role};
use crate::provider::{Provider, ProviderContext};
use crate::registry::Registry;
use crate::route::Fields;

/// Makes an actor instance: the capability other objects call.
pub type ActorFactory = Rc<dyn Fn(&ActorContext) -> Result<capnp::capability::Client, vat::Error>>;
/// Makes a provider instance.
pub type ProviderFactory = Rc<dyn Fn(&ProviderContext) -> Result<Box<dyn Provider>, vat::Error>>;

/// How long a host's lease lasts unless set: it renews every third of it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// How often a host re-reads its bindings even without a change.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

/// The object kind of instances' and grants' tokens in the host's store.
const TOKEN_KIND: &str = "lattice.instance";
/// The object kind of the host's own capability in its store.
const HOST_KIND: &str = "lattice.host";

/// The factories a host's program offers, and its settings.
pub struct HostBuilder {
    actors: BTreeMap<Kind, ActorFactory>,
    providers: BTreeMap<Kind, ProviderFactory>,
    lease: Duration,
    labels: BTreeMap<String, String>,
    plan: Option<PathBuf>,
    fields: Fields,
}

impl Default for HostBuilder {
    fn default() -> HostBuilder {
        HostBuilder::new()
    }
}

impl HostBuilder {
    /// A host with no factories.
    pub fn new() -> HostBuilder {
        HostBuilder {
            actors: BTreeMap::new(),
            providers: BTreeMap::new(),
            lease: DEFAULT_LEASE,
            labels: BTreeMap::new(),
            plan: None,
            fields: Fields::shipped(),
        }
    }

    /// Lets routes' content rules read fields of the calls of the methods
    /// `fields` knows, beside those of the shipped interfaces
    /// ([`Fields::shipped`]).
    pub fn fields(mut self, fields: &Fields) -> HostBuilder {
        self.fields.merge(fields);
        self
    }

    /// Keeps the list of instances the host runs in the file `path`
    /// (rewritten at each start and stop), and starts them again when the
    /// host joins: a host restarted, even after `kill -9`, runs what its
    /// operator asked for, and so gets its bindings back.
    pub fn plan(mut self, path: impl Into<PathBuf>) -> HostBuilder {
        self.plan = Some(path.into());
        self
    }

    /// Offers actors of `kind`, made by `factory`.
    pub fn actor(
        mut self,
        kind: Kind,
        factory: impl Fn(&ActorContext) -> Result<capnp::capability::Client, vat::Error> + 'static,
    ) -> HostBuilder {
        self.actors.insert(kind, Rc::new(factory));
        self
    }

    /// Offers providers of `kind`, made by `factory`.
    pub fn provider(
        mut self,
        kind: Kind,
        factory: impl Fn(&ProviderContext) -> Result<Box<dyn Provider>, vat::Error> + 'static,
    ) -> HostBuilder {
        self.providers.insert(kind, Rc::new(factory));
        self
    }

    /// The host's lease (default [`DEFAULT_LEASE`]).
    pub fn lease(mut self, lease: Duration) -> HostBuilder {
        self.lease = lease;
        self
    }

    /// A label of the host's vat record (`zone=eu`).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> HostBuilder {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Joins the lattice whose directory `directory` (this vat's host
    /// facet, or a single host's own store: [`Local`](crate::Local))
    /// records: registers the vat, clears what an earlier run of it
    /// left registered, and starts renewing its lease and applying its
    /// bindings. `persistence` (serving, with hints) mints the tokens of
    /// its instances; `identity` is proven on the connections it makes.
    /// Must be called in the vat.
    pub async fn join(
        self,
        directory: impl Into<Registry>,
        persistence: Persistence,
        identity: Option<Identity>,
    ) -> Result<Host, LatticeError> {
        let vat = persistence.vat().to_string();
        let hints = persistence.hints().iter().map(|h| h.to_string()).collect();
        let record = Record::Vat(VatRecord {
            hints,
            labels: self.labels,
            lease_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
            expires_at_ms: 0,
            gone: false,
        });
        let directory = directory.into();
        directory.put(&format!("{VATS}{vat}"), record).await?;
        let host = Host {
            inner: Rc::new(Inner {
                vat,
                directory,
                persistence,
                identity,
                actors: self.actors,
                providers: self.providers,
                running: RefCell::new(BTreeMap::new()),
                next: Cell::new(0),
                changed: Notify::new(),
                applied: RefCell::new(Applied::default()),
                stopped: Cell::new(false),
                plan: self.plan,
                fields: self.fields,
            }),
        };
        host.clear_earlier_run().await?;
        host.publish().await?;
        crate::apply::start(&host);
        host.renew_lease(self.lease);
        tracing::info!(host = %host.inner.vat, "joined the lattice");
        for (role, kind) in host.read_plan() {
            let started = match role {
                Role::Actor => host.start_actor(&kind.name, Some(&kind.version)).await,
                Role::Provider => host.start_provider(&kind.name, Some(&kind.version)).await,
            };
            if let Err(error) = started {
                tracing::warn!(host = %host.inner.vat, %kind, %error, "an instance of the plan did not start");
            }
        }
        Ok(host)
    }
}

/// A host of the lattice, in its vat. Clones share it.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Rc<Inner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("vat", &self.inner.vat)
            .field("instances", &self.inventory())
            .finish()
    }
}

pub(crate) struct Inner {
    pub(crate) vat: String,
    pub(crate) directory: Registry,
    pub(crate) persistence: Persistence,
    pub(crate) identity: Option<Identity>,
    actors: BTreeMap<Kind, ActorFactory>,
    providers: BTreeMap<Kind, ProviderFactory>,
    pub(crate) running: RefCell<BTreeMap<u64, Running>>,
    next: Cell<u64>,
    /// Woken when the bindings may need applying again.
    pub(crate) changed: Notify,
    pub(crate) applied: RefCell<Applied>,
    pub(crate) stopped: Cell<bool>,
    plan: Option<PathBuf>,
    pub(crate) fields: Fields,
}

/// One instance this host runs.
pub(crate) struct Running {
    pub(crate) kind: Kind,
    pub(crate) key: String,
    pub(crate) what: Instance,
}

pub(crate) enum Instance {
    Actor {
        client: capnp::capability::Client,
        links: Links,
        token: SturdyRef,
        object: sturdyrefs::ObjectRef,
    },
    Provider {
        provider: Rc<RefCell<Box<dyn Provider>>>,
    },
}

/// What runs on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Actor or provider.
    pub role: Role,
    /// Its kind.
    pub kind: Kind,
    /// Its number on the host.
    pub number: u64,
    /// Its directory key.
    pub key: String,
}

impl Host {
    /// This host's vat id.
    pub fn vat(&self) -> &str {
        &self.inner.vat
    }

    /// What runs here, by number.
    pub fn inventory(&self) -> Vec<InstanceInfo> {
        self.inner
            .running
            .borrow()
            .iter()
            .map(|(number, running)| InstanceInfo {
                role: match running.what {
                    Instance::Actor { .. } => Role::Actor,
                    Instance::Provider { .. } => Role::Provider,
                },
                kind: running.kind.clone(),
                number: *number,
                key: running.key.clone(),
            })
            .collect()
    }

    /// The log index of the route of `kind` that this host's routers of
    /// it follow (the oldest, if it has several; 0 for none), or `None` if
    /// it routes calls to no version of `kind`.
    pub fn followed(&self, kind: &str) -> Option<u64> {
        self.inner.applied.borrow().followed(kind)
    }

    /// The kinds this host's program can start.
    pub fn factories(&self) -> Vec<(Role, Kind)> {
        let actors = self.inner.actors.keys().map(|k| (Role::Actor, k.clone()));
        let providers = self
            .inner
            .providers
            .keys()
            .map(|k| (Role::Provider, k.clone()));
        actors.chain(providers).collect()
    }

    /// Picks from `factories` the kind `name` at `version`, or at its only
    /// version when `version` is `None`, with its factory.
    fn pick<F: Clone>(
        factories: &BTreeMap<Kind, F>,
        role: Role,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Kind, F), LatticeError> {
        let matching: Vec<(&Kind, &F)> = factories
            .iter()
            .filter(|(k, _)| k.name == name && version.is_none_or(|v| k.version == v))
            .collect();
        match matching.as_slice() {
            [(kind, factory)] => Ok(((*kind).clone(), (*factory).clone())),
            [] => Err(LatticeError::NoFactory {
                role,
                name: captp::log::Untrusted(name).to_string(),
                version: version.map(|v| captp::log::Untrusted(v).to_string()),
            }),
            several => Err(LatticeError::AmbiguousVersion {
                role,
                name: name.to_owned(),
                versions: several.iter().map(|(k, _)| k.version.clone()).collect(),
            }),
        }
    }

    /// Starts an instance of the actor `name` (at `version`, or its only
    /// one) and registers it; its bindings apply from then on. Answers its
    /// number.
    pub async fn start_actor(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<u64, LatticeError> {
        let (kind, factory) = Self::pick(&self.inner.actors, Role::Actor, name, version)?;
        let number = self.take_number();
        let links = Links::default();
        let context = ActorContext {
            kind: kind.clone(),
            number,
            links: links.clone(),
        };
        let client = factory(&context)?;
        let (object, token) = self.mint(client.clone()).await?;
        let key = self.instance_key(&kind, number);
        let record = Record::Instance(InstanceRecord {
            refs: vec![token.to_string()],
        });
        if let Err(error) = self.inner.directory.put(&key, record).await {
            self.unmint(&object, &token).await;
            return Err(error.into());
        }
        self.inner.running.borrow_mut().insert(
            number,
            Running {
                kind: kind.clone(),
                key,
                what: Instance::Actor {
                    client,
                    links,
                    token,
                    object,
                },
            },
        );
        tracing::info!(host = %self.inner.vat, actor = %kind, number, "actor instance started");
        self.write_plan();
        self.inner.changed.notify_one();
        Ok(number)
    }

    /// Starts an instance of the provider `name` (at `version`, or its only
    /// one) and registers it; it receives every binding of its kind.
    /// Answers its number.
    pub async fn start_provider(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<u64, LatticeError> {
        let (kind, factory) = Self::pick(&self.inner.providers, Role::Provider, name, version)?;
        let number = self.take_number();
        let provider = factory(&ProviderContext {
            kind: kind.clone(),
            number,
            persistence: self.inner.persistence.clone(),
        })?;
        let key = self.instance_key(&kind, number);
        let record = Record::Instance(InstanceRecord { refs: Vec::new() });
        self.inner.directory.put(&key, record).await?;
        self.inner.running.borrow_mut().insert(
            number,
            Running {
                kind: kind.clone(),
                key,
                what: Instance::Provider {
                    provider: Rc::new(RefCell::new(provider)),
                },
            },
        );
        tracing::info!(host = %self.inner.vat, provider = %kind, number, "provider instance started");
        self.write_plan();
        self.inner.changed.notify_one();
        Ok(number)
    }

    /// Stops instance `number`: a provider unbinds every binding (releasing
    /// what it provisioned) and shuts down; an actor's token is revoked.
    /// Its record goes; the bindings stay in the lattice.
    pub async fn stop(&self, number: u64) -> Result<(), LatticeError> {
        let running = self.inner.running.borrow_mut().remove(&number);
        let running = running.ok_or(LatticeError::NoInstance { number })?;
        crate::apply::release(self, number, &running).await;
        match &running.what {
            Instance::Actor { token, object, .. } => self.unmint(object, token).await,
            Instance::Provider { provider } => {
                let shutdown = provider.borrow_mut().shutdown();
                shutdown.await;
            }
        }
        let deleted = self.inner.directory.delete(&running.key).await;
        tracing::info!(host = %self.inner.vat, kind = %running.kind, number, "instance stopped");
        if !self.inner.stopped.get() {
            self.write_plan();
        }
        self.inner.changed.notify_one();
        deleted.map(drop).map_err(LatticeError::from)
    }

    /// The versions of `name` that run here, and the instances of each.
    fn running_versions(&self, name: &str) -> BTreeMap<String, Vec<u64>> {
        let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (number, running) in self.inner.running.borrow().iter() {
            if running.kind.name == name {
                versions
                    .entry(running.kind.version.clone())
                    .or_default()
                    .push(*number);
            }
        }
        versions
    }

    /// The version a lifecycle command on `name` acts on: `version` if it
    /// names one, else the only one of `running` (the versions of `name`
    /// running here); refused, changing nothing, when several run.
    fn version_to_act_on(
        name: &str,
        version: Option<&str>,
        running: &BTreeMap<String, Vec<u64>>,
    ) -> Result<Option<String>, LatticeError> {
        if let Some(version) = version {
            return Ok(Some(version.to_owned()));
        }
        match running.len() {
            0 => Ok(None),
            1 => Ok(running.keys().next().cloned()),
            _ => Err(LatticeError::SeveralVersionsRun {
                name: name.to_owned(),
                versions: running.keys().cloned().collect(),
            }),
        }
    }

    /// Stops every instance of `name` here (at `version`, or at the only
    /// version running: with several running and none named, refused with
    /// [`SeveralVersionsRun`](LatticeError::SeveralVersionsRun) and nothing
    /// stops). Answers the numbers stopped.
    pub async fn stop_kind(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<u64>, LatticeError> {
        let mut running = self.running_versions(name);
        let Some(version) = Self::version_to_act_on(name, version, &running)? else {
            return Ok(Vec::new());
        };
        let numbers = running.remove(&version).unwrap_or_default();
        for number in &numbers {
            self.stop(*number).await?;
        }
        Ok(numbers)
    }

    /// Makes `count` instances of `name` run here (at `version`; without
    /// one, at the only version running, or the only one registered when
    /// none runs; with several running, refused and nothing changes):
    /// starts or stops instances (the newest first) to reach it. Answers
    /// the instances of that version now running.
    pub async fn scale(
        &self,
        name: &str,
        version: Option<&str>,
        count: usize,
    ) -> Result<Vec<InstanceInfo>, LatticeError> {
        let mut running = self.running_versions(name);
        let version = Self::version_to_act_on(name, version, &running)?;
        let version = version.as_deref();
        let (role, kind) = match (
            Self::pick(&self.inner.actors, Role::Actor, name, version),
            Self::pick(&self.inner.providers, Role::Provider, name, version),
        ) {
            (Ok((kind, _)), _) => (Role::Actor, kind),
            (_, Ok((kind, _))) => (Role::Provider, kind),
            (Err(error), _) => return Err(error),
        };
        let mut numbers = running.remove(&kind.version).unwrap_or_default();
        while numbers.len() < count {
            let number = match role {
                Role::Actor => self.start_actor(&kind.name, Some(&kind.version)).await?,
                Role::Provider => self.start_provider(&kind.name, Some(&kind.version)).await?,
            };
            numbers.push(number);
        }
        while numbers.len() > count {
            if let Some(number) = numbers.pop() {
                self.stop(number).await?;
            }
        }
        Ok(self
            .inventory()
            .into_iter()
            .filter(|info| info.kind == kind)
            .collect())
    }

    /// Stops every instance and leaves the lattice (the vat record stays,
    /// its lease lapsing). The plan keeps the instances, for the next start.
    pub async fn shutdown(&self) {
        self.inner.stopped.set(true);
        let numbers: Vec<u64> = self.inner.running.borrow().keys().copied().collect();
        for number in numbers {
            if let Err(error) = self.stop(number).await {
                tracing::warn!(host = %self.inner.vat, number, %error, "instance did not stop cleanly");
            }
        }
        self.inner.changed.notify_one();
    }

    /// The plan's instances: one line `actor|provider NAME VERSION` each.
    fn read_plan(&self) -> Vec<(Role, Kind)> {
        let Some(path) = &self.inner.plan else {
            return Vec::new();
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "the host's plan could not be read");
                return Vec::new();
            }
        };
        text.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let role = match words.next()? {
                    "actor" => Role::Actor,
                    "provider" => Role::Provider,
                    _ => return None,
                };
                let kind = Kind::new(words.next()?, words.next()?).ok()?;
                Some((role, kind))
            })
            .collect()
    }

    fn write_plan(&self) {
        let Some(path) = &self.inner.plan else { return };
        let text: String = self
            .inventory()
            .iter()
            .map(|i| format!("{} {} {}\n", i.role, i.kind.name, i.kind.version))
            .collect();
        // Written aside and renamed, so a crash leaves the old plan or the new.
        let aside = path.with_extension("new");
        let written = std::fs::write(&aside, text).and_then(|()| std::fs::rename(&aside, path));
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "the host's plan could not be written");
        }
    }

    /// Serves the host's own capability and records its token under
    /// `hosts/<vat-id>`, for the operator.
    async fn publish(&self) -> Result<(), LatticeError> {
        let object = vat::sturdy::object_ref(HOST_KIND, 1)?;
        let service: schema::lattice_capnp::host::Client =
            vat::export(crate::service::HostService { host: self.clone() });
        self.inner
            .persistence
            .provide(object.clone(), service.client);
        let token = self
            .inner
            .persistence
            .mint(&object, MintOptions::default())
            .await?;
        let record = Record::Host(HostRecord {
            token: token.to_string(),
        });
        self.inner
            .directory
            .put(&format!("{HOSTS}{}", self.inner.vat), record)
            .await?;
        Ok(())
    }

    fn take_number(&self) -> u64 {
        let number = self.inner.next.get();
        self.inner.next.set(number + 1);
        number
    }

    fn instance_key(&self, kind: &Kind, number: u64) -> String {
        format!("{INSTANCES}{kind}/{}/{number}", self.inner.vat)
    }

    /// Makes `client` restorable by a fresh token.
    pub(crate) async fn mint(
        &self,
        client: capnp::capability::Client,
    ) -> Result<(sturdyrefs::ObjectRef, SturdyRef), LatticeError> {
        let mut id = [0u8; 8];
        vat_env::fill(&mut id)
            .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
        let object = vat::sturdy::object_ref(TOKEN_KIND, u64::from_le_bytes(id))?;
        self.inner.persistence.provide(object.clone(), client);
        let token = self
            .inner
            .persistence
            .mint(&object, MintOptions::default())
            .await;
        match token {
            Ok(token) => Ok((object, token)),
            Err(error) => {
                self.inner.persistence.forget(&object);
                Err(error.into())
            }
        }
    }

    /// Ends a token [`mint`](Host::mint) made: references restored from it
    /// fail with `Revoked`.
    pub(crate) async fn unmint(&self, object: &sturdyrefs::ObjectRef, token: &SturdyRef) {
        self.inner.persistence.forget(object);
        if let Err(error) = self.inner.persistence.revoke(&token.swiss().hash()).await {
            tracing::warn!(host = %self.inner.vat, %error, "a token could not be revoked");
        }
    }

    /// Deletes the instances and grants an earlier run of this vat
    /// registered, and revokes their tokens and the earlier host
    /// capability's: none of them runs now.
    async fn clear_earlier_run(&self) -> Result<(), LatticeError> {
        let persistence = &self.inner.persistence;
        for record in persistence.tokens()? {
            let ours = [TOKEN_KIND, HOST_KIND].contains(&record.object.kind());
            if ours && !record.revoked {
                persistence.revoke(&record.swiss_hash).await?;
            }
        }
        let vat = &self.inner.vat;
        for prefix in [INSTANCES, GRANTS] {
            let listed = self.inner.directory.list(prefix).await?;
            for entry in listed {
                let ours = InstanceKey::parse(&entry.key).is_ok_and(|k| k.vat == vat)
                    || GrantKey::parse(&entry.key).is_ok_and(|k| k.vat == vat);
                if ours {
                    self.inner.directory.delete(&entry.key).await?;
                }
            }
        }
        Ok(())
    }

    fn renew_lease(&self, lease: Duration) {
        let weak = Rc::downgrade(&self.inner);
        vat_env::spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(100));
            loop {
                vat_env::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.stopped.get() {
                    return;
                }
                let directory = inner.directory.clone();
                let vat = inner.vat.clone();
                drop(inner);
                if let Err(error) = directory.renew(&vat).await {
                    tracing::warn!(host = %vat, %error, "the host could not renew its lease; it goes on serving");
                }
            }
        });
    }
}
