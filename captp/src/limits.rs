use std::time::Duration;

/// Bounds on what one peer may make a vat read, hold and queue.
///
/// Every connection keeps its own counts, so a peer that breaks a bound
/// affects only its own connection; other connections are served as before.
/// The one count shared by a vat's connections is the room reserved for
/// messages still arriving (`max_partial_bytes_per_vat`), which delays
/// only messages over 64 KiB.
/// A peer that breaks a bound either gets a clear error for the call that
/// broke it (calls in flight: an `overloaded` exception, and it may retry),
/// or loses its connection with an abort message naming the bound and a
/// warning in the log naming the bound, the peer and the numbers.
///
/// The defaults suit a vat serving many peers at once: generous for any
/// well-behaved peer, small enough that a thousand misbehaving peers cost a
/// bounded, known amount of memory. Change a field on
/// [`Limits::default()`] to set it:
///
/// ```
/// let mut limits = captp::Limits::default();
/// limits.max_calls_in_flight = 64;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message accepted, in bytes (rounded down to 8-byte words).
    /// A larger message ends the connection. Default: 16 MiB, room for any
    /// reasonable payload while bounding what one read may allocate.
    pub max_message_bytes: usize,
    /// How deeply structs and lists may nest inside one message; deeper
    /// nesting fails the message's decoding. Default: 64, deeper than any
    /// schema in use while keeping recursive readers' stacks small.
    pub max_nesting: i32,
    /// How long a message may take to arrive once its first bytes have: a
    /// peer that sends the start of a message and not the rest within this
    /// time loses its connection. Default: 60 s, in which a largest message
    /// (16 MiB) needs about 2.2 Mbit/s; a link slower than that needs a
    /// longer bound or smaller messages. A small message arrives whole
    /// within one round trip, so only a stalled or hostile peer meets it.
    pub message_body_timeout: Duration,
    /// How many bytes all the connections of one vat together may reserve
    /// for messages that have begun to arrive and are not complete. A
    /// message's first 64 KiB never count, so small messages (nearly all)
    /// never wait. A larger message, once its first 64 KiB have arrived,
    /// reserves the rest of its announced size before it reads on; while
    /// the vat's reservations leave too little room it is not read (the
    /// peer's sending backs up) and waits in line behind earlier ones,
    /// while its `message_body_timeout` keeps running. A message holding
    /// its reservation needs nothing more to complete, so large messages
    /// cannot deadlock one another. Its buffer still grows only as its
    /// bytes arrive. A message needing more than this on its own ends its
    /// connection. A vat is one thread, so the reservations are that
    /// thread's; each connection applies its own `Limits`' bound to them
    /// ([`partial_messages`](crate::partial_messages) reports them).
    /// Default: 64 MiB, four largest messages arriving at once.
    pub max_partial_bytes_per_vat: usize,
    /// How many calls from the peer may be in flight at once: received and
    /// not yet answered. A call beyond it is not delivered; it is answered at
    /// once with an `overloaded` exception (and so is any call pipelined on
    /// it), which the peer may retry. Only that call fails: calls the peer
    /// sends once some have been answered are delivered again. Default:
    /// 16384. Vats pipeline thousands of eventual sends on one reference
    /// without waiting (the E-order tests send 10,000, and a vat that
    /// forwards them holds them all in flight at once), so the bound sits
    /// above that; `max_bytes_in_flight` bounds their memory.
    pub max_calls_in_flight: usize,
    /// How many bytes the peer's calls in flight may hold in the vat (each
    /// call's message stays in memory until it is answered). A call that
    /// would take the total past it is refused with `overloaded`, like a
    /// call beyond `max_calls_in_flight`; a call alone is never refused for
    /// its size (`max_message_bytes` bounds it). Default: 64 MiB, so that
    /// `max_calls_in_flight` large calls cannot pin gigabytes.
    pub max_bytes_in_flight: usize,
    /// How many answers the vat may hold for the peer: calls (and bootstrap
    /// requests) it made whose entries stay until both the answer was sent
    /// and the peer said it is finished with it. A peer that never finishes
    /// its questions grows this table; past the bound its connection ends.
    /// Default: 65536 entries (a few MiB at most), well above
    /// `max_calls_in_flight` so that only a peer that leaks its questions
    /// reaches it.
    pub max_answers: usize,
    /// How many questions the vat may have asked the peer and not yet had
    /// answered. A peer that leaves the vat's calls unanswered grows this
    /// table; past the bound its connection ends. Default: 65536 entries.
    pub max_questions: usize,
    /// How many distinct capabilities of the peer the vat may hold (the
    /// import table). A peer that keeps sending new capabilities grows it;
    /// past the bound its connection ends. Default: 65536 entries.
    pub max_imports: usize,
    /// How many distinct capabilities of this vat the peer may hold (the
    /// export table). A peer that never releases what it was given grows
    /// it; past the bound its connection ends. Default: 65536 entries.
    pub max_exports: usize,
    /// How many bytes of messages to the peer may wait in the vat to be
    /// written. While more are queued (the peer is not reading its replies)
    /// the vat stops reading the peer's further messages, so a peer cannot
    /// make the vat queue without bound. Default: 16 MiB (one largest
    /// message), which keeps a fast peer's pipe full.
    pub max_queued_bytes: usize,
    /// How long the vat waits for the peer to take any bytes while messages
    /// to it are queued. A peer that reads nothing for this long (including
    /// while its connection is closing) is disconnected. Default: 30 s, long
    /// enough for a slow link or a paused process, short enough to free a
    /// stuck peer's buffers promptly.
    pub write_stall_timeout: Duration,
    /// How soon a peer that has gone silent (its machine died, the network
    /// between was cut) is noticed: TCP keep-alive probes an idle
    /// connection, and data left unacknowledged this long ends it, so its
    /// calls in flight fail with a disconnected error instead of hanging.
    /// Default: 30 s, long enough to ride out a brief outage, short enough
    /// that a caller learns of a dead peer in well under a minute.
    pub dead_peer_timeout: Duration,
    /// How long a connection between two vats may stay idle before the
    /// vat that manages it closes it: idle means no message passed and
    /// nothing but the bootstrap capabilities is outstanding either way
    /// (see [`Connection::idle_for`](crate::Connection::idle_for)). A vat
    /// that needs the peer again dials again. captp itself closes nothing;
    /// the vat's connection manager (`vat::sturdy`) applies it. Default:
    /// 5 minutes, so that a burst of work reuses one connection and a
    /// vat that talked to a thousand peers once does not keep a thousand
    /// sockets.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 * 1024 * 1024,
            max_nesting: 64,
            message_body_timeout: Duration::from_secs(60),
            max_partial_bytes_per_vat: 64 * 1024 * 1024,
            max_calls_in_flight: 16 * 1024,
            max_bytes_in_flight: 64 * 1024 * 1024,
            max_answers: 64 * 1024,
            max_questions: 64 * 1024,
            max_imports: 64 * 1024,
            max_exports: 64 * 1024,
            max_queued_bytes: 16 * 1024 * 1024,
            write_stall_timeout: Duration::from_secs(30),
            dead_peer_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(5 * 60),
        }
    }
}

impl Limits {
    pub(crate) fn reader_options(&self) -> capnp::message::ReaderOptions {
        let mut options = capnp::message::ReaderOptions::new();
        options
            .traversal_limit_in_words(Some(self.max_message_bytes / 8))
            .nesting_limit(self.max_nesting);
        options
    }
}
