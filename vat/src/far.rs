//! Far objects: Cap'n Proto servers living in a vat, reached from other vats
//! through capabilities.
//!
//! [`export`] turns a server (a type implementing a generated `Server` trait)
//! into a capability and records it in the vat's heap. Every call that reaches
//! it, from another vat or from this one, is a turn: it is counted, and a
//! panic in the method (before or after an `.await`) is caught, breaking the
//! caller's promise with a [`Crashed`](crate::ErrorKind::Crashed) error while
//! the vat serves everyone else. A crashed object refuses further calls.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use capnp::capability::{FromClientHook, FromServer, Promise};
use capnp::private::capability::{ClientHook, ParamsHook, ResultsHook};
use futures::FutureExt;
use tracing::Instrument;

use crate::core::VatCore;
use crate::error::Error;
use crate::heap::{self, Header, HeapEntry, ObjectKind};
use crate::hook::{front_hook, Front};

/// Exports `server` from the current vat as a capability of type `C`.
///
/// The object appears in the vat's heap under the server's type name.
///
/// ```
/// use schema::demo_capnp::counter;
/// use std::{cell::Cell, rc::Rc};
///
/// struct Counter(Cell<i64>);
/// impl counter::Server for Counter {
///     async fn add(self: Rc<Self>, params: counter::AddParams, mut results: counter::AddResults)
///         -> Result<(), capnp::Error> {
///         self.0.set(self.0.get() + params.get()?.get_by());
///         results.get().set_value(self.0.get());
///         Ok(())
///     }
/// }
///
/// let vat = vat::VatHandle::start("doc").unwrap();
/// let n = vat.run_async(|| async {
///     let counter: counter::Client = vat::export(Counter(Cell::new(0)));
///     let mut request = counter.add_request();
///     request.get().set_by(5);
///     request.send().promise.await.unwrap().get().unwrap().get_value()
/// }).wait().unwrap();
/// assert_eq!(n, 5);
/// vat.stop().unwrap();
/// ```
///
/// # Panics
/// Outside a vat (see [`current`](crate::current)).
pub fn export<C, S>(server: S) -> C
where
    C: FromServer<S>,
    S: 'static,
{
    export_rc(Rc::new(server), None).0
}

/// [`export`] of a server already behind an `Rc`, whose pointer is the
/// capability's identity (`get_ptr`). `release`, if any, is dropped with
/// the capability's last reference, when the vat lets go of the object (a
/// brand forgets its member then). Returns the object's heap record too.
pub(crate) fn export_rc<C, S>(server: Rc<S>, release: Option<Box<dyn Any>>) -> (C, Rc<Header>)
where
    C: FromServer<S>,
    S: 'static,
{
    let vat = crate::current().core().clone();
    let plain: C = capnp_rpc::new_client_from_rc(server);
    let header = heap::standalone(
        vat.heap()
            .new_header(std::any::type_name::<S>(), ObjectKind::Far),
    );
    let weak: std::rc::Weak<dyn HeapEntry> = Rc::downgrade(&header) as _;
    vat.heap().record(weak);
    tracing::trace!(vat = vat.name(), object = %header.id(), r#type = header.type_name(), "exported");
    let inner = plain.into_client_hook();
    if vat.capturing() {
        vat.note_export(inner.get_ptr(), header.id());
    }
    let turns = Turns {
        inner,
        entry: Rc::clone(&header) as Rc<dyn HeapEntry>,
        vat,
        _release: release,
    };
    (C::new(front_hook(Rc::new(turns))), header)
}

/// Wraps the plain capnp client of `entry` (an object already in the heap)
/// so that each call to it is a turn of that object. `release`, if any, is
/// dropped with the capability's last reference (see [`export_rc`]).
pub(crate) fn wrap<C: FromClientHook>(
    plain: C,
    entry: Rc<dyn HeapEntry>,
    vat: Rc<VatCore>,
    release: Option<Box<dyn Any>>,
) -> C {
    let inner = plain.into_client_hook();
    let turns = Turns {
        inner,
        entry,
        vat,
        _release: release,
    };
    C::new(front_hook(Rc::new(turns)))
}

/// Runs `make`, catching a panic, and returns its outcome with every object
/// it exported in the current vat, as (client pointer, id) pairs: a
/// supervisor finds the object its factory made this way, to watch it.
pub(crate) fn capture_exports<R>(
    vat: &VatCore,
    make: impl FnOnce() -> R,
) -> (std::thread::Result<R>, Vec<(usize, crate::heap::ObjectId)>) {
    let outer = vat.begin_capture();
    let made = catch_unwind(AssertUnwindSafe(make));
    let seen = vat.end_capture(outer);
    (made, seen)
}

/// Wraps a local server's client so that every call to it is a turn of
/// `entry`, the object it belongs to.
struct Turns {
    inner: Box<dyn ClientHook>,
    entry: Rc<dyn HeapEntry>,
    vat: Rc<VatCore>,
    /// Dropped with the last reference (see [`export_rc`]).
    _release: Option<Box<dyn Any>>,
}

impl Turns {
    fn handle(
        &self,
        outcome: Result<Result<(), capnp::Error>, Box<dyn std::any::Any + Send>>,
    ) -> Result<(), capnp::Error> {
        match outcome {
            Ok(Ok(())) => {
                self.vat.end_turn(&*self.entry, None);
                Ok(())
            }
            Ok(Err(error)) => {
                self.vat.end_turn(&*self.entry, None);
                // Keep the kind when it crosses the wire: decoding errors
                // become invalid-argument errors the caller can match on.
                Err(Error::from(error).into())
            }
            Err(panic) => Err(self.crashed(panic)),
        }
    }

    fn crashed(&self, panic: Box<dyn std::any::Any + Send>) -> capnp::Error {
        self.vat
            .end_turn(&*self.entry, Some(panic))
            .unwrap_or_else(|| self.entry.header().crashed_error())
            .into()
    }
}

impl Front for Turns {
    fn forward_call(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        let header = self.entry.header();
        if header.is_crashed() {
            return Promise::err(header.crashed_error().into());
        }
        header.count_message();
        let started = catch_unwind(AssertUnwindSafe(|| {
            self.inner.call(interface_id, method_id, params, results)
        }));
        match started {
            Ok(call) => {
                let span = tracing::trace_span!(
                    "turn",
                    vat = self.vat.name(),
                    object = %header.id(),
                    interface = interface_id,
                    method = method_id
                );
                let turns = Rc::clone(self);
                Promise::from_future(
                    async move {
                        let outcome = AssertUnwindSafe(call).catch_unwind().await;
                        turns.handle(outcome)
                    }
                    .instrument(span),
                )
            }
            Err(panic) => Promise::err(self.crashed(panic)),
        }
    }

    /// The server's own identity, as capnp-rpc's plain client has it.
    fn identity(self: &Rc<Self>) -> usize {
        self.inner.get_ptr()
    }
}
