//! Persistent objects: a kind name, a serialisable state, and a cell that
//! commits each change before the caller hears of it.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use futures::future::{FutureExt, LocalBoxFuture, Shared};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sturdyrefs::ObjectRef;

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
///
/// Both [`update`](StateCell::update) and
/// [`read_committed`](StateCell::read_committed) touch the state at once,
/// in the turn that calls them, and only then wait: a method that calls
/// one of them first sees the state as of its call's delivery, and calls
/// pipelined on one reference see each other's changes in the order they
/// were sent, whatever their commits' timing.
pub struct StateCell<S> {
    object: ObjectRef,
    value: RefCell<S>,
    committer: Rc<Committer>,
    /// The commit of the latest update. The commit thread finishes commits
    /// in the order they were queued and each writes the whole state, so
    /// once this one is durable every state before it is superseded by a
    /// durable one.
    last_commit: RefCell<Option<Commit>>,
}

/// One queued commit, which any number of readers may wait for.
type Commit = Shared<LocalBoxFuture<'static, Result<(), Error>>>;

impl<S: Serialize> StateCell<S> {
    pub(crate) fn new(object: ObjectRef, value: S, committer: Rc<Committer>) -> StateCell<S> {
        StateCell {
            object,
            value: RefCell::new(value),
            committer,
            last_commit: RefCell::new(None),
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

    /// Reads the state as it is now (at the call, not when the future is
    /// first polled), and resolves with what `read` returned once that
    /// state is committed: what it reports survives a crash, and it never
    /// includes a change made after the call.
    ///
    /// Fails with a [`Failed`](ErrorKind::Failed) error if the commit of
    /// the state it read failed: that state was never durable.
    pub fn read_committed<R: 'static>(
        &self,
        read: impl FnOnce(&S) -> R,
    ) -> impl Future<Output = Result<R, Error>> + 'static {
        let value = read(&self.value.borrow());
        let commit = self.last_commit.borrow().clone();
        async move {
            if let Some(commit) = commit {
                commit.await?;
            }
            Ok(value)
        }
    }

    /// Changes the state with `change` at once (at the call, not when the
    /// future is first polled), queues the commit of the new state, and
    /// resolves with what `change` returned once the commit is durable.
    ///
    /// If the commit fails the call fails with a
    /// [`Failed`](ErrorKind::Failed) error; the change stays in memory but
    /// was never acknowledged. The commit goes ahead whether or not the
    /// returned future is awaited.
    pub fn update<R: 'static>(
        &self,
        change: impl FnOnce(&mut S) -> R,
    ) -> impl Future<Output = Result<R, Error>> + 'static {
        let changed = {
            let mut value = self.value.borrow_mut();
            let result = change(&mut value);
            postcard::to_allocvec(&*value)
                .map(|bytes| (result, bytes))
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Failed,
                        format!("cannot encode the state of {}: {e}", self.object),
                    )
                })
        };
        let commit = changed.map(|(result, bytes)| {
            let commit: Commit = self
                .committer
                .put(self.object.clone(), bytes)
                .boxed_local()
                .shared();
            *self.last_commit.borrow_mut() = Some(commit.clone());
            (result, commit)
        });
        async move {
            let (result, commit) = commit?;
            commit.await.map(|()| result)
        }
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
