//! The simulated disk: files in memory that redb stores its databases in,
//! and a crash that takes each file back to what its last sync made
//! durable.
//!
//! ```
//! use redb::{Database, ReadableDatabase, TableDefinition};
//! use vat_sim::disk::Disk;
//!
//! const TABLE: TableDefinition<u64, u64> = TableDefinition::new("t");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let disk = Disk::new();
//! let db = Database::builder().create_with_backend(disk.backend("vat.redb"))?;
//! let write = db.begin_write()?; // durability Immediate: it syncs
//! write.open_table(TABLE)?.insert(1, 1)?;
//! write.commit()?;
//! disk.crash(); // `db` fails from here on; the commit survives
//! drop(db);
//! let db = Database::builder().create_with_backend(disk.backend("vat.redb"))?;
//! assert_eq!(db.begin_read()?.open_table(TABLE)?.get(1)?.map(|v| v.value()), Some(1));
//! # Ok(()) }
//! ```
//!
//! A crash must be cheap (files of a few MiB, thousands of syncs per run),
//! so nothing is copied at a sync: each file keeps, for every page of its
//! durable bytes changed since the last sync, that page as it was durable
//! (an undo log). A sync forgets the log; a crash writes it back and
//! restores the durable length.
//!
//! The disk is `Send + Sync` (redb requires it of a backend) though the
//! simulator runs on one thread.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// The unit the undo log keeps, in bytes.
const UNDO_PAGE: usize = 4096;

/// Why a file operation failed. Carried inside the [`io::Error`] redb's
/// backend interface requires (reach it with `get_ref` and
/// `downcast_ref`).
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The disk crashed after this handle was made: a killed process's
    /// handles never touch the disk again.
    #[error("the disk crashed since {file:?} was opened")]
    Crashed {
        /// The file the handle was for.
        file: String,
    },
    /// A read went beyond the file's end.
    #[error("{file:?}: {len} bytes at {offset} go beyond its end at {end}")]
    OutOfRange {
        /// The file read.
        file: String,
        /// Where the read began.
        offset: u64,
        /// How many bytes it wanted.
        len: u64,
        /// The file's length.
        end: u64,
    },
    /// An offset or length too large for a file held in memory.
    #[error("{file:?}: {size} bytes do not fit in memory")]
    TooLarge {
        /// The file.
        file: String,
        /// The offset or length asked for.
        size: u64,
    },
}

impl From<DiskError> for io::Error {
    fn from(error: DiskError) -> io::Error {
        let kind = match error {
            DiskError::Crashed { .. } => io::ErrorKind::Other,
            DiskError::OutOfRange { .. } => io::ErrorKind::UnexpectedEof,
            DiskError::TooLarge { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, error)
    }
}

/// Counters over a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Syncs (of redb's files, and small files written synced).
    pub syncs: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Crashes.
    pub crashes: u64,
}

/// A simulated disk of named files. Cheap to clone: every clone is the
/// same disk.
#[derive(Clone, Default)]
pub struct Disk {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Disk")
            .field("files", &inner.files.len())
            .field("stats", &inner.stats)
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    files: BTreeMap<String, File>,
    /// How many crashes so far: a handle made before the latest is dead.
    crashes: u64,
    stats: DiskStats,
}

#[derive(Default)]
struct File {
    data: Vec<u8>,
    /// The length the last sync made durable.
    durable_len: usize,
    /// Page number to the page's durable bytes, for every page of the
    /// durable length changed since the last sync. A durable page not in
    /// here is unchanged and still all in `data` (a shrink records what it
    /// cuts off).
    undo: BTreeMap<usize, Vec<u8>>,
}

impl File {
    /// Records the durable bytes of every page overlapping `start..end`
    /// that is not recorded yet, before they change.
    fn preserve(&mut self, start: usize, end: usize) {
        let end = end.min(self.durable_len);
        if start >= end {
            return;
        }
        for page in start / UNDO_PAGE..=(end - 1) / UNDO_PAGE {
            if let Entry::Vacant(slot) = self.undo.entry(page) {
                let from = page * UNDO_PAGE;
                let to = (from + UNDO_PAGE)
                    .min(self.durable_len)
                    .min(self.data.len());
                slot.insert(self.data.get(from..to).unwrap_or_default().to_vec());
            }
        }
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset + bytes.len();
        self.preserve(offset, end);
        if end > self.data.len() {
            self.data.resize(end, 0);
        }
        self.data[offset..end].copy_from_slice(bytes);
    }

    fn set_len(&mut self, len: usize) {
        let old = self.data.len();
        self.preserve(len.min(old), len.max(old));
        self.data.resize(len, 0);
    }

    fn sync(&mut self) {
        self.durable_len = self.data.len();
        self.undo.clear();
    }

    fn roll_back(&mut self) {
        self.data.resize(self.durable_len, 0);
        for (page, bytes) in std::mem::take(&mut self.undo) {
            let from = page * UNDO_PAGE;
            self.data[from..from + bytes.len()].copy_from_slice(&bytes);
        }
    }
}

impl Disk {
    /// An empty disk.
    pub fn new() -> Disk {
        Disk::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned one is as good.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A handle on `file` (created empty if new) for
    /// `redb::Builder::create_with_backend`. It fails every call after the
    /// next [`Disk::crash`].
    pub fn backend(&self, file: &str) -> FileBackend {
        let mut inner = self.lock();
        inner.files.entry(file.to_owned()).or_default();
        FileBackend {
            disk: self.clone(),
            file: file.to_owned(),
            crashes: inner.crashes,
        }
    }

    /// Kills the machine: every handle made before fails from now on, and
    /// every file goes back to exactly what its last sync made durable.
    pub fn crash(&self) {
        let mut inner = self.lock();
        inner.crashes += 1;
        inner.stats.crashes += 1;
        for file in inner.files.values_mut() {
            file.roll_back();
        }
    }

    /// A small file's contents (a vat's key), or `None` if there is none.
    pub fn read(&self, file: &str) -> Option<Vec<u8>> {
        self.lock().files.get(file).map(|file| file.data.clone())
    }

    /// Replaces a small file's contents, durably at once.
    pub fn write_synced(&self, file: &str, bytes: Vec<u8>) {
        let mut inner = self.lock();
        inner.stats.bytes_written += bytes.len() as u64;
        inner.stats.syncs += 1;
        let entry = inner.files.entry(file.to_owned()).or_default();
        entry.data = bytes;
        entry.sync();
    }

    /// Counters so far.
    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }
}

/// One handle on one file of a [`Disk`]: redb's storage backend.
#[derive(Debug)]
pub struct FileBackend {
    disk: Disk,
    file: String,
    /// The disk's crash count when this handle was made.
    crashes: u64,
}

impl FileBackend {
    /// Runs `op` on the file, unless the disk crashed since this handle
    /// was made.
    fn with_file<T>(
        &self,
        op: impl FnOnce(&mut File, &mut DiskStats) -> Result<T, DiskError>,
    ) -> Result<T, io::Error> {
        let mut inner = self.disk.lock();
        if inner.crashes != self.crashes {
            return Err(DiskError::Crashed {
                file: self.file.clone(),
            }
            .into());
        }
        let Inner { files, stats, .. } = &mut *inner;
        let file = files.entry(self.file.clone()).or_default();
        Ok(op(file, stats)?)
    }

    fn size(&self, size: u64) -> Result<usize, DiskError> {
        usize::try_from(size).map_err(|_| DiskError::TooLarge {
            file: self.file.clone(),
            size,
        })
    }
}

impl redb::StorageBackend for FileBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.with_file(|file, _| Ok(file.data.len() as u64))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.with_file(|file, _| {
            let source = usize::try_from(offset)
                .ok()
                .and_then(|start| file.data.get(start..start.checked_add(out.len())?))
                .ok_or_else(|| DiskError::OutOfRange {
                    file: self.file.clone(),
                    offset,
                    len: out.len() as u64,
                    end: file.data.len() as u64,
                })?;
            out.copy_from_slice(source);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let len = self.size(len)?;
        self.with_file(|file, _| {
            file.set_len(len);
            Ok(())
        })
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.with_file(|file, stats| {
            file.sync();
            stats.syncs += 1;
            Ok(())
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let offset = self.size(offset)?;
        if offset.checked_add(data.len()).is_none() {
            return Err(DiskError::TooLarge {
                file: self.file.clone(),
                size: u64::MAX,
            }
            .into());
        }
        self.with_file(|file, stats| {
            file.write(offset, data);
            stats.bytes_written += data.len() as u64;
            Ok(())
        })
    }

    fn close(&self) -> Result<(), io::Error> {
        self.with_file(|_, _| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use redb::{
        Database, Durability, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition,
    };

    use super::*;

    const TABLE: TableDefinition<u64, u64> = TableDefinition::new("numbers");

    fn insert(db: &Database, keys: std::ops::Range<u64>, durability: Durability) {
        let mut write = db.begin_write().unwrap();
        write.set_durability(durability).unwrap();
        {
            let mut table = write.open_table(TABLE).unwrap();
            for key in keys {
                table.insert(key, key * 10).unwrap();
            }
        }
        write.commit().unwrap();
    }

    fn keys(db: &Database) -> Vec<u64> {
        let read = db.begin_read().unwrap();
        let table = read.open_table(TABLE).unwrap();
        table
            .iter()
            .unwrap()
            .map(|entry| {
                let (key, value) = entry.unwrap();
                assert_eq!(value.value(), key.value() * 10);
                key.value()
            })
            .collect()
    }

    #[test]
    fn a_crash_keeps_exactly_what_redb_committed_durably() {
        let disk = Disk::new();
        let db = Database::builder()
            .create_with_backend(disk.backend("vat.redb"))
            .unwrap();
        insert(&db, 0..500, Durability::Immediate);
        insert(&db, 500..900, Durability::None);
        {
            // Written, never committed.
            let write = db.begin_write().unwrap();
            write
                .open_table(TABLE)
                .unwrap()
                .insert(5000, 50000)
                .unwrap();
            drop(write);
        }
        assert_eq!(keys(&db), (0..900).collect::<Vec<_>>());
        let synced = disk.stats().syncs;
        assert!(synced > 0);

        disk.crash();
        let mut write = db.begin_write().unwrap();
        write.set_durability(Durability::Immediate).unwrap();
        write.open_table(TABLE).unwrap().insert(1, 1).unwrap();
        assert!(
            write.commit().is_err(),
            "the dead handle's commit succeeded"
        );
        drop(db);
        assert_eq!(disk.stats().syncs, synced, "the dead handle synced");

        let db = Database::builder()
            .create_with_backend(disk.backend("vat.redb"))
            .unwrap();
        assert_eq!(keys(&db), (0..500).collect::<Vec<_>>());
        // The reopened database works on.
        insert(&db, 500..600, Durability::Immediate);
        assert_eq!(keys(&db).len(), 600);
        assert_eq!(disk.stats().crashes, 1);
    }

    #[test]
    fn a_dead_handle_fails_every_call() {
        let disk = Disk::new();
        let backend = disk.backend("f");
        backend.write(0, b"abc").unwrap();
        disk.crash();
        let error = backend.write(0, b"x").unwrap_err();
        assert!(matches!(
            error.get_ref().and_then(|e| e.downcast_ref::<DiskError>()),
            Some(DiskError::Crashed { .. })
        ));
        assert!(backend.len().is_err());
        assert!(backend.read(0, &mut [0; 1]).is_err());
        assert!(backend.set_len(0).is_err());
        assert!(backend.sync_data().is_err());
        assert!(backend.close().is_err());
        assert_eq!(disk.backend("f").len().unwrap(), 0);
    }

    /// Random writes, truncations, extensions, syncs and crashes against a
    /// model that copies the whole file at each sync.
    #[test]
    fn crashes_restore_the_last_synced_bytes_exactly() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let disk = Disk::new();
        let mut backend = disk.backend("f");
        let mut current: Vec<u8> = Vec::new();
        let mut durable: Vec<u8> = Vec::new();
        for step in 0..5_000u32 {
            match rng.random_range(0..100) {
                0..=59 => {
                    let offset = rng.random_range(0..=current.len() + 3 * UNDO_PAGE);
                    let len = rng.random_range(0..2 * UNDO_PAGE);
                    let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    backend.write(offset as u64, &bytes).unwrap();
                    if offset + len > current.len() {
                        current.resize(offset + len, 0);
                    }
                    current[offset..offset + len].copy_from_slice(&bytes);
                }
                60..=74 => {
                    let len = rng.random_range(0..=current.len() + 2 * UNDO_PAGE);
                    backend.set_len(len as u64).unwrap();
                    current.resize(len, 0);
                }
                75..=89 => {
                    backend.sync_data().unwrap();
                    durable = current.clone();
                }
                _ => {
                    disk.crash();
                    backend = disk.backend("f");
                    current = durable.clone();
                }
            }
            assert_eq!(backend.len().unwrap(), current.len() as u64, "step {step}");
            let mut all = vec![0; current.len()];
            backend.read(0, &mut all).unwrap();
            assert!(
                all == current,
                "step {step}: the file differs from the model"
            );
        }
        assert!(disk.stats().crashes > 25);
    }

    #[test]
    fn small_files_written_synced_survive_a_crash() {
        let disk = Disk::new();
        assert_eq!(disk.read("key"), None);
        disk.write_synced("key", b"secret".to_vec());
        disk.crash();
        assert_eq!(disk.read("key").as_deref(), Some(&b"secret"[..]));
    }

    #[test]
    fn a_read_beyond_the_end_fails() {
        let disk = Disk::new();
        let backend = disk.backend("f");
        backend.write(0, &[1; 10]).unwrap();
        let error = backend.read(5, &mut [0; 6]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
