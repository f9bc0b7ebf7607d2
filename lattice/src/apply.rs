//! Keeping a host's bindings applied: one task per host reads the
//! bindings it is shown (those of kinds it runs), and brings every
//! instance it runs in line with them.
//!
//! ```text
//! bindings/A/P/L ──► hosts running P: each P instance ─ bind(revocable(group of A's instances), config)
//!                      └─ grants/A/P/L/<vat>/<n>: the token of what it grants A, or why it failed
//!                ──► hosts running A: revocable(group of the grants' capabilities) ─► each A
//!                      instance's Links under (P, L)
//! deleted        ──► P instances unbind (release ports); both revocables revoked; grants revoked
//! ```
//!
//! A pass runs when a watch of `bindings/`, `grants/` or `instances/`
//! reports a change, when an instance starts or stops here, and every
//! [`RESYNC_INTERVAL`](crate::host::RESYNC_INTERVAL) regardless. It is
//! idempotent: a binding an instance holds with the same config is left
//! alone (no re-provisioning); a changed config is a `reconfigure`.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use sturdyrefs::SturdyRef;
use vat::{caretaker, Revoker};
use vat_directory::record::{
    GrantKey, GrantOutcome, GrantRecord, InstanceKey, Record, BINDINGS, GRANTS, INSTANCES, ROUTES,
};

use crate::error::LatticeError;
use crate::host::{Host, Instance, Running, RESYNC_INTERVAL};
use crate::kind::{config_digest, BindingId, Config, Kind};
use crate::provider::{Binding, ProvisionError};
use crate::route::Router;

/// A provider instance, shared between the host's table and a pass.
pub(crate) type Shared = Rc<std::cell::RefCell<Box<dyn crate::Provider>>>;

/// What this host has applied.
#[derive(Default)]
pub(crate) struct Applied {
    /// For providers here: each bound actor kind's versions and router.
    actor_routers: BTreeMap<String, Router>,
    /// Per provider instance here and binding: what it was given.
    provided: BTreeMap<(u64, BindingId), Provided>,
    /// For actors here: per binding, the provider's grants as a group and
    /// the revocable capability to it the actor instances hold.
    links: BTreeMap<BindingId, Link>,
}

struct Provided {
    digest: String,
    revoker: Revoker,
    /// What the instance granted the actor, made restorable, and the grant
    /// it wrote.
    grant: Option<Granted>,
    failed: Option<String>,
    /// The binding's log index the grant last answered.
    answered: u64,
}

struct Granted {
    client: capnp::capability::Client,
    object: sturdyrefs::ObjectRef,
    token: SturdyRef,
}

struct Link {
    /// The provider's grants, by the version of the instance that granted.
    router: Router,
    /// What the actor instances hold: revocable, over the router or (for
    /// a binding of one provider version) that version's grants.
    client: capnp::capability::Client,
    revoker: Revoker,
}

impl Applied {
    /// The log index of the route of `kind` this host's routers of it
    /// follow (the oldest, if several), or `None` if it routes none.
    pub(crate) fn followed(&self, kind: &str) -> Option<u64> {
        let actors = self.actor_routers.get(kind).map(Router::route_index);
        let providers = self
            .links
            .iter()
            .filter(|(id, _)| {
                let provider = id.provider_kind();
                // A binding of one version follows no route.
                provider.name == kind && provider.version.is_none()
            })
            .map(|(_, link)| link.router.route_index());
        actors.into_iter().chain(providers).min()
    }
}

/// Starts the host's applying task and the watches that wake it.
pub(crate) fn start(host: &Host) {
    for prefix in [BINDINGS, GRANTS, INSTANCES, ROUTES] {
        let weak = Rc::downgrade(&host.inner);
        vat_env::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let mut watch = inner.directory.watch(prefix);
                drop(inner);
                while let Some(event) = watch.next().await {
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.stopped.get() {
                        return;
                    }
                    if let Err(error) = event {
                        tracing::debug!(prefix, %error, "a watch ended; watching again");
                        break;
                    }
                    inner.changed.notify_one();
                }
                vat_env::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    let host = host.clone();
    vat_env::spawn(async move {
        loop {
            if host.inner.stopped.get() {
                return;
            }
            let span = tracing::debug_span!("bindings pass", host = %host.inner.vat);
            if let Err(error) = tracing::Instrument::instrument(pass(&host), span).await {
                tracing::warn!(host = %host.inner.vat, %error, "bindings not applied; retrying");
            }
            let changed = host.inner.changed.notified();
            tokio::select! {
                () = changed => {}
                () = vat_env::sleep(RESYNC_INTERVAL) => {}
            }
        }
    });
}

/// One pass: bring every instance here in line with the bindings.
async fn pass(host: &Host) -> Result<(), LatticeError> {
    let bindings = read_bindings(host).await?;
    provide(host, &bindings).await?;
    link(host, &bindings).await?;
    Ok(())
}

/// The bindings this host is shown: config, and the log index of the
/// binding's last write.
type Bindings = BTreeMap<BindingId, (Config, u64)>;

async fn read_bindings(host: &Host) -> Result<Bindings, LatticeError> {
    let listed = host.inner.directory.list(BINDINGS).await?;
    let mut bindings = BTreeMap::new();
    for entry in listed {
        if let (Some(id), Record::Binding(binding)) =
            (BindingId::from_key(&entry.key), entry.record)
        {
            bindings.insert(id, (binding.config, entry.index));
        }
    }
    Ok(bindings)
}

/// The provider side: each provider instance here holds every binding
/// that selects its kind and version, with the current config.
async fn provide(host: &Host, bindings: &Bindings) -> Result<(), LatticeError> {
    let providers: Vec<(u64, Kind, Shared)> = host
        .inner
        .running
        .borrow()
        .iter()
        .filter_map(|(number, running)| match &running.what {
            Instance::Provider { provider } => {
                Some((*number, running.kind.clone(), Rc::clone(provider)))
            }
            Instance::Actor { .. } => None,
        })
        .collect();
    let selects =
        |id: &BindingId, kind: &Kind| id.provider_kind().selects(&kind.name, &kind.version);
    // The routers of bound actors.
    let actor_kinds: BTreeSet<String> = bindings
        .keys()
        .filter(|b| providers.iter().any(|(_, kind, _)| selects(b, kind)))
        .map(|b| b.actor_kind().name.to_owned())
        .collect();
    for actor in &actor_kinds {
        let wanted = host.inner.directory.instances_by_version(actor).await?;
        let route = host.inner.directory.route(actor).await?;
        let local = |key: &str| local_actor(host, key);
        let mut applied = host.inner.applied.borrow_mut();
        let router = applied
            .actor_routers
            .entry(actor.clone())
            .or_insert_with(|| {
                Router::named(actor, format!("actor {actor}"), host.inner.fields.clone())
            });
        router.follow(host.inner.identity.as_ref(), &wanted, &local);
        router.set_route(route);
    }
    host.inner
        .applied
        .borrow_mut()
        .actor_routers
        .retain(|kind, _| actor_kinds.contains(kind));

    for (number, kind, provider) in &providers {
        for (id, (config, index)) in bindings.iter().filter(|(b, _)| selects(b, kind)) {
            provide_one(host, *number, provider, id, config, *index).await?;
        }
    }
    // Bindings gone, or instances stopped: release.
    let stale: Vec<(u64, BindingId)> = host
        .inner
        .applied
        .borrow()
        .provided
        .keys()
        .filter(|(number, id)| {
            !bindings.contains_key(id) || !providers.iter().any(|(n, _, _)| n == number)
        })
        .cloned()
        .collect();
    for (number, id) in stale {
        let provider = providers
            .iter()
            .find(|(n, _, _)| *n == number)
            .map(|(_, _, p)| Rc::clone(p));
        unprovide(host, number, &id, provider, Keep::Nothing).await;
    }
    Ok(())
}

async fn provide_one(
    host: &Host,
    number: u64,
    provider: &Shared,
    id: &BindingId,
    config: &Config,
    index: u64,
) -> Result<(), LatticeError> {
    let digest = config_digest(config);
    let slot = (number, id.clone());
    let (held, failed, answered) = {
        let applied = host.inner.applied.borrow();
        match applied.provided.get(&slot) {
            Some(p) => (Some(p.digest.clone()), p.failed.is_some(), p.answered),
            None => (None, false, 0),
        }
    };
    let mut previous_failure = None;
    match held {
        Some(held) if held == digest && !failed => return Ok(()),
        Some(held) if held != digest && !failed => {
            let reconfigured = provider.borrow_mut().reconfigure(id, config);
            let outcome = reconfigured.await;
            if outcome == Err(ProvisionError::NoReconfigure) {
                // The provider takes a new config only as a new binding.
                unprovide(host, number, id, Some(Rc::clone(provider)), Keep::Grant).await;
                return Box::pin(provide_one(host, number, provider, id, config, index)).await;
            }
            let grant_token = {
                let mut applied = host.inner.applied.borrow_mut();
                let Some(p) = applied.provided.get_mut(&slot) else {
                    return Ok(());
                };
                p.digest = digest.clone();
                p.answered = index;
                p.failed = outcome.as_ref().err().map(|e| e.to_string());
                p.grant.as_ref().map(|g| g.token.to_string())
            };
            let outcome = match outcome {
                Ok(()) => GrantOutcome::Granted(grant_token.unwrap_or_default()),
                Err(error) => GrantOutcome::Failed(error.to_string()),
            };
            tracing::info!(host = %host.inner.vat, binding = %id, number, "binding reconfigured");
            return write_grant(host, number, id, digest, outcome).await;
        }
        // Failed before: try afresh, keeping the failure to compare.
        Some(_) => {
            previous_failure =
                unprovide(host, number, id, Some(Rc::clone(provider)), Keep::Grant).await;
        }
        None => {}
    }
    // The actor's router, or its version's group for a binding of one.
    let actor = {
        let mut applied = host.inner.applied.borrow_mut();
        let selector = id.actor_kind();
        applied
            .actor_routers
            .get_mut(selector.name)
            .map(|router| match selector.version {
                Some(version) => router.version::<capnp::capability::Client>(version),
                None => router.client(),
            })
    };
    let Some(actor) = actor else { return Ok(()) };
    let (actor, revoker) = caretaker(actor);
    let binding = Binding {
        id: id.clone(),
        actor,
        config: config.clone(),
    };
    let bound = provider.borrow_mut().bind(binding);
    let outcome = bound.await;
    let (grant, failed, outcome) = match outcome {
        Ok(Some(client)) => {
            let (object, token) = host.mint(client.clone()).await?;
            let text = token.to_string();
            (
                Some(Granted {
                    client,
                    object,
                    token,
                }),
                None,
                GrantOutcome::Granted(text),
            )
        }
        Ok(None) => (None, None, GrantOutcome::Granted(String::new())),
        Err(error) => {
            let why = error.to_string();
            tracing::warn!(host = %host.inner.vat, binding = %id, number, error = %why, "a provider could not provision a binding");
            (None, Some(why.clone()), GrantOutcome::Failed(why))
        }
    };
    if failed.is_none() {
        tracing::info!(host = %host.inner.vat, binding = %id, number, "binding provisioned");
    }
    host.inner.applied.borrow_mut().provided.insert(
        slot,
        Provided {
            digest: digest.clone(),
            revoker,
            grant,
            failed: failed.clone(),
            answered: index,
        },
    );
    // A retry that fails the same way writes nothing new, unless the
    // binding was set again since (its setter waits for an answer).
    if failed.is_some() && previous_failure == failed && answered == index {
        return Ok(());
    }
    write_grant(host, number, id, digest, outcome).await
}

async fn write_grant(
    host: &Host,
    number: u64,
    id: &BindingId,
    digest: String,
    outcome: GrantOutcome,
) -> Result<(), LatticeError> {
    let key = id.grant_key(&host.inner.vat, number);
    let record = Record::Grant(GrantRecord {
        config_digest: digest,
        outcome,
    });
    match host.inner.directory.put(&key, record).await {
        Ok(_) => Ok(()),
        // The binding went meanwhile: the next pass unbinds.
        Err(vat_directory::DirectoryError::Refused { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Whether [`unprovide`] deletes the instance's grant record.
#[derive(PartialEq, Eq)]
pub(crate) enum Keep {
    /// Delete it: the instance no longer holds the binding.
    Nothing,
    /// Keep it: a new grant replaces it at once.
    Grant,
}

/// Takes binding `id` from provider instance `number`: revokes what it was
/// given and what it granted, has it release what it provisioned, and
/// deletes its grant unless told to keep it. Answers why it had failed, if
/// it had.
pub(crate) async fn unprovide(
    host: &Host,
    number: u64,
    id: &BindingId,
    provider: Option<Shared>,
    keep: Keep,
) -> Option<String> {
    let taken = host
        .inner
        .applied
        .borrow_mut()
        .provided
        .remove(&(number, id.clone()));
    let provided = taken?;
    provided
        .revoker
        .revoke(format!("the binding {id} was removed"));
    if let Some(provider) = provider {
        let unbound = provider.borrow_mut().unbind(id);
        unbound.await;
    }
    if let Some(grant) = provided.grant {
        host.unmint(&grant.object, &grant.token).await;
    }
    if keep == Keep::Nothing {
        let key = id.grant_key(&host.inner.vat, number);
        if let Err(error) = host.inner.directory.delete(&key).await {
            tracing::debug!(%error, "a grant was not deleted (the binding's removal deletes it)");
        }
        tracing::info!(host = %host.inner.vat, binding = %id, number, "binding released");
    }
    provided.failed
}

/// What an instance stopping here releases now, rather than at the next
/// pass: a provider's bindings.
pub(crate) async fn release(host: &Host, number: u64, running: &Running) {
    if let Instance::Provider { provider } = &running.what {
        let ids: Vec<BindingId> = host
            .inner
            .applied
            .borrow()
            .provided
            .keys()
            .filter(|(n, _)| *n == number)
            .map(|(_, id)| id.clone())
            .collect();
        for id in ids {
            unprovide(host, number, &id, Some(Rc::clone(provider)), Keep::Nothing).await;
        }
    }
}

/// The actor side: each actor instance here holds, for each binding that
/// selects its kind and version, a revocable capability to the
/// provider's grants (through the provider's router, or to one version's
/// grants for a binding of that version). Where two bindings give an
/// instance the same provider and link, the one naming its version wins.
async fn link(host: &Host, bindings: &Bindings) -> Result<(), LatticeError> {
    let actors: Vec<(Kind, crate::Links)> = host
        .inner
        .running
        .borrow()
        .values()
        .filter_map(|running| match &running.what {
            Instance::Actor { links, .. } => Some((running.kind.clone(), links.clone())),
            Instance::Provider { .. } => None,
        })
        .collect();
    let selects = |id: &BindingId, kind: &Kind| id.actor_kind().selects(&kind.name, &kind.version);
    let wanted: Vec<&BindingId> = bindings
        .keys()
        .filter(|b| actors.iter().any(|(kind, _)| selects(b, kind)))
        .collect();
    let mut clients: BTreeMap<&BindingId, capnp::capability::Client> = BTreeMap::new();
    for id in &wanted {
        let provider = id.provider_kind();
        let grants = host.inner.directory.tokens(&id.grants()).await?;
        // Which version granted each: the provider's instance records say.
        let versions: BTreeMap<(String, String), String> = host
            .inner
            .directory
            .keys(&format!("{INSTANCES}{}@", provider.name))
            .await?
            .into_iter()
            .filter_map(|key| {
                let i = InstanceKey::parse(&key).ok()?;
                (i.kind == provider.name)
                    .then(|| ((i.vat.to_owned(), i.n.to_owned()), i.version.to_owned()))
            })
            .collect();
        let mut by_version: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (key, token) in grants {
            let Ok(grant) = GrantKey::parse(&key) else {
                continue;
            };
            let Some(version) = versions.get(&(grant.vat.to_owned(), grant.n.to_owned())) else {
                continue;
            };
            by_version
                .entry(version.clone())
                .or_default()
                .insert(key, token);
        }
        let route = match provider.version {
            Some(_) => None,
            None => host.inner.directory.route(provider.name).await?,
        };
        let ours: BTreeMap<String, capnp::capability::Client> = by_version
            .values()
            .flat_map(|grants| grants.keys())
            .filter_map(|key| local_grant(host, key).map(|client| (key.clone(), client)))
            .collect();
        let local = |key: &str| ours.get(key).cloned();
        let client = {
            let mut applied = host.inner.applied.borrow_mut();
            let link = applied.links.entry((*id).clone()).or_insert_with(|| {
                let mut router = Router::named(
                    provider.name,
                    format!("provider {} for {}", provider.name, id.actor),
                    host.inner.fields.clone(),
                );
                let target: capnp::capability::Client = match provider.version {
                    Some(version) => router.version(version),
                    None => router.client(),
                };
                let (client, revoker) = caretaker(target);
                Link {
                    router,
                    client,
                    revoker,
                }
            });
            link.router
                .follow(host.inner.identity.as_ref(), &by_version, &local);
            link.router.set_route(route);
            link.client.clone()
        };
        clients.insert(id, client);
    }
    // Each actor instance: per (provider, link), its most specific binding.
    for (kind, links) in &actors {
        let mut granted: BTreeMap<(String, String), (bool, capnp::capability::Client)> =
            BTreeMap::new();
        for (id, client) in &clients {
            if !selects(id, kind) {
                continue;
            }
            let specific = id.actor_kind().version.is_some();
            let slot = (id.provider_kind().name.to_owned(), id.link.clone());
            let better = granted.get(&slot).is_none_or(|(held, _)| specific && !held);
            if better {
                granted.insert(slot, (specific, client.clone()));
            }
        }
        for (provider, link) in links.bound() {
            if !granted.contains_key(&(provider.clone(), link.clone())) {
                links.take(&provider, &link);
            }
        }
        for ((provider, link), (_, client)) in granted {
            links.grant(&provider, &link, client);
        }
    }
    let gone: Vec<BindingId> = host
        .inner
        .applied
        .borrow()
        .links
        .keys()
        .filter(|id| !wanted.contains(id))
        .cloned()
        .collect();
    for id in gone {
        if let Some(link) = host.inner.applied.borrow_mut().links.remove(&id) {
            link.revoker.revoke(format!("the binding {id} was removed"));
        }
        tracing::info!(host = %host.inner.vat, binding = %id, "binding's grant to the actor revoked");
    }
    Ok(())
}

/// The capability of the actor instance registered under `key`, if it
/// runs here.
fn local_actor(host: &Host, key: &str) -> Option<capnp::capability::Client> {
    let instance = InstanceKey::parse(key).ok()?;
    if instance.vat != host.inner.vat {
        return None;
    }
    let running = host.inner.running.borrow();
    running.values().find_map(|r| match &r.what {
        Instance::Actor { client, .. } if r.key == key => Some(client.clone()),
        _ => None,
    })
}

/// The capability a provider instance here granted under the grant `key`.
fn local_grant(host: &Host, key: &str) -> Option<capnp::capability::Client> {
    let grant = GrantKey::parse(key).ok()?;
    if grant.vat != host.inner.vat {
        return None;
    }
    let number: u64 = grant.n.parse().ok()?;
    let id = BindingId::from(&grant.binding);
    let applied = host.inner.applied.borrow();
    let provided = applied.provided.get(&(number, id))?;
    provided.grant.as_ref().map(|g| g.client.clone())
}
