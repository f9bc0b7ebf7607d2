//! The event log: everything that happened in a run, in order, with its
//! virtual time. Two runs of one seed must write the same log; its hash is
//! how tests compare them.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

use sha2::{Digest, Sha256};

/// The most lines kept as text (the hash covers every line regardless).
const KEPT_LINES: usize = 200_000;

/// A shared, append-only log of a run's events.
#[derive(Clone, Default)]
pub struct EventLog {
    inner: Rc<RefCell<Inner>>,
}

#[derive(Default)]
struct Inner {
    hash: Sha256,
    lines: Vec<String>,
    count: u64,
    dropped: u64,
    start: Option<tokio::time::Instant>,
    echo: bool,
}

impl EventLog {
    /// An empty log.
    pub fn new() -> EventLog {
        EventLog::default()
    }

    /// Prints each event to standard error as it is recorded (replays).
    pub fn echo(&self, on: bool) {
        self.inner.borrow_mut().echo = on;
    }

    /// Appends one event, stamped with the virtual time since the log's
    /// first event.
    pub fn record(&self, event: std::fmt::Arguments<'_>) {
        let now = tokio::time::Instant::now();
        let mut inner = self.inner.borrow_mut();
        let start = *inner.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        let mut line = String::with_capacity(64);
        let _ = write!(
            line,
            "{:>6}.{:06} {event}",
            elapsed.as_secs(),
            elapsed.subsec_micros()
        );
        inner.hash.update(line.as_bytes());
        inner.hash.update(b"\n");
        inner.count += 1;
        if inner.echo {
            eprintln!("{line}");
        }
        if inner.lines.len() < KEPT_LINES {
            inner.lines.push(line);
        } else {
            inner.dropped += 1;
        }
    }

    /// How many events were recorded.
    pub fn len(&self) -> u64 {
        self.inner.borrow().count
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The SHA-256 of every line recorded so far, as hex.
    pub fn hash(&self) -> String {
        let digest = self.inner.borrow().hash.clone().finalize();
        data_encoding::HEXLOWER.encode(&digest)
    }

    /// The last `n` lines kept.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let inner = self.inner.borrow();
        let from = inner.lines.len().saturating_sub(n);
        inner.lines[from..].to_vec()
    }

    /// Every line kept, and how many were not kept beyond them.
    pub fn lines(&self) -> (Vec<String>, u64) {
        let inner = self.inner.borrow();
        (inner.lines.clone(), inner.dropped)
    }
}

/// Records one event: `event!(log, "connect {} -> {}", a, b)`.
#[macro_export]
macro_rules! event {
    ($log:expr, $($arg:tt)*) => {
        $log.record(format_args!($($arg)*))
    };
}
