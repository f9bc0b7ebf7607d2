//! The state a group's faces share: its members and how to pick one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::builder::ProbeOptions;
use super::member::{Member, MemberId, MemberInfo};
use super::strategy::{rendezvous, Strategy};
use crate::error::{Error, ErrorKind};

pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) strategy: Strategy,
    pub(crate) probe: ProbeOptions,
    /// Whether calls to remote members are lent (see
    /// [`GroupBuilder::resend_remote_refusals`](super::GroupBuilder::resend_remote_refusals)).
    pub(crate) resend_remote_refusals: bool,
    /// In the order they joined.
    members: RefCell<Vec<Rc<Member>>>,
    /// How many members are connections' capabilities: with none, calls
    /// are lent without trying the fast path's pick first.
    remote: Cell<usize>,
    /// Where the next round-robin (or least-in-flight tie) scan starts.
    cursor: Cell<usize>,
    next_id: Cell<u64>,
    /// Whether the task probing unreachable members runs.
    pub(crate) probing: Cell<bool>,
}

impl Shared {
    pub(crate) fn new(
        name: String,
        strategy: Strategy,
        probe: ProbeOptions,
        resend_remote_refusals: bool,
    ) -> Shared {
        Shared {
            name,
            strategy,
            probe,
            resend_remote_refusals,
            members: RefCell::new(Vec::new()),
            remote: Cell::new(0),
            cursor: Cell::new(0),
            next_id: Cell::new(1),
            probing: Cell::new(false),
        }
    }

    pub(crate) fn add(
        &self,
        hook: Box<dyn capnp::private::capability::ClientHook>,
        forwards: bool,
    ) -> MemberId {
        let id = MemberId(self.next_id.get());
        self.next_id.set(id.0 + 1);
        let member = Member::new(id, hook, forwards);
        if member.asks_for_requests() {
            self.remote.set(self.remote.get() + 1);
        }
        self.members.borrow_mut().push(Rc::new(member));
        tracing::debug!(group = %self.name, member = %id, "member joined");
        id
    }

    pub(crate) fn remove(&self, id: MemberId) {
        let removed = {
            let mut members = self.members.borrow_mut();
            members
                .iter()
                .position(|m| m.id == id)
                .map(|at| members.remove(at))
        };
        if let Some(member) = &removed {
            if member.asks_for_requests() {
                self.remote.set(self.remote.get().saturating_sub(1));
            }
            tracing::debug!(group = %self.name, member = %id, "member left");
        }
        // The member's capability is released here, outside the borrow: its
        // drop may run code that looks at the group.
        drop(removed);
    }

    /// Whether any member is a connection's capability.
    pub(crate) fn has_remote(&self) -> bool {
        self.remote.get() > 0
    }

    pub(crate) fn len(&self) -> usize {
        self.members.borrow().len()
    }

    pub(crate) fn infos(&self) -> Vec<MemberInfo> {
        self.members.borrow().iter().map(|m| m.info()).collect()
    }

    /// Every member now, for calls to all of them.
    pub(crate) fn snapshot(&self) -> Vec<Rc<Member>> {
        self.members.borrow().clone()
    }

    /// The members believed unreachable.
    pub(crate) fn unreachable(&self) -> Vec<Rc<Member>> {
        self.members
            .borrow()
            .iter()
            .filter(|m| !m.is_reachable())
            .cloned()
            .collect()
    }

    /// The member for the next call: by `key` if given, else by the
    /// strategy, among reachable members not in `tried`. When none is
    /// reachable, one believed unreachable: it may only be waiting for its
    /// vat (a healing or supervised reference holds the call until then),
    /// and one that is gone fails at once, undelivered.
    pub(crate) fn pick(&self, key: Option<u64>, tried: &[MemberId]) -> Option<Rc<Member>> {
        let members = self.members.borrow();
        self.pick_among(&members, key, tried, true)
            .or_else(|| self.pick_among(&members, key, tried, false))
    }

    /// Where the next scan starts: saved before a pick that may be taken
    /// back, so that the pick made instead is the same one.
    pub(crate) fn cursor(&self) -> usize {
        self.cursor.get()
    }

    pub(crate) fn restore_cursor(&self, cursor: usize) {
        self.cursor.set(cursor);
    }

    fn pick_among(
        &self,
        members: &[Rc<Member>],
        key: Option<u64>,
        tried: &[MemberId],
        reachable_only: bool,
    ) -> Option<Rc<Member>> {
        let eligible = |m: &Member| (!reachable_only || m.is_reachable()) && !tried.contains(&m.id);
        if let Some(key) = key {
            return members
                .iter()
                .filter(|m| eligible(m))
                .max_by_key(|m| rendezvous(key, m.id.0))
                .cloned();
        }
        let n = members.len();
        match self.strategy {
            Strategy::RoundRobin => {
                let start = self.cursor.get();
                let at = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|&at| eligible(&members[at]))?;
                self.cursor.set((at + 1) % n);
                Some(members[at].clone())
            }
            Strategy::Random => {
                let count = members.iter().filter(|m| eligible(m)).count();
                if count == 0 {
                    return None;
                }
                let nth = vat_env::random_below(count);
                members.iter().filter(|m| eligible(m)).nth(nth).cloned()
            }
            Strategy::LeastInFlight => {
                let start = self.cursor.get();
                let mut best: Option<usize> = None;
                for at in (0..n).map(|i| (start + i) % n) {
                    let member = &members[at];
                    if !eligible(member) {
                        continue;
                    }
                    if best.is_none_or(|b| member.in_flight() < members[b].in_flight()) {
                        best = Some(at);
                    }
                }
                let at = best?;
                // Ties rotate, so equally idle members share the calls.
                self.cursor.set((start + 1) % n.max(1));
                Some(members[at].clone())
            }
        }
    }

    /// The error of a call that found no member to go to.
    pub(crate) fn no_member(&self) -> Error {
        Error::undelivered(
            ErrorKind::Disconnected,
            format!(
                "group `{}` has no members; this call was not delivered",
                self.name
            ),
        )
    }
}

/// Errors that say a member's vat is gone or the member will not serve
/// again as it is: the group skips it until a probe is answered.
pub(crate) fn means_unreachable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Disconnected
            | ErrorKind::VatStopped
            | ErrorKind::Crashed
            | ErrorKind::Revoked
            | ErrorKind::Expired
            | ErrorKind::UnknownToken
    )
}

/// A call sent to `member` settled with `failure` (if it failed): updates
/// its count and what the group believes of it.
pub(crate) fn settled(shared: &Rc<Shared>, member: &Member, failure: Option<&Error>) {
    member.end();
    match failure {
        None => {
            if member.mark_up() {
                tracing::info!(group = %shared.name, member = %member.id, "member answers again");
            }
        }
        Some(error) if means_unreachable(error.kind()) => {
            if member.mark_down(shared.probe.initial) {
                tracing::info!(
                    group = %shared.name,
                    member = %member.id,
                    %error,
                    "member unreachable; skipping it until it answers a probe"
                );
                super::probe::start(shared);
            }
        }
        Some(_) => {}
    }
}
