//! Where the directory's store commits its writes: in the calling turn
//! ([`Commits::Inline`], for the simulator, whose runs must follow from
//! their seed), or on a thread of their own that commits every write
//! queued while the previous fsync ran in one transaction
//! ([`Commits::Grouped`]: group commit, so many members' appends and the
//! commit index share one fsync, and the vat's thread never waits on the
//! disk).
//!
//! Either way the writes reach the disk in the order they were submitted,
//! and each one's completion runs only after it is durable.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, Durability, TableDefinition, WriteTransaction};

use crate::store::StoreError;

/// How the store commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Commits {
    /// Each write is its own transaction, committed with fsync in the
    /// calling turn. Deterministic: what the simulator uses.
    Inline,
    /// Writes go to a thread that commits whatever has queued up in one
    /// fsynced transaction. What a real member uses.
    #[default]
    Grouped,
}

/// The most writes one grouped transaction takes, so one huge backlog
/// does not hold every completion until all of it is written.
const MAX_GROUP: usize = 1024;

/// One write to the store, as data, so a group that fails can be retried
/// write by write and each learn its own outcome.
pub(crate) enum Write {
    /// Inserts `(key, value)` pairs into a table keyed by index.
    Indexed {
        table: TableDefinition<'static, u64, &'static [u8]>,
        rows: Vec<(u64, Vec<u8>)>,
    },
    /// Inserts `(key, value)` pairs into a table keyed by name.
    Named {
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        rows: Vec<(&'static str, Vec<u8>)>,
    },
    /// Deletes the rows of an indexed table from `first` on.
    DeleteFrom {
        table: TableDefinition<'static, u64, &'static [u8]>,
        first: u64,
    },
    /// Deletes the rows of an indexed table up to `last`, inclusive.
    DeleteUpTo {
        table: TableDefinition<'static, u64, &'static [u8]>,
        last: u64,
    },
}

impl Write {
    fn apply(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        match self {
            Write::Indexed { table, rows } => {
                let mut table = txn.open_table(*table).map_err(backend)?;
                for (key, value) in rows {
                    table.insert(*key, value.as_slice()).map_err(backend)?;
                }
            }
            Write::Named { table, rows } => {
                let mut table = txn.open_table(*table).map_err(backend)?;
                for (key, value) in rows {
                    table.insert(*key, value.as_slice()).map_err(backend)?;
                }
            }
            Write::DeleteFrom { table, first } => {
                let mut table = txn.open_table(*table).map_err(backend)?;
                table.retain_in(*first.., |_, _| false).map_err(backend)?;
            }
            Write::DeleteUpTo { table, last } => {
                let mut table = txn.open_table(*table).map_err(backend)?;
                table.retain_in(..=*last, |_, _| false).map_err(backend)?;
            }
        }
        Ok(())
    }
}

fn backend<E: Into<redb::Error>>(error: E) -> StoreError {
    StoreError::Backend {
        operation: "writing to the directory's database",
        source: Box::new(error.into()),
    }
}

/// Names the operation in a backend error, for the one who asked.
fn during(operation: &'static str, error: StoreError) -> StoreError {
    match error {
        StoreError::Backend { source, .. } => StoreError::Backend { operation, source },
        other => other,
    }
}

/// What runs once a write is durable (or has failed, with nothing of it
/// written). It may run on the writer's thread.
pub(crate) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A unit of work: writes that commit together, and what to tell after.
struct Job {
    /// What the writes are for, as errors name it.
    operation: &'static str,
    writes: Vec<Write>,
    done: Done,
}

/// The store's one writer.
pub(crate) struct Writer {
    db: Arc<Database>,
    /// `None` when committing inline.
    thread: Option<WriterThread>,
}

struct WriterThread {
    jobs: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("grouped", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Whether writes are committed on the writer's thread, their
    /// completions running there.
    pub(crate) fn grouped(&self) -> bool {
        self.thread.is_some()
    }

    /// A writer for `db`; with [`Commits::Grouped`] it starts its thread.
    pub(crate) fn new(db: Arc<Database>, commits: Commits) -> Result<Writer, StoreError> {
        let thread = match commits {
            Commits::Inline => None,
            Commits::Grouped => {
                let (jobs, queue) = mpsc::channel();
                let writing = db.clone();
                let handle = std::thread::Builder::new()
                    .name("directory-writer".into())
                    .spawn(move || run(&writing, &queue))
                    .map_err(|source| StoreError::Writer { source })?;
                Some(WriterThread {
                    jobs: Some(jobs),
                    handle: Some(handle),
                })
            }
        };
        Ok(Writer { db, thread })
    }

    /// Commits `writes` together, durably, then runs `done` with the
    /// outcome: at once when inline, later (on the writer's thread) when
    /// grouped.
    pub(crate) fn submit(&self, operation: &'static str, writes: Vec<Write>, done: Done) {
        let job = Job {
            operation,
            writes,
            done,
        };
        match self.thread.as_ref().and_then(|thread| thread.jobs.as_ref()) {
            Some(jobs) => {
                if let Err(mpsc::SendError(job)) = jobs.send(job) {
                    // The thread is gone (it only ends when the writer is
                    // dropped, or after a panic): commit here instead.
                    commit_alone(&self.db, job);
                }
            }
            None => commit_alone(&self.db, job),
        }
    }

    /// Commits `writes` durably and waits for it without blocking the
    /// thread (when grouped).
    pub(crate) async fn write(
        &self,
        operation: &'static str,
        writes: Vec<Write>,
    ) -> Result<(), StoreError> {
        let (tell, told) = tokio::sync::oneshot::channel();
        self.submit(
            operation,
            writes,
            Box::new(move |outcome| {
                // The waiter may have gone (its task was dropped): nothing
                // is owed to it then.
                let _ = tell.send(outcome);
            }),
        );
        told.await.unwrap_or(Err(StoreError::WriterGone))
    }

    /// Commits `writes` durably and blocks the calling thread until then:
    /// for the rare writes made outside openraft's async calls.
    pub(crate) fn write_blocking(
        &self,
        operation: &'static str,
        writes: Vec<Write>,
    ) -> Result<(), StoreError> {
        let (tell, told) = mpsc::channel();
        self.submit(
            operation,
            writes,
            Box::new(move |outcome| {
                let _ = tell.send(outcome);
            }),
        );
        told.recv().unwrap_or(Err(StoreError::WriterGone))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.as_mut() {
            // Closing the queue ends the thread once it has committed what
            // was queued; joining it releases its hold on the database, so
            // the file can be opened again at once.
            thread.jobs = None;
            if let Some(handle) = thread.handle.take() {
                let _ = handle.join();
            }
        }
    }
}

/// The writer's thread: takes the next job, then every job queued behind
/// it (up to [`MAX_GROUP`]), and commits them in one transaction.
fn run(db: &Database, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(db, group);
    }
}

fn commit_group(db: &Database, mut group: Vec<Job>) {
    if group.len() == 1 {
        if let Some(job) = group.pop() {
            commit_alone(db, job);
        }
        return;
    }
    let together = commit(db, group.iter().flat_map(|job| job.writes.iter()));
    match together {
        Ok(()) => {
            for job in group {
                (job.done)(Ok(()));
            }
        }
        // Nothing of the group was written: each job is tried alone, so
        // the one that fails learns why and the others still commit.
        Err(_) => {
            for job in group {
                commit_alone(db, job);
            }
        }
    }
}

fn commit_alone(db: &Database, job: Job) {
    let outcome = commit(db, job.writes.iter()).map_err(|error| during(job.operation, error));
    (job.done)(outcome);
}

/// One durable transaction holding `writes`, in order.
fn commit<'a>(db: &Database, writes: impl Iterator<Item = &'a Write>) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_durability(Durability::Immediate).map_err(backend)?;
    for write in writes {
        write.apply(&txn)?;
    }
    txn.commit().map_err(backend)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests

    use std::sync::{Arc, Mutex};

    use redb::{ReadableDatabase, ReadableTable};

    use super::*;

    const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");
    /// `ROWS` under another key type: opening it fails once `ROWS` exists.
    const MISTYPED: TableDefinition<&str, &[u8]> = TableDefinition::new("rows");

    fn row(index: u64) -> Write {
        Write::Indexed {
            table: ROWS,
            rows: vec![(index, index.to_le_bytes().to_vec())],
        }
    }

    fn stored(db: &Database) -> Vec<u64> {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(ROWS).unwrap();
        table
            .iter()
            .unwrap()
            .map(|item| item.unwrap().0.value())
            .collect()
    }

    /// A writer on a fresh database, and the outcomes its jobs report in
    /// the order they report them.
    fn writer(commits: Commits) -> (tempfile::TempDir, Arc<Database>, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("w.redb")).unwrap());
        let writer = Writer::new(db.clone(), commits).unwrap();
        (dir, db, writer)
    }

    fn recorder(log: &Arc<Mutex<Vec<(u64, bool)>>>, index: u64) -> Done {
        let log = log.clone();
        Box::new(move |outcome| log.lock().unwrap().push((index, outcome.is_ok())))
    }

    #[test]
    fn completions_come_in_submission_order_each_after_its_commit() {
        for commits in [Commits::Inline, Commits::Grouped] {
            let (_dir, db, writer) = writer(commits);
            let log = Arc::new(Mutex::new(Vec::new()));
            for index in 0..200 {
                let done = recorder(&log, index);
                let db = db.clone();
                writer.submit(
                    "a row",
                    vec![row(index)],
                    Box::new(move |outcome| {
                        // Durable means readable by now.
                        assert!(stored(&db).contains(&index));
                        done(outcome);
                    }),
                );
            }
            drop(writer);
            let expected: Vec<(u64, bool)> = (0..200).map(|index| (index, true)).collect();
            assert_eq!(*log.lock().unwrap(), expected, "{commits:?}");
            assert_eq!(stored(&db), (0..200).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_failing_write_in_a_group_fails_alone() {
        let (_dir, db, writer) = writer(Commits::Grouped);
        writer.write_blocking("the table", vec![row(0)]).unwrap();
        // Hold the writer's thread inside a completion, so the next three
        // jobs queue up and are committed as one group.
        let (release, held) = mpsc::channel::<()>();
        writer.submit(
            "a row",
            vec![row(1)],
            Box::new(move |_| {
                let _ = held.recv();
            }),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        writer.submit("a row", vec![row(2)], recorder(&log, 2));
        let bad = Write::Named {
            table: MISTYPED,
            rows: vec![("x", Vec::new())],
        };
        writer.submit("a mistyped row", vec![bad], recorder(&log, 3));
        writer.submit("a row", vec![row(4)], recorder(&log, 4));
        release.send(()).unwrap();
        drop(writer);
        assert_eq!(*log.lock().unwrap(), vec![(2, true), (3, false), (4, true)]);
        assert_eq!(stored(&db), vec![0, 1, 2, 4]);
    }

    #[test]
    fn a_dropped_writer_has_committed_everything_and_let_go_of_the_file() {
        let (dir, db, writer) = writer(Commits::Grouped);
        for index in 0..50 {
            writer.submit("a row", vec![row(index)], Box::new(|_| {}));
        }
        drop(writer);
        drop(db);
        let reopened = Database::create(dir.path().join("w.redb")).unwrap();
        assert_eq!(stored(&reopened), (0..50).collect::<Vec<_>>());
    }
}
