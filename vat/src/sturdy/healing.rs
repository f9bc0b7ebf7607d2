//! References that heal: a reference made from a sturdyref that reconnects
//! by itself after its connection drops or its vat restarts.
//!
//! A healing reference forwards each call to the object restored from its
//! token. When the connection ends it restores the token again, with
//! exponential backoff and jitter, until the vat answers: calls made in the
//! meantime wait (up to [`HealOptions::wait`]) and then go to the new
//! incarnation in the order made. A call already sent when the link dropped
//! fails with a [`Disconnected`](ErrorKind::Disconnected) error and is
//! never sent again: only the caller knows whether it is safe to repeat. A
//! token the vat refuses for good (revoked, expired, unknown) ends the
//! healing: every call then fails with that refusal.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use capnp::any_pointer;
use capnp::capability::Promise;
use capnp::private::capability::{ParamsHook, ResultsHook};
use captp::log::Untrusted;
use captp::{Identity, Limits};
use sturdyrefs::SturdyRef;
use tokio::sync::Notify;

use super::restore::{restore_connected, RestoreError};
use crate::error::{Error, ErrorKind};
use crate::hook::{front, Front};

/// How a healing reference waits and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealOptions {
    /// Bounds for the connections it makes.
    pub limits: Limits,
    /// How long a call made while the reference is reconnecting waits for
    /// it before failing with a `Disconnected` error. Default: 10 s.
    pub wait: Duration,
    /// How many calls may wait at once; more fail at once with an
    /// `Overloaded` error. Default: 1024.
    pub max_waiting: usize,
    /// The delay before the second attempt to reconnect; it doubles after
    /// each failure. Default: 50 ms.
    pub backoff_initial: Duration,
    /// The longest delay between attempts (before jitter), which bounds how
    /// long after the vat returns the reference notices. Default: 500 ms.
    pub backoff_max: Duration,
}

impl Default for HealOptions {
    fn default() -> Self {
        HealOptions {
            limits: Limits::default(),
            wait: Duration::from_secs(10),
            max_waiting: 1024,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
        }
    }
}

/// A reference to the object `token` names that heals itself (see the
/// module docs). With `identity` this vat proves its key on each
/// connection, as tokens bound to it require. Must be called inside a vat;
/// it starts connecting at once.
///
/// ```no_run
/// # async fn f(token: sturdyrefs::SturdyRef) -> Result<(), capnp::Error> {
/// use capnp::capability::FromClientHook;
/// use schema::demo_capnp::counter;
/// let counter: counter::Client =
///     vat::sturdy::healing(token, None, vat::sturdy::HealOptions::default()).cast_to();
/// let mut add = counter.add_request();
/// add.get().set_by(1);
/// add.send().promise.await?; // waits while the vat restarts, then goes through
/// # Ok(()) }
/// ```
pub fn healing(
    token: SturdyRef,
    identity: Option<Identity>,
    options: HealOptions,
) -> capnp::capability::Client {
    let state = Rc::new(Heal {
        token,
        identity,
        options,
        link: RefCell::new(None),
        generation: Cell::new(0),
        refused: RefCell::new(None),
        reconnecting: Cell::new(false),
        waiting: Cell::new(0),
        changed: Notify::new(),
    });
    Heal::reconnect(&state);
    front(state)
}

struct Heal {
    token: SturdyRef,
    identity: Option<Identity>,
    options: HealOptions,
    /// The restored object while connected, with the generation of that
    /// connection; `None` while reconnecting.
    link: RefCell<Option<(capnp::capability::Client, u64)>>,
    generation: Cell<u64>,
    /// Set for good when the vat refuses the token.
    refused: RefCell<Option<Error>>,
    reconnecting: Cell<bool>,
    waiting: Cell<usize>,
    /// Woken when the link comes up or the token is refused.
    changed: Notify,
}

impl Heal {
    /// The object to call, waiting for a reconnection if need be.
    async fn ready(&self) -> Result<(capnp::capability::Client, u64), Error> {
        let deadline = vat_env::now() + self.options.wait;
        loop {
            // Made before looking, so a change in between is not missed.
            let changed = self.changed.notified();
            if let Some(error) = &*self.refused.borrow() {
                return Err(error.clone());
            }
            if let Some((object, generation)) = &*self.link.borrow() {
                return Ok((object.clone(), *generation));
            }
            if self.waiting.get() >= self.options.max_waiting {
                return Err(Error::undelivered(
                    ErrorKind::Overloaded,
                    format!(
                        "{} calls already wait for the reference to vat {} to reconnect",
                        self.options.max_waiting,
                        self.token.vat()
                    ),
                ));
            }
            self.waiting.set(self.waiting.get() + 1);
            let woken = vat_env::timeout_at(deadline, changed).await;
            self.waiting.set(self.waiting.get() - 1);
            if woken.is_err() {
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    format!(
                        "vat {} could not be reached again within {:?}",
                        self.token.vat(),
                        self.options.wait
                    ),
                ));
            }
        }
    }

    /// The connection of `generation` is gone: reconnect, unless that
    /// already happened.
    fn down(state: &Rc<Heal>, generation: u64) {
        let current = state.link.borrow().as_ref().map(|(_, g)| *g);
        if current == Some(generation) {
            state.link.borrow_mut().take();
            tracing::info!(vat = %state.token.vat(), "reference lost its connection; reconnecting");
            Heal::reconnect(state);
        }
    }

    /// Restores the token again, with backoff, in a task of the vat.
    fn reconnect(state: &Rc<Heal>) {
        if state.reconnecting.replace(true) {
            return;
        }
        let weak = Rc::downgrade(state);
        let (token, identity, options) =
            (state.token.clone(), state.identity.clone(), state.options);
        vat_env::spawn(async move {
            let mut delay = options.backoff_initial;
            loop {
                let outcome = restore_connected(&token, identity.as_ref(), options.limits).await;
                // Nobody holds the reference any more: stop trying.
                let Some(state) = weak.upgrade() else { return };
                match outcome {
                    Ok((object, _kind, connection)) => {
                        let generation = state.generation.get() + 1;
                        state.generation.set(generation);
                        *state.link.borrow_mut() = Some((object, generation));
                        state.reconnecting.set(false);
                        state.changed.notify_waiters();
                        tracing::debug!(vat = %token.vat(), generation, "reference connected");
                        watch(Rc::downgrade(&state), connection, generation);
                        return;
                    }
                    Err(RestoreError::Refused(error)) if is_final(&error) => {
                        tracing::warn!(vat = %token.vat(), error = %Untrusted(&error), "reference refused for good");
                        *state.refused.borrow_mut() = Some(error);
                        state.reconnecting.set(false);
                        state.changed.notify_waiters();
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(vat = %token.vat(), error = %Untrusted(&error), ?delay, "reconnection failed; retrying");
                    }
                }
                drop(state);
                vat_env::sleep(jittered(delay)).await;
                delay = (delay * 2).min(options.backoff_max);
            }
        });
    }
}

/// Marks the reference down when `connection` ends.
fn watch(state: Weak<Heal>, connection: Rc<captp::Connection>, generation: u64) {
    vat_env::spawn(async move {
        let _ = connection.closed().await;
        if let Some(state) = state.upgrade() {
            Heal::down(&state, generation);
        }
    });
}

/// Refusals that another attempt cannot change.
fn is_final(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::UnknownToken | ErrorKind::Revoked | ErrorKind::Expired
    )
}

/// `delay` give or take a fifth, so that many references cut off together
/// do not all come back at the same instant.
fn jittered(delay: Duration) -> Duration {
    let factor = 0.8 + 0.4 * vat_env::random_unit();
    delay.mul_f64(factor)
}

impl Front for Heal {
    fn forward_call(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        let state = Rc::clone(self);
        Promise::from_future(async move {
            let (object, generation) = state.ready().await?;
            let outcome = object
                .hook
                .call(interface_id, method_id, params, results)
                .await;
            if let Err(error) = &outcome {
                if Error::from(error.clone()).kind() == ErrorKind::Disconnected {
                    Heal::down(&state, generation);
                }
            }
            outcome
        })
    }

    /// While connected, the caller builds its call in the restored object's
    /// own request: no copy of params and results, no forwarding future.
    /// A connection that ends is noticed by its watch (`watch`), which
    /// reconnects; a call made in between fails `Disconnected`, as one
    /// forwarded to the dead link would.
    fn new_request(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        size_hint: Option<capnp::MessageSize>,
    ) -> Option<capnp::capability::Request<any_pointer::Owned, any_pointer::Owned>> {
        if self.refused.borrow().is_some() {
            return None;
        }
        let link = self.link.borrow();
        let (object, _) = link.as_ref()?;
        Some(object.hook.new_call(interface_id, method_id, size_hint))
    }
}
