//! The stable reference: one capability for a supervised child, whichever
//! incarnation of it is current.
//!
//! A [`Slot`] holds the child's current incarnation. While the child
//! restarts, calls wait in the slot (bounded in number and time) and go to
//! the next incarnation, in the order they came. Calls in progress on an
//! incarnation that ends fail with the error that ended it and are never
//! sent again.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use capnp::capability::Promise;
use capnp::private::capability::{ClientHook, ParamsHook, ResultsHook};

use crate::error::{Error, ErrorKind};
use crate::hook::{front, Front};

/// How many calls may wait for a restarting child, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimits {
    /// Calls that may wait at once; one more fails at once with
    /// [`Overloaded`](ErrorKind::Overloaded).
    pub max_calls: usize,
    /// How long a call may wait; past it the call fails with
    /// [`Overloaded`](ErrorKind::Overloaded), undelivered.
    pub max_wait: Duration,
}

impl Default for WaitLimits {
    /// 1024 calls, 5 seconds.
    fn default() -> WaitLimits {
        WaitLimits {
            max_calls: 1024,
            max_wait: Duration::from_secs(5),
        }
    }
}

/// Where a child's stable references point.
pub(crate) struct Slot {
    name: String,
    limits: WaitLimits,
    state: RefCell<State>,
}

enum State {
    /// An incarnation answers.
    Live {
        hook: Rc<dyn ClientHook>,
        life: Rc<Life>,
    },
    /// Not started yet, or restarting: calls wait.
    Waiting { queue: VecDeque<Rc<Waiter>> },
    /// Ended for good: every call fails with this error.
    Stopped(Error),
}

impl Slot {
    pub(crate) fn new(name: &str, limits: WaitLimits) -> Rc<Slot> {
        Rc::new(Slot {
            name: name.to_owned(),
            limits,
            state: RefCell::new(State::Waiting {
                queue: VecDeque::new(),
            }),
        })
    }

    /// A stable reference to the slot.
    pub(crate) fn client(self: &Rc<Self>) -> capnp::capability::Client {
        front(self.clone())
    }

    /// Whether an incarnation answers now.
    pub(crate) fn is_live(&self) -> bool {
        matches!(*self.state.borrow(), State::Live { .. })
    }

    /// Makes `hook` the current incarnation, number `generation`, and sends
    /// it the calls that waited, in order.
    pub(crate) fn go_live(&self, hook: Box<dyn ClientHook>, generation: u64) -> Rc<Life> {
        let hook: Rc<dyn ClientHook> = Rc::from(hook);
        let life = Rc::new(Life::new(generation));
        let previous = self.state.replace(State::Live {
            hook: hook.clone(),
            life: life.clone(),
        });
        let mut queue = match previous {
            State::Waiting { queue } => queue,
            State::Live { life: old, .. } => {
                // Not expected: the supervisor ends an incarnation first.
                old.end(Error::new(
                    ErrorKind::Failed,
                    format!("child `{}` was replaced", self.name),
                ));
                VecDeque::new()
            }
            State::Stopped(_) => VecDeque::new(),
        };
        // Each waiting call is sent and polled once here, in order, before
        // any later call can be: capnp-rpc starts a local call when it is
        // first polled, so this keeps their order.
        let forward = Arc::new(Forward::default());
        let waker = Waker::from(forward.clone());
        let mut cx = Context::from_waker(&waker);
        let mut running = Vec::new();
        while let Some(waiter) = queue.pop_front() {
            if life.is_over() {
                // The new incarnation ended while the queue was sent (a
                // method panicked at once): the rest waits for the next one.
                queue.push_front(waiter);
                break;
            }
            let Some(call) = waiter.start() else { continue };
            let mut guarded = Guarded::new(
                hook.call(call.interface_id, call.method_id, call.params, call.results),
                life.clone(),
            );
            match Pin::new(&mut guarded).poll(&mut cx) {
                Poll::Ready(outcome) => waiter.finish(outcome),
                Poll::Pending => running.push(Some((waiter, guarded))),
            }
        }
        if !queue.is_empty() {
            if let State::Waiting { queue: now } = &mut *self.state.borrow_mut() {
                for waiter in queue.into_iter().rev() {
                    now.push_front(waiter);
                }
            }
        }
        if !running.is_empty() {
            vat_env::spawn(Drain { running, forward });
        }
        life
    }

    /// Ends the incarnation `generation` if it is the current one: its calls
    /// in progress fail with `error`, new calls wait for the next one.
    /// Returns whether it was current.
    pub(crate) fn end_generation(&self, generation: u64, error: Error) -> bool {
        let current = matches!(&*self.state.borrow(), State::Live { life, .. } if life.generation == generation);
        if current {
            self.end_live(error);
        }
        current
    }

    fn end_live(&self, error: Error) {
        let previous = self.state.replace(State::Waiting {
            queue: VecDeque::new(),
        });
        if let State::Live { life, hook } = previous {
            life.end(error);
            drop(hook);
        }
    }

    /// Ends whatever is current and makes calls wait (the supervisor stops
    /// the child to restart it, or stops itself and may be restarted).
    pub(crate) fn suspend(&self, error: Error) {
        let stopped = matches!(*self.state.borrow(), State::Stopped(_));
        if stopped {
            self.reopen();
        } else if self.is_live() {
            self.end_live(error);
        }
    }

    /// Ends the child for good: calls in progress and waiting fail with
    /// `error`, and so does every later call.
    pub(crate) fn stop(&self, error: Error) {
        let previous = self.state.replace(State::Stopped(error.clone()));
        match previous {
            State::Live { life, hook } => {
                life.end(error);
                drop(hook);
            }
            State::Waiting { queue } => {
                for waiter in queue {
                    waiter.finish(Err(error.clone().into()));
                }
            }
            State::Stopped(_) => {}
        }
    }

    /// A stopped slot takes calls again (they wait for the next start).
    pub(crate) fn reopen(&self) {
        let stopped = matches!(*self.state.borrow(), State::Stopped(_));
        if stopped {
            self.state.replace(State::Waiting {
                queue: VecDeque::new(),
            });
        }
    }

    fn call(
        &self,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        let mut state = self.state.borrow_mut();
        match &mut *state {
            State::Live { hook, life } => {
                let (hook, life) = (hook.clone(), life.clone());
                // A method may end the incarnation while it runs: no borrow
                // may be held then.
                drop(state);
                let call = hook.call(interface_id, method_id, params, results);
                Promise::from_future(Guarded::new(call, life))
            }
            State::Waiting { queue } => {
                if queue.len() >= self.limits.max_calls {
                    return Promise::err(
                        Error::undelivered(
                            ErrorKind::Overloaded,
                            format!(
                                "supervised child `{}` is restarting and {} calls already wait for it; \
                                 this call was not delivered",
                                self.name,
                                queue.len()
                            ),
                        )
                        .into(),
                    );
                }
                let waiter = Rc::new(Waiter {
                    call: RefCell::new(Some(Queued {
                        interface_id,
                        method_id,
                        params,
                        results,
                    })),
                    outcome: RefCell::new(None),
                    running: Cell::new(false),
                    waker: RefCell::new(None),
                });
                queue.push_back(waiter.clone());
                Promise::from_future(Wait {
                    waiter,
                    deadline: Box::pin(vat_env::sleep(self.limits.max_wait)),
                    child: self.name.clone(),
                    max_wait: self.limits.max_wait,
                })
            }
            State::Stopped(error) => Promise::err(error.clone().into()),
        }
    }
}

/// One incarnation as its calls in progress see it: they fail when it ends.
pub(crate) struct Life {
    pub(crate) generation: u64,
    over: RefCell<Option<Error>>,
    /// Wakers of the calls in progress that are waiting, by slot index.
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Life {
    fn new(generation: u64) -> Life {
        Life {
            generation,
            over: RefCell::new(None),
            wakers: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn is_over(&self) -> bool {
        self.over.borrow().is_some()
    }

    /// Ends the incarnation: every call in progress fails with `error`.
    pub(crate) fn end(&self, error: Error) {
        if self.is_over() {
            return;
        }
        *self.over.borrow_mut() = Some(error);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        self.free.borrow_mut().clear();
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    fn register(&self, index: &mut Option<usize>, waker: &Waker) {
        let mut wakers = self.wakers.borrow_mut();
        match *index {
            Some(i) if i < wakers.len() => match &wakers[i] {
                Some(w) if w.will_wake(waker) => {}
                _ => wakers[i] = Some(waker.clone()),
            },
            _ => {
                let i = match self.free.borrow_mut().pop() {
                    Some(i) => {
                        wakers[i] = Some(waker.clone());
                        i
                    }
                    None => {
                        wakers.push(Some(waker.clone()));
                        wakers.len() - 1
                    }
                };
                *index = Some(i);
            }
        }
    }

    fn unregister(&self, index: usize) {
        let mut wakers = self.wakers.borrow_mut();
        if let Some(entry) = wakers.get_mut(index) {
            if entry.take().is_some() {
                self.free.borrow_mut().push(index);
            }
        }
    }
}

/// A call on one incarnation that fails as soon as the incarnation ends.
struct Guarded {
    inner: Promise<(), capnp::Error>,
    life: Rc<Life>,
    index: Option<usize>,
}

impl Guarded {
    fn new(inner: Promise<(), capnp::Error>, life: Rc<Life>) -> Guarded {
        Guarded {
            inner,
            life,
            index: None,
        }
    }
}

impl Future for Guarded {
    type Output = Result<(), capnp::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(error) = this.life.over.borrow().as_ref() {
            return Poll::Ready(Err(error.clone().into()));
        }
        // The call that crashes the incarnation gets its own crash error
        // from the incarnation.
        match Pin::new(&mut this.inner).poll(cx) {
            Poll::Ready(outcome) => Poll::Ready(outcome),
            Poll::Pending => {
                if let Some(error) = this.life.over.borrow().as_ref() {
                    return Poll::Ready(Err(error.clone().into()));
                }
                this.life.register(&mut this.index, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(index) = self.index {
            self.life.unregister(index);
        }
    }
}

/// A call waiting for the next incarnation.
struct Queued {
    interface_id: u64,
    method_id: u16,
    params: Box<dyn ParamsHook>,
    results: Box<dyn ResultsHook>,
}

struct Waiter {
    /// The call, until it is sent or given up.
    call: RefCell<Option<Queued>>,
    outcome: RefCell<Option<Result<(), capnp::Error>>>,
    /// Sent to an incarnation: its deadline no longer applies.
    running: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Waiter {
    /// Takes the call to send it, unless its caller gave up.
    fn start(&self) -> Option<Queued> {
        let call = self.call.borrow_mut().take()?;
        self.running.set(true);
        Some(call)
    }

    fn finish(&self, outcome: Result<(), capnp::Error>) {
        self.call.borrow_mut().take();
        *self.outcome.borrow_mut() = Some(outcome);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// The caller's side of a waiting call.
struct Wait {
    waiter: Rc<Waiter>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    child: String,
    max_wait: Duration,
}

impl Future for Wait {
    type Output = Result<(), capnp::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(outcome) = self.waiter.outcome.borrow_mut().take() {
            return Poll::Ready(outcome);
        }
        if !self.waiter.running.get() && self.deadline.as_mut().poll(cx).is_ready() {
            // Given up before it was sent: it never will be.
            self.waiter.call.borrow_mut().take();
            return Poll::Ready(Err(Error::undelivered(
                ErrorKind::Overloaded,
                format!(
                    "supervised child `{}` did not come back within {:?}; this call was not delivered",
                    self.child, self.max_wait
                ),
            )
            .into()));
        }
        *self.waiter.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        // A caller that stops waiting withdraws a call not yet sent.
        self.waiter.call.borrow_mut().take();
    }
}

/// Drives the calls sent from the queue to their end, after the first poll
/// that `go_live` gave them.
struct Drain {
    running: Vec<Option<(Rc<Waiter>, Guarded)>>,
    forward: Arc<Forward>,
}

impl Future for Drain {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.forward.set(cx.waker());
        let mut pending = false;
        for entry in &mut self.running {
            if let Some((waiter, call)) = entry {
                match Pin::new(call).poll(cx) {
                    Poll::Ready(outcome) => {
                        waiter.finish(outcome);
                        *entry = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// The waker of the first poll in `go_live`: forwards to the drain task's
/// waker once it has one, and remembers a wake-up that came before.
#[derive(Default)]
struct Forward {
    waker: Mutex<(Option<Waker>, bool)>,
}

impl Forward {
    fn set(&self, waker: &Waker) {
        if let Ok(mut slot) = self.waker.lock() {
            slot.0 = Some(waker.clone());
            slot.1 = false;
        }
    }
}

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(mut slot) = self.waker.lock() {
            match &slot.0 {
                Some(waker) => waker.wake_by_ref(),
                // The drain task polls everything on its first poll anyway.
                None => slot.1 = true,
            }
        }
    }
}

/// The identity of a stable reference is its slot's: the same for every
/// incarnation, so capnp-rpc exports one capability for the child, never
/// one per incarnation.
impl Front for Slot {
    fn forward_call(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        self.call(interface_id, method_id, params, results)
    }
}
