//! The two-party network under each [`Connection`](crate::Connection): the
//! same protocol as capnp-rpc's `twoparty` network, with the connection's
//! [`Limits`] enforced on the messages that pass through it.
//!
//! capnp-rpc asks its network for one incoming message at a time and hands
//! it outgoing messages to queue. Here every message passes the connection's
//! [`Ledger`] on its way: incoming calls beyond the calls-in-flight bounds
//! are answered with `overloaded` and never reach capnp-rpc, and a peer that
//! overfills a table makes the next read fail, which ends the connection the
//! way capnp-rpc ends any broken connection (an abort message to the peer,
//! every outstanding question broken). Outgoing messages wait in an
//! [`Outbox`] counted in bytes; while it holds more than the bound, no
//! further message is read from the peer, and a peer that takes no bytes
//! for the stall timeout is disconnected. Incoming messages are read by
//! [`frame`], whose buffers grow only as bytes arrive, within the message
//! body timeout and the vat-wide [`budget`] for partial messages.

mod budget;
mod frame;
mod ledger;
mod outbox;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use capnp::capability::Promise;
use capnp::message::{Builder, HeapAllocator, Reader, ReaderOptions};
use capnp_rpc::rpc_capnp::{exception, message};
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::{AsyncBufRead, AsyncWrite, FutureExt};
use tokio::sync::Notify;
use vat_env::Instant;

use crate::Limits;
pub use budget::{partial_messages, PartialMessages};
use frame::{FrameError, FrameSegments};
use ledger::{Exceeded, Ledger, Refusal, Verdict};
use outbox::{Outbox, WriterEnd};

/// What a connection's two halves share.
struct Shared {
    label: String,
    limits: Limits,
    options: ReaderOptions,
    ledger: RefCell<Ledger>,
    outbox: Outbox,
    /// Why the connection must end, once it must.
    fatal: RefCell<Option<capnp::Error>>,
    /// Wakes the reader when `fatal` is set.
    alarm: Notify,
    /// When the last message passed, either way.
    last_message: Cell<Instant>,
    /// Woken when the peer's answer to the bootstrap request arrives.
    bootstrap_answered: Notify,
}

impl Shared {
    /// Ends the connection with `error` at the next read (the first reason
    /// wins).
    fn fail(&self, error: capnp::Error) {
        let mut fatal = self.fatal.borrow_mut();
        if fatal.is_none() {
            *fatal = Some(error);
            self.alarm.notify_waiters();
        }
    }

    fn fatal(&self) -> Option<capnp::Error> {
        self.fatal.borrow().clone()
    }

    /// Logs the bound the peer broke and ends the connection for it.
    fn exceeded(&self, exceeded: &Exceeded) {
        tracing::warn!(
            peer = %self.label,
            limit = exceeded.bound,
            count = exceeded.count,
            max = exceeded.max,
            "the peer broke a connection limit ({exceeded}); disconnecting it"
        );
        self.fail(capnp::Error::overloaded(exceeded.to_string()));
    }

    /// Logs a framing bound the peer broke; the error that ends the
    /// connection for `error`.
    fn unreadable(&self, error: FrameError) -> capnp::Error {
        if let Some(bound) = error.bound() {
            tracing::warn!(
                peer = %self.label,
                limit = bound,
                "the peer broke a connection limit ({error}); disconnecting it"
            );
        }
        error.into()
    }

    /// Queues `message` unless the writer has ended.
    fn queue(
        &self,
        message: Rc<Builder<HeapAllocator>>,
    ) -> futures::channel::oneshot::Receiver<()> {
        let bytes = frame::wire_bytes(&message);
        self.outbox.push(message, bytes)
    }

    /// Answers a refused call with `overloaded` and gives back the
    /// capabilities it carried, without capnp-rpc seeing any of it.
    fn refuse(&self, refusal: Refusal) -> capnp::Result<()> {
        let mut answer = Builder::new_default();
        {
            let mut ret = answer.init_root::<message::Builder>().init_return();
            ret.set_answer_id(refusal.question_id);
            // The releases below give the capabilities back explicitly,
            // which every implementation understands.
            ret.set_release_param_caps(false);
            let mut exception = ret.init_exception();
            exception.set_type(exception::Type::Overloaded);
            exception.set_reason(refusal.reason.as_str());
        }
        drop(self.queue(Rc::new(answer)));
        let mut releases = refusal.releases;
        releases.sort_unstable();
        for group in releases.chunk_by(|a, b| a == b) {
            let mut release = Builder::new_default();
            {
                let mut body = release.init_root::<message::Builder>().init_release();
                body.set_id(group[0]);
                body.set_reference_count(u32::try_from(group.len()).unwrap_or(u32::MAX));
            }
            drop(self.queue(Rc::new(release)));
        }
        Ok(())
    }
}

/// A message from the peer.
struct Incoming(Reader<FrameSegments>);

impl capnp_rpc::IncomingMessage for Incoming {
    fn get_body(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.0.get_root()
    }
}

/// A message to the peer, accounted for when it is sent.
struct Outgoing {
    message: Builder<HeapAllocator>,
    shared: Rc<Shared>,
}

impl capnp_rpc::OutgoingMessage for Outgoing {
    fn get_body(&mut self) -> capnp::Result<capnp::any_pointer::Builder<'_>> {
        self.message.get_root()
    }

    fn get_body_as_reader(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.message.get_root_as_reader()
    }

    fn send(self: Box<Self>) -> (Promise<(), capnp::Error>, Rc<Builder<HeapAllocator>>) {
        let Outgoing { message, shared } = *self;
        if let Ok(body) = message.get_root_as_reader::<message::Reader>() {
            let exceeded = shared.ledger.borrow_mut().outgoing(body);
            if let Some(exceeded) = exceeded {
                shared.exceeded(&exceeded);
            }
        }
        shared.last_message.set(vat_env::now());
        let message = Rc::new(message);
        let written = shared.queue(Rc::clone(&message));
        let promise = written.map(|result| {
            result.map_err(|_| capnp::Error::disconnected("the connection has ended".into()))
        });
        (Promise::from_future(promise), message)
    }

    fn take(self: Box<Self>) -> Builder<HeapAllocator> {
        self.message
    }

    fn size_in_words(&self) -> usize {
        self.message.size_in_words()
    }
}

/// The input half of the stream, handed to one read at a time.
type Input<R> = Rc<RefCell<Option<R>>>;

/// One connection, as capnp-rpc sees it.
struct Connection<R> {
    peer: Side,
    shared: Rc<Shared>,
    input: Input<R>,
}

impl<R> Drop for Connection<R> {
    fn drop(&mut self) {
        // capnp-rpc dropped the connection: let the writer finish.
        self.shared.outbox.close(Ok(()));
    }
}

/// capnp-rpc's handle on the connection (it may hold two: one from
/// accepting, one from connecting).
struct Handle<R>(Rc<Connection<R>>);

impl<R> capnp_rpc::Connection<Side> for Handle<R>
where
    R: AsyncBufRead + Unpin + 'static,
{
    fn get_peer_vat_id(&self) -> Side {
        self.0.peer
    }

    fn new_outgoing_message(
        &mut self,
        first_segment_words: u32,
    ) -> Box<dyn capnp_rpc::OutgoingMessage> {
        Box::new(Outgoing {
            message: Builder::new(
                HeapAllocator::new().first_segment_words(first_segment_words.max(1)),
            ),
            shared: Rc::clone(&self.0.shared),
        })
    }

    fn receive_incoming_message(
        &mut self,
    ) -> Promise<Option<Box<dyn capnp_rpc::IncomingMessage>>, capnp::Error> {
        let shared = Rc::clone(&self.0.shared);
        let input = Rc::clone(&self.0.input);
        Promise::from_future(async move {
            // capnp-rpc reads one message at a time, so the input is here.
            let Some(mut stream) = input.borrow_mut().take() else {
                return Err(capnp::Error::failed(
                    "two reads at once on one connection".to_string(),
                ));
            };
            let result = receive(&shared, &mut stream).await;
            *input.borrow_mut() = Some(stream);
            result
        })
    }

    fn shutdown(&mut self, result: capnp::Result<()>) -> Promise<(), capnp::Error> {
        // The session's outcome is reported by the writer's end (what
        // capnp-rpc drives); the shutdown itself only has to complete.
        let shared = Rc::clone(&self.0.shared);
        shared.outbox.close(result);
        Promise::from_future(async move {
            shared.outbox.finished().await;
            Ok(())
        })
    }
}

/// Reads the next message capnp-rpc should see, answering refused calls on
/// the way.
async fn receive<R>(
    shared: &Shared,
    stream: &mut R,
) -> capnp::Result<Option<Box<dyn capnp_rpc::IncomingMessage>>>
where
    R: AsyncBufRead + Unpin,
{
    loop {
        wait_for_room(shared).await?;
        let alarm = shared.alarm.notified();
        let message = tokio::select! {
            biased;
            () = alarm => continue,
            message = frame::read_message(stream, &shared.limits, shared.options) => {
                message.map_err(|error| shared.unreadable(error))?
            }
        };
        let Some((message, bytes)) = message else {
            return Ok(None);
        };
        shared.last_message.set(vat_env::now());
        let verdict = match message.get_root::<message::Reader>() {
            Ok(body) => {
                let mut ledger = shared.ledger.borrow_mut();
                let known = ledger.peer_bootstrap().is_some();
                let verdict = ledger.incoming(body, bytes);
                if !known && ledger.peer_bootstrap().is_some() {
                    shared.bootstrap_answered.notify_waiters();
                }
                verdict
            }
            // capnp-rpc reports what is wrong with it.
            Err(_) => Verdict::Deliver,
        };
        match verdict {
            Verdict::Deliver => return Ok(Some(Box::new(Incoming(message)))),
            Verdict::Refuse(refusal) => shared.refuse(refusal)?,
            Verdict::Swallow => {}
            Verdict::Exceeded(exceeded) => {
                shared.exceeded(&exceeded);
                return Err(capnp::Error::overloaded(exceeded.to_string()));
            }
        }
    }
}

/// Waits while more than `max_queued_bytes` wait to be written: the peer is
/// not reading its replies, so it gets no more work done. Fails once the
/// connection must end.
async fn wait_for_room(shared: &Shared) -> capnp::Result<()> {
    let mut paused = false;
    loop {
        let alarm = shared.alarm.notified();
        let progress = shared.outbox.progress();
        if let Some(error) = shared.fatal() {
            return Err(error);
        }
        let queued = shared.outbox.queued_bytes();
        if queued <= shared.limits.max_queued_bytes || shared.outbox.is_finished() {
            if paused {
                tracing::debug!(queued, "the peer reads again; reading its messages again");
            }
            return Ok(());
        }
        if !paused {
            paused = true;
            tracing::info!(
                queued,
                max_queued_bytes = shared.limits.max_queued_bytes,
                "the peer is not reading its replies; not reading its messages until it does"
            );
        }
        // Biased, as every select of the runtime: a simulation must take
        // the same branch in every run.
        tokio::select! {
            biased;
            () = alarm => {}
            () = progress => {}
        }
    }
}

/// The network capnp-rpc runs on: one connection, to the peer.
struct Network<R> {
    ours: Side,
    /// Handed to capnp-rpc when it accepts.
    unaccepted: Option<Rc<Connection<R>>>,
    /// Handed to capnp-rpc when it connects (for the bootstrap).
    connection: Weak<Connection<R>>,
    writer: Option<Promise<(), capnp::Error>>,
}

impl<R> capnp_rpc::VatNetwork<Side> for Network<R>
where
    R: AsyncBufRead + Unpin + 'static,
{
    fn connect(&mut self, host: Side) -> Option<Box<dyn capnp_rpc::Connection<Side>>> {
        if host == self.ours {
            return None;
        }
        // capnp-rpc connects once, right after it accepted, while the
        // connection is alive.
        let connection = self.connection.upgrade()?;
        Some(Box::new(Handle(connection)))
    }

    fn accept(&mut self) -> Promise<Box<dyn capnp_rpc::Connection<Side>>, capnp::Error> {
        match self.unaccepted.take() {
            Some(connection) => Promise::ok(Box::new(Handle(connection))),
            // Two-party: there is only ever one.
            None => Promise::from_future(futures::future::pending()),
        }
    }

    fn drive_until_shutdown(&mut self) -> Promise<(), capnp::Error> {
        self.writer
            .take()
            .unwrap_or_else(|| Promise::from_future(futures::future::pending()))
    }
}

/// A two-party network over `input` and `output` that enforces `limits`;
/// `label` names the peer in logs.
pub(crate) fn network<R, W>(
    input: R,
    output: W,
    ours: Side,
    limits: Limits,
    label: String,
) -> (Box<dyn capnp_rpc::VatNetwork<Side>>, Usage)
where
    R: AsyncBufRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let shared = Rc::new(Shared {
        label,
        limits,
        options: limits.reader_options(),
        ledger: RefCell::new(Ledger::new(limits)),
        outbox: Outbox::default(),
        fatal: RefCell::new(None),
        alarm: Notify::new(),
        last_message: Cell::new(vat_env::now()),
        bootstrap_answered: Notify::new(),
    });
    let usage = Usage(Rc::downgrade(&shared));
    let peer = match ours {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    };
    let connection = Rc::new(Connection {
        peer,
        shared: Rc::clone(&shared),
        input: Rc::new(RefCell::new(Some(input))),
    });
    let writer = write(shared, output);
    let network = Box::new(Network {
        ours,
        connection: Rc::downgrade(&connection),
        unaccepted: Some(connection),
        writer: Some(Promise::from_future(writer)),
    });
    (network, usage)
}

/// What the connection's ledger says about its use, for whoever manages
/// connections (it does not keep the session's state alive).
#[derive(Clone)]
pub(crate) struct Usage(Weak<Shared>);

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("idle_for", &self.idle_for())
            .finish()
    }
}

impl Usage {
    /// How long nothing but the bootstrap capabilities has been outstanding
    /// and no message has passed; `None` while something is in use. A
    /// session that has ended is idle for ever.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        let Some(shared) = self.0.upgrade() else {
            return Some(Duration::MAX);
        };
        if shared.ledger.borrow().in_use() {
            return None;
        }
        Some(shared.last_message.get().elapsed())
    }

    /// Waits for the peer's answer to the bootstrap request; whether it
    /// carried a capability. Waits for ever if it never comes: race it
    /// with the session's end.
    pub(crate) async fn peer_bootstrap(&self) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        loop {
            let answered = shared.bootstrap_answered.notified();
            if let Some(offered) = shared.ledger.borrow().peer_bootstrap() {
                return offered;
            }
            answered.await;
        }
    }
}

/// The writer task: its end is the end of the session.
async fn write<W>(shared: Rc<Shared>, output: W) -> capnp::Result<()>
where
    W: AsyncWrite + Unpin + 'static,
{
    let stall = shared.limits.write_stall_timeout;
    let end = outbox::write_all(&shared.outbox, output, stall).await;
    let error = match end {
        WriterEnd::Closed => return shared.outbox.outcome(),
        WriterEnd::Stalled { queued_bytes } => {
            tracing::warn!(
                peer = %shared.label,
                limit = "write_stall_timeout",
                queued_bytes,
                timeout = ?stall,
                "the peer took no bytes for {stall:?} with {queued_bytes} bytes queued for it; disconnecting it"
            );
            capnp::Error::overloaded(format!(
                "connection limit write_stall_timeout exceeded: the peer read nothing for \
                 {stall:?} with {queued_bytes} bytes queued for it"
            ))
        }
        WriterEnd::Failed(error) => {
            capnp::Error::disconnected(format!("writing to the peer failed: {error}"))
        }
    };
    // Let capnp-rpc break what waits on this connection (through the
    // failing read) and ask for shutdown before the session ends; if it
    // never does, end after one more stall timeout.
    shared.fail(error.clone());
    let _ = vat_env::timeout(stall, shared.outbox.close_requested()).await;
    Err(error)
}
