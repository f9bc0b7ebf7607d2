//! Promises: the results of eventual sends, resolved in a later turn.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, ErrorKind};
use crate::reference::Ref;

/// Something to run when a promise settles, in the order registered.
type Waiter<T> = Box<dyn FnOnce(&Result<T, Error>)>;

enum Slot<T> {
    Pending {
        waker: Option<Waker>,
        waiters: Vec<Waiter<T>>,
    },
    Settled(Result<T, Error>),
    Taken,
}

/// What a promise shares with its resolver: the slot its result lands in,
/// and whatever travels with it. An eventual send keeps its message here
/// (see `Ref::send`), so a send costs one allocation, not two.
pub(crate) struct Shared<T, M: ?Sized = dyn Carried> {
    slot: RefCell<Slot<T>>,
    pub(crate) carried: M,
}

/// Anything a promise's allocation may carry besides its slot.
pub(crate) trait Carried {}

impl<M> Carried for M {}

/// The state of a promise, whatever it carries.
type State<T> = Shared<T, dyn Carried>;

impl<T, M> Shared<T, M> {
    /// An unsettled slot, carrying `carried`.
    pub(crate) fn pending(carried: M) -> Shared<T, M> {
        Shared {
            slot: RefCell::new(Slot::Pending {
                waker: None,
                waiters: Vec::new(),
            }),
            carried,
        }
    }
}

/// The eventual result of a message: resolved with a value, or broken with an
/// [`Error`].
///
/// Await it (from a task of the same vat) to get the result. A promise for a
/// near reference can be sent to before it resolves ([`Promise::send`]):
/// the messages wait in the promise and are delivered, in order, as soon as it
/// resolves. That is promise pipelining within a vat.
///
/// Promises are `!Send`: they belong to the vat that made them.
#[must_use = "a promise does nothing unless awaited; drop it to ignore the result"]
pub struct Promise<T> {
    state: Rc<State<T>>,
}

/// The right to settle one [`Promise`]. Dropping it unsettled breaks the
/// promise, so no promise waits forever for a resolver that is gone.
pub struct Resolver<T> {
    state: Option<Rc<State<T>>>,
}

impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.state.slot.borrow() {
            Slot::Pending { .. } => "pending",
            Slot::Settled(Ok(_)) => "resolved",
            Slot::Settled(Err(_)) => "broken",
            Slot::Taken => "taken",
        };
        f.debug_struct("Promise").field("state", &state).finish()
    }
}

impl<T> fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// Makes an unresolved promise and the resolver that settles it.
///
/// ```
/// let vat = vat::VatHandle::start("doc").unwrap();
/// let got = vat.run_async(|| async {
///     let (promise, resolver) = vat::promise::<u32>();
///     resolver.resolve(7);
///     promise.await
/// }).wait().unwrap();
/// assert_eq!(got, Ok(7));
/// vat.stop().unwrap();
/// ```
pub fn promise<T>() -> (Promise<T>, Resolver<T>) {
    let state: Rc<State<T>> = Rc::new(Shared::pending(()));
    (
        Promise::from_shared(state.clone()),
        Resolver::from_shared(state),
    )
}

impl<T> Promise<T> {
    /// A promise already resolved with `value`.
    pub fn resolved(value: T) -> Promise<T> {
        Promise::settled(Ok(value))
    }

    /// A promise already broken with `error`.
    pub fn broken(error: Error) -> Promise<T> {
        Promise::settled(Err(error))
    }

    fn settled(result: Result<T, Error>) -> Promise<T> {
        let state: Rc<State<T>> = Rc::new(Shared {
            slot: RefCell::new(Slot::Settled(result)),
            carried: (),
        });
        Promise { state }
    }

    /// The promise reading `state`.
    pub(crate) fn from_shared(state: Rc<State<T>>) -> Promise<T> {
        Promise { state }
    }

    /// Whether the promise has settled (resolved or broken).
    pub fn is_settled(&self) -> bool {
        !matches!(&*self.state.slot.borrow(), Slot::Pending { .. })
    }

    /// Runs `waiter` when the promise settles, before anything awaiting it
    /// wakes; at once if it has settled already.
    pub(crate) fn on_settled(&self, waiter: impl FnOnce(&Result<T, Error>) + 'static) {
        let mut slot = self.state.slot.borrow_mut();
        match &mut *slot {
            Slot::Pending { waiters, .. } => waiters.push(Box::new(waiter)),
            Slot::Settled(result) => {
                // Waiters only queue messages; they never touch this promise,
                // so holding the borrow is safe.
                waiter(result);
            }
            Slot::Taken => waiter(&Err(taken_error())),
        }
    }
}

fn taken_error() -> Error {
    Error::new(
        ErrorKind::Failed,
        "the promise's result was already taken by an earlier await",
    )
}

impl<T> Future for Promise<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.state.slot.borrow_mut();
        match &mut *slot {
            Slot::Pending { waker, .. } => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Settled(_) => match std::mem::replace(&mut *slot, Slot::Taken) {
                Slot::Settled(result) => Poll::Ready(result),
                _ => Poll::Ready(Err(taken_error())),
            },
            Slot::Taken => Poll::Ready(Err(taken_error())),
        }
    }
}

impl<U: 'static> Promise<Ref<U>> {
    /// Sends to the object this promise will resolve to, without waiting for
    /// it: promise pipelining.
    ///
    /// Messages sent to the promise are delivered in the order sent (E-order),
    /// as soon as the promise resolves; if it breaks, so do their promises,
    /// with the same error.
    ///
    /// ```
    /// struct Maker;
    /// struct Counter(u64);
    /// let vat = vat::VatHandle::start("doc").unwrap();
    /// let n = vat.run_async(|| async {
    ///     let maker = vat::spawn(Maker);
    ///     let counter = maker.send(|_| vat::spawn(Counter(0)));  // a promise for a Ref<Counter>
    ///     counter.send(|c| c.0 += 1);                            // pipelined
    ///     counter.send(|c| { c.0 += 1; c.0 }).await               // pipelined, then awaited
    /// }).wait().unwrap();
    /// assert_eq!(n, Ok(2));
    /// vat.stop().unwrap();
    /// ```
    pub fn send<R: 'static>(&self, message: impl FnOnce(&mut U) -> R + 'static) -> Promise<R> {
        let (promise, resolver) = promise();
        self.on_settled(move |target| match target {
            Ok(target) => target.send_with(message, resolver),
            Err(error) => resolver.break_with(error.clone()),
        });
        promise
    }

    /// A one-way send to the promised object ([`Ref::tell`](crate::Ref::tell) on a promise):
    /// pipelined like [`send`](Promise::send), with no answer wanted.
    pub fn tell(&self, message: impl FnOnce(&mut U) + 'static) {
        drop(self.send(message));
    }
}

impl<T> Resolver<T> {
    /// The resolver settling `state`.
    pub(crate) fn from_shared(state: Rc<State<T>>) -> Resolver<T> {
        Resolver { state: Some(state) }
    }

    /// Resolves the promise with `value`.
    pub fn resolve(self, value: T) {
        self.settle(Ok(value));
    }

    /// Breaks the promise with `error`.
    pub fn break_with(self, error: Error) {
        self.settle(Err(error));
    }

    /// Settles the promise with `result`.
    pub fn settle(mut self, result: Result<T, Error>) {
        if let Some(state) = self.state.take() {
            settle(&state, result);
        }
    }
}

fn settle<T>(state: &State<T>, result: Result<T, Error>) {
    let previous = std::mem::replace(&mut *state.slot.borrow_mut(), Slot::Settled(result));
    if let Slot::Pending { waker, waiters } = previous {
        if !waiters.is_empty() {
            let slot = state.slot.borrow();
            if let Slot::Settled(result) = &*slot {
                for waiter in waiters {
                    waiter(result);
                }
            }
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let error = if crate::core::stopping() {
                Error::vat_stopped("the message was never delivered")
            } else {
                Error::new(
                    ErrorKind::Failed,
                    "the promise's resolver was dropped without settling it",
                )
            };
            settle(&state, Err(error));
        }
    }
}
