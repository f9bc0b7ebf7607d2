//! The default store: one redb database file.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ::redb::{
    Database, DatabaseError, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable,
    ReadableTable, TableDefinition,
};

use crate::record::{ObjectRef, TokenRecord};
use crate::store::encoding::{
    decode_record, encode_record, object_key, purge_bound, purge_key, purge_key_hash, PURGE_KEY_LEN,
};
use crate::store::{Purged, StateBatch, StateChange, Store, StoreError};
use crate::swiss::SwissHash;

/// The version of the layout of tables this build reads and writes.
/// Version 2 added [`PURGE_QUEUE`]; a version 1 file is brought up to it
/// when opened.
const FORMAT_VERSION: u32 = 2;

/// The version before the purge queue.
const FORMAT_1: u32 = 1;

/// Facts about the database itself: `"format"` holds [`FORMAT_VERSION`].
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

/// The key in [`META`] under which the format version is kept.
const FORMAT_KEY: &str = "format";

/// Token records, by swiss hash.
const TOKENS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("tokens");

/// The swiss hashes of each object's tokens, by object key.
const TOKENS_BY_OBJECT: MultimapTableDefinition<&[u8], [u8; 32]> =
    MultimapTableDefinition::new("tokens_by_object");

/// The records due for purging, by the time they fall due and their swiss
/// hash: an entry at its expiry for each record with one, and one at the
/// time of its revocation for each single-use record revoked. An entry
/// whose record is gone already is just dropped.
const PURGE_QUEUE: TableDefinition<[u8; PURGE_KEY_LEN], ()> = TableDefinition::new("purge_queue");

/// Persistent object state, by object key.
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("object_state");

/// A [`Store`] in one [redb](https://www.redb.org) database file: ACID
/// transactions, copy-on-write B-trees, crash-safe.
///
/// Every write is a transaction that is flushed to disk (`fsync`) before
/// it returns, so what a method acknowledged survives `kill -9` and power
/// loss. Under load, put many state changes in one [`StateBatch`] to pay
/// for one flush.
///
/// One process at a time may have the file open: a second
/// [`RedbStore::open`] of the same file fails with [`StoreError::InUse`].
/// The store is `Send + Sync`; share it between threads with an `Arc`.
/// Writers are serialised; readers see the last committed state and never
/// block.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

/// Turns any redb error into a [`StoreError::Backend`] saying what the
/// store was doing.
fn backend<E: Into<::redb::Error>>(operation: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Backend {
        operation,
        source: Box::new(error.into()),
    }
}

/// Creates `path` empty and owner-only (mode 0600) if it does not exist, so
/// that the database never exists readable by others, whatever the umask.
/// redb makes a database in an empty file as in a missing one.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

impl RedbStore {
    /// Opens the store in the file at `path`, creating it (mode 0600) if it
    /// does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        create_private(&path).map_err(|source| StoreError::Backend {
            operation: "creating the database file",
            source: Box::new(source),
        })?;
        let opened = Database::create(&path);
        RedbStore::prepared(opened, path)
    }

    /// Opens the store on `backend` (a simulator's disk, say) instead of a
    /// file; `name` stands for its path in errors.
    pub fn open_backend(
        storage: impl ::redb::StorageBackend,
        name: impl Into<PathBuf>,
    ) -> Result<RedbStore, StoreError> {
        let opened = Database::builder().create_with_backend(storage);
        RedbStore::prepared(opened, name.into())
    }

    /// The store on a database just opened (`path` names it in errors),
    /// its format checked.
    fn prepared(
        opened: Result<Database, DatabaseError>,
        path: PathBuf,
    ) -> Result<RedbStore, StoreError> {
        let db = opened.map_err(|error| match error {
            DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.clone() },
            other => backend("opening the database")(other),
        })?;
        let store = RedbStore { db, path };
        store.prepare()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the format version, writing it into a new database, and
    /// makes sure every table exists so read transactions can open them.
    fn prepare(&self) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(backend("preparing the database"))?;
        {
            let mut meta = txn.open_table(META).map_err(backend("opening meta"))?;
            let found = meta
                .get(FORMAT_KEY)
                .map_err(backend("reading the format version"))?
                .map(|guard| guard.value());
            match found {
                Some(FORMAT_VERSION) => {}
                Some(FORMAT_1) => {
                    RedbStore::queue_every_due(&txn)?;
                    meta.insert(FORMAT_KEY, FORMAT_VERSION)
                        .map_err(backend("writing the format version"))?;
                }
                Some(found) => {
                    return Err(StoreError::UnsupportedFormat {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    })
                }
                None => {
                    meta.insert(FORMAT_KEY, FORMAT_VERSION)
                        .map_err(backend("writing the format version"))?;
                }
            }
            txn.open_table(TOKENS).map_err(backend("opening tokens"))?;
            txn.open_multimap_table(TOKENS_BY_OBJECT)
                .map_err(backend("opening the token index"))?;
            txn.open_table(STATE)
                .map_err(backend("opening object state"))?;
            txn.open_table(PURGE_QUEUE)
                .map_err(backend("opening the purge queue"))?;
        }
        txn.commit().map_err(backend("preparing the database"))
    }

    /// Fills the purge queue from the records of a version 1 file, which
    /// had none. Revoked single-use records are queued at their creation,
    /// the latest time known to be after their use.
    fn queue_every_due(txn: &::redb::WriteTransaction) -> Result<(), StoreError> {
        let tokens = txn.open_table(TOKENS).map_err(backend("opening tokens"))?;
        let mut queue = txn
            .open_table(PURGE_QUEUE)
            .map_err(backend("opening the purge queue"))?;
        for entry in tokens.iter().map_err(backend("listing tokens"))? {
            let (key, value) = entry.map_err(backend("listing tokens"))?;
            let record = decode_record(SwissHash::from_bytes(key.value()), value.value())?;
            if let Some(expiry) = record.expires_at {
                RedbStore::queue(&mut queue, expiry, &record.swiss_hash)?;
            }
            if record.single_use && record.revoked {
                RedbStore::queue(&mut queue, record.created_at, &record.swiss_hash)?;
            }
        }
        Ok(())
    }

    /// Queues the record under `hash` for purging at `due`.
    fn queue(
        queue: &mut ::redb::Table<[u8; PURGE_KEY_LEN], ()>,
        due: SystemTime,
        hash: &SwissHash,
    ) -> Result<(), StoreError> {
        queue
            .insert(purge_key(due, hash)?, ())
            .map_err(backend("writing the purge queue"))?;
        Ok(())
    }

    /// Marks the token under `hash` revoked within `tokens`. Returns
    /// `None` if there is no such token, else whether it was live.
    /// A single-use record is queued for purging as it is revoked: it will
    /// never work again.
    fn revoke_in(
        tokens: &mut ::redb::Table<[u8; 32], &[u8]>,
        queue: &mut ::redb::Table<[u8; PURGE_KEY_LEN], ()>,
        hash: &SwissHash,
    ) -> Result<Option<bool>, StoreError> {
        let Some(bytes) = tokens
            .get(hash.as_bytes())
            .map_err(backend("reading a token"))?
            .map(|guard| guard.value().to_vec())
        else {
            return Ok(None);
        };
        let mut record = decode_record(*hash, &bytes)?;
        if record.revoked {
            return Ok(Some(false));
        }
        record.revoked = true;
        let bytes = encode_record(&record)?;
        tokens
            .insert(hash.as_bytes(), bytes.as_slice())
            .map_err(backend("writing a token"))?;
        if record.single_use {
            RedbStore::queue(queue, vat_env::wall(), hash)?;
        }
        Ok(Some(true))
    }
}

impl Store for RedbStore {
    fn insert_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let bytes = encode_record(record)?;
        let hash = record.swiss_hash.as_bytes();
        let txn = self.db.begin_write().map_err(backend("minting a token"))?;
        {
            let mut tokens = txn.open_table(TOKENS).map_err(backend("opening tokens"))?;
            let taken = tokens
                .get(hash)
                .map_err(backend("reading a token"))?
                .is_some();
            if taken {
                return Err(StoreError::AlreadyExists(record.swiss_hash));
            }
            tokens
                .insert(hash, bytes.as_slice())
                .map_err(backend("writing a token"))?;
            let mut index = txn
                .open_multimap_table(TOKENS_BY_OBJECT)
                .map_err(backend("opening the token index"))?;
            index
                .insert(object_key(&record.object).as_slice(), hash)
                .map_err(backend("writing the token index"))?;
            if let Some(expiry) = record.expires_at {
                let mut queue = txn
                    .open_table(PURGE_QUEUE)
                    .map_err(backend("opening the purge queue"))?;
                RedbStore::queue(&mut queue, expiry, &record.swiss_hash)?;
            }
        }
        txn.commit().map_err(backend("minting a token"))
    }

    fn token(&self, hash: &SwissHash) -> Result<Option<TokenRecord>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(backend("looking up a token"))?;
        let tokens = txn.open_table(TOKENS).map_err(backend("opening tokens"))?;
        let found = tokens
            .get(hash.as_bytes())
            .map_err(backend("reading a token"))?;
        match found {
            Some(guard) => Ok(Some(decode_record(*hash, guard.value())?)),
            None => Ok(None),
        }
    }

    fn revoke(&self, hash: &SwissHash) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(backend("revoking a token"))?;
        let found = {
            let mut tokens = txn.open_table(TOKENS).map_err(backend("opening tokens"))?;
            let mut queue = txn
                .open_table(PURGE_QUEUE)
                .map_err(backend("opening the purge queue"))?;
            RedbStore::revoke_in(&mut tokens, &mut queue, hash)?
        };
        match found {
            // Nothing changed: let the transaction abort unwritten.
            None | Some(false) => Ok(found.is_some()),
            Some(true) => {
                txn.commit().map_err(backend("revoking a token"))?;
                Ok(true)
            }
        }
    }

    fn revoke_object(&self, object: &ObjectRef) -> Result<usize, StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(backend("revoking an object's tokens"))?;
        let mut revoked = 0;
        {
            let index = txn
                .open_multimap_table(TOKENS_BY_OBJECT)
                .map_err(backend("opening the token index"))?;
            let mut tokens = txn.open_table(TOKENS).map_err(backend("opening tokens"))?;
            let mut queue = txn
                .open_table(PURGE_QUEUE)
                .map_err(backend("opening the purge queue"))?;
            let hashes = index
                .get(object_key(object).as_slice())
                .map_err(backend("reading the token index"))?;
            for hash in hashes {
                let hash = SwissHash::from_bytes(
                    hash.map_err(backend("reading the token index"))?.value(),
                );
                if RedbStore::revoke_in(&mut tokens, &mut queue, &hash)? == Some(true) {
                    revoked += 1;
                }
            }
        }
        if revoked > 0 {
            txn.commit()
                .map_err(backend("revoking an object's tokens"))?;
        }
        Ok(revoked)
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(backend("listing tokens"))?;
        let tokens = txn.open_table(TOKENS).map_err(backend("opening tokens"))?;
        let mut records = Vec::new();
        for entry in tokens.iter().map_err(backend("listing tokens"))? {
            let (key, value) = entry.map_err(backend("listing tokens"))?;
            records.push(decode_record(
                SwissHash::from_bytes(key.value()),
                value.value(),
            )?);
        }
        Ok(records)
    }

    fn tokens_for(&self, object: &ObjectRef) -> Result<Vec<TokenRecord>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(backend("listing an object's tokens"))?;
        let index = txn
            .open_multimap_table(TOKENS_BY_OBJECT)
            .map_err(backend("opening the token index"))?;
        let tokens = txn.open_table(TOKENS).map_err(backend("opening tokens"))?;
        let mut records = Vec::new();
        let hashes = index
            .get(object_key(object).as_slice())
            .map_err(backend("reading the token index"))?;
        for hash in hashes {
            let hash =
                SwissHash::from_bytes(hash.map_err(backend("reading the token index"))?.value());
            let Some(guard) = tokens
                .get(hash.as_bytes())
                .map_err(backend("reading a token"))?
            else {
                return Err(StoreError::Corrupt {
                    what: "token index",
                    detail: format!("it names token {hash}, which is not stored"),
                });
            };
            records.push(decode_record(hash, guard.value())?);
        }
        Ok(records)
    }

    fn get_state(&self, object: &ObjectRef) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(backend("reading object state"))?;
        let state = txn
            .open_table(STATE)
            .map_err(backend("opening object state"))?;
        let found = state
            .get(object_key(object).as_slice())
            .map_err(backend("reading object state"))?;
        Ok(found.map(|guard| guard.value().to_vec()))
    }

    fn commit(&self, batch: StateBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self
            .db
            .begin_write()
            .map_err(backend("committing object state"))?;
        {
            let mut state = txn
                .open_table(STATE)
                .map_err(backend("opening object state"))?;
            for change in batch.into_changes() {
                match change {
                    StateChange::Put(object, bytes) => {
                        state
                            .insert(object_key(&object).as_slice(), bytes.as_slice())
                            .map_err(backend("writing object state"))?;
                    }
                    StateChange::Delete(object) => {
                        state
                            .remove(object_key(&object).as_slice())
                            .map_err(backend("deleting object state"))?;
                    }
                }
            }
        }
        txn.commit().map_err(backend("committing object state"))
    }

    fn purge_due(&self, now: SystemTime, limit: usize) -> Result<Purged, StoreError> {
        let Some(bound) = purge_bound(now) else {
            return Ok(Purged::default());
        };
        let txn = self.db.begin_write().map_err(backend("purging tokens"))?;
        let mut purged = Purged::default();
        let looked_at = {
            let mut queue = txn
                .open_table(PURGE_QUEUE)
                .map_err(backend("opening the purge queue"))?;
            let mut due = Vec::new();
            for entry in queue
                .range(..=bound)
                .map_err(backend("reading the purge queue"))?
                .take(limit.saturating_add(1))
            {
                due.push(entry.map_err(backend("reading the purge queue"))?.0.value());
            }
            purged.more = due.len() > limit;
            due.truncate(limit);
            let mut tokens = txn.open_table(TOKENS).map_err(backend("opening tokens"))?;
            let mut index = txn
                .open_multimap_table(TOKENS_BY_OBJECT)
                .map_err(backend("opening the token index"))?;
            for key in &due {
                queue
                    .remove(key)
                    .map_err(backend("writing the purge queue"))?;
                let hash = purge_key_hash(key);
                let Some(bytes) = tokens
                    .get(hash.as_bytes())
                    .map_err(backend("reading a token"))?
                    .map(|guard| guard.value().to_vec())
                else {
                    continue;
                };
                let record = decode_record(hash, &bytes)?;
                let used = record.single_use && record.revoked;
                if !used && !record.is_expired_at(now) {
                    continue;
                }
                tokens
                    .remove(hash.as_bytes())
                    .map_err(backend("deleting a token"))?;
                index
                    .remove(object_key(&record.object).as_slice(), hash.as_bytes())
                    .map_err(backend("writing the token index"))?;
                purged.removed.push(hash);
            }
            due.len()
        };
        // Nothing due: let the transaction abort unwritten, with no flush.
        if looked_at > 0 {
            txn.commit().map_err(backend("purging tokens"))?;
        }
        Ok(purged)
    }
}
