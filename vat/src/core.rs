//! The inside of a vat: its message queue, its heap and the loop that runs
//! one turn after another.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Weak as ArcWeak;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, ErrorKind};
use crate::handle::Shared;
use crate::heap::{Heap, HeapEntry, ObjectId, ObjectInfo};

/// A queued message: delivering it is one turn.
pub(crate) trait Turn {
    /// Delivers the message.
    fn run(self: Rc<Self>);

    /// The message will never be delivered (the vat is stopping): let go of
    /// what it holds, which breaks its promise.
    fn abandon(self: Rc<Self>);
}

/// A message that is a closure.
struct Closure<F>(Cell<Option<F>>);

impl<F: FnOnce()> Turn for Closure<F> {
    fn run(self: Rc<Self>) {
        if let Some(message) = self.0.take() {
            message();
        }
    }

    fn abandon(self: Rc<Self>) {
        drop(self.0.take());
    }
}

/// A place in the queue. A message dropped without being delivered is
/// abandoned.
struct Queued(Option<Rc<dyn Turn>>);

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(turn) = self.0.take() {
            turn.abandon();
        }
    }
}

/// How many turns the loop runs before it yields to the vat's other tasks
/// (network sessions, timers), so a flood of local sends cannot starve them.
const TURNS_PER_POLL: usize = 1024;

pub(crate) struct VatCore {
    name: Rc<str>,
    queue: RefCell<VecDeque<Queued>>,
    /// The turn loop's waker, and whether the loop is already due to run.
    loop_waker: RefCell<Option<Waker>>,
    scheduled: Cell<bool>,
    heap: Heap,
    stopping: Cell<bool>,
    turns: Cell<u64>,
    /// Objects whose near call a panic unwound through during this turn.
    unwound: RefCell<Vec<Rc<dyn HeapEntry>>>,
    /// Objects kept alive by a `Root` held outside the vat.
    roots: RefCell<std::collections::HashMap<ObjectId, Rc<dyn Any>>>,
    /// The handle side, for `LocalVat::handle`.
    pub(crate) shared: ArcWeak<Shared>,
    /// Wakes the command loop when the vat stops itself.
    pub(crate) stop_requested: Rc<tokio::sync::Notify>,
    /// Called when the object with that id crashes (supervisors watch their
    /// children this way). Consulted only when a turn panics.
    crash_watchers: RefCell<std::collections::HashMap<ObjectId, CrashWatcher>>,
    /// While `Some`, every export records its client pointer and id here
    /// (`far::capture_exports`).
    export_capture: RefCell<Option<Vec<(usize, ObjectId)>>>,
    /// State the vat's subsystems keep per vat (its connection manager, its
    /// root supervisor, its stop hooks), one value per type: a thread may
    /// run many vats (a simulation does), so none of it is thread-local.
    locals: RefCell<Vec<Rc<dyn Any>>>,
    /// The environment the vat was started with (`None`: the real one).
    world: Option<Rc<dyn vat_env::World>>,
    /// How it dials other vats (`None`: TLS over TCP).
    transport: Option<Rc<dyn captp::Transport>>,
}

/// What a crash watcher is told: the error the crashed object's callers get.
pub(crate) type CrashWatcher = Box<dyn FnOnce(&Error)>;

thread_local! {
    static CURRENT: RefCell<Option<Rc<VatCore>>> = const { RefCell::new(None) };
}

/// The vat running on this thread, if any.
pub(crate) fn current() -> Option<Rc<VatCore>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Whether this thread's vat is stopping (or there is no vat here at all).
pub(crate) fn stopping() -> bool {
    // try_with: a resolver may be dropped while the thread's locals are torn down.
    CURRENT
        .try_with(|c| c.borrow().as_ref().is_none_or(|core| core.stopping.get()))
        .unwrap_or(true)
}

pub(crate) fn install(core: Option<Rc<VatCore>>) {
    CURRENT.with(|c| *c.borrow_mut() = core);
}

/// Runs `f` as code of `core`'s vat, with its environment installed, then
/// restores whatever ran before: a thread that drives many vats (a
/// simulation) switches between them this way.
pub(crate) fn enter<R>(core: &Rc<VatCore>, f: impl FnOnce() -> R) -> R {
    let before = CURRENT.with(|c| c.replace(Some(core.clone())));
    struct Restore(Option<Option<Rc<VatCore>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take().flatten();
            let _ = CURRENT.try_with(|c| c.replace(before));
        }
    }
    let _restore = Restore(Some(before));
    vat_env::enter(core.world.clone(), f)
}

/// This vat's value of type `T`, made with `T::default()` on first use.
/// Outside a vat, a fresh value each time (nothing outside a vat keeps
/// per-vat state).
pub(crate) fn vat_local<T: Default + 'static>() -> Rc<T> {
    match current() {
        Some(core) => core.local(),
        None => Rc::new(T::default()),
    }
}

impl VatCore {
    pub(crate) fn new(
        name: &str,
        shared: ArcWeak<Shared>,
        world: Option<Rc<dyn vat_env::World>>,
        transport: Option<Rc<dyn captp::Transport>>,
    ) -> VatCore {
        VatCore {
            name: name.into(),
            queue: RefCell::new(VecDeque::with_capacity(256)),
            loop_waker: RefCell::new(None),
            scheduled: Cell::new(true),
            heap: Heap::default(),
            stopping: Cell::new(false),
            turns: Cell::new(0),
            unwound: RefCell::new(Vec::new()),
            roots: RefCell::default(),
            shared,
            stop_requested: Rc::new(tokio::sync::Notify::new()),
            crash_watchers: RefCell::default(),
            export_capture: RefCell::new(None),
            locals: RefCell::default(),
            world,
            transport,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// How this vat dials others, where it was given a transport.
    pub(crate) fn transport(&self) -> Option<Rc<dyn captp::Transport>> {
        self.transport.clone()
    }

    /// This vat's value of type `T` (see [`vat_local`]).
    pub(crate) fn local<T: Default + 'static>(&self) -> Rc<T> {
        let mut locals = self.locals.borrow_mut();
        if let Some(found) = locals.iter().find_map(|l| l.clone().downcast::<T>().ok()) {
            return found;
        }
        let made = Rc::new(T::default());
        locals.push(made.clone());
        made
    }

    pub(crate) fn heap(&self) -> &Heap {
        &self.heap
    }

    pub(crate) fn heap_list(&self) -> Vec<ObjectInfo> {
        self.heap.list()
    }

    pub(crate) fn turns(&self) -> u64 {
        self.turns.get()
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.borrow().len()
    }

    /// Queues a closure to run in a later turn.
    pub(crate) fn enqueue_fn(&self, message: impl FnOnce() + 'static) {
        self.enqueue(Rc::new(Closure(Cell::new(Some(message)))));
    }

    /// Queues a message for a later turn.
    #[inline]
    pub(crate) fn enqueue(&self, message: Rc<dyn Turn>) {
        self.queue.borrow_mut().push_back(Queued(Some(message)));
        if !self.scheduled.get() {
            self.scheduled.set(true);
            if let Some(waker) = &*self.loop_waker.borrow() {
                waker.wake_by_ref();
            }
        }
    }

    /// Marks the vat stopping and drops every queued message, which breaks
    /// their promises.
    pub(crate) fn begin_stop(&self) {
        self.stopping.set(true);
        // Dropping a message may queue nothing (the vat is stopping), but
        // take the queue out first so no borrow is held while resolvers run.
        let queued = std::mem::take(&mut *self.queue.borrow_mut());
        drop(queued);
    }

    pub(crate) fn pin(&self, id: ObjectId, object: Rc<dyn Any>) {
        self.roots.borrow_mut().insert(id, object);
    }

    pub(crate) fn pinned(&self, id: ObjectId) -> Option<Rc<dyn Any>> {
        self.roots.borrow().get(&id).cloned()
    }

    pub(crate) fn unpin(&self, id: ObjectId) {
        // Drop the object outside the borrow: its destructor may unpin others.
        let object = self.roots.borrow_mut().remove(&id);
        drop(object);
    }

    pub(crate) fn finish_stop(&self) {
        let roots = std::mem::take(&mut *self.roots.borrow_mut());
        drop(roots);
        self.heap.clear();
        let watchers = std::mem::take(&mut *self.crash_watchers.borrow_mut());
        drop(watchers);
        self.unwound.borrow_mut().clear();
        self.loop_waker.borrow_mut().take();
        let locals = std::mem::take(&mut *self.locals.borrow_mut());
        drop(locals);
    }

    /// Calls `watcher` (once) when the object `id` crashes.
    pub(crate) fn watch_crash(&self, id: ObjectId, watcher: CrashWatcher) {
        self.crash_watchers.borrow_mut().insert(id, watcher);
    }

    /// Forgets the crash watcher of `id`, if any.
    pub(crate) fn unwatch_crash(&self, id: ObjectId) {
        let watcher = self.crash_watchers.borrow_mut().remove(&id);
        drop(watcher);
    }

    /// Starts recording exports; returns what was recorded before (nested
    /// captures each see their own exports).
    pub(crate) fn begin_capture(&self) -> Option<Vec<(usize, ObjectId)>> {
        self.export_capture.borrow_mut().replace(Vec::new())
    }

    /// Stops recording exports, restores the outer capture, and returns
    /// what this one recorded.
    pub(crate) fn end_capture(
        &self,
        outer: Option<Vec<(usize, ObjectId)>>,
    ) -> Vec<(usize, ObjectId)> {
        std::mem::replace(&mut *self.export_capture.borrow_mut(), outer).unwrap_or_default()
    }

    /// Whether exports are being recorded now.
    #[inline]
    pub(crate) fn capturing(&self) -> bool {
        self.export_capture.borrow().is_some()
    }

    /// Records one export, if a capture is running.
    pub(crate) fn note_export(&self, ptr: usize, id: ObjectId) {
        if let Some(seen) = self.export_capture.borrow_mut().as_mut() {
            seen.push((ptr, id));
        }
    }

    /// Records that a panic unwound through a near call of `entry`.
    pub(crate) fn note_unwound(&self, entry: Rc<dyn HeapEntry>) {
        entry.crash("a panic unwound through one of its near calls");
        self.unwound.borrow_mut().push(entry);
    }

    /// Ends a turn: counts it and, if a panic was caught, marks `target` and
    /// every object the panic unwound through as crashed with the panic's
    /// message. Returns the error for the caller's promise.
    #[inline]
    pub(crate) fn end_turn(
        &self,
        target: &dyn HeapEntry,
        panic: Option<Box<dyn Any + Send>>,
    ) -> Option<Error> {
        self.turns.set(self.turns.get() + 1);
        let unwound = {
            let mut list = self.unwound.borrow_mut();
            if list.is_empty() {
                None
            } else {
                Some(std::mem::take(&mut *list))
            }
        };
        let payload = panic?;
        let reason = panic_message(payload.as_ref());
        let mut crashed = Vec::new();
        for entry in unwound.into_iter().flatten() {
            entry.crash(&reason);
            crashed.push(entry.header().id());
        }
        target.crash(&reason);
        let header = target.header();
        tracing::warn!(
            vat = %self.name,
            object = %header.id(),
            r#type = header.type_name(),
            %reason,
            "object crashed"
        );
        let error = Error::new(
            ErrorKind::Crashed,
            format!(
                "object {} ({}) crashed: {reason}",
                header.id(),
                header.type_name()
            ),
        );
        crashed.push(header.id());
        self.tell_watchers(&crashed, &error);
        Some(error)
    }

    /// Calls the crash watchers of `crashed`, outside any borrow: a watcher
    /// may watch or unwatch other objects.
    fn tell_watchers(&self, crashed: &[ObjectId], error: &Error) {
        if self.crash_watchers.borrow().is_empty() {
            return;
        }
        for id in crashed {
            let watcher = self.crash_watchers.borrow_mut().remove(id);
            if let Some(watcher) = watcher {
                watcher(error);
            }
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic whose payload is not text".to_owned()
    }
}

/// Runs queued messages, one turn each, for as long as the vat runs.
pub(crate) struct TurnLoop {
    pub(crate) core: Rc<VatCore>,
}

impl Future for TurnLoop {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let core = &self.core;
        for _ in 0..TURNS_PER_POLL {
            let next = core.queue.borrow_mut().pop_front();
            match next {
                Some(mut queued) => {
                    if let Some(turn) = queued.0.take() {
                        turn.run();
                    }
                }
                None => {
                    let mut waker = core.loop_waker.borrow_mut();
                    match &*waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => *waker = Some(cx.waker().clone()),
                    }
                    core.scheduled.set(false);
                    return Poll::Pending;
                }
            }
        }
        // Budget spent: let the vat's other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
