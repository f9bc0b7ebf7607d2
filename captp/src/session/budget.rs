//! The vat-wide budget for partial messages: the bytes that all of a vat's
//! connections together hold for messages whose first bytes have arrived
//! and whose last have not ([`Limits::max_partial_bytes_per_vat`]).
//!
//! A vat is one thread, and every session of the vat runs on it, so the
//! budget is kept per thread. Each message being read holds a [`Partial`],
//! which counts what its buffer holds and gives it back when the message is
//! complete or abandoned. A message's first [`FREE_BYTES`] never wait, so
//! small messages (nearly all of them) are never held up by big ones;
//! beyond that a buffer grows only while the vat's total stays within the
//! budget, and otherwise waits until another message gives bytes back.
//!
//! [`Limits::max_partial_bytes_per_vat`]: crate::Limits::max_partial_bytes_per_vat

use std::cell::Cell;
use std::rc::Rc;

use tokio::sync::Notify;

/// How much buffer a message may hold without asking the budget.
pub(super) const FREE_BYTES: usize = 64 * 1024;

/// The partial messages of the calling thread's vat: what
/// [`partial_messages`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialMessages {
    /// Messages whose first bytes have arrived and whose last have not.
    pub messages: usize,
    /// Bytes of those messages received so far.
    pub received_bytes: usize,
    /// Bytes of buffer held for them: what
    /// [`Limits::max_partial_bytes_per_vat`](crate::Limits::max_partial_bytes_per_vat)
    /// bounds (beyond the first 64 KiB of each message).
    pub held_bytes: usize,
}

/// The partial messages of the vat that runs on the calling thread (a vat
/// is one thread; see [`Limits::max_partial_bytes_per_vat`]). For
/// monitoring, and for tests that wait for a peer's bytes to arrive.
///
/// [`Limits::max_partial_bytes_per_vat`]: crate::Limits::max_partial_bytes_per_vat
pub fn partial_messages() -> PartialMessages {
    budget().counts.get()
}

/// Whether a buffer that holds `held` bytes may grow by `more` now, while
/// the vat's partial messages hold `vat_held` bytes in all (`held`
/// included) and may hold `max`.
fn may_grow(held: usize, more: usize, vat_held: usize, max: usize) -> bool {
    held.saturating_add(more) <= FREE_BYTES || vat_held.saturating_add(more) <= max
}

/// The counts of one thread, and who waits for bytes to be given back.
#[derive(Default)]
struct Budget {
    counts: Cell<PartialMessages>,
    freed: Notify,
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

/// One message being read: counted in the vat's budget until dropped.
pub(super) struct Partial {
    budget: Rc<Budget>,
    received: usize,
    held: usize,
}

/// How a buffer's growth went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Growth {
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
            held: 0,
        }
    }

    /// Counts `bytes` more received.
    pub(super) fn received(&mut self, bytes: usize) {
        self.received += bytes;
        self.budget.update(|counts| counts.received_bytes += bytes);
    }

    /// Takes `more` bytes of buffer from the budget, whose bound is `max`;
    /// waits while the vat's partial messages hold too much for it.
    pub(super) async fn grow(&mut self, more: usize, max: usize) -> Growth {
        let mut growth = Growth::Granted;
        loop {
            let freed = self.budget.freed.notified();
            let vat_held = self.budget.counts.get().held_bytes;
            if may_grow(self.held, more, vat_held, max) {
                self.held += more;
                self.budget.update(|counts| counts.held_bytes += more);
                return growth;
            }
            if growth == Growth::Granted {
                tracing::info!(
                    limit = "max_partial_bytes_per_vat",
                    held_bytes = vat_held,
                    max,
                    wanted = more,
                    "the vat's partial messages hold {vat_held} bytes; reading no more of this \
                     message until others complete"
                );
            }
            growth = Growth::Waited;
            freed.await;
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let (received, held) = (self.received, self.held);
        self.budget.update(|counts| {
            counts.messages -= 1;
            counts.received_bytes -= received;
            counts.held_bytes -= held;
        });
        if held > 0 {
            self.budget.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // unit tests: a panic is a failed test

    use super::*;
    use futures::FutureExt;

    #[test]
    fn the_first_free_bytes_never_wait_and_the_rest_waits_for_room() {
        // The first 64 KiB of a message are granted even past the budget.
        assert!(may_grow(0, FREE_BYTES, 10 * FREE_BYTES, FREE_BYTES));
        assert!(may_grow(1024, FREE_BYTES - 1024, usize::MAX, 0));
        // Beyond them, only within the budget.
        assert!(!may_grow(FREE_BYTES, 1, 4 * FREE_BYTES, 4 * FREE_BYTES));
        assert!(may_grow(FREE_BYTES, 1, 4 * FREE_BYTES - 1, 4 * FREE_BYTES));
        assert!(!may_grow(0, FREE_BYTES + 1, 0, FREE_BYTES));
    }

    #[test]
    fn a_message_gives_its_bytes_back_when_dropped_and_wakes_who_waits() {
        let max = 2 * FREE_BYTES;
        let mut first = Partial::begin();
        assert_eq!(
            first.grow(FREE_BYTES, max).now_or_never(),
            Some(Growth::Granted)
        );
        assert_eq!(
            first.grow(FREE_BYTES, max).now_or_never(),
            Some(Growth::Granted)
        );
        first.received(100);
        let mut second = Partial::begin();
        assert_eq!(
            second.grow(FREE_BYTES, max).now_or_never(),
            Some(Growth::Granted),
            "free bytes are granted past the budget"
        );
        assert_eq!(
            partial_messages(),
            PartialMessages {
                messages: 2,
                received_bytes: 100,
                held_bytes: 3 * FREE_BYTES
            }
        );
        let mut growing = Box::pin(second.grow(1, max + FREE_BYTES));
        assert!((&mut growing).now_or_never().is_none(), "over the budget");
        drop(first);
        assert_eq!(growing.now_or_never(), Some(Growth::Waited));
        drop(second);
        assert_eq!(partial_messages(), PartialMessages::default());
    }
}
