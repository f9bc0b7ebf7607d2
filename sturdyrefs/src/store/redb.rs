//! The default store: one redb database file.

use std::path::{Path, PathBuf};

use ::redb::{
    Database, DatabaseError, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable,
    ReadableTable, TableDefinition,
};

use crate::record::{ObjectRef, TokenRecord};
use crate::store::encoding::{decode_record, encode_record, object_key};
use crate::store::{StateBatch, StateChange, Store, StoreError};
use crate::swiss::SwissHash;

/// The version of the layout of tables this build reads and writes.
const FORMAT_VERSION: u32 = 1;

/// Facts about the database itself: `"format"` holds [`FORMAT_VERSION`].
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

/// The key in [`META`] under which the format version is kept.
const FORMAT_KEY: &str = "format";

/// Token records, by swiss hash.
const TOKENS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("tokens");

/// The swiss hashes of each object's tokens, by object key.
const TOKENS_BY_OBJECT: MultimapTableDefinition<&[u8], [u8; 32]> =
    MultimapTableDefinition::new("tokens_by_object");

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
        let db = Database::create(&path).map_err(|error| match error {
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
        }
        txn.commit().map_err(backend("preparing the database"))
    }

    /// Marks the token under `hash` revoked within `tokens`. Returns
    /// `None` if there is no such token, else whether it was live.
    fn revoke_in(
        tokens: &mut ::redb::Table<[u8; 32], &[u8]>,
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
            RedbStore::revoke_in(&mut tokens, hash)?
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
            let hashes = index
                .get(object_key(object).as_slice())
                .map_err(backend("reading the token index"))?;
            for hash in hashes {
                let hash = SwissHash::from_bytes(
                    hash.map_err(backend("reading the token index"))?.value(),
                );
                if RedbStore::revoke_in(&mut tokens, &hash)? == Some(true) {
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
}
