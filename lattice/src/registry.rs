//! Where a lattice's records live: the replicated directory (a facet of
//! it), or, for a single host without a lattice, that host's own store.
//!
//! The local store runs the directory's own state machine
//! ([`Machine`](vat_directory::machine::Machine)) in the host's vat, so the
//! same keys, records, facets and visibility rules hold on one host as in a
//! lattice; its state is written to a file in the host's data folder
//! (fsynced, then renamed over the last) before each write answers.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use vat_directory::client::{Consistency, Entry};
use vat_directory::command::{FacetId, FacetKind, Op, Request, Response};
use vat_directory::convert::MAX_LIST;
use vat_directory::machine::Machine;
use vat_directory::record::{
    GrantOutcome, GrantRecord, InstanceKey, Record, RouteRecord, INSTANCES, ROUTES,
};
use vat_directory::{DirectoryClient, DirectoryError};

/// A view of the lattice's records through one facet.
#[derive(Clone, Debug)]
pub enum Registry {
    /// The replicated directory.
    Directory(DirectoryClient),
    /// One host's own store.
    Local(LocalView),
}

impl From<DirectoryClient> for Registry {
    fn from(client: DirectoryClient) -> Registry {
        Registry::Directory(client)
    }
}

impl From<LocalView> for Registry {
    fn from(view: LocalView) -> Registry {
        Registry::Local(view)
    }
}

impl Registry {
    /// Writes `record` under `key`; answers the index of the write.
    pub async fn put(&self, key: &str, record: Record) -> Result<u64, DirectoryError> {
        match self {
            Registry::Directory(client) => client.put(key, record).await,
            Registry::Local(view) => view.apply(Op::Put {
                key: key.to_owned(),
                record,
            }),
        }
    }

    /// Deletes `key`; answers the index of the write.
    pub async fn delete(&self, key: &str) -> Result<u64, DirectoryError> {
        match self {
            Registry::Directory(client) => client.delete(key).await,
            Registry::Local(view) => view.apply(Op::Delete {
                key: key.to_owned(),
            }),
        }
    }

    /// Renews the lease of `vat`.
    pub async fn renew(&self, vat: &str) -> Result<u64, DirectoryError> {
        match self {
            Registry::Directory(client) => client.renew(vat).await,
            Registry::Local(view) => view.apply(Op::Renew {
                vat: vat.to_owned(),
            }),
        }
    }

    /// The entry under `key`, if the facet may see it (linearizable).
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, DirectoryError> {
        match self {
            Registry::Directory(client) => {
                Ok(client.get(key, Consistency::Linearizable).await?.value)
            }
            Registry::Local(view) => Ok(view.entries(key).into_iter().find(|e| e.key == key)),
        }
    }

    /// The entries under `prefix` the facet may see, at most
    /// [`MAX_LIST`] (linearizable).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, DirectoryError> {
        match self {
            Registry::Directory(client) => Ok(client
                .list(prefix, Consistency::Linearizable, MAX_LIST)
                .await?
                .value
                .0),
            Registry::Local(view) => Ok(view.entries(prefix)),
        }
    }

    /// The keys under `prefix` the facet may see.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, DirectoryError> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect())
    }

    /// `prefix` as key to token text: the first token of each instance
    /// record, and each grant that granted a capability.
    pub async fn tokens(&self, prefix: &str) -> Result<BTreeMap<String, String>, DirectoryError> {
        let mut tokens = BTreeMap::new();
        for entry in self.list(prefix).await? {
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

    /// The instances of `kind` that carry a token, by version: key to
    /// token.
    pub async fn instances_by_version(
        &self,
        kind: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, DirectoryError> {
        let mut by_version: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (key, token) in self.tokens(&format!("{INSTANCES}{kind}@")).await? {
            if let Ok(instance) = InstanceKey::parse(&key) {
                if instance.kind == kind {
                    let version = instance.version.to_owned();
                    by_version.entry(version).or_default().insert(key, token);
                }
            }
        }
        Ok(by_version)
    }

    /// The route of `kind`, with the log index of its last write.
    pub async fn route(&self, kind: &str) -> Result<Option<(RouteRecord, u64)>, DirectoryError> {
        let entry = self.get(&format!("{ROUTES}{kind}")).await?;
        Ok(entry.and_then(|entry| match entry.record {
            Record::Route(route) => Some((route, entry.index)),
            _ => None,
        }))
    }

    /// Wakes at each change under `prefix` (without saying which: the
    /// caller reads again).
    pub fn watch(&self, prefix: &str) -> Changes {
        match self {
            Registry::Directory(client) => Changes::Directory(client.watch(prefix, 0)),
            Registry::Local(view) => Changes::Local(view.store.changed.subscribe()),
        }
    }
}

/// Changes to wake at, from [`Registry::watch`].
pub enum Changes {
    /// A directory watch.
    Directory(vat_directory::client::Watching),
    /// The local store's applied index.
    Local(tokio::sync::watch::Receiver<u64>),
}

impl Changes {
    /// The next change; `None` once the watch ended, `Some(Err)` if it
    /// failed (watch again).
    pub async fn next(&mut self) -> Option<Result<(), DirectoryError>> {
        match self {
            Changes::Directory(watching) => watching.next().await.map(|event| event.map(drop)),
            Changes::Local(receiver) => receiver.changed().await.ok().map(Ok),
        }
    }
}

/// A host's own store of lattice records.
struct LocalStore {
    machine: RefCell<Machine>,
    path: PathBuf,
    changed: tokio::sync::watch::Sender<u64>,
    /// A client id of this opening: the machine's session table answers a
    /// serial it saw before from memory, so each opening is a new client.
    client: [u8; 16],
    next_serial: Cell<u64>,
}

/// One facet's view of a [`LocalStore`].
#[derive(Clone)]
pub struct LocalView {
    store: Rc<LocalStore>,
    facet: FacetId,
    kind: FacetKind,
}

impl std::fmt::Debug for LocalView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalView")
            .field("path", &self.store.path)
            .field("facet", &self.kind)
            .finish()
    }
}

/// A single host's records, without a lattice: the host's view (its host
/// facet) and the operator's (admin), over one store kept in `path`.
#[derive(Debug, Clone)]
pub struct Local {
    /// For [`HostBuilder::join`](crate::HostBuilder::join).
    pub host: LocalView,
    /// For [`Lattice::new`](crate::Lattice::new).
    pub admin: LocalView,
}

/// The admin facet's id in a local store (no token names it: only the
/// program holding the store has it).
const ADMIN: FacetId = [0xad; 32];
/// The host facet's id in a local store.
const HOST: FacetId = [0x40; 32];

impl Local {
    /// Opens the store in `path` (a file; made if missing) for the host
    /// vat `vat`.
    pub fn open(path: impl Into<PathBuf>, vat: &str) -> Result<Local, DirectoryError> {
        let path = path.into();
        let mut machine = Machine::new(ADMIN);
        match std::fs::read(&path) {
            Ok(bytes) => machine
                .restore(&bytes)
                .map_err(|e| unavailable(&path, &e))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(unavailable(&path, &error)),
        }
        let (changed, _) = tokio::sync::watch::channel(machine.applied());
        let mut client = [0u8; 16];
        vat_env::fill(&mut client).map_err(|e| unavailable(&path, &e))?;
        let store = Rc::new(LocalStore {
            machine: RefCell::new(machine),
            path,
            changed,
            client,
            next_serial: Cell::new(1),
        });
        let kind = FacetKind::Host {
            vat: vat.to_owned(),
        };
        let admin = LocalView {
            store: Rc::clone(&store),
            facet: ADMIN,
            kind: FacetKind::Admin,
        };
        if store.machine.borrow().facet(&HOST) != Some(kind.clone()) {
            admin.apply(Op::MintFacet {
                id: HOST,
                kind: kind.clone(),
            })?;
        }
        Ok(Local {
            host: LocalView {
                store,
                facet: HOST,
                kind,
            },
            admin,
        })
    }
}

fn unavailable(path: &std::path::Path, error: &dyn std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable {
        reason: format!("the host's store {}: {error}", path.display()),
    }
}

impl LocalView {
    fn apply(&self, op: Op) -> Result<u64, DirectoryError> {
        let store = &self.store;
        let serial = store.next_serial.get();
        store.next_serial.set(serial + 1);
        let at_ms = vat_env::wall()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let request = Request {
            facet: self.facet,
            client: store.client,
            serial,
            answered_below: serial,
            at_ms,
            op,
        };
        let (response, snapshot) = {
            let mut machine = store.machine.borrow_mut();
            let index = machine.applied() + 1;
            let response = machine.apply(index, &request);
            (response, machine.snapshot())
        };
        match response {
            Response::Done { index } => {
                let bytes = snapshot.map_err(|e| unavailable(&store.path, &e))?;
                write_durably(&store.path, &bytes).map_err(|e| unavailable(&store.path, &e))?;
                store.changed.send_replace(index);
                Ok(index)
            }
            Response::Refused(refusal) => Err(vat_directory::convert::refusal(&refusal)),
        }
    }

    fn entries(&self, prefix: &str) -> Vec<Entry> {
        let machine = self.store.machine.borrow();
        machine
            .list(prefix)
            .filter(|(key, _)| machine.visible(&self.kind, key))
            .take(MAX_LIST as usize)
            .map(|(key, stored)| Entry {
                key: key.clone(),
                record: stored.record.clone(),
                index: stored.index,
            })
            .collect()
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new.
fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let aside = path.with_extension("new");
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
