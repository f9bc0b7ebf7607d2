//! The vat-wide budget for partial messages: messages whose first bytes
//! have arrived and whose last have not
//! ([`Limits::max_partial_bytes_per_vat`]).
//!
//! A vat is one thread, and every session of the vat runs on it, so the
//! budget is kept per thread. Each message being read holds a [`Partial`],
//! which counts what it holds and gives it back when the message is
//! complete or abandoned.
//!
//! A message's first [`FREE_BYTES`] are never counted against the budget,
//! so small messages (nearly all of them) never wait for big ones. A larger
//! message, once its first 64 KiB have arrived, reserves the rest of its
//! size from the budget before it reads on; messages that find too little
//! room wait in arrival order. A message that holds its reservation needs
//! nothing more to complete, so big messages cannot deadlock one another
//! by each holding part of the budget. The reservation bounds the buffer,
//! which still grows only as bytes arrive.
//!
//! [`Limits::max_partial_bytes_per_vat`]: crate::Limits::max_partial_bytes_per_vat

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use tokio::sync::Notify;

/// How much of a message is read without asking the budget.
pub(super) const FREE_BYTES: usize = 64 * 1024;

/// The partial messages of the calling thread's vat: what
/// [`partial_messages`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialMessages {
    /// Messages whose first bytes have arrived and whose last have not.
    pub messages: usize,
    /// Bytes of those messages received so far.
    pub received_bytes: usize,
    /// Bytes of buffer allocated for them.
    pub buffered_bytes: usize,
    /// Bytes reserved for them beyond their first 64 KiB: what
    /// [`Limits::max_partial_bytes_per_vat`](crate::Limits::max_partial_bytes_per_vat)
    /// bounds.
    pub reserved_bytes: usize,
    /// Messages waiting for room in the budget.
    pub waiting: usize,
}

/// The partial messages of the vat that runs on the calling thread (a vat
/// is one thread; see [`Limits::max_partial_bytes_per_vat`]). For
/// monitoring, and for tests that wait for a peer's bytes to arrive.
///
/// [`Limits::max_partial_bytes_per_vat`]: crate::Limits::max_partial_bytes_per_vat
pub fn partial_messages() -> PartialMessages {
    budget().counts.get()
}

/// Whether a message may reserve `bytes` now: it is the first in line (or
/// nobody waits), and `reserved` bytes are reserved already of `max`.
fn may_reserve(first_in_line: bool, reserved: usize, bytes: usize, max: usize) -> bool {
    first_in_line
        && reserved
            .checked_add(bytes)
            .is_some_and(|total| total <= max)
}

/// The counts of one thread, and the messages waiting for room in line.
#[derive(Default)]
struct Budget {
    counts: Cell<PartialMessages>,
    /// Woken when reserved bytes are given back or the line moves.
    changed: Notify,
    line: RefCell<VecDeque<u64>>,
    next_ticket: Cell<u64>,
}

impl Budget {
    fn update(&self, change: impl FnOnce(&mut PartialMessages)) {
        let mut counts = self.counts.get();
        change(&mut counts);
        self.counts.set(counts);
    }
}

thread_local! {
    static BUDGET: Rc<Budget> = Rc::default();
}

fn budget() -> Rc<Budget> {
    BUDGET.with(Rc::clone)
}

/// A message's place in the line for room; leaves it when dropped.
struct Ticket {
    budget: Rc<Budget>,
    number: u64,
}

impl Ticket {
    fn join(budget: &Rc<Budget>) -> Ticket {
        let number = budget.next_ticket.get();
        budget.next_ticket.set(number + 1);
        budget.line.borrow_mut().push_back(number);
        budget.update(|counts| counts.waiting += 1);
        Ticket {
            budget: Rc::clone(budget),
            number,
        }
    }

    fn is_first(&self) -> bool {
        self.budget.line.borrow().front() == Some(&self.number)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.budget.line.borrow_mut().retain(|n| *n != self.number);
        self.budget.update(|counts| counts.waiting -= 1);
        // The next in line may fit now.
        self.budget.changed.notify_waiters();
    }
}

/// One message being read: counted in the vat's budget until dropped.
pub(super) struct Partial {
    budget: Rc<Budget>,
    received: usize,
    buffered: usize,
    reserved: usize,
}

/// How a reservation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reservation {
    /// Granted at once.
    Granted,
    /// Granted after waiting for other messages to give bytes back.
    Waited,
}

impl Partial {
    /// Counts a message whose first bytes have arrived.
    pub(super) fn begin() -> Partial {
        let budget = budget();
        budget.update(|counts| counts.messages += 1);
        Partial {
            budget,
            received: 0,
            buffered: 0,
            reserved: 0,
        }
    }

    /// Counts `bytes` more received.
    pub(super) fn received(&mut self, bytes: usize) {
        self.received += bytes;
        self.budget.update(|counts| counts.received_bytes += bytes);
    }

    /// Counts `bytes` more of buffer allocated.
    pub(super) fn buffered(&mut self, bytes: usize) {
        self.buffered += bytes;
        self.budget.update(|counts| counts.buffered_bytes += bytes);
    }

    /// Reserves `bytes` from the budget, whose bound is `max`; waits in
    /// line while the vat's partial messages have too much reserved.
    pub(super) async fn reserve(&mut self, bytes: usize, max: usize) -> Reservation {
        let budget = Rc::clone(&self.budget);
        let nobody_waits = budget.line.borrow().is_empty();
        if may_reserve(nobody_waits, budget.counts.get().reserved_bytes, bytes, max) {
            self.take(bytes);
            return Reservation::Granted;
        }
        let reserved = budget.counts.get().reserved_bytes;
        tracing::info!(
            limit = "max_partial_bytes_per_vat",
            reserved_bytes = reserved,
            max,
            wanted = bytes,
            "the vat's partial messages have {reserved} of {max} bytes reserved; reading no more \
             of this message until others complete"
        );
        let ticket = Ticket::join(&budget);
        loop {
            let changed = budget.changed.notified();
            let reserved = budget.counts.get().reserved_bytes;
            if may_reserve(ticket.is_first(), reserved, bytes, max) {
                self.take(bytes);
                return Reservation::Waited;
            }
            changed.await;
        }
    }

    fn take(&mut self, bytes: usize) {
        self.reserved += bytes;
        self.budget.update(|counts| counts.reserved_bytes += bytes);
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let (received, buffered, reserved) = (self.received, self.buffered, self.reserved);
        self.budget.update(|counts| {
            counts.messages -= 1;
            counts.received_bytes -= received;
            counts.buffered_bytes -= buffered;
            counts.reserved_bytes -= reserved;
        });
        if reserved > 0 {
            self.budget.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // unit tests: a panic is a failed test

    use super::*;
    use futures::FutureExt;

    #[test]
    fn only_the_first_in_line_reserves_and_only_within_the_bound() {
        assert!(may_reserve(true, 0, 100, 100));
        assert!(may_reserve(true, 40, 60, 100));
        assert!(!may_reserve(true, 41, 60, 100));
        assert!(!may_reserve(false, 0, 1, 100), "others wait before it");
        assert!(!may_reserve(true, usize::MAX, 1, usize::MAX));
    }

    #[test]
    fn reservations_are_given_back_when_dropped_and_granted_in_line() {
        let max = 100;
        let mut first = Partial::begin();
        assert_eq!(
            first.reserve(60, max).now_or_never(),
            Some(Reservation::Granted)
        );
        first.received(10);
        first.buffered(20);
        let (mut second, mut third) = (Partial::begin(), Partial::begin());
        let mut big = Box::pin(second.reserve(50, max));
        assert!((&mut big).now_or_never().is_none(), "no room");
        // A smaller one that would fit waits behind the bigger one.
        let mut small = Box::pin(third.reserve(10, max));
        assert!((&mut small).now_or_never().is_none(), "in line");
        assert_eq!(
            partial_messages(),
            PartialMessages {
                messages: 3,
                received_bytes: 10,
                buffered_bytes: 20,
                reserved_bytes: 60,
                waiting: 2,
            }
        );
        drop(first);
        assert_eq!(big.now_or_never(), Some(Reservation::Waited));
        assert_eq!(small.now_or_never(), Some(Reservation::Waited));
        assert_eq!(partial_messages().reserved_bytes, 60);
        drop((second, third));
        assert_eq!(partial_messages(), PartialMessages::default());
    }

    #[test]
    fn a_message_that_leaves_the_line_lets_the_next_one_on() {
        let mut first = Partial::begin();
        assert_eq!(
            first.reserve(100, 100).now_or_never(),
            Some(Reservation::Granted)
        );
        let (mut second, mut third) = (Partial::begin(), Partial::begin());
        let mut leaving = Box::pin(second.reserve(100, 100));
        assert!((&mut leaving).now_or_never().is_none());
        let mut staying = Box::pin(third.reserve(1, 100));
        assert!((&mut staying).now_or_never().is_none());
        drop(first);
        // The first in line gives up: the next one is not left waiting.
        drop(leaving);
        assert_eq!(staying.now_or_never(), Some(Reservation::Waited));
    }
}
