//! Persistent objects: a kind name, a serialisable state, and a cell that
//! commits each change before the caller hears of it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sturdyrefs::ObjectRef;
use tokio::sync::Notify;

use super::committer::Committer;
use crate::error::{Error, ErrorKind};

/// A kind of object whose state outlives the process.
///
/// The vat keeps each such object's state in its store. When a sturdyref
/// that names one is restored after a restart (or the object is asked for
/// by id), the vat rebuilds it with [`Durable::revive`] around the state
/// last committed.
///
/// ```
/// use std::rc::Rc;
/// use schema::demo_capnp::counter;
/// use vat::sturdy::{Durable, StateCell};
///
/// /// A counter that survives restarts.
/// struct Tally(StateCell<i64>);
///
/// impl Durable for Tally {
///     const KIND: &'static str = "tally";
///     type State = i64;
///     fn revive(state: StateCell<i64>) -> capnp::capability::Client {
///         vat::export::<counter::Client, _>(Tally(state)).client
///     }
/// }
///
/// impl counter::Server for Tally {
///     async fn add(self: Rc<Self>, params: counter::AddParams, mut results: counter::AddResults)
///         -> Result<(), capnp::Error> {
///         let by = params.get()?.get_by();
///         // The reply goes out only once the new value is on disk.
///         let value = self.0.update(|n| { *n += by; *n }).await?;
///         results.get().set_value(value);
///         Ok(())
///     }
/// }
/// ```
pub trait Durable: 'static {
    /// The kind's name in the store. Keep it stable across versions of the
    /// program: tokens minted by one version name objects by it.
    const KIND: &'static str;

    /// What is kept. A new object starts from `Default`.
    type State: Serialize + DeserializeOwned + Default + 'static;

    /// Builds the live object around its state.
    fn revive(state: StateCell<Self::State>) -> capnp::capability::Client;
}

/// The state of one persistent object, held by the object itself.
///
/// Reads are immediate. [`update`](StateCell::update) changes the state,
/// then waits until the whole new state is committed to the store before
/// resolving, so a method that awaits it before replying acknowledges only
/// what survives `kill -9`. Commits from many objects and calls are
/// gathered into one transaction under load.
pub struct StateCell<S> {
    object: ObjectRef,
    value: RefCell<S>,
    committer: Rc<Committer>,
    /// Updates submitted, and updates committed (in order: the commit
    /// thread acknowledges in submission order).
    submitted: Cell<u64>,
    committed: Cell<u64>,
    progress: Notify,
}

impl<S: Serialize> StateCell<S> {
    pub(crate) fn new(object: ObjectRef, value: S, committer: Rc<Committer>) -> StateCell<S> {
        StateCell {
            object,
            value: RefCell::new(value),
            committer,
            submitted: Cell::new(0),
            committed: Cell::new(0),
            progress: Notify::new(),
        }
    }

    /// Which object this is, in the store.
    pub fn object(&self) -> &ObjectRef {
        &self.object
    }

    /// Reads the state as it is now, committed or not; see
    /// [`read_committed`](StateCell::read_committed).
    pub fn read<R>(&self, read: impl FnOnce(&S) -> R) -> R {
        read(&self.value.borrow())
    }

    /// Reads the state once every update made before this call is
    /// committed: what it returns survives a crash.
    pub async fn read_committed<R>(&self, read: impl FnOnce(&S) -> R) -> R {
        let target = self.submitted.get();
        while self.committed.get() < target {
            let notified = self.progress.notified();
            if self.committed.get() >= target {
                break;
            }
            notified.await;
        }
        read(&self.value.borrow())
    }

    /// Changes the state with `change`, commits the new state, and returns
    /// what `change` returned once the commit is durable.
    ///
    /// If the commit fails the call fails with a
    /// [`Failed`](ErrorKind::Failed) error; the change stays in memory but
    /// was never acknowledged.
    pub async fn update<R>(&self, change: impl FnOnce(&mut S) -> R) -> Result<R, Error> {
        let (result, bytes) = {
            let mut value = self.value.borrow_mut();
            let result = change(&mut value);
            let bytes = postcard::to_allocvec(&*value).map_err(|e| {
                Error::new(
                    ErrorKind::Failed,
                    format!("cannot encode the state of {}: {e}", self.object),
                )
            })?;
            (result, bytes)
        };
        self.submitted.set(self.submitted.get() + 1);
        // Counted as done even if the caller stops waiting, so that
        // `read_committed` never waits for an update nobody drives.
        let _done = Done(self);
        let outcome = self.committer.put(self.object.clone(), bytes).await;
        outcome.map(|()| result)
    }
}

/// Counts one update of a cell as finished when dropped.
struct Done<'a, S>(&'a StateCell<S>);

impl<S> Drop for Done<'_, S> {
    fn drop(&mut self) {
        self.0.committed.set(self.0.committed.get() + 1);
        self.0.progress.notify_waiters();
    }
}

/// Decodes a state read from the store.
pub(crate) fn decode<S: DeserializeOwned>(object: &ObjectRef, bytes: &[u8]) -> Result<S, Error> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Failed,
            format!("the stored state of {object} cannot be read: {e}"),
        )
    })
}
