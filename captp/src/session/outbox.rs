//! Messages waiting to be written to the peer, counted in bytes, and the
//! task that writes them, watched for stalls.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use capnp::message::{Builder, HeapAllocator};
use futures::channel::oneshot;
use futures::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use vat_env::Instant;

use super::frame;

/// One queued message and who waits for it to be written.
struct Queued {
    message: Rc<Builder<HeapAllocator>>,
    bytes: usize,
    written: oneshot::Sender<()>,
}

/// The queue of one connection's outgoing messages.
#[derive(Default)]
pub(super) struct Outbox {
    queue: RefCell<VecDeque<Queued>>,
    queued_bytes: Cell<usize>,
    /// Shutdown was asked for: write what is queued, then close.
    closing: Cell<bool>,
    /// How capnp-rpc said the session ended, when it asked for shutdown.
    outcome: RefCell<Option<capnp::Result<()>>>,
    /// The writer has ended; nothing more is written.
    finished: Cell<bool>,
    /// Wakes the writer: a message was queued or shutdown asked for.
    work: Notify,
    /// Wakes whoever waits for the queue to shrink or the writer to end.
    progress: Notify,
}

impl Outbox {
    /// Queues `message` (`bytes` long on the wire); the receiver completes
    /// once it is written, and is dropped unwritten if the writer has ended.
    pub(super) fn push(
        &self,
        message: Rc<Builder<HeapAllocator>>,
        bytes: usize,
    ) -> oneshot::Receiver<()> {
        let (written, done) = oneshot::channel();
        if !self.finished.get() {
            self.queue.borrow_mut().push_back(Queued {
                message,
                bytes,
                written,
            });
            self.queued_bytes.set(self.queued_bytes.get() + bytes);
            self.work.notify_one();
        }
        done
    }

    /// Bytes waiting to be written.
    pub(super) fn queued_bytes(&self) -> usize {
        self.queued_bytes.get()
    }

    /// Whether the writer has ended.
    pub(super) fn is_finished(&self) -> bool {
        self.finished.get()
    }

    /// Asks the writer to write what is queued and close the stream;
    /// `outcome` is how the session ended (the first one given is kept).
    pub(super) fn close(&self, outcome: capnp::Result<()>) {
        self.outcome.borrow_mut().get_or_insert(outcome);
        self.closing.set(true);
        self.work.notify_one();
    }

    /// How the session ended, as given to [`Outbox::close`].
    pub(super) fn outcome(&self) -> capnp::Result<()> {
        self.outcome.borrow().clone().unwrap_or(Ok(()))
    }

    /// Resolves once shutdown has been asked for (for a writer that has
    /// already ended).
    pub(super) async fn close_requested(&self) {
        loop {
            let work = self.work.notified();
            if self.closing.get() {
                return;
            }
            work.await;
        }
    }

    /// Resolves when the queue has shrunk or the writer has ended. Create it
    /// before checking the condition, so that no wake-up is missed.
    pub(super) fn progress(&self) -> tokio::sync::futures::Notified<'_> {
        self.progress.notified()
    }

    /// Resolves once the writer has ended.
    pub(super) async fn finished(&self) {
        loop {
            let progress = self.progress.notified();
            if self.finished.get() {
                return;
            }
            progress.await;
        }
    }

    fn pop(&self) -> Option<Queued> {
        self.queue.borrow_mut().pop_front()
    }

    fn wrote(&self, bytes: usize) {
        self.queued_bytes
            .set(self.queued_bytes.get().saturating_sub(bytes));
        self.progress.notify_waiters();
    }

    /// Ends the writer: drops what is still queued (its waiters see the
    /// write fail) and refuses further messages.
    fn finish(&self) {
        self.finished.set(true);
        self.queue.borrow_mut().clear();
        self.queued_bytes.set(0);
        self.progress.notify_waiters();
    }
}

/// How the writer ended.
#[derive(Debug)]
pub(super) enum WriterEnd {
    /// Shutdown was asked for and everything queued was written.
    Closed,
    /// The peer took no bytes for the whole stall timeout while messages
    /// were queued.
    Stalled {
        /// Bytes that were waiting.
        queued_bytes: usize,
    },
    /// Writing failed.
    Failed(io::Error),
}

/// Writes `outbox`'s messages to `stream` until shutdown is asked for or
/// the stream fails or stalls for `stall` with bytes to write.
pub(super) async fn write_all<W>(outbox: &Outbox, stream: W, stall: Duration) -> WriterEnd
where
    W: AsyncWrite + Unpin,
{
    let last_progress = Rc::new(Cell::new(vat_env::now()));
    // The watcher sits beneath the buffer, so it sees bytes the socket took,
    // not bytes the buffer took.
    let mut writer = futures::io::BufWriter::with_capacity(
        64 * 1024,
        Watched {
            inner: stream,
            last_progress: Rc::clone(&last_progress),
        },
    );
    let end = loop {
        loop {
            let work = outbox.work.notified();
            if outbox.closing.get() || !outbox.queue.borrow().is_empty() {
                break;
            }
            work.await;
        }
        let queued_at_start = outbox.queued_bytes();
        match watched(drain(outbox, &mut writer), &last_progress, stall).await {
            None => {
                break WriterEnd::Stalled {
                    queued_bytes: outbox.queued_bytes().max(queued_at_start),
                }
            }
            Some(Err(error)) => break WriterEnd::Failed(error),
            Some(Ok(())) => {}
        }
        if outbox.closing.get() && outbox.queue.borrow().is_empty() {
            break match watched(writer.close(), &last_progress, stall).await {
                None | Some(Ok(())) => WriterEnd::Closed,
                Some(Err(error)) => WriterEnd::Failed(error),
            };
        }
    };
    outbox.finish();
    end
}

/// Writes every queued message, then flushes.
async fn drain<W>(outbox: &Outbox, writer: &mut W) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    while let Some(queued) = outbox.pop() {
        frame::write_message(writer, &queued.message).await?;
        outbox.wrote(queued.bytes);
        // Nobody may be waiting for this message; that is fine.
        let _ = queued.written.send(());
    }
    writer.flush().await
}

/// Runs `work` unless the stream makes no progress for `stall`; `None`
/// if it stalled.
async fn watched<F: Future>(
    work: F,
    last_progress: &Cell<Instant>,
    stall: Duration,
) -> Option<F::Output> {
    last_progress.set(vat_env::now());
    let watchdog = async {
        loop {
            let deadline = last_progress.get() + stall;
            if vat_env::now() >= deadline {
                return;
            }
            vat_env::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        biased;
        output = work => Some(output),
        () = watchdog => None,
    }
}

/// A writer that records when the stream last took bytes.
struct Watched<W> {
    inner: W,
    last_progress: Rc<Cell<Instant>>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Watched<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, bytes);
        if let Poll::Ready(Ok(written)) = result {
            if written > 0 {
                self.last_progress.set(vat_env::now());
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
