//! openraft's watch channel on one thread, waking its receivers in the
//! order they started waiting.
//!
//! tokio's `watch` spreads its waiters over eight `Notify`s picked by
//! tokio's own random generator, which is seeded from the operating system:
//! when several tasks wait on one channel (openraft's replication streams
//! and metrics), the order they wake in, and so what a member sends first,
//! differs from run to run. This channel keeps one `Notify`, so a simulated
//! federation replays the same history from the same seed.

use std::cell::{Cell, Ref, RefCell};
use std::rc::Rc;

use openraft::async_runtime::watch::{RecvError, SendError, Watch, WatchReceiver, WatchSender};
use tokio::sync::Notify;

/// The watch channel of [`VatRuntime`](crate::runtime::VatRuntime).
#[derive(Debug)]
pub struct VatWatch;

struct Shared<T> {
    value: RefCell<T>,
    /// Bumped by every send that notifies.
    version: Cell<u64>,
    senders: Cell<usize>,
    receivers: Cell<usize>,
    changed: Notify,
}

/// The sending half.
pub struct VatWatchSender<T> {
    shared: Rc<Shared<T>>,
}

/// A receiving half: the version it last saw.
pub struct VatWatchReceiver<T> {
    shared: Rc<Shared<T>>,
    seen: u64,
}

impl Watch for VatWatch {
    type Sender<T> = VatWatchSender<T>;
    type Receiver<T> = VatWatchReceiver<T>;
    type Ref<'a, T: 'a> = Ref<'a, T>;

    fn channel<T>(init: T) -> (VatWatchSender<T>, VatWatchReceiver<T>) {
        let shared = Rc::new(Shared {
            value: RefCell::new(init),
            version: Cell::new(0),
            senders: Cell::new(1),
            receivers: Cell::new(1),
            changed: Notify::new(),
        });
        let receiver = VatWatchReceiver {
            shared: shared.clone(),
            seen: 0,
        };
        (VatWatchSender { shared }, receiver)
    }
}

impl<T> Shared<T> {
    fn notify(&self) {
        self.version.set(self.version.get() + 1);
        self.changed.notify_waiters();
    }
}

impl<T> Clone for VatWatchSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.set(self.shared.senders.get() + 1);
        VatWatchSender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for VatWatchSender<T> {
    fn drop(&mut self) {
        let left = self.shared.senders.get().saturating_sub(1);
        self.shared.senders.set(left);
        if left == 0 {
            // Receivers waiting for a change learn the channel closed.
            self.shared.changed.notify_waiters();
        }
    }
}

impl<T> WatchSender<VatWatch, T> for VatWatchSender<T> {
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.get() == 0 {
            return Err(SendError(value));
        }
        *self.shared.value.borrow_mut() = value;
        self.shared.notify();
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let modified = modify(&mut self.shared.value.borrow_mut());
        if modified {
            self.shared.notify();
        }
        modified
    }

    fn borrow_watched(&self) -> Ref<'_, T> {
        self.shared.value.borrow()
    }

    fn subscribe(&self) -> VatWatchReceiver<T> {
        self.shared.receivers.set(self.shared.receivers.get() + 1);
        VatWatchReceiver {
            shared: self.shared.clone(),
            seen: self.shared.version.get(),
        }
    }
}

impl<T> Clone for VatWatchReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.set(self.shared.receivers.get() + 1);
        VatWatchReceiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for VatWatchReceiver<T> {
    fn drop(&mut self) {
        let left = self.shared.receivers.get().saturating_sub(1);
        self.shared.receivers.set(left);
    }
}

impl<T> WatchReceiver<VatWatch, T> for VatWatchReceiver<T> {
    async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Registered before the checks: a send between them and the
            // wait still wakes it.
            let notified = self.shared.changed.notified();
            let version = self.shared.version.get();
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.senders.get() == 0 {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }

    fn borrow_watched(&self) -> Ref<'_, T> {
        self.shared.value.borrow()
    }

    fn borrow_and_update(&mut self) -> Ref<'_, T> {
        self.seen = self.shared.version.get();
        self.shared.value.borrow()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests

    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, future)
    }

    #[test]
    fn a_receiver_sees_the_latest_value_once_and_learns_the_channel_closed() {
        block_on(async {
            let (sender, mut receiver) = VatWatch::channel(1);
            let mut late = sender.subscribe();
            sender.send(2).unwrap();
            sender.send(3).unwrap();
            receiver.changed().await.unwrap();
            assert_eq!(*receiver.borrow_watched(), 3);
            assert!(!sender.send_if_modified(|_| false));
            let waiting = tokio::task::spawn_local(async move { receiver.changed().await });
            tokio::task::yield_now().await;
            assert!(sender.send_if_modified(|v| {
                *v = 4;
                true
            }));
            assert_eq!(waiting.await.unwrap(), Ok(()));
            assert_eq!(*late.borrow_and_update(), 4);
            let closed = tokio::task::spawn_local(async move { late.changed().await });
            tokio::task::yield_now().await;
            drop(sender);
            assert!(closed.await.unwrap().is_err());
        });
    }

    #[test]
    fn sending_without_receivers_fails() {
        let (sender, receiver) = VatWatch::channel(0);
        drop(receiver);
        assert!(sender.send(1).is_err());
    }

    /// The order 16 tasks waiting on one channel wake in, on a runtime of
    /// its own (tokio seeds each runtime's generator afresh).
    fn wake_order() -> Vec<usize> {
        block_on(async {
            let (sender, receiver) = VatWatch::channel(0);
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for i in 0..16 {
                let (mut receiver, order) = (receiver.clone(), order.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    receiver.changed().await.unwrap();
                    order.borrow_mut().push(i);
                }));
            }
            tokio::task::yield_now().await;
            sender.send(1).unwrap();
            for task in tasks {
                task.await.unwrap();
            }
            let order = order.borrow().clone();
            order
        })
    }

    #[test]
    fn waiters_wake_in_one_order_in_every_run() {
        let first = wake_order();
        assert_eq!(first.len(), 16);
        for _ in 0..8 {
            assert_eq!(wake_order(), first);
        }
    }
}
