//! The simulated network: named hosts joined by links with latency, jitter,
//! loss and partitions, carrying TCP-like byte streams.
//!
//! ```no_run
//! # async fn demo(net: vat_sim::net::Network) -> std::io::Result<()> {
//! use std::time::Duration;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! net.add_host("alice");
//! net.add_host("bob");
//! tokio::task::spawn_local(net.run()); // the pump that delivers every byte
//! let listener = net.listen("bob", 7, b"bob here".to_vec())?;
//! let (mut to_bob, bob_hello) = net
//!     .connect("alice", "bob", 7, b"alice here".to_vec(), Duration::from_secs(5))
//!     .await?;
//! let (mut from_alice, accepted) = listener.accept().await?;
//! to_bob.write_all(b"ping").await?;
//! let mut ping = [0; 4];
//! from_alice.read_exact(&mut ping).await?;
//! # Ok(()) }
//! ```
//!
//! Everything happens on one thread in tokio's virtual time. Each direction
//! of a stream is a queue of chunks (one per write, at most [`MAX_CHUNK`]
//! bytes) with due times; the pump ([`Network::run`]) holds one heap of due
//! deliveries and moves each chunk into its reader's buffer when it falls
//! due. A chunk's due time is never before its predecessor's, so a stream
//! never reorders, while two streams' jitter reorders them against each
//! other. A cut direction holds its chunks until the heal; a link cut for
//! [`LinkConfig::break_after`] resets every stream across it. Every choice
//! (jitter, loss) comes from the one seeded generator, and every collection
//! iterated is ordered, so one seed gives one history.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::event;
use crate::log::EventLog;

/// The most bytes one write puts into one chunk.
pub const MAX_CHUNK: usize = 64 * 1024;

/// The most bytes written but not yet read, per direction of a stream;
/// beyond it a write waits for the reader.
pub const MAX_UNREAD: usize = 256 * 1024;

/// A chunk lost this many times in a row is delivered on the next try, so
/// that a loss rate of 1.0 delays rather than hangs.
const MAX_LOSSES_IN_A_ROW: u32 = 10;

/// How one link (both directions between two hosts) behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// The one-way delay of every chunk (default 1 ms).
    pub latency: Duration,
    /// The most extra delay, drawn uniformly from `0..=jitter` per chunk
    /// (default 1 ms).
    pub jitter: Duration,
    /// The chance that a chunk is lost and sent again (default 0.0).
    pub loss: f64,
    /// The delay one loss adds, doubling for each further loss of the same
    /// chunk (default 200 ms).
    pub retransmit: Duration,
    /// How long a link may stay cut, either way, before every stream across
    /// it is reset, as TCP's user timeout would (default 10 s).
    pub break_after: Duration,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0,
            retransmit: Duration::from_millis(200),
            break_after: Duration::from_secs(10),
        }
    }
}

/// Counters over a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections established.
    pub connections: u64,
    /// Data bytes delivered to a receiving end.
    pub bytes_delivered: u64,
    /// Losses rolled (each adds a retransmission delay).
    pub chunks_lost: u64,
    /// Connections reset (by a long cut, a crash or a closed listener).
    pub resets: u64,
}

/// Why a network operation failed. Carried inside the [`io::Error`] the
/// streams' interfaces require (reach it with `get_ref` and `downcast_ref`);
/// [`NetError::kind`] is the error's [`io::ErrorKind`].
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The host was never added.
    #[error("no host named {host:?}")]
    UnknownHost {
        /// The host asked for.
        host: String,
    },
    /// Something already listens on the port.
    #[error("{host:?} port {port} is already in use")]
    AddrInUse {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
    /// Nothing listens on the port (or the host crashed).
    #[error("{host:?} port {port} refused the connection")]
    Refused {
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: u16,
    },
    /// No answer came back within the timeout.
    #[error("no answer from {host:?} port {port} within {timeout:?}")]
    TimedOut {
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: u16,
        /// The timeout given.
        timeout: Duration,
    },
    /// The dialling host crashed while its connect was under way.
    #[error("{host:?} crashed while connecting")]
    DiallerCrashed {
        /// The dialling host.
        host: String,
    },
    /// The connection was reset: its link stayed cut too long, or a host
    /// at one end crashed, or its listener closed before accepting it.
    #[error("connection #{id} was reset")]
    Reset {
        /// The stream's id.
        id: u64,
    },
    /// The stream was shut down for writing before this write.
    #[error("stream #{id} is shut down for writing")]
    WriteAfterShutdown {
        /// The stream's id.
        id: u64,
    },
    /// The listener's port was taken from it (its host crashed).
    #[error("the listener on {host:?} port {port} is gone")]
    ListenerGone {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
}

impl NetError {
    /// The [`io::ErrorKind`] a real socket would report.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            NetError::UnknownHost { .. } => io::ErrorKind::AddrNotAvailable,
            NetError::AddrInUse { .. } => io::ErrorKind::AddrInUse,
            NetError::Refused { .. } => io::ErrorKind::ConnectionRefused,
            NetError::TimedOut { .. } => io::ErrorKind::TimedOut,
            NetError::DiallerCrashed { .. } | NetError::Reset { .. } => {
                io::ErrorKind::ConnectionReset
            }
            NetError::WriteAfterShutdown { .. } => io::ErrorKind::BrokenPipe,
            NetError::ListenerGone { .. } => io::ErrorKind::ConnectionAborted,
        }
    }
}

impl From<NetError> for io::Error {
    fn from(error: NetError) -> io::Error {
        io::Error::new(error.kind(), error)
    }
}

/// A simulated network of named hosts. Cheap to clone: every clone is the
/// same network.
#[derive(Clone)]
pub struct Network {
    state: Rc<RefCell<State>>,
}

/// Which end of a connection: the one that dialled or the one accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Dialler,
    Acceptor,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Dialler => 0,
            Side::Acceptor => 1,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Dialler => Side::Acceptor,
            Side::Acceptor => Side::Dialler,
        }
    }
}

const SIDES: [Side; 2] = [Side::Dialler, Side::Acceptor];

/// What a chunk carries.
enum Payload {
    Data(Vec<u8>),
    /// The sender closed its writing half: the reader sees end of file.
    Fin,
    /// The sender's host crashed: the receiving end is reset.
    Rst,
}

struct Chunk {
    id: u64,
    /// `None` while held by a cut.
    due: Option<Instant>,
    payload: Payload,
}

/// One direction of a connection, named by the side that sends.
#[derive(Default)]
struct Half {
    in_flight: VecDeque<Chunk>,
    /// Delivered to the receiving end and not yet read.
    received: VecDeque<u8>,
    /// Data bytes in flight plus received: what flow control bounds.
    unread: usize,
    /// The sender's FIN arrived.
    eof: bool,
    /// The sender shut its writing half (its FIN is queued).
    shut: bool,
    /// The due time of the last chunk scheduled, which no later chunk
    /// may precede.
    last_due: Option<Instant>,
}

struct End {
    host: String,
    /// The end's [`Stream`] is gone (or was never handed out).
    dropped: bool,
    reset: bool,
    /// A reset was sent from this end to its peer (data reached it after
    /// it was gone, as a kernel answers data for a closed socket).
    answered_with_reset: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl End {
    fn new(host: &str) -> End {
        End {
            host: host.to_owned(),
            dropped: false,
            reset: false,
            answered_with_reset: false,
            read_waker: None,
            write_waker: None,
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.read_waker.take() {
            waker.wake();
        }
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }

    fn wake_reader(&mut self) {
        if let Some(waker) = self.read_waker.take() {
            waker.wake();
        }
    }

    fn gone(&self) -> bool {
        self.dropped || self.reset
    }
}

struct Conn {
    ends: [End; 2],
    /// Indexed by the sending side.
    halves: [Half; 2],
}

impl Conn {
    fn end(&mut self, side: Side) -> &mut End {
        &mut self.ends[side.index()]
    }

    fn half(&mut self, sender: Side) -> &mut Half {
        &mut self.halves[sender.index()]
    }

    fn host(&self, side: Side) -> &str {
        &self.ends[side.index()].host
    }

    fn joins(&self, a: &str, b: &str) -> bool {
        (self.host(Side::Dialler) == a && self.host(Side::Acceptor) == b)
            || (self.host(Side::Dialler) == b && self.host(Side::Acceptor) == a)
    }

    /// Resets one end: its pending and later reads and writes fail, and
    /// the bytes in flight either way are dropped.
    fn reset_end(&mut self, side: Side) {
        self.end(side).reset = true;
        for sender in SIDES {
            let half = self.half(sender);
            half.in_flight.clear();
            if sender == side.other() {
                half.received.clear();
            }
            half.unread = half.received.len();
        }
        self.end(side).wake();
        self.end(side.other()).wake_writer();
    }
}

/// Something the pump does at a due time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Delivers the chunk at the front of one direction, if it is still
    /// that chunk (a heal reschedules chunks, leaving stale entries).
    Deliver { conn: u64, sender: Side, chunk: u64 },
    /// Resets the streams between two hosts if the cut that scheduled this
    /// check is still in place.
    Break { pair: (String, String), cut: u64 },
}

struct ListenerState {
    id: u64,
    hello: Vec<u8>,
    backlog: VecDeque<(u64, Accepted)>,
    waker: Option<Waker>,
}

struct Host {
    /// Bumped by each crash, so a connect begun before one cannot finish.
    incarnation: u64,
}

struct State {
    rng: Rc<RefCell<ChaCha8Rng>>,
    log: EventLog,
    wake_pump: Rc<Notify>,
    hosts: BTreeMap<String, Host>,
    default_link: LinkConfig,
    /// Keyed by the two host names in order.
    links: BTreeMap<(String, String), LinkConfig>,
    /// Cut directions, (from, to).
    cuts: BTreeSet<(String, String)>,
    /// Per pair of hosts (in order), the number of the latest cut: a break
    /// check fires only for the cut that scheduled it.
    cut_numbers: BTreeMap<(String, String), u64>,
    listeners: BTreeMap<(String, u16), ListenerState>,
    conns: BTreeMap<u64, Conn>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    next_timer: u64,
    next_conn: u64,
    next_chunk: u64,
    next_listener: u64,
    stats: NetStats,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl State {
    fn link(&self, a: &str, b: &str) -> LinkConfig {
        self.links
            .get(&pair(a, b))
            .copied()
            .unwrap_or(self.default_link)
    }

    fn is_cut(&self, from: &str, to: &str) -> bool {
        self.cuts.contains(&(from.to_owned(), to.to_owned()))
    }

    /// One chunk's trip from `from` to `to`: latency, a jitter sample and
    /// the retransmissions its loss rolls call for.
    fn trip(&mut self, from: &str, to: &str) -> Duration {
        let link = self.link(from, to);
        let mut rng = self.rng.borrow_mut();
        let mut delay = link.latency;
        if !link.jitter.is_zero() {
            let nanos = u64::try_from(link.jitter.as_nanos()).unwrap_or(u64::MAX);
            delay += Duration::from_nanos(rng.random_range(0..=nanos));
        }
        if link.loss > 0.0 {
            let mut retransmit = link.retransmit;
            let mut losses = 0;
            while losses < MAX_LOSSES_IN_A_ROW && rng.random_bool(link.loss.min(1.0)) {
                delay += retransmit;
                retransmit *= 2;
                losses += 1;
                self.stats.chunks_lost += 1;
            }
        }
        delay
    }

    fn schedule(&mut self, due: Instant, timer: Timer) {
        let seq = self.next_timer;
        self.next_timer += 1;
        let earliest = self
            .timers
            .peek()
            .is_none_or(|Reverse((head, _, _))| due < *head);
        self.timers.push(Reverse((due, seq, timer)));
        if earliest {
            self.wake_pump.notify_one();
        }
    }

    /// Queues a chunk from `sender`'s end, held if the direction is cut.
    fn send(&mut self, conn_id: u64, sender: Side, payload: Payload) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let from = conn.host(sender).to_owned();
        let to = conn.host(sender.other()).to_owned();
        let chunk = self.next_chunk;
        self.next_chunk += 1;
        let due = if self.is_cut(&from, &to) {
            None
        } else {
            Some(Instant::now() + self.trip(&from, &to))
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let half = conn.half(sender);
        let due = due.map(|due| half.last_due.map_or(due, |last| due.max(last)));
        if let Payload::Data(bytes) = &payload {
            half.unread += bytes.len();
        }
        if due.is_some() {
            half.last_due = due;
        }
        half.in_flight.push_back(Chunk {
            id: chunk,
            due,
            payload,
        });
        if let Some(due) = due {
            self.schedule(
                due,
                Timer::Deliver {
                    conn: conn_id,
                    sender,
                    chunk,
                },
            );
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Deliver {
                conn,
                sender,
                chunk,
            } => self.deliver(conn, sender, chunk),
            Timer::Break { pair, cut } => self.break_link(pair, cut),
        }
    }

    fn deliver(&mut self, conn_id: u64, sender: Side, chunk_id: u64) {
        let cut = match self.conns.get(&conn_id) {
            Some(conn) => self.is_cut(conn.host(sender), conn.host(sender.other())),
            None => return,
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let half = conn.half(sender);
        let Some(front) = half.in_flight.front_mut() else {
            return;
        };
        if front.id != chunk_id || front.due.is_none_or(|due| due > Instant::now()) {
            return;
        }
        if cut {
            // Lost on the cut link; the heal sends it again.
            front.due = None;
            return;
        }
        let Some(chunk) = half.in_flight.pop_front() else {
            return;
        };
        let from = conn.host(sender).to_owned();
        let to = conn.host(sender.other()).to_owned();
        let receiver = sender.other();
        match chunk.payload {
            Payload::Data(bytes) => {
                self.stats.bytes_delivered += bytes.len() as u64;
                event!(
                    self.log,
                    "deliver #{conn_id} {}->{} {}",
                    from.escape_debug(),
                    to.escape_debug(),
                    bytes.len()
                );
                if conn.end(receiver).gone() {
                    let half = conn.half(sender);
                    half.unread = half.unread.saturating_sub(bytes.len());
                    conn.end(sender).wake_writer();
                    // Data for a socket that is gone (closed, or its host
                    // crashed and came back) is answered with a reset, so
                    // the writer learns its peer is gone even if the reset
                    // sent at the crash was lost.
                    if !conn.end(receiver).answered_with_reset && !conn.end(sender).reset {
                        conn.end(receiver).answered_with_reset = true;
                        self.stats.resets += 1;
                        self.send(conn_id, receiver, Payload::Rst);
                    }
                } else {
                    conn.half(sender).received.extend(bytes);
                    conn.end(receiver).wake_reader();
                }
            }
            Payload::Fin => {
                event!(
                    self.log,
                    "fin #{conn_id} {}->{}",
                    from.escape_debug(),
                    to.escape_debug()
                );
                conn.half(sender).eof = true;
                conn.end(receiver).wake_reader();
            }
            Payload::Rst => {
                event!(
                    self.log,
                    "rst #{conn_id} {}->{}",
                    from.escape_debug(),
                    to.escape_debug()
                );
                conn.reset_end(receiver);
            }
        }
        self.collect(conn_id);
    }

    /// Forgets a connection neither of whose ends can use it any more.
    fn collect(&mut self, conn_id: u64) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let idle = conn.ends.iter().all(End::gone)
            && conn.halves.iter().all(|half| half.in_flight.is_empty());
        if idle {
            self.conns.remove(&conn_id);
        }
    }

    fn break_link(&mut self, pair: (String, String), cut: u64) {
        let (a, b) = (&pair.0, &pair.1);
        let still_cut = self.is_cut(a, b) || self.is_cut(b, a);
        if !still_cut || self.cut_numbers.get(&pair) != Some(&cut) {
            return;
        }
        let after = self.link(a, b).break_after;
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.joins(a, b) && !conn.ends.iter().all(|end| end.reset))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.reset_end(Side::Dialler);
                conn.reset_end(Side::Acceptor);
            }
            self.stats.resets += 1;
            event!(
                self.log,
                "reset #{id} {}<->{} cut for {after:?}",
                a.escape_debug(),
                b.escape_debug()
            );
            self.collect(id);
        }
    }

    fn cut(&mut self, from: &str, to: &str) {
        let was_cut = self.is_cut(from, to) || self.is_cut(to, from);
        self.cuts.insert((from.to_owned(), to.to_owned()));
        if !was_cut {
            let key = pair(from, to);
            let number = self.cut_numbers.get(&key).map_or(0, |n| n + 1);
            self.cut_numbers.insert(key.clone(), number);
            let due = Instant::now() + self.link(from, to).break_after;
            self.schedule(
                due,
                Timer::Break {
                    pair: key,
                    cut: number,
                },
            );
        }
    }

    /// Restores one direction and sends again, in order, every chunk it
    /// held.
    fn uncut(&mut self, from: &str, to: &str) {
        if !self.cuts.remove(&(from.to_owned(), to.to_owned())) {
            return;
        }
        let senders: Vec<(u64, Side)> = self
            .conns
            .iter()
            .flat_map(|(id, conn)| {
                SIDES
                    .into_iter()
                    .filter(move |side| conn.host(*side) == from && conn.host(side.other()) == to)
                    .map(move |side| (*id, side))
            })
            .collect();
        let now = Instant::now();
        for (id, sender) in senders {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            let mut in_flight = std::mem::take(&mut conn.half(sender).in_flight);
            let mut last: Option<Instant> = None;
            for chunk in &mut in_flight {
                let due = match chunk.due {
                    Some(due) => due,
                    None => now + self.trip(from, to),
                };
                let due = last.map_or(due, |last| due.max(last));
                chunk.due = Some(due);
                last = Some(due);
                self.schedule(
                    due,
                    Timer::Deliver {
                        conn: id,
                        sender,
                        chunk: chunk.id,
                    },
                );
            }
            if let Some(conn) = self.conns.get_mut(&id) {
                let half = conn.half(sender);
                half.in_flight = in_flight;
                if last.is_some() {
                    half.last_due = last;
                }
            }
        }
    }

    /// The SYN from `from` reaches `to`: if something listens on `port`,
    /// the connection is made and queued for its accept. Returns the
    /// connection's id and the listener's hello, if any, and the reply's
    /// trip.
    fn answer(
        &mut self,
        from: &str,
        to: &str,
        port: u16,
        hello: Vec<u8>,
    ) -> (Option<(u64, Vec<u8>)>, Duration) {
        let reply_trip = self.trip(to, from);
        let id = self.next_conn;
        let key = (to.to_owned(), port);
        let answer = match self.listeners.get_mut(&key) {
            None => None,
            Some(listener) => {
                listener.backlog.push_back((
                    id,
                    Accepted {
                        peer_host: from.to_owned(),
                        hello,
                    },
                ));
                if let Some(waker) = listener.waker.take() {
                    waker.wake();
                }
                Some((id, listener.hello.clone()))
            }
        };
        if answer.is_some() {
            self.next_conn += 1;
            self.stats.connections += 1;
            self.conns.insert(
                id,
                Conn {
                    ends: [End::new(from), End::new(to)],
                    halves: [Half::default(), Half::default()],
                },
            );
            event!(
                self.log,
                "connect #{id} {}->{}:{port}",
                from.escape_debug(),
                to.escape_debug()
            );
        }
        (answer, reply_trip)
    }

    /// Kills one end as its host's crash would: it fails at once, and the
    /// peer learns of it by a reset one trip later.
    fn abort(&mut self, conn_id: u64, side: Side) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let peer_live = !conn.end(side.other()).reset;
        let was_reset = conn.end(side).reset;
        if was_reset {
            // Reset before (a second crash of its host): the reset it sent
            // then may still be held by a cut, and must not be lost.
            return;
        }
        conn.reset_end(side);
        if !was_reset && peer_live {
            self.stats.resets += 1;
            self.send(conn_id, side, Payload::Rst);
        }
    }
}

impl Network {
    /// An empty network whose choices all come from `rng`, recording its
    /// events in `log`.
    pub fn new(rng: Rc<RefCell<ChaCha8Rng>>, log: EventLog) -> Network {
        Network {
            state: Rc::new(RefCell::new(State {
                rng,
                log,
                wake_pump: Rc::new(Notify::new()),
                hosts: BTreeMap::new(),
                default_link: LinkConfig::default(),
                links: BTreeMap::new(),
                cuts: BTreeSet::new(),
                cut_numbers: BTreeMap::new(),
                listeners: BTreeMap::new(),
                conns: BTreeMap::new(),
                timers: BinaryHeap::new(),
                next_timer: 0,
                next_conn: 1,
                next_chunk: 0,
                next_listener: 0,
                stats: NetStats::default(),
            })),
        }
    }

    /// Adds a host (adding one twice changes nothing).
    pub fn add_host(&self, host: &str) {
        self.state
            .borrow_mut()
            .hosts
            .entry(host.to_owned())
            .or_insert(Host { incarnation: 0 });
    }

    /// Sets how links without their own configuration behave.
    pub fn set_default_link(&self, config: LinkConfig) {
        self.state.borrow_mut().default_link = config;
    }

    /// Sets how the link between `a` and `b` behaves, both ways.
    pub fn set_link(&self, a: &str, b: &str, config: LinkConfig) {
        self.state.borrow_mut().links.insert(pair(a, b), config);
    }

    /// Listens on `host`'s `port`, answering each dialler with `hello`.
    /// Fails with `AddrInUse` if the port is taken, `AddrNotAvailable` if
    /// the host is unknown.
    pub fn listen(&self, host: &str, port: u16, hello: Vec<u8>) -> io::Result<Listener> {
        let mut state = self.state.borrow_mut();
        if !state.hosts.contains_key(host) {
            return Err(NetError::UnknownHost {
                host: host.to_owned(),
            }
            .into());
        }
        let key = (host.to_owned(), port);
        if state.listeners.contains_key(&key) {
            return Err(NetError::AddrInUse {
                host: host.to_owned(),
                port,
            }
            .into());
        }
        let id = state.next_listener;
        state.next_listener += 1;
        state.listeners.insert(
            key,
            ListenerState {
                id,
                hello,
                backlog: VecDeque::new(),
                waker: None,
            },
        );
        event!(state.log, "listen {}:{port}", host.escape_debug());
        Ok(Listener {
            net: self.clone(),
            host: host.to_owned(),
            port,
            id,
        })
    }

    /// Dials `to`'s `port` from `from`, presenting `hello`; returns the
    /// stream and the listener's hello after one round trip.
    ///
    /// Fails with `ConnectionRefused` (after a round trip) if nothing
    /// listens there, and with `TimedOut` after `timeout` if the link is
    /// cut either way or the round trip takes longer.
    pub async fn connect(
        &self,
        from: &str,
        to: &str,
        port: u16,
        hello: Vec<u8>,
        timeout: Duration,
    ) -> io::Result<(Stream, Vec<u8>)> {
        match tokio::time::timeout(timeout, self.dial(from, to, port, hello)).await {
            Ok(result) => result,
            Err(_) => {
                event!(
                    self.log(),
                    "connect {}->{}:{port} timed out",
                    from.escape_debug(),
                    to.escape_debug()
                );
                Err(NetError::TimedOut {
                    host: to.to_owned(),
                    port,
                    timeout,
                }
                .into())
            }
        }
    }

    fn log(&self) -> EventLog {
        self.state.borrow().log.clone()
    }

    async fn dial(
        &self,
        from: &str,
        to: &str,
        port: u16,
        hello: Vec<u8>,
    ) -> io::Result<(Stream, Vec<u8>)> {
        let (syn_trip, incarnation) = {
            let mut state = self.state.borrow_mut();
            let Some(host) = state.hosts.get(from) else {
                return Err(NetError::UnknownHost {
                    host: from.to_owned(),
                }
                .into());
            };
            let incarnation = host.incarnation;
            let cut = state.is_cut(from, to) || state.is_cut(to, from);
            ((!cut).then(|| state.trip(from, to)), incarnation)
        };
        let Some(syn_trip) = syn_trip else {
            // A SYN that never comes back: only the timeout ends this.
            return std::future::pending().await;
        };
        tokio::time::sleep(syn_trip).await;

        let answered = {
            let mut state = self.state.borrow_mut();
            if state.hosts.get(from).map(|host| host.incarnation) != Some(incarnation) {
                return Err(NetError::DiallerCrashed {
                    host: from.to_owned(),
                }
                .into());
            }
            if state.is_cut(from, to) || state.is_cut(to, from) {
                None
            } else {
                Some(state.answer(from, to, port, hello))
            }
        };
        let Some((answer, reply_trip)) = answered else {
            return std::future::pending().await;
        };
        // Made before the reply's trip so that abandoning the connect
        // closes this end.
        let stream = answer.map(|(id, hello)| {
            (
                Stream {
                    net: self.clone(),
                    id,
                    side: Side::Dialler,
                    local_host: from.to_owned(),
                    peer_host: to.to_owned(),
                },
                hello,
            )
        });
        tokio::time::sleep(reply_trip).await;
        match stream {
            Some(connected) => Ok(connected),
            None => {
                event!(
                    self.log(),
                    "connect {}->{}:{port} refused",
                    from.escape_debug(),
                    to.escape_debug()
                );
                Err(NetError::Refused {
                    host: to.to_owned(),
                    port,
                }
                .into())
            }
        }
    }

    /// Cuts the link between `a` and `b` both ways.
    pub fn partition(&self, a: &str, b: &str) {
        let mut state = self.state.borrow_mut();
        state.cut(a, b);
        state.cut(b, a);
        event!(
            state.log,
            "partition {}<->{}",
            a.escape_debug(),
            b.escape_debug()
        );
    }

    /// Cuts the direction from `from` to `to`; the other way still flows.
    pub fn partition_oneway(&self, from: &str, to: &str) {
        let mut state = self.state.borrow_mut();
        state.cut(from, to);
        event!(
            state.log,
            "partition {}->{}",
            from.escape_debug(),
            to.escape_debug()
        );
    }

    /// Restores the link between `a` and `b` both ways; what it held is
    /// delivered one trip later, in order.
    pub fn heal(&self, a: &str, b: &str) {
        let mut state = self.state.borrow_mut();
        state.uncut(a, b);
        state.uncut(b, a);
        event!(
            state.log,
            "heal {}<->{}",
            a.escape_debug(),
            b.escape_debug()
        );
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        let mut state = self.state.borrow_mut();
        let cuts: Vec<(String, String)> = state.cuts.iter().cloned().collect();
        for (from, to) in cuts {
            state.uncut(&from, &to);
        }
        event!(state.log, "heal all");
    }

    /// Whether bytes from `from` to `to` are held by a cut.
    pub fn is_cut(&self, from: &str, to: &str) -> bool {
        self.state.borrow().is_cut(from, to)
    }

    /// Kills `host` as kill -9 would: its listeners vanish, its streams
    /// fail at once, the bytes it had in flight are dropped, and each peer
    /// sees its stream reset one trip later.
    pub fn crash_host(&self, host: &str) {
        let mut state = self.state.borrow_mut();
        if let Some(entry) = state.hosts.get_mut(host) {
            entry.incarnation += 1;
        }
        let ports: Vec<(String, u16)> = state
            .listeners
            .keys()
            .filter(|(on, _)| on == host)
            .cloned()
            .collect();
        let mut unaccepted = Vec::new();
        for key in ports {
            if let Some(mut listener) = state.listeners.remove(&key) {
                unaccepted.extend(listener.backlog.drain(..).map(|(id, _)| id));
                if let Some(waker) = listener.waker.take() {
                    waker.wake();
                }
            }
        }
        for id in unaccepted {
            if let Some(conn) = state.conns.get_mut(&id) {
                conn.end(Side::Acceptor).dropped = true;
            }
        }
        let ends: Vec<(u64, Side)> = state
            .conns
            .iter()
            .flat_map(|(id, conn)| {
                SIDES
                    .into_iter()
                    .filter(move |side| conn.host(*side) == host)
                    .map(move |side| (*id, side))
            })
            .collect();
        event!(state.log, "crash {}", host.escape_debug());
        for (id, side) in ends {
            state.abort(id, side);
            state.collect(id);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.state.borrow().stats
    }

    /// The pump that delivers every chunk when it falls due. Spawn it once
    /// (`spawn_local`); it never ends.
    pub fn run(&self) -> impl Future<Output = ()> + 'static {
        let net = self.clone();
        async move {
            let wake_pump = net.state.borrow().wake_pump.clone();
            loop {
                match net.fire_due() {
                    Some(next) => {
                        tokio::select! {
                            biased;
                            () = wake_pump.notified() => {}
                            () = tokio::time::sleep_until(next) => {}
                        }
                    }
                    None => wake_pump.notified().await,
                }
            }
        }
    }

    /// Fires every timer due by now, in order; returns when the next is due.
    fn fire_due(&self) -> Option<Instant> {
        let mut state = self.state.borrow_mut();
        let now = Instant::now();
        loop {
            match state.timers.peek() {
                Some(Reverse((due, _, _))) if *due <= now => {}
                Some(Reverse((due, _, _))) => return Some(*due),
                None => return None,
            }
            if let Some(Reverse((_, _, timer))) = state.timers.pop() {
                state.fire(timer);
            }
        }
    }
}

/// A port being listened on. Dropping it stops listening; connections
/// it had not yet accepted are reset.
pub struct Listener {
    net: Network,
    host: String,
    port: u16,
    id: u64,
}

/// What an accepted connection's dialler presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The dialling host.
    pub peer_host: String,
    /// The dialler's hello.
    pub hello: Vec<u8>,
}

impl Listener {
    /// Waits for the next connection. Fails with `ConnectionAborted` once
    /// the listener's host crashed.
    pub async fn accept(&self) -> io::Result<(Stream, Accepted)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Stream, Accepted)>> {
        let mut state = self.net.state.borrow_mut();
        let key = (self.host.clone(), self.port);
        let Some(listener) = state
            .listeners
            .get_mut(&key)
            .filter(|listener| listener.id == self.id)
        else {
            return Poll::Ready(Err(NetError::ListenerGone {
                host: self.host.clone(),
                port: self.port,
            }
            .into()));
        };
        let Some((id, accepted)) = listener.backlog.pop_front() else {
            listener.waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        event!(
            state.log,
            "accept #{id} {}:{} <- {}",
            self.host.escape_debug(),
            self.port,
            accepted.peer_host.escape_debug()
        );
        let stream = Stream {
            net: self.net.clone(),
            id,
            side: Side::Acceptor,
            local_host: self.host.clone(),
            peer_host: accepted.peer_host.clone(),
        };
        Poll::Ready(Ok((stream, accepted)))
    }

    /// The host listened on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut state = self.net.state.borrow_mut();
        let key = (self.host.clone(), self.port);
        if state.listeners.get(&key).map(|l| l.id) != Some(self.id) {
            return;
        }
        let Some(listener) = state.listeners.remove(&key) else {
            return;
        };
        event!(
            state.log,
            "unlisten {}:{}",
            self.host.escape_debug(),
            self.port
        );
        for (id, _) in listener.backlog {
            if let Some(conn) = state.conns.get_mut(&id) {
                conn.end(Side::Acceptor).dropped = true;
            }
            state.abort(id, Side::Acceptor);
            state.collect(id);
        }
    }
}

/// One end of a simulated TCP connection. Dropping it closes it: the peer
/// reads end of file once the bytes in flight have arrived.
pub struct Stream {
    net: Network,
    id: u64,
    side: Side,
    local_host: String,
    peer_host: String,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("local_host", &self.local_host)
            .field("peer_host", &self.peer_host)
            .finish()
    }
}

impl Stream {
    /// The host this end is on.
    pub fn local_host(&self) -> &str {
        &self.local_host
    }

    /// The host at the other end.
    pub fn peer_host(&self) -> &str {
        &self.peer_host
    }

    /// The connection's id, the same at both ends (the event log's `#id`).
    pub fn id(&self) -> u64 {
        self.id
    }

    fn reset(&self) -> io::Error {
        NetError::Reset { id: self.id }.into()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut state = self.net.state.borrow_mut();
        let Some(conn) = state.conns.get_mut(&self.id) else {
            return Poll::Ready(Err(self.reset()));
        };
        if conn.end(self.side).reset {
            return Poll::Ready(Err(self.reset()));
        }
        let half = conn.half(self.side.other());
        if !half.received.is_empty() {
            let n = buf.remaining().min(half.received.len());
            let (first, second) = half.received.as_slices();
            let from_first = n.min(first.len());
            buf.put_slice(&first[..from_first]);
            buf.put_slice(&second[..n - from_first]);
            half.received.drain(..n);
            half.unread = half.unread.saturating_sub(n);
            conn.end(self.side.other()).wake_writer();
            return Poll::Ready(Ok(()));
        }
        if half.eof || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        conn.end(self.side).read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.net.state.borrow_mut();
        let Some(conn) = state.conns.get_mut(&self.id) else {
            return Poll::Ready(Err(self.reset()));
        };
        if conn.end(self.side).reset {
            return Poll::Ready(Err(self.reset()));
        }
        let half = conn.half(self.side);
        if half.shut {
            return Poll::Ready(Err(NetError::WriteAfterShutdown { id: self.id }.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = MAX_UNREAD.saturating_sub(half.unread);
        if room == 0 {
            conn.end(self.side).write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(room).min(MAX_CHUNK);
        state.send(self.id, self.side, Payload::Data(buf[..n].to_vec()));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.net.state.borrow_mut();
        let Some(conn) = state.conns.get_mut(&self.id) else {
            return Poll::Ready(Err(self.reset()));
        };
        if conn.end(self.side).reset {
            return Poll::Ready(Err(self.reset()));
        }
        let half = conn.half(self.side);
        if !half.shut {
            half.shut = true;
            state.send(self.id, self.side, Payload::Fin);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut state = self.net.state.borrow_mut();
        let Some(conn) = state.conns.get_mut(&self.id) else {
            return;
        };
        let end = conn.end(self.side);
        end.dropped = true;
        end.read_waker = None;
        end.write_waker = None;
        let reset = end.reset;
        // Nobody will read what arrived: release the peer's writer.
        let incoming = conn.half(self.side.other());
        let unread = incoming.received.len();
        incoming.received.clear();
        incoming.unread = incoming.unread.saturating_sub(unread);
        conn.end(self.side.other()).wake_writer();
        let half = conn.half(self.side);
        if !reset && !half.shut {
            half.shut = true;
            state.send(self.id, self.side, Payload::Fin);
        }
        state.collect(self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rand::SeedableRng;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::{spawn_local, LocalSet};

    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn network(seed: u64) -> (Network, EventLog) {
        let log = EventLog::new();
        let rng = Rc::new(RefCell::new(ChaCha8Rng::seed_from_u64(seed)));
        let net = Network::new(rng, log.clone());
        net.add_host("a");
        net.add_host("b");
        spawn_local(net.run());
        (net, log)
    }

    async fn pair_of_streams(net: &Network, port: u16) -> (Stream, Stream) {
        let listener = net.listen("b", port, b"b".to_vec()).unwrap();
        let (dialled, hello) = net
            .connect("a", "b", port, b"a".to_vec(), LONG)
            .await
            .unwrap();
        assert_eq!(hello, b"b");
        let (accepted, who) = listener.accept().await.unwrap();
        assert_eq!(
            who,
            Accepted {
                peer_host: "a".into(),
                hello: b"a".to_vec()
            }
        );
        (dialled, accepted)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Reads whatever arrives within `wait` of virtual time.
    async fn read_for(stream: &mut Stream, wait: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout(wait, stream.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    fn kind<T>(result: io::Result<T>) -> io::ErrorKind {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(error) => error.kind(),
        }
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn many_jittered_writes_arrive_in_order_and_intact() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(1);
                net.set_default_link(LinkConfig {
                    jitter: Duration::from_millis(20),
                    ..LinkConfig::default()
                });
                let (mut a, mut b) = pair_of_streams(&net, 1).await;
                let sent = pattern(600_000);
                let writer = spawn_local({
                    let sent = sent.clone();
                    async move {
                        let mut offset = 0;
                        let mut size = 1;
                        while offset < sent.len() {
                            let end = (offset + size).min(sent.len());
                            a.write_all(&sent[offset..end]).await.unwrap();
                            offset = end;
                            size = size * 3 % 100_003 + 1;
                            tokio::time::sleep(Duration::from_micros(300)).await;
                        }
                        a.shutdown().await.unwrap();
                    }
                });
                let mut got = Vec::new();
                b.read_to_end(&mut got).await.unwrap();
                writer.await.unwrap();
                assert_eq!(got.len(), sent.len());
                assert!(got == sent, "the bytes arrived altered or reordered");
                assert_eq!(net.stats().bytes_delivered, sent.len() as u64);
            })
            .await;
    }

    /// Two streams each send one byte at the same instants; returns the
    /// order their deliveries were logged in, by stream id.
    async fn interleaving(seed: u64) -> Vec<u64> {
        let (net, log) = network(seed);
        net.set_default_link(LinkConfig {
            jitter: Duration::from_millis(5),
            ..LinkConfig::default()
        });
        let (mut a1, mut b1) = pair_of_streams(&net, 1).await;
        let (mut a2, mut b2) = pair_of_streams(&net, 2).await;
        for _ in 0..20 {
            a1.write_all(b"1").await.unwrap();
            a2.write_all(b"2").await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut byte = [0; 20];
        b1.read_exact(&mut byte).await.unwrap();
        b2.read_exact(&mut byte).await.unwrap();
        let (lines, _) = log.lines();
        lines
            .iter()
            .filter_map(|line| line.split_once("deliver #"))
            .filter_map(|(_, rest)| rest.split(' ').next()?.parse().ok())
            .collect()
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn two_streams_reorder_against_each_other() {
        LocalSet::new()
            .run_until(async {
                let mut reordered = false;
                for seed in 0..10 {
                    let order = interleaving(seed).await;
                    assert_eq!(order.len(), 40);
                    // Sent 1, 2, 1, 2, ...: any other order is jitter at work.
                    reordered |= order.chunks(2).any(|pair| pair[0] > pair[1]);
                }
                assert!(reordered, "no seed reordered the two streams");
            })
            .await;
    }

    /// A little of everything: jitter, loss, a partition and a heal.
    async fn scenario_hash(seed: u64) -> String {
        let (net, log) = network(seed);
        net.set_default_link(LinkConfig {
            jitter: Duration::from_millis(3),
            loss: 0.1,
            ..LinkConfig::default()
        });
        let (mut a, mut b) = pair_of_streams(&net, 1).await;
        let echo = spawn_local(async move {
            let mut buf = [0; 1000];
            loop {
                match b.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => b.write_all(&buf[..n]).await.unwrap(),
                }
            }
        });
        for round in 0..30 {
            if round == 10 {
                net.partition("a", "b");
            }
            if round == 15 {
                net.heal("a", "b");
            }
            a.write_all(&pattern(100 + round * 37)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        a.shutdown().await.unwrap();
        let _ = read_for(&mut a, Duration::from_secs(5)).await;
        echo.await.unwrap();
        assert!(net.stats().chunks_lost > 0, "the loss rolls never fired");
        log.hash()
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn one_seed_gives_one_history_and_another_seed_another() {
        LocalSet::new()
            .run_until(async {
                let first = scenario_hash(7).await;
                let again = scenario_hash(7).await;
                let other = scenario_hash(8).await;
                assert_eq!(first, again);
                assert_ne!(first, other);
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn a_partition_holds_bytes_and_the_heal_delivers_them_in_order() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(2);
                let (mut a, mut b) = pair_of_streams(&net, 1).await;
                // In flight when the cut comes, and written during it.
                a.write_all(b"before ").await.unwrap();
                net.partition("a", "b");
                assert!(net.is_cut("a", "b") && net.is_cut("b", "a"));
                a.write_all(b"during").await.unwrap();
                assert!(read_for(&mut b, Duration::from_secs(5)).await.is_empty());
                net.heal("a", "b");
                a.shutdown().await.unwrap();
                let mut got = Vec::new();
                b.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"before during");
                // Healed in time: the stream still works after break_after.
                tokio::time::sleep(Duration::from_secs(20)).await;
                b.write_all(b"still here").await.unwrap();
                let mut reply = [0; 10];
                a.read_exact(&mut reply).await.unwrap();
                assert_eq!(&reply, b"still here");
                assert_eq!(net.stats().resets, 0);
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn a_partition_longer_than_break_after_resets_both_ends() {
        LocalSet::new()
            .run_until(async {
                let (net, log) = network(3);
                let (mut a, mut b) = pair_of_streams(&net, 1).await;
                let pending_read = spawn_local(async move {
                    let mut buf = [0; 1];
                    let result = b.read(&mut buf).await;
                    (result.map(|_| ()), b)
                });
                net.partition("a", "b");
                a.write_all(b"held").await.unwrap();
                tokio::time::sleep(Duration::from_secs(11)).await;
                let (result, mut b) = pending_read.await.unwrap();
                assert_eq!(kind(result), io::ErrorKind::ConnectionReset);
                assert_eq!(
                    kind(a.write_all(b"x").await),
                    io::ErrorKind::ConnectionReset
                );
                assert_eq!(
                    kind(a.read(&mut [0; 1]).await),
                    io::ErrorKind::ConnectionReset
                );
                assert_eq!(
                    kind(b.write_all(b"x").await),
                    io::ErrorKind::ConnectionReset
                );
                net.heal("a", "b");
                assert_eq!(
                    kind(b.read(&mut [0; 1]).await),
                    io::ErrorKind::ConnectionReset
                );
                assert_eq!(net.stats().resets, 1);
                let (lines, _) = log.lines();
                assert!(lines.iter().any(|line| line.contains("reset #1 a<->b")));
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn a_oneway_partition_stops_one_direction_only() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(4);
                let (mut a, mut b) = pair_of_streams(&net, 1).await;
                net.partition_oneway("a", "b");
                assert!(net.is_cut("a", "b") && !net.is_cut("b", "a"));
                a.write_all(b"lost for now").await.unwrap();
                b.write_all(b"flows").await.unwrap();
                let mut got = [0; 5];
                a.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"flows");
                assert!(read_for(&mut b, Duration::from_secs(2)).await.is_empty());
                net.heal_all();
                let mut held = [0; 12];
                b.read_exact(&mut held).await.unwrap();
                assert_eq!(&held, b"lost for now");
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn connect_is_refused_without_a_listener_and_times_out_across_a_cut() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(5);
                let refused = net.connect("a", "b", 9, Vec::new(), LONG).await;
                assert_eq!(kind(refused), io::ErrorKind::ConnectionRefused);
                let unknown = net.connect("a", "nowhere", 9, Vec::new(), LONG).await;
                assert_eq!(kind(unknown), io::ErrorKind::ConnectionRefused);

                let _listener = net.listen("b", 9, Vec::new()).unwrap();
                assert_eq!(
                    kind(net.listen("b", 9, Vec::new())),
                    io::ErrorKind::AddrInUse
                );
                net.partition_oneway("b", "a");
                let timeout = Duration::from_secs(3);
                let started = Instant::now();
                let error = net
                    .connect("a", "b", 9, Vec::new(), timeout)
                    .await
                    .unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::TimedOut);
                assert!(started.elapsed() >= timeout);
                let facts = error.get_ref().and_then(|e| e.downcast_ref::<NetError>());
                assert!(matches!(facts, Some(NetError::TimedOut { port: 9, .. })));
                net.heal("a", "b");
                assert!(net.connect("a", "b", 9, Vec::new(), LONG).await.is_ok());
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn dropping_a_listener_frees_its_port_and_a_stream_closes_with_eof() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(6);
                drop(net.listen("b", 1, Vec::new()).unwrap());
                let (mut a, mut b) = pair_of_streams(&net, 1).await;
                a.write_all(b"last words").await.unwrap();
                drop(a);
                let mut got = Vec::new();
                b.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"last words");
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn a_crashed_host_fails_at_once_and_its_peer_sees_a_reset() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(7);
                let listener = net.listen("b", 1, Vec::new()).unwrap();
                let (mut a, _) = net.connect("a", "b", 1, Vec::new(), LONG).await.unwrap();
                let (mut b, _) = listener.accept().await.unwrap();
                let peer_read = spawn_local(async move {
                    let mut buf = [0; 1];
                    a.read(&mut buf).await.map(|_| ())
                });
                tokio::task::yield_now().await;
                net.crash_host("b");
                assert_eq!(
                    kind(b.write_all(b"x").await),
                    io::ErrorKind::ConnectionReset
                );
                assert_eq!(
                    kind(b.read(&mut [0; 1]).await),
                    io::ErrorKind::ConnectionReset
                );
                assert_eq!(
                    kind(listener.accept().await),
                    io::ErrorKind::ConnectionAborted
                );
                assert_eq!(
                    kind(peer_read.await.unwrap()),
                    io::ErrorKind::ConnectionReset
                );
                // The host restarts: its port can be listened on again.
                let _again = net.listen("b", 1, Vec::new()).unwrap();
                drop(listener);
                assert!(net.connect("a", "b", 1, Vec::new(), LONG).await.is_ok());
                assert_eq!(net.stats().resets, 1);
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn a_reset_held_by_a_cut_survives_a_second_crash_and_data_for_a_dead_end_is_reset() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(9);
                let (mut a, _b) = pair_of_streams(&net, 1).await;
                // b crashes while cut off from a, comes back, crashes again.
                net.partition("a", "b");
                net.crash_host("b");
                net.crash_host("b");
                net.heal_all();
                a.write_all(b"are you there").await.unwrap();
                let read = tokio::time::timeout(LONG, a.read(&mut [0; 1])).await;
                let read = read.expect("a's read never learnt that b is gone");
                assert_eq!(kind(read), io::ErrorKind::ConnectionReset);
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn flow_control_blocks_a_writer_until_its_peer_reads() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(8);
                let (mut a, mut b) = pair_of_streams(&net, 1).await;
                let written = Rc::new(Cell::new(0usize));
                let writer = spawn_local({
                    let written = written.clone();
                    async move {
                        let piece = pattern(16 * 1024);
                        for _ in 0..64 {
                            a.write_all(&piece).await.unwrap();
                            written.set(written.get() + piece.len());
                        }
                    }
                });
                tokio::time::sleep(Duration::from_secs(5)).await;
                assert_eq!(written.get(), MAX_UNREAD);
                let mut buf = vec![0; 100 * 1024];
                b.read_exact(&mut buf).await.unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
                assert!(written.get() > MAX_UNREAD);
                assert!(written.get() <= MAX_UNREAD + buf.len());
                let mut rest = vec![0; 64 * 16 * 1024 - buf.len()];
                b.read_exact(&mut rest).await.unwrap();
                writer.await.unwrap();
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn a_listener_dropped_before_accepting_resets_its_dialler() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(9);
                let listener = net.listen("b", 1, Vec::new()).unwrap();
                let (mut a, _) = net.connect("a", "b", 1, Vec::new(), LONG).await.unwrap();
                drop(listener);
                let error = a.read(&mut [0; 1]).await.unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
                assert_eq!(net.stats().resets, 1);
            })
            .await;
    }

    #[tokio::test(start_paused = true, flavor = "current_thread")]
    async fn a_connect_under_way_when_its_host_crashes_fails() {
        LocalSet::new()
            .run_until(async {
                let (net, _log) = network(10);
                let _listener = net.listen("b", 1, Vec::new()).unwrap();
                let dial = spawn_local({
                    let net = net.clone();
                    async move { net.connect("a", "b", 1, Vec::new(), LONG).await }
                });
                tokio::task::yield_now().await;
                net.crash_host("a");
                let error = dial.await.unwrap().unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
                assert_eq!(net.stats().connections, 0);
            })
            .await;
    }
}
