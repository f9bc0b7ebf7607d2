//! What an operator does to a lattice, through the directory's admin
//! facet: set and remove bindings, and see them with their instances and
//! how each provider instance took them.

use std::time::Duration;

use vat_directory::client::Entry;
use vat_directory::record::{
    BindingRecord, GrantKey, GrantOutcome, InstanceKey, Record, VatRecord, BINDINGS, INSTANCES,
    VATS,
};

use crate::error::LatticeError;
use crate::kind::{config_digest, BindingId, Config};
use crate::registry::Registry;

/// How long [`Lattice::set_binding`] waits for every provider instance to
/// take a binding.
pub const SET_BINDING_WAIT: Duration = Duration::from_secs(10);

/// A lattice as its operator sees it.
#[derive(Clone)]
pub struct Lattice {
    pub(crate) directory: Registry,
    pub(crate) identity: Option<vat::net::Identity>,
    pub(crate) fields: crate::route::Fields,
    /// The references it made, refreshed at once when it changes a route.
    pub(crate) references: crate::reference::Made,
}

impl std::fmt::Debug for Lattice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lattice")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// A binding, its instances, and how each provider instance took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingStatus {
    /// Which binding.
    pub id: BindingId,
    /// Its settings.
    pub config: Config,
    /// Instances of the actor in the lattice.
    pub actor_instances: usize,
    /// Instances of the provider in the lattice.
    pub provider_instances: usize,
    /// One per provider instance that answered.
    pub grants: Vec<GrantStatus>,
}

/// How one provider instance took a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantStatus {
    /// The instance: `<vat>/<n>`.
    pub instance: String,
    /// Whether it applied the binding's current config.
    pub current: bool,
    /// Why it could not provision the binding, if it could not.
    pub failed: Option<String>,
    /// The directory's log index of the grant's last write.
    pub index: u64,
}

impl BindingStatus {
    /// Whether every provider instance answered the binding as written at
    /// log index `since`: it provisioned the current config (at any time:
    /// setting a binding again provisions nothing anew), or it failed to
    /// since then.
    pub fn settled(&self, since: u64) -> bool {
        self.answers(since).count() >= self.provider_instances
    }

    /// The provider instances that failed the binding since log index
    /// `since` (0: ever, with the current config).
    pub fn failures(&self, since: u64) -> Vec<(String, String)> {
        self.answers(since)
            .filter_map(|g| g.failed.clone().map(|why| (g.instance.clone(), why)))
            .collect()
    }

    fn answers(&self, since: u64) -> impl Iterator<Item = &GrantStatus> {
        self.grants
            .iter()
            .filter(move |g| g.current && (g.failed.is_none() || g.index > since))
    }
}

impl Lattice {
    /// The lattice `directory` (an admin facet, or a single host's own
    /// store: [`Local::admin`](crate::Local)) records.
    pub fn new(directory: impl Into<Registry>) -> Lattice {
        Lattice {
            directory: directory.into(),
            identity: None,
            fields: crate::route::Fields::shipped(),
            references: crate::reference::Made::default(),
        }
    }

    /// Proves `identity` on the connections its references make to
    /// instances (default: none, an anonymous client).
    pub fn identity(mut self, identity: vat::net::Identity) -> Lattice {
        self.identity = Some(identity);
        self
    }

    /// Lets routes' content rules read fields of the calls of the methods
    /// `fields` knows, on its references, beside the shipped interfaces'.
    pub fn fields(mut self, fields: &crate::route::Fields) -> Lattice {
        self.fields.merge(fields);
        self
    }

    /// Sets the binding `id` with `config` (replacing that triplet's), and
    /// waits up to [`SET_BINDING_WAIT`] for every provider instance to take
    /// it. Setting the same binding again changes nothing on the
    /// instances; a changed config reaches each, which reconfigures.
    /// Fails with [`NotProvisioned`](LatticeError::NotProvisioned) naming
    /// the instances that could not provision it, or
    /// [`NotYetProvisioned`](LatticeError::NotYetProvisioned); in both
    /// cases the binding is recorded.
    pub async fn set_binding(
        &self,
        id: &BindingId,
        config: Config,
    ) -> Result<BindingStatus, LatticeError> {
        self.set_binding_within(id, config, SET_BINDING_WAIT).await
    }

    /// [`set_binding`](Lattice::set_binding), waiting at most `wait`.
    pub async fn set_binding_within(
        &self,
        id: &BindingId,
        config: Config,
        wait: Duration,
    ) -> Result<BindingStatus, LatticeError> {
        let record = Record::Binding(BindingRecord { config });
        let written = self.directory.put(&id.key(), record).await?;
        let started = vat_env::now();
        loop {
            let status = self.binding(id).await?;
            let Some(status) = status else {
                // Removed meanwhile.
                return Err(LatticeError::NotYetProvisioned {
                    binding: id.clone(),
                    answered: 0,
                    instances: 0,
                    waited_ms: 0,
                });
            };
            let failures = status.failures(written);
            if !failures.is_empty() && status.settled(written) {
                return Err(LatticeError::NotProvisioned {
                    binding: id.clone(),
                    failures,
                });
            }
            if status.settled(written) {
                return Ok(status);
            }
            let waited = vat_env::now().duration_since(started);
            if waited >= wait {
                return Err(LatticeError::NotYetProvisioned {
                    binding: id.clone(),
                    answered: status.answers(written).count(),
                    instances: status.provider_instances,
                    waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                });
            }
            vat_env::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes the binding `id`: every provider instance unbinds (releasing
    /// what it provisioned) and every capability it granted is revoked.
    /// Answers whether it existed.
    pub async fn remove_binding(&self, id: &BindingId) -> Result<bool, LatticeError> {
        let existed = self.directory.get(&id.key()).await?.is_some();
        self.directory.delete(&id.key()).await?;
        Ok(existed)
    }

    /// The binding `id`, if it exists.
    pub async fn binding(&self, id: &BindingId) -> Result<Option<BindingStatus>, LatticeError> {
        let entry = self.directory.get(&id.key()).await?;
        let Some(entry) = entry else { return Ok(None) };
        let Record::Binding(binding) = entry.record else {
            return Ok(None);
        };
        self.status(id.clone(), binding.config).await.map(Some)
    }

    /// Every binding.
    pub async fn bindings(&self) -> Result<Vec<BindingStatus>, LatticeError> {
        let listed = self.list(BINDINGS).await?;
        let mut all = Vec::new();
        for (key, record) in listed {
            if let (Some(id), Record::Binding(binding)) = (BindingId::from_key(&key), record) {
                all.push(self.status(id, binding.config).await?);
            }
        }
        Ok(all)
    }

    /// Every host: its vat id and record (hints, labels, lease).
    pub async fn hosts(&self) -> Result<Vec<(String, VatRecord)>, LatticeError> {
        Ok(self
            .list(VATS)
            .await?
            .into_iter()
            .filter_map(|(key, record)| match record {
                Record::Vat(vat) => Some((key[VATS.len()..].to_owned(), vat)),
                _ => None,
            })
            .collect())
    }

    /// Every instance's key (`instances/<kind>@<version>/<vat>/<n>`).
    pub async fn instances(&self) -> Result<Vec<String>, LatticeError> {
        Ok(self
            .list(INSTANCES)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<(String, Record)>, LatticeError> {
        Ok(self
            .list_entries(prefix)
            .await?
            .into_iter()
            .map(|entry| (entry.key, entry.record))
            .collect())
    }

    async fn list_entries(&self, prefix: &str) -> Result<Vec<Entry>, LatticeError> {
        Ok(self.directory.list(prefix).await?)
    }

    async fn status(&self, id: BindingId, config: Config) -> Result<BindingStatus, LatticeError> {
        let count = |selector: vat_directory::record::Selector<'_>,
                     instances: &[(String, Record)]| {
            instances
                .iter()
                .filter(|(key, _)| {
                    InstanceKey::parse(key).is_ok_and(|i| selector.selects(i.kind, i.version))
                })
                .count()
        };
        let actors = self
            .list(&format!("{INSTANCES}{}@", id.actor_kind().name))
            .await?;
        let providers = self
            .list(&format!("{INSTANCES}{}@", id.provider_kind().name))
            .await?;
        let digest = config_digest(&config);
        let grants = self
            .list_entries(&id.grants())
            .await?
            .into_iter()
            .filter_map(|entry| {
                let grant = GrantKey::parse(&entry.key).ok()?;
                let Record::Grant(record) = entry.record else {
                    return None;
                };
                Some(GrantStatus {
                    instance: format!("{}/{}", grant.vat, grant.n),
                    current: record.config_digest == digest,
                    failed: match record.outcome {
                        GrantOutcome::Failed(why) => Some(why),
                        GrantOutcome::Granted(_) => None,
                    },
                    index: entry.index,
                })
            })
            .collect();
        Ok(BindingStatus {
            actor_instances: count(id.actor_kind(), &actors),
            provider_instances: count(id.provider_kind(), &providers),
            id,
            config,
            grants,
        })
    }
}
