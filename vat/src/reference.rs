//! Near references: objects of the same vat, called synchronously or sent to
//! eventually.

use std::cell::{Cell, RefCell, RefMut};
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use futures::FutureExt;

use crate::core::{Turn, VatCore};
use crate::error::{Error, ErrorKind};
use crate::heap::{Header, HeapEntry, ObjectId, ObjectInfo, ObjectKind};
use crate::promise::{promise, Promise, Resolver, Shared};

pub(crate) struct Object<T> {
    header: Header,
    value: RefCell<T>,
    vat: Rc<VatCore>,
}

impl<T> HeapEntry for Object<T> {
    fn header(&self) -> &Header {
        &self.header
    }

    fn crash(&self, reason: &str) {
        self.header.mark_crashed(reason);
        // Leave the value borrowed for good: every later near call then fails
        // its borrow and, on that slow path only, finds the object crashed.
        // Callers release their own borrow first (see `CrashOnUnwind`), and
        // marking an object twice finds it locked already.
        if let Ok(value) = self.value.try_borrow_mut() {
            std::mem::forget(value);
        }
    }
}

/// A near reference: an object of this vat.
///
/// - [`call`](Ref::call) runs a method now, on the local call stack (a near call);
/// - [`send`](Ref::send) queues a message for a later turn and returns a
///   [`Promise`] at once (an eventual send). Sends on one reference are
///   delivered in the order made (E-order).
///
/// A panic in a method is caught at the end of its turn: the caller's promise
/// breaks with a [`Crashed`](ErrorKind::Crashed) error that carries the panic
/// message, the object (and any object whose near call the panic unwound
/// through) is marked crashed and refuses further messages, and the vat and
/// its other objects go on.
///
/// A `Ref` cannot leave its vat: it is neither `Send` nor `Sync`, so moving it
/// to another thread does not compile:
///
/// ```compile_fail
/// fn needs_send<T: Send>(_: T) {}
/// let r: vat::Ref<u32> = unimplemented!();
/// needs_send(r);
/// ```
///
/// To reach an object from another vat, [`export`](crate::export) it as a
/// Cap'n Proto capability.
pub struct Ref<T: 'static> {
    object: Rc<Object<T>>,
}

/// A near reference that does not keep its object alive: what an object
/// holds of itself (see [`spawn_cyclic`](crate::spawn_cyclic)), to reach
/// its own state again after an await without keeping itself alive for
/// ever. Like [`Ref`], it cannot leave its vat.
pub struct WeakRef<T: 'static>(std::rc::Weak<Object<T>>);

impl<T: 'static> WeakRef<T> {
    /// The object, if it is still alive.
    pub fn upgrade(&self) -> Option<Ref<T>> {
        self.0.upgrade().map(|object| Ref { object })
    }
}

impl<T> fmt::Debug for WeakRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeakRef({})", std::any::type_name::<T>())
    }
}

impl<T> Clone for WeakRef<T> {
    fn clone(&self) -> Self {
        WeakRef(std::rc::Weak::clone(&self.0))
    }
}

impl<T> Clone for Ref<T> {
    fn clone(&self) -> Self {
        Ref {
            object: self.object.clone(),
        }
    }
}

impl<T> fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ref({} {} in vat {})",
            self.object.header.id(),
            self.object.header.type_name(),
            self.object.vat.name()
        )
    }
}

/// An eventual send's message, kept in its promise's allocation until it is
/// delivered.
type Letter<T, F> = Cell<Option<(Ref<T>, F)>>;

impl<T, R, F> Turn for Shared<R, Letter<T, F>>
where
    T: 'static,
    R: 'static,
    F: FnOnce(&mut T) -> R + 'static,
{
    fn run(self: Rc<Self>) {
        if let Some((target, message)) = self.carried.take() {
            target.deliver(message, Resolver::from_shared(self));
        }
    }

    fn abandon(self: Rc<Self>) {
        if let Some(letter) = self.carried.take() {
            drop(letter);
            // Dropping the resolver breaks the promise (vat stopped).
            drop(Resolver::from_shared(self));
        }
    }
}

/// Holds an object's value during a near call and marks the object crashed
/// if a panic unwinds through the call. The normal path takes the borrow back
/// out, which leaves nothing for `drop` to do; the compiler sees through it.
struct CrashOnUnwind<'a, T: 'static> {
    object: &'a Rc<Object<T>>,
    value: Option<RefMut<'a, T>>,
}

impl<T> Drop for CrashOnUnwind<'_, T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            // Release the borrow first, so that marking can lock the value.
            drop(value);
            self.object.vat.note_unwound(self.object.clone());
        }
    }
}

impl<T: 'static> Ref<T> {
    pub(crate) fn new(vat: &Rc<VatCore>, value: T) -> Ref<T> {
        Ref::new_cyclic(vat, |_| value)
    }

    /// An object that `make` builds knowing its own weak reference (see
    /// [`spawn_cyclic`](crate::spawn_cyclic)).
    pub(crate) fn new_cyclic(vat: &Rc<VatCore>, make: impl FnOnce(WeakRef<T>) -> T) -> Ref<T> {
        let header = vat
            .heap()
            .new_header(std::any::type_name::<T>(), ObjectKind::Near);
        let object = Rc::new_cyclic(|me| Object {
            header,
            value: RefCell::new(make(WeakRef(me.clone()))),
            vat: vat.clone(),
        });
        let weak: std::rc::Weak<dyn HeapEntry> = Rc::downgrade(&object) as _;
        vat.heap().record(weak);
        tracing::trace!(vat = vat.name(), object = %object.header.id(), r#type = object.header.type_name(), "spawned");
        Ref { object }
    }

    /// A reference that does not keep the object alive.
    pub fn downgrade(&self) -> WeakRef<T> {
        WeakRef(Rc::downgrade(&self.object))
    }

    /// The object as a heap entry, with its vat.
    pub(crate) fn entry(&self) -> crate::object::Entry {
        (
            self.object.clone() as Rc<dyn HeapEntry>,
            self.object.vat.clone(),
        )
    }

    pub(crate) fn into_any(self) -> Rc<dyn std::any::Any> {
        self.object
    }

    pub(crate) fn from_any(object: Rc<dyn std::any::Any>) -> Option<Ref<T>> {
        object
            .downcast::<Object<T>>()
            .ok()
            .map(|object| Ref { object })
    }

    /// The object's id in its vat's heap.
    pub fn id(&self) -> ObjectId {
        self.object.header.id()
    }

    /// A snapshot of the object's heap record.
    pub fn info(&self) -> ObjectInfo {
        self.object.header.info()
    }

    /// Whether the object has crashed.
    pub fn is_crashed(&self) -> bool {
        self.object.header.is_crashed()
    }

    /// Whether two references name the same object.
    pub fn same_object(&self, other: &Ref<T>) -> bool {
        Rc::ptr_eq(&self.object, &other.object)
    }

    /// A near call: runs `method` on the object now and returns its result.
    ///
    /// Fails with [`Crashed`](ErrorKind::Crashed) if the object has crashed,
    /// and with [`Reentrant`](ErrorKind::Reentrant) if the object is already
    /// running further up this call stack. A panic in `method` propagates to
    /// the end of the current turn, which catches it (see [`Ref`]).
    ///
    /// ```
    /// struct Counter(u64);
    /// let vat = vat::VatHandle::start("doc").unwrap();
    /// let n = vat.run(|| {
    ///     let counter = vat::spawn(Counter(0));
    ///     counter.call(|c| c.0 += 2).unwrap();
    ///     counter.call(|c| c.0).unwrap()
    /// }).wait().unwrap();
    /// assert_eq!(n, 2);
    /// vat.stop().unwrap();
    /// ```
    #[inline]
    pub fn call<R>(&self, method: impl FnOnce(&mut T) -> R) -> Result<R, Error> {
        let object = &self.object;
        // A crashed object's value stays borrowed (see `Object::crash`), so
        // one borrow check refuses both a crashed and a running object.
        let Ok(value) = object.value.try_borrow_mut() else {
            return Err(self.refused());
        };
        let mut guard = CrashOnUnwind {
            object,
            value: Some(value),
        };
        let result = match guard.value.as_deref_mut() {
            Some(value) => method(value),
            None => return Err(self.refused()),
        };
        guard.value = None;
        Ok(result)
    }

    /// Why a near call could not borrow the object.
    #[cold]
    #[inline(never)]
    fn refused(&self) -> Error {
        if self.object.header.is_crashed() {
            self.object.header.crashed_error()
        } else {
            self.reentrant_error()
        }
    }

    #[cold]
    fn reentrant_error(&self) -> Error {
        Error::new(
            ErrorKind::Reentrant,
            format!(
                "object {} ({}) is already running further up this call stack; \
                 send to it eventually instead",
                self.id(),
                self.object.header.type_name()
            ),
        )
    }

    /// An eventual send: queues `message` for a later turn of this vat and
    /// returns a promise for its result at once.
    ///
    /// ```
    /// struct Counter(u64);
    /// let vat = vat::VatHandle::start("doc").unwrap();
    /// let n = vat.run_async(|| async {
    ///     let counter = vat::spawn(Counter(0));
    ///     counter.send(|c| c.0 += 1);
    ///     counter.send(|c| c.0 * 10).await
    /// }).wait().unwrap();
    /// assert_eq!(n, Ok(10));
    /// vat.stop().unwrap();
    /// ```
    pub fn send<R: 'static>(&self, message: impl FnOnce(&mut T) -> R + 'static) -> Promise<R> {
        // One allocation holds the promise's slot and the queued message.
        let letter = Rc::new(Shared::pending(Cell::new(Some((self.clone(), message)))));
        let promise = Promise::from_shared(letter.clone());
        self.object.vat.enqueue(letter);
        promise
    }

    /// A one-way eventual send: queues `message` for a later turn, as
    /// [`send`](Ref::send) does, and wants no result. E-order holds with
    /// the object's other sends; a panic in it still crashes the object.
    ///
    /// ```
    /// let vat = vat::VatHandle::start("doc").unwrap();
    /// let n = vat.block_on(|| async {
    ///     let counter = vat::spawn(0u32);
    ///     counter.tell(|n| *n += 1);
    ///     counter.send(|n| *n).await
    /// });
    /// assert_eq!(n, Ok(1));
    /// vat.stop().unwrap();
    /// ```
    pub fn tell(&self, message: impl FnOnce(&mut T) + 'static) {
        drop(self.send(message));
    }

    /// An eventual send whose method starts asynchronous work: `message` runs
    /// in a turn with the object borrowed and returns a future; the promise
    /// resolves with that future's output. The future runs as a task of the
    /// vat (each resumption is a turn) and cannot borrow the object: clone a
    /// `Ref` into it to reach the object again. A panic in the future crashes
    /// the object too.
    pub fn send_async<F>(&self, message: impl FnOnce(&mut T) -> F + 'static) -> Promise<F::Output>
    where
        F: Future + 'static,
    {
        let (promise, resolver) = promise();
        let target = self.clone();
        self.object.vat.enqueue_fn(move || {
            let (future, future_resolver) = crate::promise::promise::<F>();
            target.deliver(message, future_resolver);
            vat_env::spawn(async move {
                let work = match future.await {
                    Ok(work) => work,
                    Err(error) => return resolver.break_with(error),
                };
                let outcome = AssertUnwindSafe(work).catch_unwind().await;
                let vat = target.object.vat.clone();
                match outcome {
                    Ok(value) => {
                        vat.end_turn(&*target.object, None);
                        resolver.resolve(value);
                    }
                    Err(panic) => {
                        let error = vat.end_turn(&*target.object, Some(panic));
                        resolver.break_with(
                            error.unwrap_or_else(|| target.object.header.crashed_error()),
                        );
                    }
                }
            });
        });
        promise
    }

    /// Queues `message`, settling `resolver` with its result.
    pub(crate) fn send_with<R: 'static>(
        &self,
        message: impl FnOnce(&mut T) -> R + 'static,
        resolver: Resolver<R>,
    ) {
        let target = self.clone();
        self.object
            .vat
            .enqueue_fn(move || target.deliver(message, resolver));
    }

    /// One turn: delivers `message` to the object.
    fn deliver<R>(&self, message: impl FnOnce(&mut T) -> R, resolver: Resolver<R>) {
        let object = &*self.object;
        if object.header.is_crashed() {
            return resolver.break_with(object.header.crashed_error());
        }
        object.header.count_message();
        let _turn =
            tracing::trace_span!("turn", vat = object.vat.name(), object = %object.header.id())
                .entered();
        let outcome = match object.value.try_borrow_mut() {
            Ok(mut value) => catch_unwind(AssertUnwindSafe(|| message(&mut value))),
            // Turns do not nest, so nothing can hold the object at a turn's start.
            Err(_) => return resolver.break_with(self.reentrant_error()),
        };
        match outcome {
            Ok(value) => {
                object.vat.end_turn(object, None);
                resolver.resolve(value);
            }
            Err(panic) => {
                let error = object.vat.end_turn(object, Some(panic));
                resolver.break_with(error.unwrap_or_else(|| object.header.crashed_error()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{ErrorKind, ObjectState, VatHandle};

    struct Cell(u32);

    #[test]
    fn a_running_object_refuses_a_near_call_as_reentrant() {
        let vat = VatHandle::start("reentrant").unwrap();
        let kind = vat
            .run(|| {
                let cell = crate::spawn(Cell(0));
                let inner = cell.clone();
                cell.call(move |_| inner.call(|c| c.0).unwrap_err().kind())
                    .unwrap()
            })
            .wait()
            .unwrap();
        assert_eq!(kind, ErrorKind::Reentrant);
        vat.stop().unwrap();
    }

    #[test]
    fn a_panic_through_a_near_call_outside_any_turn_crashes_the_object() {
        let vat = VatHandle::start("unwound").unwrap();
        let root = vat.spawn(|| Cell(0)).wait().unwrap();
        let root = std::sync::Arc::new(root);
        let inside = root.clone();
        // `run` catches the panic itself: no turn ends in between.
        let ran = vat
            .run(move || {
                inside.get().unwrap().call(|_| panic!("boom")).unwrap();
            })
            .wait();
        assert_eq!(ran.unwrap_err().kind(), ErrorKind::Crashed);
        let (kind, crashed, state) = vat
            .run(move || {
                let cell = root.get().unwrap();
                let kind = cell.call(|c| c.0).unwrap_err().kind();
                (kind, cell.is_crashed(), cell.info().state)
            })
            .wait()
            .unwrap();
        assert_eq!(kind, ErrorKind::Crashed);
        assert!(crashed);
        assert!(matches!(state, ObjectState::Crashed { .. }));
        vat.stop().unwrap();
    }

    #[test]
    fn a_panic_in_a_turn_crashes_its_target_and_every_object_it_unwound_through() {
        let vat = VatHandle::start("turn").unwrap();
        let kinds = vat
            .run_async(|| async {
                let outer = crate::spawn(Cell(0));
                let middle = crate::spawn(Cell(0));
                let inner = middle.clone();
                let sent = outer.send(move |_| {
                    inner.call(|_| panic!("deep")).unwrap();
                });
                let turn = sent.await.unwrap_err().kind();
                let outer_call = outer.call(|c| c.0).unwrap_err();
                let middle_call = middle.call(|c| c.0).unwrap_err();
                assert!(outer_call.to_string().contains("deep"));
                assert!(middle_call.to_string().contains("deep"));
                let later = outer.send(|c| c.0).await.unwrap_err().kind();
                (turn, outer_call.kind(), middle_call.kind(), later)
            })
            .wait()
            .unwrap();
        assert_eq!(
            kinds,
            (
                ErrorKind::Crashed,
                ErrorKind::Crashed,
                ErrorKind::Crashed,
                ErrorKind::Crashed
            )
        );
        vat.stop().unwrap();
    }

    #[test]
    fn a_send_still_queued_when_its_vat_stops_breaks_with_vat_stopped() {
        let vat = VatHandle::start("stopping").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        vat.run(move || {
            let cell = crate::spawn(Cell(0));
            // The promise itself is dropped at once; the queue keeps the message.
            cell.send(|c| c.0 += 1).on_settled(move |result| {
                let _ = tx.send(result.as_ref().map_err(|e| e.kind()).copied());
            });
            crate::current().stop();
        })
        .wait()
        .unwrap();
        assert_eq!(rx.recv().unwrap(), Err(ErrorKind::VatStopped));
        vat.stop().unwrap();
    }

    #[test]
    fn a_healthy_object_takes_near_calls_after_a_refused_one() {
        let vat = VatHandle::start("healthy").unwrap();
        let n = vat
            .run(|| {
                let cell = crate::spawn(Cell(1));
                let inner = cell.clone();
                cell.call(move |c| {
                    assert!(inner.call(|c| c.0).is_err());
                    c.0 += 1;
                })
                .unwrap();
                cell.call(|c| c.0).unwrap()
            })
            .wait()
            .unwrap();
        assert_eq!(n, 2);
        vat.stop().unwrap();
    }
}
