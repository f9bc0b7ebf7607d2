//! The directory's storage for openraft, in one redb database: the log,
//! the vote and the other facts Raft must keep (table `meta`), and the
//! current snapshot. The state machine itself lives in memory; a restart
//! rebuilds it from the stored snapshot and the committed entries after it.
//!
//! Every write goes through the store's one [`Writer`], committed with
//! fsync before the call returns (or, for `append`, before the flush
//! callback runs), so the writes reach the disk in the order openraft
//! submits them. Entries appended but not yet durable are kept in memory
//! beside the log and read from there, as openraft requires of an append
//! that has returned.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, IOFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::type_config::alias::{
    EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf,
};
use openraft::{EntryPayload, RaftLogReader, RaftSnapshotBuilder, StoredMembership};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;

use crate::command::{FacetId, Response};
use crate::machine::Machine;
use crate::types::{Config, SnapshotData};
use crate::writer::{Commits, Write, Writer};

/// The directory's Raft node.
pub type Raft = openraft::Raft<Config, StateMachineStore>;

/// A log entry.
pub type Entry = EntryOf<Config>;
/// A log entry's id (its term, leader and index).
pub type LogId = LogIdOf<Config>;
/// A vote.
pub type Vote = VoteOf<Config>;
/// A membership with the id of the entry that set it.
pub type Membership = StoredMembershipOf<Config>;
/// What a snapshot covers.
pub type SnapshotMeta = SnapshotMetaOf<Config>;
/// A snapshot: its meta and the state machine's encoding.
pub type Snapshot = SnapshotOf<Config, SnapshotData>;

/// The version of the layout of tables this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Facts kept beside the log, by name (the `*_KEY` constants); values are
/// postcard, except the cluster blob, which is kept as given.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The log: postcard of each entry, by index.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// The current snapshot: its meta (postcard) and its data.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

const FORMAT_KEY: &str = "format";
const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "purged";
const CLUSTER_KEY: &str = "cluster";
const SNAPSHOT_META_KEY: &str = "meta";
const SNAPSHOT_DATA_KEY: &str = "data";

/// Why the store failed. Inside openraft's traits it travels as the
/// source of an [`io::Error`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database was written by another version of the directory.
    #[error(
        "the directory's database has format version {found}; this build reads version {supported}"
    )]
    UnsupportedFormat {
        /// The version the database holds.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// Something read back does not decode.
    #[error("corrupt {what} in the directory's database: {source}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it does not decode.
        #[source]
        source: postcard::Error,
    },
    /// A value could not be encoded.
    #[error("encoding {what}: {source}")]
    Encode {
        /// What was being written.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: postcard::Error,
    },
    /// redb failed (input/output, a full disk, a damaged file...).
    #[error("{operation}: {source}")]
    Backend {
        /// What the store was doing.
        operation: &'static str,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The thread that commits grouped writes could not be started.
    #[error("starting the directory's writer thread: {source}")]
    Writer {
        /// Why the thread did not start.
        #[source]
        source: io::Error,
    },
    /// The writer stopped before saying whether a write was committed
    /// (it panicked): the write may or may not be on disk.
    #[error("the directory's writer stopped before answering")]
    WriterGone,
}

/// Turns a redb error into a [`StoreError::Backend`] saying what the store
/// was doing.
fn backend<E: Into<redb::Error>>(operation: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Backend {
        operation,
        source: Box::new(error.into()),
    }
}

fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|source| StoreError::Encode { what, source })
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|source| StoreError::Corrupt { what, source })
}

/// Checks the format version, writing it into a new database, and
/// creates every table so read transactions can open them. Runs before
/// the writer starts, in a transaction of its own.
fn prepare(db: &Database) -> Result<(), StoreError> {
    let operation = "preparing the database";
    let mut txn = db.begin_write().map_err(backend(operation))?;
    txn.set_durability(Durability::Immediate)
        .map_err(backend(operation))?;
    {
        let mut meta = txn.open_table(META).map_err(backend("opening meta"))?;
        let found = meta
            .get(FORMAT_KEY)
            .map_err(backend("reading the format version"))?
            .map(|guard| decode::<u32>("the format version", guard.value()))
            .transpose()?;
        match found {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(StoreError::UnsupportedFormat {
                    found,
                    supported: FORMAT_VERSION,
                })
            }
            None => {
                let version = encode("the format version", &FORMAT_VERSION)?;
                meta.insert(FORMAT_KEY, version.as_slice())
                    .map_err(backend("writing the format version"))?;
            }
        }
    }
    txn.open_table(LOG).map_err(backend("opening the log"))?;
    txn.open_table(SNAPSHOT)
        .map_err(backend("opening the snapshot"))?;
    txn.commit().map_err(backend(operation))
}

/// The database both handles share.
pub struct Store {
    db: Arc<Database>,
    writer: Writer,
    /// Entries appended but not yet known to be durable, by index: reads
    /// see them at once. The writer takes each out once it is committed
    /// (and readable from the database).
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
    flushes: Flushes,
}

/// The pending entries, even if a thread panicked holding them: they are
/// plain data, and whatever the panic left is still what was appended.
fn lock(pending: &Mutex<BTreeMap<u64, Entry>>) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the directory's storage on `db` (a file, or a simulator's
    /// backend) for a cluster whose first admin facet is `admin`, its
    /// writes committed as `commits` says: checks (or, in a new database,
    /// writes) the format version and loads the state machine from the
    /// stored snapshot, if any.
    pub fn open(
        db: Database,
        admin: FacetId,
        commits: Commits,
    ) -> Result<(LogStore, StateMachineStore), StoreError> {
        let db = Arc::new(db);
        prepare(&db)?;
        let store = Rc::new(Store {
            writer: Writer::new(db.clone(), commits)?,
            db,
            pending: Arc::new(Mutex::new(BTreeMap::new())),
            flushes: Flushes::default(),
        });
        let mut machine = Machine::new(admin);
        let mut position = Position {
            last_applied: None,
            membership: StoredMembership::default(),
        };
        if let Some(snapshot) = store.current_snapshot()? {
            machine
                .restore(&snapshot.snapshot)
                .map_err(|source| StoreError::Corrupt {
                    what: "the snapshot's data",
                    source,
                })?;
            position.last_applied = snapshot.meta.last_log_id;
            position.membership = snapshot.meta.last_membership;
        }
        let log = LogStore {
            store: store.clone(),
        };
        let state = StateMachineStore {
            store,
            admin,
            machine: Rc::new(RefCell::new(machine)),
            position: Rc::new(RefCell::new(position)),
            applied: Rc::new(Notify::new()),
        };
        Ok((log, state))
    }

    fn read<R>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_read().map_err(backend(operation))?;
        body(&txn)
    }

    /// The value under `key` in `meta`, raw.
    fn meta_bytes(&self, key: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read("reading meta", |txn| {
            let meta = txn.open_table(META).map_err(backend("opening meta"))?;
            let value = meta.get(key).map_err(backend("reading meta"))?;
            Ok(value.map(|guard| guard.value().to_vec()))
        })
    }

    fn meta_value<T: DeserializeOwned>(&self, key: &'static str) -> Result<Option<T>, StoreError> {
        self.meta_bytes(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    /// Writes `bytes` under `key` in `meta`, durably, blocking the thread
    /// until it is.
    fn put_meta_bytes(&self, key: &'static str, bytes: &[u8]) -> Result<(), StoreError> {
        self.writer
            .write_blocking("writing meta", vec![meta_row(key, bytes.to_vec())])
    }

    /// Writes `value` under `key` in `meta`, durably.
    async fn put_meta_value<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StoreError> {
        let row = meta_row(key, encode(key, value)?);
        self.writer.write("writing meta", vec![row]).await
    }

    fn entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, StoreError> {
        // The pending entries first: one the writer commits meanwhile is
        // then in the database when it is read, never in neither.
        let pending: Vec<Entry> = lock(&self.pending)
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect();
        let mut entries: BTreeMap<u64, Entry> = self.read("reading the log", |txn| {
            let log = txn.open_table(LOG).map_err(backend("opening the log"))?;
            let mut entries = BTreeMap::new();
            for item in log.range(range).map_err(backend("reading the log"))? {
                let (index, value) = item.map_err(backend("reading the log"))?;
                entries.insert(index.value(), decode("a log entry", value.value())?);
            }
            Ok(entries)
        })?;
        for entry in pending {
            entries.insert(entry.log_id.index, entry);
        }
        Ok(entries.into_values().collect())
    }

    fn log_state(&self) -> Result<LogState<Config>, StoreError> {
        let last_pending = lock(&self.pending)
            .last_key_value()
            .map(|(_, entry)| entry.log_id);
        let last_purged_log_id: Option<LogId> = self.meta_value(PURGED_KEY)?;
        let last = self.read("reading the log", |txn| {
            let log = txn.open_table(LOG).map_err(backend("opening the log"))?;
            let last = log.last().map_err(backend("reading the log"))?;
            last.map(|(_, value)| decode::<Entry>("a log entry", value.value()))
                .transpose()
        })?;
        let last_log_id = last_pending
            .or(last.map(|entry| entry.log_id))
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// Appends `entries`: readable when this returns; `callback` is told
    /// once they are durable.
    fn append(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        callback: IOFlushed<Config>,
    ) -> Result<(), StoreError> {
        let mut rows = Vec::new();
        let mut appended = Vec::new();
        for entry in entries {
            rows.push((entry.log_id.index, encode("a log entry", &entry)?));
            appended.push(entry);
        }
        let writes = vec![Write::Indexed { table: LOG, rows }];
        if !self.writer.grouped() {
            let outcome = self.writer.write_blocking("appending to the log", writes);
            callback.io_completed(outcome.map_err(io::Error::other));
            return Ok(());
        }
        let written: Vec<LogId> = appended.iter().map(|entry| entry.log_id).collect();
        {
            let mut pending = lock(&self.pending);
            for entry in appended {
                pending.insert(entry.log_id.index, entry);
            }
        }
        let pending = self.pending.clone();
        let tell = self.flushes.expect(callback);
        self.writer.submit(
            "appending to the log",
            writes,
            Box::new(move |outcome| {
                if outcome.is_ok() {
                    // Only the entries this append wrote: a truncation and
                    // a new append may have put others at these indexes.
                    let mut pending = lock(&pending);
                    for id in written {
                        if pending.get(&id.index).map(|entry| entry.log_id) == Some(id) {
                            pending.remove(&id.index);
                        }
                    }
                }
                // The vat may have stopped: nobody waits for the flush then.
                let _ = tell.send(outcome);
            }),
        );
        Ok(())
    }

    /// Deletes the entries from `first` on.
    async fn truncate_from(&self, first: u64) -> Result<(), StoreError> {
        lock(&self.pending).retain(|index, _| *index < first);
        let delete = Write::DeleteFrom { table: LOG, first };
        self.writer.write("truncating the log", vec![delete]).await
    }

    /// Records `upto` as purged, then deletes the entries up to it, in one
    /// transaction.
    async fn purge(&self, upto: &LogId) -> Result<(), StoreError> {
        lock(&self.pending).retain(|index, _| *index > upto.index);
        let purged = meta_row(PURGED_KEY, encode("the purged log id", upto)?);
        let delete = Write::DeleteUpTo {
            table: LOG,
            last: upto.index,
        };
        self.writer
            .write("purging the log", vec![purged, delete])
            .await
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        self.read("reading the snapshot", |txn| {
            let table = txn
                .open_table(SNAPSHOT)
                .map_err(backend("opening the snapshot"))?;
            let meta = table
                .get(SNAPSHOT_META_KEY)
                .map_err(backend("reading the snapshot"))?
                .map(|guard| decode::<SnapshotMeta>("the snapshot's meta", guard.value()))
                .transpose()?;
            let data = table
                .get(SNAPSHOT_DATA_KEY)
                .map_err(backend("reading the snapshot"))?
                .map(|guard| guard.value().to_vec());
            Ok(match (meta, data) {
                (Some(meta), Some(snapshot)) => Some(Snapshot { meta, snapshot }),
                _ => None,
            })
        })
    }

    /// Replaces the stored snapshot, durably.
    async fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StoreError> {
        let meta = encode("the snapshot's meta", meta)?;
        let rows = vec![
            (SNAPSHOT_META_KEY, meta),
            (SNAPSHOT_DATA_KEY, data.to_vec()),
        ];
        let write = Write::Named {
            table: SNAPSHOT,
            rows,
        };
        self.writer.write("saving the snapshot", vec![write]).await
    }
}

/// A write of one row of `meta`.
fn meta_row(key: &'static str, value: Vec<u8>) -> Write {
    Write::Named {
        table: META,
        rows: vec![(key, value)],
    }
}

/// openraft's flush callbacks, waiting for the writer: they must run on
/// the vat's thread, in the order of the appends. The writer's thread
/// sends each append's outcome, in that order, to a task of the vat that
/// runs the callback at the front.
#[derive(Default)]
struct Flushes {
    started: RefCell<Option<Started>>,
}

struct Started {
    waiting: Rc<RefCell<VecDeque<IOFlushed<Config>>>>,
    tell: tokio::sync::mpsc::UnboundedSender<Result<(), StoreError>>,
}

impl Flushes {
    /// Queues `callback` for the next outcome the writer sends through
    /// the returned sender; the first call starts the task (on the
    /// current `LocalSet`, where openraft runs).
    fn expect(
        &self,
        callback: IOFlushed<Config>,
    ) -> tokio::sync::mpsc::UnboundedSender<Result<(), StoreError>> {
        let mut started = self.started.borrow_mut();
        let started = started.get_or_insert_with(|| {
            let waiting: Rc<RefCell<VecDeque<IOFlushed<Config>>>> = Rc::default();
            let (tell, mut told) = tokio::sync::mpsc::unbounded_channel();
            let queue = waiting.clone();
            tokio::task::spawn_local(async move {
                while let Some(outcome) = told.recv().await {
                    let front = queue.borrow_mut().pop_front();
                    if let Some(callback) = front {
                        let outcome: Result<(), StoreError> = outcome;
                        callback.io_completed(outcome.map_err(io::Error::other));
                    }
                }
            });
            Started { waiting, tell }
        });
        started.waiting.borrow_mut().push_back(callback);
        started.tell.clone()
    }
}

/// The log half of the store: openraft's [`RaftLogStorage`] and
/// [`RaftLogReader`]. Clones share the database.
#[derive(Clone, Debug)]
pub struct LogStore {
    store: Rc<Store>,
}

impl LogStore {
    /// Keeps the member layer's description of the cluster (opaque here),
    /// durably, replacing what was kept.
    pub fn save_cluster(&self, cluster: &[u8]) -> Result<(), StoreError> {
        self.store.put_meta_bytes(CLUSTER_KEY, cluster)
    }

    /// What [`save_cluster`](Self::save_cluster) kept last, if anything.
    pub fn load_cluster(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.meta_bytes(CLUSTER_KEY)
    }
}

impl RaftLogReader<Config> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.store.entries(bounds).map_err(io::Error::other)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.store.meta_value(VOTE_KEY).map_err(io::Error::other)
    }
}

impl RaftLogStorage<Config> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<Config>, io::Error> {
        self.store.log_state().map_err(io::Error::other)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.store
            .put_meta_value(VOTE_KEY, vote)
            .await
            .map_err(io::Error::other)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.store
            .put_meta_value(COMMITTED_KEY, &committed)
            .await
            .map_err(io::Error::other)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let committed: Option<Option<LogId>> = self
            .store
            .meta_value(COMMITTED_KEY)
            .map_err(io::Error::other)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<Config>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry>,
    {
        // Readable when this returns; the callback runs once they are on
        // disk (later, when the writer groups commits). An entry that does
        // not encode fails the append, and openraft stops.
        self.store
            .append(entries, callback)
            .map_err(io::Error::other)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let first = last_log_id.map_or(0, |id| id.index + 1);
        self.store
            .truncate_from(first)
            .await
            .map_err(io::Error::other)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.store.purge(&log_id).await.map_err(io::Error::other)
    }
}

/// Where the state machine stands: what openraft asks back after a
/// restart or a snapshot.
#[derive(Debug)]
struct Position {
    last_applied: Option<LogId>,
    membership: Membership,
}

/// The state-machine half of the store: openraft's [`RaftStateMachine`]
/// and [`RaftSnapshotBuilder`] over the in-memory [`Machine`]. Clones
/// share the machine.
#[derive(Clone, Debug)]
pub struct StateMachineStore {
    store: Rc<Store>,
    admin: FacetId,
    machine: Rc<RefCell<Machine>>,
    position: Rc<RefCell<Position>>,
    applied: Rc<Notify>,
}

impl StateMachineStore {
    /// The machine, for reads. Never hold its borrow across an await:
    /// openraft applies entries on the same thread.
    pub fn machine(&self) -> Rc<RefCell<Machine>> {
        self.machine.clone()
    }

    /// The id of the last entry applied (or covered by the installed
    /// snapshot).
    pub fn last_applied(&self) -> Option<LogId> {
        self.position.borrow().last_applied
    }

    /// The membership last applied.
    pub fn membership(&self) -> Membership {
        self.position.borrow().membership.clone()
    }

    /// Notified (`notify_waiters`) after each batch of entries applied and
    /// each snapshot installed. To wait for an index, make the
    /// [`Notified`](tokio::sync::futures::Notified) future and `enable` it
    /// before checking [`last_applied`](Self::last_applied), so a batch
    /// applied in between is not missed.
    pub fn applied(&self) -> Rc<Notify> {
        self.applied.clone()
    }

    /// Applies one entry and answers its responder, if any.
    fn apply_one(
        &self,
        entry: Entry,
        responder: Option<openraft::storage::ApplyResponder<Config>>,
    ) {
        let index = entry.log_id.index;
        let response = {
            let mut machine = self.machine.borrow_mut();
            let mut position = self.position.borrow_mut();
            let response = match entry.payload {
                EntryPayload::Normal(ref request) => machine.apply(index, request),
                EntryPayload::Blank => {
                    machine.skip(index);
                    Response::Done { index }
                }
                EntryPayload::Membership(ref membership) => {
                    machine.skip(index);
                    position.membership =
                        StoredMembership::new(Some(entry.log_id), membership.clone());
                    Response::Done { index }
                }
            };
            position.last_applied = Some(entry.log_id);
            response
        };
        if let Some(responder) = responder {
            responder.send(response);
        }
    }
}

impl RaftSnapshotBuilder<Config> for StateMachineStore {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // The machine and its position are read together, so the meta
        // names exactly what the data holds.
        let (meta, data) = {
            let machine = self.machine.borrow();
            let position = self.position.borrow();
            let data = machine.snapshot().map_err(|source| {
                io::Error::other(StoreError::Encode {
                    what: "the state machine",
                    source,
                })
            })?;
            let meta = SnapshotMeta {
                last_log_id: position.last_applied,
                last_membership: position.membership.clone(),
            };
            (meta, data)
        };
        self.store
            .save_snapshot(&meta, &data)
            .await
            .map_err(io::Error::other)?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<Config> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), io::Error> {
        let position = self.position.borrow();
        Ok((position.last_applied, position.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<Config>, io::Error>> + Unpin,
    {
        let mut outcome = Ok(());
        while let Some(item) = entries.next().await {
            match item {
                Ok((entry, responder)) => self.apply_one(entry, responder),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        // Waiters see whatever was applied, even if the batch broke off.
        self.applied.notify_waiters();
        outcome
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        // Decoded into a fresh machine first: a snapshot that does not
        // decode changes nothing, on disk or in memory.
        let mut machine = Machine::new(self.admin);
        machine.restore(&snapshot).map_err(|source| {
            io::Error::other(StoreError::Corrupt {
                what: "the snapshot's data",
                source,
            })
        })?;
        self.store
            .save_snapshot(meta, &snapshot)
            .await
            .map_err(io::Error::other)?;
        *self.machine.borrow_mut() = machine;
        {
            let mut position = self.position.borrow_mut();
            position.last_applied = meta.last_log_id;
            position.membership = meta.last_membership.clone();
        }
        self.applied.notify_waiters();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        self.store.current_snapshot().map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests

    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Debug;

    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::StorageError;
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::command::{Op, Request};
    use crate::record::{NameRecord, Record};
    use crate::types::Member;

    const ADMIN: FacetId = [1; 32];

    /// openraft's suite builds memberships of default nodes; a member
    /// with no vat and no hints serves for that.
    impl Default for Member {
        fn default() -> Member {
            Member {
                vat: String::new(),
                hints: Vec::new(),
            }
        }
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(LeaderId { term, node_id: 3 }, index)
    }

    fn request() -> Request {
        Request {
            facet: ADMIN,
            client: [7; 16],
            serial: 1,
            answered_below: 0,
            at_ms: 1000,
            op: Op::Put {
                key: "names/a".into(),
                record: Record::Name(NameRecord {
                    refs: vec!["captp://x".into()],
                }),
            },
        }
    }

    fn membership() -> openraft::Membership<u64, Member> {
        let member = Member {
            vat: "vat-a".into(),
            hints: vec!["127.0.0.1:1".into()],
        };
        openraft::Membership::new(vec![BTreeSet::from([3])], BTreeMap::from([(3, member)])).unwrap()
    }

    fn round_trip<T: Serialize + DeserializeOwned + Debug + PartialEq>(value: &T) {
        let bytes = postcard::to_allocvec(value).unwrap();
        let back: T = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&back, value);
    }

    /// Like `round_trip`, for types without `PartialEq`: the debug forms
    /// must agree.
    fn round_trip_debug<T: Serialize + DeserializeOwned + Debug>(value: &T) {
        let bytes = postcard::to_allocvec(value).unwrap();
        let back: T = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{value:?}"));
    }

    #[test]
    fn postcard_round_trips_openraft_types() {
        let normal = Entry {
            log_id: log_id(2, 5),
            payload: EntryPayload::Normal(request()),
        };
        let member = Entry {
            log_id: log_id(2, 6),
            payload: EntryPayload::Membership(membership()),
        };
        let blank = Entry {
            log_id: log_id(2, 7),
            payload: EntryPayload::Blank,
        };
        round_trip(&normal);
        round_trip(&member);
        round_trip(&blank);
        round_trip(&Vote::new(2, 3));
        round_trip(&Vote::new_committed(4, 3));
        round_trip(&log_id(2, 5));
        round_trip(&Some(log_id(2, 5)));
        round_trip(&None::<LogId>);
        round_trip_debug(&AppendEntriesRequest::<Config> {
            vote: Vote::new_committed(2, 3),
            prev_log_id: Some(log_id(1, 4)),
            entries: vec![normal, member, blank],
            leader_commit: Some(log_id(1, 4)),
        });
        round_trip_debug(&AppendEntriesResponse::<Config>::Success);
        round_trip_debug(&AppendEntriesResponse::<Config>::PartialSuccess(Some(
            log_id(2, 5),
        )));
        round_trip_debug(&AppendEntriesResponse::<Config>::Conflict);
        round_trip_debug(&AppendEntriesResponse::<Config>::HigherVote(Vote::new(
            5, 1,
        )));
        round_trip_debug(&VoteRequest::<Config>::new(
            Vote::new(3, 3),
            Some(log_id(2, 7)),
        ));
        round_trip_debug(&VoteResponse::<Config>::new(
            Vote::new(3, 3),
            Some(log_id(2, 7)),
            true,
        ));
        round_trip(&SnapshotMeta {
            last_log_id: Some(log_id(2, 7)),
            last_membership: StoredMembership::new(Some(log_id(2, 6)), membership()),
        });
    }

    /// A fresh store in its own temporary directory for each of the
    /// suite's cases, committing as it says.
    struct FreshStore(Commits);

    impl StoreBuilder<Config, LogStore, StateMachineStore, tempfile::TempDir> for FreshStore {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<Config>>
        {
            let dir = tempfile::tempdir().unwrap();
            let db = Database::create(dir.path().join("directory.redb")).unwrap();
            let (log, state) = Store::open(db, ADMIN, self.0).unwrap();
            Ok((dir, log, state))
        }
    }

    #[tokio::test]
    async fn openraft_storage_suite() {
        tokio::task::LocalSet::new()
            .run_until(async {
                Suite::test_all(FreshStore(Commits::Inline)).await.unwrap();
                Suite::test_all(FreshStore(Commits::Grouped)).await.unwrap();
            })
            .await;
    }
}
