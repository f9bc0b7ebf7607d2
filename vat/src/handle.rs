//! Starting, reaching and stopping vats.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::{JoinHandle, ThreadId};

use futures::channel::oneshot;
use futures::FutureExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::core::{self, TurnLoop, VatCore};
use crate::error::{Error, ErrorKind};
use crate::heap::{ObjectId, ObjectInfo};
use crate::reference::{Ref, WeakRef};

/// Work sent to a vat from another thread.
enum Command {
    Run(Box<dyn FnOnce() + Send>),
    Stop,
}

/// What every handle of one vat shares.
pub(crate) struct Shared {
    name: String,
    commands: mpsc::UnboundedSender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

/// Configures and starts a vat.
///
/// ```
/// let vat = vat::VatBuilder::new("alice").start().unwrap();
/// assert_eq!(vat.name(), "alice");
/// vat.stop().unwrap();
/// ```
#[derive(Clone)]
pub struct VatBuilder {
    pub(crate) name: String,
    pub(crate) standard_panic_hook: bool,
    pub(crate) world: Option<Rc<dyn vat_env::World>>,
    pub(crate) transport: Option<Rc<dyn captp::Transport>>,
}

impl std::fmt::Debug for VatBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VatBuilder")
            .field("name", &self.name)
            .field("standard_panic_hook", &self.standard_panic_hook)
            .field("simulated", &self.world.is_some())
            .field("own_transport", &self.transport.is_some())
            .finish()
    }
}

impl VatBuilder {
    /// A vat named `name` (names appear in logs, thread names and errors; they
    /// need not be unique).
    pub fn new(name: impl Into<String>) -> VatBuilder {
        VatBuilder {
            name: name.into(),
            standard_panic_hook: false,
            world: None,
            transport: None,
        }
    }

    /// Dials other vats through `transport` (a simulator's network) instead
    /// of TLS over TCP.
    pub fn transport(mut self, transport: Rc<dyn captp::Transport>) -> VatBuilder {
        self.transport = Some(transport);
        self
    }

    /// Runs the vat in `world` (a simulator's): its wall clock and random
    /// source. Without it the vat runs in the real environment.
    pub fn world(mut self, world: Rc<dyn vat_env::World>) -> VatBuilder {
        self.world = Some(world);
        self
    }

    /// Keeps the process's panic hook (Rust's default one prints `thread
    /// '…' panicked at …` and, under `RUST_BACKTRACE=1`, a backtrace) for
    /// panics in this vat. By default a vat reports each panic it catches
    /// as one `tracing` error line, with the backtrace at debug level (one
    /// line on standard error where no subscriber is installed).
    pub fn standard_panic_hook(mut self, keep: bool) -> VatBuilder {
        self.standard_panic_hook = keep;
        self
    }

    /// Starts the vat on a thread of its own and returns a handle to it.
    ///
    /// A vat given a [`world`](VatBuilder::world) is not `Send` and runs
    /// only where its owner drives it ([`host`](VatBuilder::host)); this
    /// refuses it.
    pub fn start(self) -> Result<VatHandle, Error> {
        if self.world.is_some() || self.transport.is_some() {
            return Err(Error::new(
                ErrorKind::Failed,
                format!(
                    "cannot start vat {} on a thread: it runs in a world or on a transport of its own; use VatBuilder::host",
                    self.name
                ),
            ));
        }
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let (commands, inbox) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let name = self.name.clone();
        let quiet = !self.standard_panic_hook;
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let weak = weak.clone();
            let thread_name = format!("vat-{}", self.name);
            let spawned = std::thread::Builder::new()
                .name(thread_name)
                .spawn(move || {
                    if quiet {
                        crate::panic_hook::quiet_this_thread();
                    }
                    vat_thread(&name, serial, weak, inbox, ready_tx);
                });
            let (thread, thread_id) = match spawned {
                Ok(thread) => {
                    let id = thread.thread().id();
                    (Some(thread), id)
                }
                Err(_) => (None, std::thread::current().id()),
            };
            Shared {
                name: self.name.clone(),
                commands,
                thread: Mutex::new(thread),
                thread_id,
            }
        });
        let started = shared.thread.lock().map(|t| t.is_some()).unwrap_or(false);
        if !started {
            return Err(Error::new(
                ErrorKind::Failed,
                format!("cannot start vat {}: the OS refused a thread", self.name),
            ));
        }
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(VatHandle { shared }),
            Ok(Err(reason)) => Err(Error::new(
                ErrorKind::Failed,
                format!("cannot start vat {}: {reason}", self.name),
            )),
            Err(_) => Err(Error::new(
                ErrorKind::Failed,
                format!("cannot start vat {}: its thread ended at start", self.name),
            )),
        }
    }
}

fn vat_thread(
    name: &str,
    serial: u64,
    shared: std::sync::Weak<Shared>,
    mut inbox: mpsc::UnboundedReceiver<Command>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    // Sockets and timers only: a vat handles no signals, and tokio's signal
    // driver would cost every vat a socket of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(format!("cannot build its event loop: {error}")));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    let core = Rc::new(VatCore::new(name, shared, None, None));
    core::install(Some(core.clone()));
    let span = tracing::info_span!("vat", name, serial);
    let stop_requested = core.stop_requested.clone();
    let _ = ready.send(Ok(()));
    local.block_on(
        &runtime,
        async {
            vat_env::spawn(TurnLoop { core: core.clone() });
            tracing::debug!("started");
            loop {
                tokio::select! {
                    biased;
                    _ = stop_requested.notified() => break,
                    command = inbox.recv() => match command {
                        Some(Command::Run(work)) => work(),
                        // Stop asked, or every handle dropped.
                        Some(Command::Stop) | None => break,
                    },
                }
            }
            tracing::debug!("stopping");
        }
        .instrument(span.clone()),
    );
    let _entered = span.enter();
    core.begin_stop();
    // Dropping the local set drops every task of the vat: network sessions
    // close their sockets, so peers see the disconnect at once.
    drop(local);
    run_stop_hooks(&core);
    core.finish_stop();
    core::install(None);
    drop(core);
    drop(runtime);
    tracing::debug!("stopped");
}

/// A handle to a running vat, usable from any thread (`Send + Sync + Clone`).
///
/// Through it other threads spawn objects in the vat, run closures inside it
/// and stop it. Objects stay inside: what comes back out must be `Send`, so
/// near references never leave their vat. Dropping the last handle stops the
/// vat.
#[derive(Clone)]
pub struct VatHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for VatHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VatHandle")
            .field("name", &self.shared.name)
            .finish()
    }
}

/// The result of work sent to a vat: await it from async code, or
/// [`wait`](Completion::wait) for it from a plain thread. Fails with
/// [`VatStopped`](ErrorKind::VatStopped) if the vat stops first, and with
/// [`Crashed`](ErrorKind::Crashed) if the work panicked.
#[must_use = "the work runs regardless; the completion only reports its result"]
pub struct Completion<R> {
    result: oneshot::Receiver<Result<R, Error>>,
}

impl<R> std::fmt::Debug for Completion<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").finish_non_exhaustive()
    }
}

impl<R> Completion<R> {
    /// Blocks this thread until the work is done. Do not call it from inside
    /// a vat: that would stall the vat's own loop.
    pub fn wait(self) -> Result<R, Error> {
        futures::executor::block_on(self)
    }
}

impl<R> Future for Completion<R> {
    type Output = Result<R, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.result.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::vat_stopped("the work never finished"))),
        }
    }
}

fn work_panicked(vat: &str, payload: &(dyn std::any::Any + Send)) -> Error {
    Error::new(
        ErrorKind::Crashed,
        format!(
            "work run in vat {vat} panicked: {}",
            core::panic_message(payload)
        ),
    )
}

impl VatHandle {
    /// Starts a vat named `name` with the default settings.
    pub fn start(name: impl Into<String>) -> Result<VatHandle, Error> {
        VatBuilder::new(name).start()
    }

    /// The vat's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Runs `work` inside the vat, in a turn of its own, and reports its result.
    ///
    /// ```
    /// let vat = vat::VatHandle::start("doc").unwrap();
    /// assert_eq!(vat.run(|| vat::current().name().to_owned()).wait().unwrap(), "doc");
    /// vat.stop().unwrap();
    /// ```
    pub fn run<R, F>(&self, work: F) -> Completion<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let vat = self.shared.name.clone();
        self.submit(Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(work))
                .map_err(|payload| work_panicked(&vat, payload.as_ref()));
            let _ = tx.send(result);
        }));
        Completion { result: rx }
    }

    /// Starts asynchronous work inside the vat: `work` runs in a turn and
    /// returns a future, which the vat drives as one of its tasks.
    pub fn run_async<R, F, Fut>(&self, work: F) -> Completion<R>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let vat = self.shared.name.clone();
        self.submit(Box::new(move || {
            match catch_unwind(AssertUnwindSafe(work)) {
                Ok(future) => {
                    vat_env::spawn(async move {
                        let result = AssertUnwindSafe(future)
                            .catch_unwind()
                            .await
                            .map_err(|payload| work_panicked(&vat, payload.as_ref()));
                        let _ = tx.send(result);
                    });
                }
                Err(payload) => {
                    let _ = tx.send(Err(work_panicked(&vat, payload.as_ref())));
                }
            }
        }));
        Completion { result: rx }
    }

    /// Runs asynchronous work inside the vat and waits for its result, from
    /// a plain thread (not from inside a vat): [`run_async`](VatHandle::run_async)
    /// and [`wait`](Completion::wait) in one, with the vat's own failure
    /// (it stopped, the work panicked) folded into the work's error type.
    ///
    /// ```
    /// let vat = vat::VatHandle::start("doc").unwrap();
    /// let n: Result<u64, vat::Error> = vat.block_on(|| async {
    ///     let counter = vat::spawn(40u64);
    ///     counter.call(|n| *n += 2)?;
    ///     counter.send(|n| *n).await
    /// });
    /// assert_eq!(n, Ok(42));
    /// vat.stop().unwrap();
    /// ```
    pub fn block_on<T, E, F, Fut>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.run_async(work).wait().map_err(E::from)?
    }

    /// Spawns the object that `make` builds in the vat and returns a [`Root`]
    /// for it: a `Send` token that keeps the object alive and gives its near
    /// reference back to code running inside the vat.
    ///
    /// ```
    /// struct Counter(u64);
    /// let vat = vat::VatHandle::start("doc").unwrap();
    /// let root = vat.spawn(|| Counter(41)).wait().unwrap();
    /// let n = vat.run(move || root.get().unwrap().call(|c| c.0 + 1).unwrap()).wait().unwrap();
    /// assert_eq!(n, 42);
    /// vat.stop().unwrap();
    /// ```
    pub fn spawn<T, F>(&self, make: F) -> Completion<Root<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: 'static,
    {
        self.run(move || {
            let object = crate::spawn(make());
            current().root(&object)
        })
    }

    /// A snapshot of the vat's heap: every live object, oldest first.
    pub fn heap(&self) -> Completion<Vec<ObjectInfo>> {
        self.run(|| current().heap())
    }

    /// Asks the vat to stop and waits until its thread has ended.
    ///
    /// Queued messages are dropped and their promises break with
    /// [`VatStopped`](ErrorKind::VatStopped); every task and connection of the
    /// vat is dropped, so peers see their calls into it break with a
    /// [`Disconnected`](ErrorKind::Disconnected) error. Calling `stop` again,
    /// or on a stopped vat, is fine. From inside the vat itself use
    /// [`LocalVat::stop`] instead (a thread cannot wait for itself).
    pub fn stop(&self) -> Result<(), Error> {
        self.request_stop();
        if std::thread::current().id() == self.shared.thread_id {
            return Err(Error::new(
                ErrorKind::Failed,
                "VatHandle::stop was called from inside the vat itself; use vat::current().stop()",
            ));
        }
        let thread = self
            .shared
            .thread
            .lock()
            .map_err(|_| Error::new(ErrorKind::Failed, "the vat's handle lock is poisoned"))?
            .take();
        match thread {
            Some(thread) => thread.join().map_err(|payload| {
                Error::new(
                    ErrorKind::Failed,
                    format!(
                        "vat {} ended abnormally: {}",
                        self.shared.name,
                        core::panic_message(payload.as_ref())
                    ),
                )
            }),
            None => Ok(()),
        }
    }

    /// Asks the vat to stop without waiting for it.
    pub fn request_stop(&self) {
        // If the vat has stopped already the command has nowhere to go: fine.
        let _ = self.shared.commands.send(Command::Stop);
    }

    /// Whether the vat's thread is still running.
    pub fn is_running(&self) -> bool {
        !self.shared.commands.is_closed()
    }

    fn submit(&self, work: Box<dyn FnOnce() + Send>) {
        // A send to a stopped vat drops `work`, which drops its reply
        // channel: the completion then reports VatStopped.
        let _ = self.shared.commands.send(Command::Run(work));
    }
}

/// What to run when the vat stops.
#[derive(Default)]
struct StopHooks(std::cell::RefCell<Vec<Box<dyn FnOnce()>>>);

pub(crate) fn run_stop_hooks(core: &VatCore) {
    let hooks = std::mem::take(&mut *core.local::<StopHooks>().0.borrow_mut());
    for hook in hooks {
        if catch_unwind(AssertUnwindSafe(hook)).is_err() {
            tracing::error!("a stop hook panicked");
        }
    }
}

/// The vat this code runs in, seen from inside (`!Send`).
#[derive(Clone)]
pub struct LocalVat {
    core: Rc<VatCore>,
}

impl std::fmt::Debug for LocalVat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVat")
            .field("name", &self.core.name())
            .finish()
    }
}

/// The vat running this code.
///
/// # Panics
/// Outside a vat's thread, as `tokio::spawn` does outside a runtime; use
/// [`try_current`] to check.
pub fn current() -> LocalVat {
    match try_current() {
        Some(vat) => vat,
        None => {
            panic!("vat::current() called outside a vat; run this code inside one (VatHandle::run)")
        }
    }
}

/// The vat running this code, or `None` outside any vat.
pub fn try_current() -> Option<LocalVat> {
    core::current().map(|core| LocalVat { core })
}

/// Spawns `value` as an object of the current vat and returns a near
/// reference to it.
///
/// # Panics
/// Outside a vat (see [`current`]).
pub fn spawn<T: 'static>(value: T) -> Ref<T> {
    current().spawn(value)
}

/// Spawns the object `make` builds, handing `make` the object's own
/// [`WeakRef`] first, so that the object can keep it: a method that awaits
/// (`vat::later`) cannot hold `&mut self`, and reaches its state again
/// through that reference, without the object keeping itself alive.
///
/// ```
/// use vat::{Ref, WeakRef};
///
/// struct Account { me: WeakRef<Account>, balance: u64 }
///
/// let vat = vat::VatHandle::start("doc").unwrap();
/// let balance = vat.block_on(|| async {
///     let account = vat::spawn_cyclic(|me| Account { me, balance: 10 });
///     // Later, from the object's own continuation:
///     let me: Option<Ref<Account>> = account.call(|a| a.me.upgrade())?;
///     me.expect("alive").call(|a| a.balance)
/// });
/// assert_eq!(balance, Ok(10));
/// vat.stop().unwrap();
/// ```
///
/// # Panics
/// Outside a vat (see [`current`]).
pub fn spawn_cyclic<T: 'static>(make: impl FnOnce(WeakRef<T>) -> T) -> Ref<T> {
    Ref::new_cyclic(current().core(), make)
}

impl LocalVat {
    /// The vat's name.
    pub fn name(&self) -> &str {
        self.core.name()
    }

    /// Spawns `value` as an object of this vat.
    pub fn spawn<T: 'static>(&self, value: T) -> Ref<T> {
        Ref::new(&self.core, value)
    }

    /// A snapshot of the heap: every live object, oldest first.
    pub fn heap(&self) -> Vec<ObjectInfo> {
        self.core.heap_list()
    }

    /// Turns run so far.
    pub fn turns(&self) -> u64 {
        self.core.turns()
    }

    /// Messages waiting for a turn.
    pub fn queued(&self) -> usize {
        self.core.queued()
    }

    /// A `Send` handle to this vat, for other threads; `None` once every
    /// handle has been dropped (the vat is then stopping).
    pub fn handle(&self) -> Option<VatHandle> {
        self.core
            .shared
            .upgrade()
            .map(|shared| VatHandle { shared })
    }

    /// Pins `object` and returns a [`Root`] for it: a `Send` token that
    /// keeps the object alive and lets code outside the vat hand it back in
    /// (as [`VatHandle::spawn`] does for objects built from outside).
    ///
    /// ```
    /// struct Notes(Vec<String>);
    /// let vat = vat::VatHandle::start("doc").unwrap();
    /// let root = vat.run(|| {
    ///     let notes = vat::spawn(Notes(Vec::new()));
    ///     vat::current().root(&notes)
    /// }).wait().unwrap();
    /// let n = vat.run(move || {
    ///     let notes = root.get().unwrap();
    ///     notes.call(|n| { n.0.push("kept".into()); n.0.len() }).unwrap()
    /// }).wait().unwrap();
    /// assert_eq!(n, 1);
    /// vat.stop().unwrap();
    /// ```
    pub fn root<T: 'static>(&self, object: &Ref<T>) -> Root<T> {
        let id = object.id();
        self.core.pin(id, object.clone().into_any());
        Root {
            id,
            vat: self.core.shared.clone(),
            _type: PhantomData,
        }
    }

    /// Runs `hook` when this vat stops, after its tasks and connections are
    /// dropped: for releasing what must not outlive the vat even when some
    /// object of it leaks (a file lock, a thread). Hooks run in the order
    /// registered, on the vat's thread.
    pub fn on_stop(&self, hook: impl FnOnce() + 'static) {
        self.core
            .local::<StopHooks>()
            .0
            .borrow_mut()
            .push(Box::new(hook));
    }

    /// Stops this vat once the current turn ends.
    pub fn stop(&self) {
        self.core.stop_requested.notify_one();
    }

    pub(crate) fn core(&self) -> &Rc<VatCore> {
        &self.core
    }
}

/// Keeps an object spawned through [`VatHandle::spawn`] alive, from any
/// thread, and gives its near reference to code running in its vat.
///
/// Dropping the root releases the object (it lives on while other references
/// to it exist).
pub struct Root<T: 'static> {
    id: ObjectId,
    vat: std::sync::Weak<Shared>,
    // fn() -> T: a root is Send and Sync whatever T is; it holds no T.
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Root<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Root({} {})", self.id, std::any::type_name::<T>())
    }
}

impl<T: 'static> Root<T> {
    /// The object's id in its vat.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The near reference, for code running inside the object's vat.
    ///
    /// Fails with [`InvalidArgument`](ErrorKind::InvalidArgument) when called
    /// outside that vat.
    pub fn get(&self) -> Result<Ref<T>, Error> {
        let here =
            core::current().filter(|core| std::ptr::eq(core.shared.as_ptr(), self.vat.as_ptr()));
        let Some(core) = here else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("root {} was used outside its own vat", self.id),
            ));
        };
        core.pinned(self.id).and_then(Ref::from_any).ok_or_else(|| {
            Error::new(
                ErrorKind::Failed,
                format!("root {} no longer holds its object", self.id),
            )
        })
    }
}

impl<T> Drop for Root<T> {
    fn drop(&mut self) {
        let id = self.id;
        if let Some(core) = core::current() {
            if std::ptr::eq(core.shared.as_ptr(), self.vat.as_ptr()) {
                core.unpin(id);
                return;
            }
        }
        if let Some(shared) = self.vat.upgrade() {
            let _ = shared.commands.send(Command::Run(Box::new(move || {
                if let Some(core) = core::current() {
                    core.unpin(id);
                }
            })));
        }
    }
}
