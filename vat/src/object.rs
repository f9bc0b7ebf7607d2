//! One object, three ways to call it: near ([`Ref::call`]), eventually
//! ([`Ref::send`]) and far, from other vats, through its Cap'n Proto
//! interface ([`Ref::export`]).
//!
//! An object is a plain struct holding its state. Its interface's methods
//! are written once, as methods of the struct taking `&mut self`, in an
//! `impl` block marked [`#[vat::object(interface)]`](macro@crate::object):
//!
//! ```
//! use schema::demo_capnp::counter;
//!
//! /// A counter other vats can reach.
//! struct Counter { value: i64 }
//!
//! #[vat::object(counter)]
//! impl Counter {
//!     fn add(&mut self, params: counter::AddParams, mut results: counter::AddResults) -> vat::Reply {
//!         self.value += params.get()?.get_by();
//!         results.get().set_value(self.value);
//!         vat::done()
//!     }
//!
//!     fn get(&mut self, _: counter::GetParams, mut results: counter::GetResults) -> vat::Reply {
//!         results.get().set_value(self.value);
//!         vat::done()
//!     }
//! }
//!
//! let vat = vat::VatHandle::start("doc").unwrap();
//! let (near, far) = vat.run_async(|| async {
//!     let counter = vat::spawn(Counter { value: 0 });       // spawned once
//!     let client: counter::Client = counter.export();       // its capability
//!     let mut add = client.add_request();
//!     add.get().set_by(5);
//!     let far = add.send().promise.await?.get()?.get_value();
//!     let near = counter.call(|c| c.value)?;               // the same object, near
//!     Ok::<_, vat::Error>((near, far))
//! }).wait().unwrap().unwrap();
//! assert_eq!((near, far), (5, 5));
//! vat.stop().unwrap();
//! ```
//!
//! # State and awaits
//!
//! A method runs in a turn of its object with the state borrowed (`&mut
//! self`) and returns a [`Reply`]: [`done()`] when it has answered, or
//! [`later(future)`](later) to finish after awaiting something (a commit,
//! another vat). The future must be `'static`, so it cannot hold the
//! state: read or change what it needs first, then await. That is the
//! safe pattern by construction: other calls to the object run while the
//! future waits (each message is a turn of its own), so anything read
//! before an await may have changed after it. To act on the state again,
//! call the object through its own reference and let that turn see the
//! state as it is then: an object spawned with
//! [`spawn_cyclic`](crate::spawn_cyclic) keeps a [`WeakRef`](crate::WeakRef)
//! to itself (weak, so that it does not keep itself alive), which the
//! future upgrades.
//!
//! Far calls and near ones are turns of the same object: a panic in either
//! (before or after an await) marks it crashed, and every later call, near
//! or far, fails with [`Crashed`](crate::ErrorKind::Crashed). Calls on one
//! reference keep their order (E-order) on each path; near and far calls
//! arrive by different paths and are not ordered with each other.

use std::future::Future;

use capnp::capability::FromServer;
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use crate::heap::HeapEntry;
use crate::reference::Ref;

/// What a method of an object's interface returns: [`done()`], or work to
/// finish later ([`later`]); an `Err` fails the call (`?` on capnp's
/// readers works directly).
pub type Reply = Result<Later, capnp::Error>;

/// The part of a method that runs after its turn, without the object's
/// state: see [`later`].
#[must_use = "a Reply does nothing unless it is returned"]
pub struct Later(Option<LocalBoxFuture<'static, Result<(), capnp::Error>>>);

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Later(work)"
        } else {
            "Later(done)"
        })
    }
}

/// The method has answered (its results are set): the call completes when
/// the turn ends.
#[inline]
pub fn done() -> Reply {
    Ok(Later(None))
}

/// The method finishes with `work`, which runs after the turn (the object's
/// state released) and may await; the call completes with its outcome. A
/// panic in it crashes the object, as in the turn itself.
pub fn later(work: impl Future<Output = Result<(), capnp::Error>> + 'static) -> Reply {
    Ok(Later(Some(work.boxed_local())))
}

/// An object's interface, served from its `&mut self` methods: written by
/// [`#[vat::object]`](macro@crate::object), used by [`Ref::export`].
pub trait Far<C>: Sized + 'static {
    /// The Cap'n Proto server that answers `C`'s methods with turns of the
    /// object.
    type Server: 'static;

    /// The server for `served`.
    fn server(served: Served<Self>) -> Self::Server;
}

/// An object as its interface's server holds it (see [`Far`]); code written
/// by [`#[vat::object]`](macro@crate::object) calls [`Served::turn`].
pub struct Served<T: 'static>(Ref<T>);

impl<T: 'static> Served<T> {
    /// Runs `method` now, in a turn of the object with its state borrowed,
    /// and returns the call's completion: at once for [`done()`], after the
    /// work for [`later`].
    #[doc(hidden)]
    #[inline]
    pub fn turn(
        &self,
        method: impl FnOnce(&mut T) -> Reply,
    ) -> impl Future<Output = Result<(), capnp::Error>> + 'static {
        let outcome = match self.0.call(method) {
            Ok(Ok(Later(work))) => Ok(work),
            Ok(Err(error)) => Err(error),
            Err(refused) => Err(refused.into()),
        };
        async move {
            match outcome {
                Ok(None) => Ok(()),
                Ok(Some(work)) => work.await,
                Err(error) => Err(error),
            }
        }
    }
}

impl<T: 'static> Ref<T> {
    /// The object's capability for other vats, speaking interface `C`
    /// (which its [`#[vat::object(…)]`](macro@crate::object) block serves). Calls
    /// through it are turns of this same object. Each call makes a new
    /// capability (another vat sees two exports): make it once and clone
    /// the client.
    pub fn export<C>(&self) -> C
    where
        T: Far<C>,
        C: FromServer<T::Server>,
    {
        self.export_releasing(None)
    }

    /// [`export`](Ref::export), dropping `release` with the capability's
    /// last reference (a brand forgets its member then).
    pub(crate) fn export_releasing<C>(&self, release: Option<Box<dyn std::any::Any>>) -> C
    where
        T: Far<C>,
        C: FromServer<T::Server>,
    {
        let plain: C = capnp_rpc::new_client(T::server(Served(self.clone())));
        let (entry, vat) = self.entry();
        crate::far::wrap(plain, entry, vat, release)
    }
}

/// The heap entry and vat of a near object, for its far capability.
pub(crate) type Entry = (
    std::rc::Rc<dyn HeapEntry>,
    std::rc::Rc<crate::core::VatCore>,
);
