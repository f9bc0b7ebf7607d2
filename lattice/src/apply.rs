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
use vat::group::{Group, Membership, Strategy};
use vat::{caretaker, Revoker};
use vat_directory::record::{
    GrantKey, GrantOutcome, GrantRecord, InstanceKey, Record, BINDINGS, GRANTS, INSTANCES,
};

use crate::error::LatticeError;
use crate::host::{Host, Instance, Running, RESYNC_INTERVAL};
use crate::kind::{config_digest, BindingId, Config};
use crate::provider::{Binding, ProvisionError};

/// A provider instance, shared between the host's table and a pass.
pub(crate) type Shared = Rc<std::cell::RefCell<Box<dyn crate::Provider>>>;

/// What this host has applied.
#[derive(Default)]
pub(crate) struct Applied {
    /// For providers here: each bound actor kind's instances, as a group.
    actor_groups: BTreeMap<String, Members>,
    /// Per provider instance here and binding: what it was given.
    provided: BTreeMap<(u64, BindingId), Provided>,
    /// For actors here: per binding, the provider's grants as a group and
    /// the revocable capability to it the actor instances hold.
    links: BTreeMap<BindingId, Link>,
}

/// A group whose members follow directory entries (instance or grant keys
/// to tokens).
struct Members {
    group: Group,
    members: BTreeMap<String, (String, Membership)>,
}

impl Members {
    fn new(name: String) -> Members {
        Members {
            group: Group::new(name, Strategy::RoundRobin),
            members: BTreeMap::new(),
        }
    }

    /// Makes the members exactly `wanted` (key to token text), joining a
    /// local capability where `local` has one for the key, else a healing
    /// reference to the token.
    fn follow(
        &mut self,
        host: &Host,
        wanted: &BTreeMap<String, String>,
        local: &dyn Fn(&str) -> Option<capnp::capability::Client>,
    ) {
        self.members
            .retain(|key, (token, _)| wanted.get(key) == Some(token));
        for (key, token) in wanted {
            if self.members.contains_key(key) {
                continue;
            }
            let membership = match local(key) {
                Some(client) => self.group.join(client),
                None => match token.parse::<SturdyRef>() {
                    // Another vat's: a healing reference, asked for its
                    // own request while connected (no copy per call).
                    Ok(token) => self.group.join_forwarding(vat::sturdy::healing(
                        token,
                        host.inner.identity.clone(),
                        vat::sturdy::HealOptions::default(),
                    )),
                    Err(error) => {
                        tracing::warn!(key = %key, %error, "a registered token does not parse; skipped");
                        continue;
                    }
                },
            };
            self.members
                .insert(key.clone(), (token.clone(), membership));
        }
    }

    fn client(&self) -> capnp::capability::Client {
        self.group.client()
    }
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
    members: Members,
    client: capnp::capability::Client,
    revoker: Revoker,
}

/// Starts the host's applying task and the watches that wake it.
pub(crate) fn start(host: &Host) {
    for prefix in [BINDINGS, GRANTS, INSTANCES] {
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

/// Lists `prefix` as key to token text, the first token of each instance
/// record, or each grant that granted a capability.
async fn tokens(host: &Host, prefix: &str) -> Result<BTreeMap<String, String>, LatticeError> {
    let listed = host.inner.directory.list(prefix).await?;
    let mut tokens = BTreeMap::new();
    for entry in listed {
        let token = match entry.record {
            Record::Instance(instance) => instance.refs.into_iter().next(),
            Record::Grant(GrantRecord {
                outcome: GrantOutcome::Granted(token),
                ..
            }) if !token.is_empty() => Some(token),
            _ => None,
        };
        if let Some(token) = token {
            tokens.insert(entry.key, token);
        }
    }
    Ok(tokens)
}

/// The provider side: each provider instance here holds every binding of
/// its kind, with the current config.
async fn provide(host: &Host, bindings: &Bindings) -> Result<(), LatticeError> {
    let providers: Vec<(u64, String, Shared)> = host
        .inner
        .running
        .borrow()
        .iter()
        .filter_map(|(number, running)| match &running.what {
            Instance::Provider { provider } => {
                Some((*number, running.kind.name.clone(), Rc::clone(provider)))
            }
            Instance::Actor { .. } => None,
        })
        .collect();
    // The groups of bound actors' instances.
    let actor_kinds: BTreeSet<String> = bindings
        .keys()
        .filter(|b| providers.iter().any(|(_, kind, _)| *kind == b.provider))
        .map(|b| b.actor.clone())
        .collect();
    for actor in &actor_kinds {
        let wanted = tokens(host, &format!("{INSTANCES}{actor}@")).await?;
        let local = |key: &str| local_actor(host, key);
        let mut applied = host.inner.applied.borrow_mut();
        let members = applied
            .actor_groups
            .entry(actor.clone())
            .or_insert_with(|| Members::new(format!("actor {actor}")));
        members.follow(host, &wanted, &local);
    }
    host.inner
        .applied
        .borrow_mut()
        .actor_groups
        .retain(|kind, _| actor_kinds.contains(kind));

    for (number, kind, provider) in &providers {
        for (id, (config, index)) in bindings.iter().filter(|(b, _)| b.provider == *kind) {
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
    let actor = host
        .inner
        .applied
        .borrow()
        .actor_groups
        .get(&id.actor)
        .map(Members::client);
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

/// The actor side: each actor instance here holds, for each binding of
/// its kind, a revocable capability to the provider's grants.
async fn link(host: &Host, bindings: &Bindings) -> Result<(), LatticeError> {
    let actors: Vec<(String, crate::Links)> = host
        .inner
        .running
        .borrow()
        .values()
        .filter_map(|running| match &running.what {
            Instance::Actor { links, .. } => Some((running.kind.name.clone(), links.clone())),
            Instance::Provider { .. } => None,
        })
        .collect();
    let wanted: Vec<&BindingId> = bindings
        .keys()
        .filter(|b| actors.iter().any(|(kind, _)| *kind == b.actor))
        .collect();
    for id in &wanted {
        let grants = tokens(host, &id.grants()).await?;
        let ours: BTreeMap<String, capnp::capability::Client> = grants
            .keys()
            .filter_map(|key| local_grant(host, key).map(|client| (key.clone(), client)))
            .collect();
        let local = |key: &str| ours.get(key).cloned();
        let client = {
            let mut applied = host.inner.applied.borrow_mut();
            let link = applied.links.entry((*id).clone()).or_insert_with(|| {
                let members = Members::new(format!("provider {} for {}", id.provider, id.actor));
                let (client, revoker) = caretaker(members.client());
                Link {
                    members,
                    client,
                    revoker,
                }
            });
            link.members.follow(host, &grants, &local);
            link.client.clone()
        };
        for (kind, links) in &actors {
            if *kind == id.actor {
                links.grant(&id.provider, &id.link, client.clone());
            }
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
        for (kind, links) in &actors {
            if *kind == id.actor {
                links.take(&id.provider, &id.link);
            }
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
