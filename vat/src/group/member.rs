//! One member of a group: its capability, its calls in flight, whether the
//! group believes it reachable; and the [`Membership`] that keeps it in.

use std::cell::Cell;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use capnp::private::capability::ClientHook;
use vat_env::Instant;

use super::state::Shared;

/// A member's number in its group, from 1 in the order members joined.
/// Never reused within a group.
///
/// ```
/// # let vat = vat::VatHandle::start("doc").unwrap();
/// # vat.run(|| {
/// let group = vat::group::Group::new("workers", vat::group::Strategy::RoundRobin);
/// let worker: schema::demo_capnp::counter::Client = vat::export(vat::demo::Counter::default());
/// let membership = group.join(worker);
/// assert_eq!(membership.id().get(), 1);
/// assert_eq!(membership.id().to_string(), "member#1");
/// # }).wait().unwrap();
/// # vat.stop().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub(crate) u64);

impl MemberId {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member#{}", self.0)
    }
}

/// What a group knows of one member now ([`Group::members`](super::Group::members)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its number in the group.
    pub id: MemberId,
    /// `false` while the group skips it: a call to it failed in a way that
    /// says its vat is gone (or it crashed), and no probe has been answered
    /// since.
    pub reachable: bool,
    /// Calls sent to it through the group and not answered yet.
    pub in_flight: u32,
    /// Calls sent to it through the group so far (probes excluded).
    pub calls: u64,
}

/// A member as the group holds it.
pub(crate) struct Member {
    pub(crate) id: MemberId,
    pub(crate) hook: Box<dyn ClientHook>,
    /// A capability of an RPC connection (capnp-rpc's import): a call on it
    /// that fails at once was never written to the connection.
    pub(crate) remote: bool,
    /// A reference of this vat forwarding to another vat's object (joined
    /// with `join_forwarding`): asked for its own request, used when it is
    /// a connection's.
    pub(crate) forwards: bool,
    in_flight: Cell<u32>,
    calls: Cell<u64>,
    reachable: Cell<bool>,
    /// While unreachable: when to probe next, the pause after that, and
    /// whether a probe is out.
    next_probe: Cell<Instant>,
    backoff: Cell<Duration>,
    probing: Cell<bool>,
}

impl Member {
    pub(crate) fn new(id: MemberId, hook: Box<dyn ClientHook>, forwards: bool) -> Member {
        Member {
            id,
            remote: hook.get_brand() != 0,
            forwards,
            hook,
            in_flight: Cell::new(0),
            calls: Cell::new(0),
            reachable: Cell::new(true),
            next_probe: Cell::new(vat_env::now()),
            backoff: Cell::new(Duration::ZERO),
            probing: Cell::new(false),
        }
    }

    /// Whether the fast path asks it for its own request.
    pub(crate) fn asks_for_requests(&self) -> bool {
        self.remote || self.forwards
    }

    pub(crate) fn info(&self) -> MemberInfo {
        MemberInfo {
            id: self.id,
            reachable: self.reachable.get(),
            in_flight: self.in_flight.get(),
            calls: self.calls.get(),
        }
    }

    pub(crate) fn is_reachable(&self) -> bool {
        self.reachable.get()
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    /// A call is sent to it.
    pub(crate) fn begin(&self) {
        self.in_flight.set(self.in_flight.get().saturating_add(1));
        self.calls.set(self.calls.get().saturating_add(1));
    }

    /// A call sent to it settled (or its caller gave up on it).
    pub(crate) fn end(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
    }

    /// Marks it unreachable; returns whether it was reachable until now.
    pub(crate) fn mark_down(&self, first_pause: Duration) -> bool {
        if !self.reachable.replace(false) {
            return false;
        }
        self.backoff.set(first_pause);
        self.next_probe.set(vat_env::now() + first_pause);
        true
    }

    /// Marks it reachable; returns whether it was unreachable until now.
    pub(crate) fn mark_up(&self) -> bool {
        !self.reachable.replace(true)
    }

    /// Whether a probe should go out now.
    pub(crate) fn probe_due(&self, now: Instant) -> bool {
        !self.reachable.get() && !self.probing.get() && self.next_probe.get() <= now
    }

    pub(crate) fn next_probe(&self) -> Option<Instant> {
        (!self.reachable.get() && !self.probing.get()).then(|| self.next_probe.get())
    }

    pub(crate) fn set_probing(&self, probing: bool) {
        self.probing.set(probing);
    }

    /// A probe went unanswered: wait twice as long (at most `max`) before
    /// the next.
    pub(crate) fn probe_failed(&self, max: Duration) {
        let pause = (self.backoff.get() * 2).min(max);
        self.backoff.set(pause);
        self.next_probe.set(vat_env::now() + pause);
    }
}

/// A member's place in a group: while it is held, the member stays in; its
/// drop (or [`leave`](Membership::leave)) takes the member out. Calls
/// already sent to the member go on; no new call goes to it.
///
/// This is the capability discipline for membership: whoever added a
/// member decides how long it serves, and nobody else can remove it. The
/// wire form is `Membership` in `schema/capnp/group.capnp`.
///
/// ```
/// # let vat = vat::VatHandle::start("doc").unwrap();
/// # vat.run(|| {
/// use vat::group::{Group, Strategy};
/// let group = Group::new("workers", Strategy::RoundRobin);
/// let worker: schema::demo_capnp::counter::Client = vat::export(vat::demo::Counter::default());
/// let membership = group.join(worker);
/// assert_eq!(group.len(), 1);
/// membership.leave();
/// assert!(group.is_empty());
/// # }).wait().unwrap();
/// # vat.stop().unwrap();
/// ```
#[must_use = "dropping a Membership takes the member out of the group at once"]
pub struct Membership {
    group: Weak<Shared>,
    id: MemberId,
    /// Set once the member left, or was kept for the group's lifetime.
    done: bool,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("id", &self.id)
            .field("done", &self.done)
            .finish()
    }
}

impl Membership {
    pub(crate) fn new(group: &Rc<Shared>, id: MemberId) -> Membership {
        Membership {
            group: Rc::downgrade(group),
            id,
            done: false,
        }
    }

    /// The member's number in the group.
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// Takes the member out of the group now.
    pub fn leave(mut self) {
        self.remove();
    }

    /// Keeps the member in for as long as the group lives, with no handle
    /// to take it out.
    pub fn keep(mut self) {
        self.done = true;
    }

    fn remove(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(group) = self.group.upgrade() {
            group.remove(self.id);
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.remove();
    }
}
