//! Group commit: a thread beside the vat that writes to the store, so the
//! vat's loop never waits on a disk flush, and that folds the state changes
//! queued while it was flushing into one transaction.
//!
//! In an environment that keeps everything on one thread (a simulation),
//! the same batches are committed by a task of the vat instead, after the
//! environment's disk delay.

use std::cell::RefCell;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use futures::channel::oneshot;
use std::time::SystemTime;

use sturdyrefs::{
    MintOptions, Minted, ObjectRef, Purged, StateBatch, Store, StoreError, SwissHash,
};

use crate::error::{Error, ErrorKind};

/// The most state changes folded into one transaction.
const MAX_BATCH: usize = 4096;

type Ack<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Put {
        object: ObjectRef,
        bytes: Vec<u8>,
        ack: Ack<()>,
    },
    Mint {
        object: ObjectRef,
        options: MintOptions,
        ack: Ack<Minted>,
    },
    Revoke {
        hash: SwissHash,
        ack: Ack<bool>,
    },
    Purge {
        now: SystemTime,
        limit: usize,
        ack: Ack<Purged>,
    },
}

/// The vat's side of the commit thread. Dropping it ends the thread once
/// the jobs already queued are done, and waits for that.
pub(crate) struct Committer {
    jobs: RefCell<Option<Jobs>>,
    thread: RefCell<Option<JoinHandle<()>>>,
}

/// Where jobs go: the commit thread, or the vat's own commit task.
enum Jobs {
    Thread(mpsc::Sender<Job>),
    Task(futures::channel::mpsc::UnboundedSender<Job>),
}

impl Committer {
    pub(crate) fn start(store: Arc<dyn Store>, vat: &str) -> Result<Committer, Error> {
        if !vat_env::threads_allowed() {
            return Ok(Committer::on_the_vat(store));
        }
        let (jobs, inbox) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("commit-{vat}"))
            .spawn(move || run(&*store, &inbox))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Failed,
                    format!("cannot start the commit thread: {e}"),
                )
            })?;
        Ok(Committer {
            jobs: RefCell::new(Some(Jobs::Thread(jobs))),
            thread: RefCell::new(Some(thread)),
        })
    }

    /// A committer that is a task of the current vat.
    fn on_the_vat(store: Arc<dyn Store>) -> Committer {
        let (jobs, mut inbox) = futures::channel::mpsc::unbounded::<Job>();
        vat_env::spawn(async move {
            use futures::StreamExt;
            let mut waiting = Vec::new();
            while let Some(first) = inbox.next().await {
                waiting.push(first);
                while waiting.len() < MAX_BATCH {
                    match inbox.try_recv() {
                        Ok(job) => waiting.push(job),
                        _ => break,
                    }
                }
                if vat_env::injects(vat_env::InjectedBug::AckBeforeCommit) {
                    acknowledge_puts_early(&mut waiting);
                }
                let delay = vat_env::store_delay();
                if !delay.is_zero() {
                    vat_env::sleep(delay).await;
                }
                commit_batch(&*store, &mut waiting);
            }
        });
        Committer {
            jobs: RefCell::new(Some(Jobs::Task(jobs))),
            thread: RefCell::new(None),
        }
    }

    /// Commits `bytes` as the state of `object`. The commit is queued now,
    /// before the returned future is first polled, so that it keeps its
    /// place in the order of commits and completes whether or not anyone
    /// waits for it; the future resolves once it is durable.
    pub(crate) fn put(
        &self,
        object: ObjectRef,
        bytes: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), Error>> + 'static {
        self.queue(move |ack| Job::Put { object, bytes, ack })
    }

    pub(crate) async fn mint(
        &self,
        object: ObjectRef,
        options: MintOptions,
    ) -> Result<Minted, Error> {
        self.queue(move |ack| Job::Mint {
            object,
            options,
            ack,
        })
        .await
    }

    pub(crate) async fn revoke(&self, hash: SwissHash) -> Result<bool, Error> {
        self.queue(move |ack| Job::Revoke { hash, ack }).await
    }

    /// Deletes at most `limit` token records due for purging at `now`
    /// ([`Store::purge_due`]), in one transaction between the others. Queued
    /// at the call, like [`put`](Committer::put).
    pub(crate) fn purge(
        &self,
        now: SystemTime,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Purged, Error>> + 'static {
        self.queue(move |ack| Job::Purge { now, limit, ack })
    }

    /// Queues the job `make` builds around its acknowledgement, now, and
    /// returns the future of its outcome.
    fn queue<T>(
        &self,
        make: impl FnOnce(Ack<T>) -> Job,
    ) -> impl std::future::Future<Output = Result<T, Error>> + 'static
    where
        T: 'static,
    {
        let (ack, done) = oneshot::channel();
        let sent = self.send(make(ack));
        async move {
            if !sent {
                return Err(closed());
            }
            outcome(done.await)
        }
    }

    /// Queues `job` for the commit thread; `false` once the store closed.
    fn send(&self, job: Job) -> bool {
        match &*self.jobs.borrow() {
            Some(Jobs::Thread(jobs)) => jobs.send(job).is_ok(),
            Some(Jobs::Task(jobs)) => jobs.unbounded_send(job).is_ok(),
            None => false,
        }
    }
}

/// The error of a job sent after the store closed.
fn closed() -> Error {
    Error::new(ErrorKind::Failed, "the vat's store is closed")
}

/// What the commit thread answered for one job.
fn outcome<T>(answer: Result<Result<T, StoreError>, oneshot::Canceled>) -> Result<T, Error> {
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(store_error(error)),
        Err(_) => Err(closed()),
    }
}

impl Committer {
    /// Ends the commit thread once the jobs already queued are done, and
    /// waits for that; later jobs fail. Closing twice is fine.
    pub(crate) fn close(&self) {
        // Closing the channel ends the thread after the queued jobs.
        drop(self.jobs.borrow_mut().take());
        let thread = self.thread.borrow_mut().take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the commit thread panicked");
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.close();
    }
}

/// A store failure as the error a caller sees.
pub(crate) fn store_error(error: StoreError) -> Error {
    Error::new(
        ErrorKind::Failed,
        format!("the vat's store failed: {error}"),
    )
}

fn run(store: &dyn Store, inbox: &mpsc::Receiver<Job>) {
    let mut waiting = Vec::new();
    // Block for the first job, then take whatever queued up meanwhile.
    while let Ok(first) = inbox.recv() {
        waiting.push(first);
        while waiting.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(job) => waiting.push(job),
                Err(_) => break,
            }
        }
        commit_batch(store, &mut waiting);
    }
}

/// The injected bug [`vat_env::InjectedBug::AckBeforeCommit`]: tells the
/// callers of the state changes in `waiting` they are durable before they
/// are. Only a simulation that asks for it gets it, to prove that its
/// property runs catch a lost write.
fn acknowledge_puts_early(waiting: &mut [Job]) {
    for job in waiting.iter_mut() {
        if let Job::Put { ack, .. } = job {
            let (early, _ignored) = oneshot::channel();
            let _ = std::mem::replace(ack, early).send(Ok(()));
        }
    }
}

/// Runs the jobs in `waiting` in order, folding runs of state changes into
/// one transaction each.
fn commit_batch(store: &dyn Store, waiting: &mut Vec<Job>) {
    {
        let mut puts = StateBatch::new();
        let mut acks = Vec::new();
        for job in waiting.drain(..) {
            match job {
                Job::Put { object, bytes, ack } => {
                    puts.put(object, bytes);
                    acks.push(ack);
                }
                // Token changes are rare: flush the state changes before
                // them, so everything lands in the order it was asked for.
                Job::Mint {
                    object,
                    options,
                    ack,
                } => {
                    flush(store, &mut puts, &mut acks);
                    let _ = ack.send(store.mint(object, options));
                }
                Job::Revoke { hash, ack } => {
                    flush(store, &mut puts, &mut acks);
                    let _ = ack.send(store.revoke(&hash));
                }
                Job::Purge { now, limit, ack } => {
                    flush(store, &mut puts, &mut acks);
                    let _ = ack.send(store.purge_due(now, limit));
                }
            }
        }
        flush(store, &mut puts, &mut acks);
    }
}

/// Commits the state changes gathered so far in one transaction and tells
/// each waiting caller the outcome.
fn flush(store: &dyn Store, puts: &mut StateBatch, acks: &mut Vec<Ack<()>>) {
    if puts.is_empty() {
        return;
    }
    let batch = std::mem::take(puts);
    let size = batch.len();
    let outcome = store.commit(batch);
    tracing::trace!(changes = size, ok = outcome.is_ok(), "state committed");
    for ack in acks.drain(..) {
        // A caller that stopped waiting (its vat stopped) is no loss.
        let _ = ack.send(match &outcome {
            Ok(()) => Ok(()),
            Err(error) => Err(StoreError::Backend {
                operation: "committing object state",
                source: error.to_string().into(),
            }),
        });
    }
}
