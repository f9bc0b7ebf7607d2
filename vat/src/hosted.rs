//! Vats driven by their owner on the owner's thread: how a simulator runs a
//! whole federation on one thread.
//!
//! A hosted vat is what a vat thread runs, without the thread: its own
//! tokio `LocalSet` (every task it spawns lives there), its core (heap,
//! queue, turn loop) and its environment. [`HostedVat::run`] is a future
//! the owner polls on its runtime; each poll installs the vat (and its
//! [`World`](vat_env::World)) for exactly that poll, so many hosted vats
//! share one thread without seeing each other's state.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tokio::task::LocalSet;

use crate::core::{self, TurnLoop, VatCore};
use crate::handle::{run_stop_hooks, VatBuilder};
use crate::LocalVat;

/// A vat whose loop its owner drives on the owner's thread
/// ([`VatBuilder::host`]). Not `Send`: it lives on the thread that made it.
pub struct HostedVat {
    inner: Rc<Inner>,
}

struct Inner {
    core: Rc<VatCore>,
    /// The vat's tasks; `None` once it stopped.
    tasks: RefCell<Option<LocalSet>>,
    /// Set when the vat asked to stop itself (`LocalVat::stop_self`).
    stop_asked: Cell<bool>,
    /// Whether panics print Rust's standard report (else one log line).
    standard_panic_hook: bool,
    /// The driver's waker, to finish a stop asked from outside.
    driver: RefCell<Option<Waker>>,
    span: tracing::Span,
}

impl std::fmt::Debug for HostedVat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedVat")
            .field("name", &self.inner.core.name())
            .field("running", &self.is_running())
            .finish()
    }
}

impl VatBuilder {
    /// Makes the vat without a thread of its own: the caller drives it by
    /// polling [`HostedVat::run`] on its own current-thread runtime, and
    /// reaches inside with [`HostedVat::enter`] and [`HostedVat::spawn`].
    /// This is how a simulator runs many vats on one thread.
    pub fn host(self) -> HostedVat {
        let core = Rc::new(VatCore::new(
            &self.name,
            std::sync::Weak::new(),
            self.world.clone(),
            self.transport.clone(),
        ));
        let span = tracing::info_span!("vat", name = %self.name);
        let inner = Rc::new(Inner {
            core,
            tasks: RefCell::new(Some(LocalSet::new())),
            stop_asked: Cell::new(false),
            standard_panic_hook: self.standard_panic_hook,
            driver: RefCell::new(None),
            span,
        });
        let vat = HostedVat { inner };
        let weak = Rc::downgrade(&vat.inner);
        let stop_requested = vat.inner.core.stop_requested.clone();
        vat.spawn(async move {
            let core = match weak.upgrade() {
                Some(inner) => inner.core.clone(),
                None => return,
            };
            vat_env::spawn(TurnLoop { core });
            stop_requested.notified().await;
            if let Some(inner) = weak.upgrade() {
                inner.stop_asked.set(true);
            }
        });
        vat
    }
}

impl HostedVat {
    /// The vat's name.
    pub fn name(&self) -> &str {
        self.inner.core.name()
    }

    /// Whether the vat still runs (it has not been stopped).
    pub fn is_running(&self) -> bool {
        self.inner.tasks.borrow().is_some()
    }

    /// Runs `f` as code of this vat (as [`VatHandle::run`](crate::VatHandle::run)
    /// does from another thread): `vat::current()`, spawning, timers and
    /// the environment are the vat's.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let tasks = self.inner.tasks.borrow();
        let _span = self.inner.span.enter();
        let _local = tasks.as_ref().map(LocalSet::enter);
        core::enter(&self.inner.core, f)
    }

    /// The vat seen from inside, for code that holds it.
    pub fn local(&self) -> LocalVat {
        self.enter(crate::current)
    }

    /// Spawns `future` as a task of this vat. Nothing happens once the vat
    /// stopped.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + 'static,
    {
        if let Some(tasks) = self.inner.tasks.borrow().as_ref() {
            tasks.spawn_local(future);
        }
    }

    /// The vat's loop: poll it on the owner's runtime until the vat stops.
    pub fn run(&self) -> impl Future<Output = ()> + 'static {
        Drive {
            inner: self.inner.clone(),
        }
    }

    /// Stops the vat: every queued message is dropped (breaking its
    /// promise), every task goes, the stop hooks run. For kill -9
    /// semantics, cut the vat's network and disk off first: then nothing it
    /// does while stopping reaches anyone.
    pub fn stop(&self) {
        self.inner.stop();
    }
}

impl Inner {
    fn stop(&self) {
        let inner = self;
        let Some(tasks) = inner.tasks.borrow_mut().take() else {
            return;
        };
        let _span = inner.span.enter();
        core::enter(&inner.core, || {
            inner.core.begin_stop();
            // Dropping the set drops every task of the vat: its sessions
            // close their streams.
            drop(tasks);
            run_stop_hooks(&inner.core);
            inner.core.finish_stop();
        });
        if let Some(waker) = inner.driver.borrow_mut().take() {
            waker.wake();
        }
        tracing::debug!(vat = inner.core.name(), "stopped");
    }
}

impl Drop for HostedVat {
    /// Dropping the owner's handle stops the vat, as dropping the last
    /// `VatHandle` stops a threaded one.
    fn drop(&mut self) {
        self.inner.stop();
    }
}

/// The vat's loop, as a future of the owner's runtime.
struct Drive {
    inner: Rc<Inner>,
}

impl Future for Drive {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = self.inner.clone();
        let polled = {
            let mut tasks = inner.tasks.borrow_mut();
            let Some(set) = tasks.as_mut() else {
                return Poll::Ready(());
            };
            let _span = inner.span.enter();
            // Every task of the vat runs inside this poll, with the vat and
            // its world installed.
            let poll = || core::enter(&inner.core, || Pin::new(set).poll(cx));
            if inner.standard_panic_hook {
                poll()
            } else {
                crate::panic_hook::quiet_while(poll)
            }
        };
        if inner.stop_asked.get() || polled.is_ready() {
            inner.stop();
            return Poll::Ready(());
        }
        *inner.driver.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}
