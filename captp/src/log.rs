//! Log hygiene: text a peer chose, shown so that it cannot forge log lines,
//! and warnings that a flood of peers cannot multiply.
//!
//! ```
//! use std::time::Duration;
//! use captp::log::{Untrusted, Verdict, WarnLimiter};
//!
//! // A peer's abort reason, as it would reach the log.
//! let reason = "bye\n2026-01-01T00:00:00Z  INFO fake line\u{1b}[31m";
//! assert_eq!(
//!     Untrusted(reason).to_string(),
//!     r"bye\n2026-01-01T00:00:00Z  INFO fake line\u{1b}[31m"
//! );
//!
//! // At most 2 warnings of one kind per minute; the rest are counted.
//! let mut limiter = WarnLimiter::new(2, Duration::from_secs(60));
//! let now = vat_env::now(); // the environment's clock, as the runtime passes it
//! for _ in 0..2 {
//!     assert!(matches!(limiter.note(now, || String::new()), Verdict::Log { .. }));
//! }
//! assert_eq!(limiter.note(now, || "from 10.0.0.1".into()), Verdict::Suppressed { first: true });
//! let summary = limiter.summary(now + Duration::from_secs(60)).unwrap();
//! assert_eq!((summary.count, summary.most_recent.as_str()), (1, "from 10.0.0.1"));
//! ```

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::rc::Rc;
use std::time::Duration;

use vat_env::Instant;

use tracing::Instrument;

/// How many characters of one piece of peer-supplied text are logged; the
/// rest is counted, not shown.
pub const MAX_UNTRUSTED_CHARS: usize = 512;

/// Text that may come from a peer (an abort reason, a remote exception, a
/// handshake error quoting the peer), displayed safe for a log: every
/// control character (newline, CR, ESC, …), the Unicode line and paragraph
/// separators and the bidirectional overrides are shown escaped (`\n`,
/// `\r`, `\t`, `\\`, `\u{1b}`), so the text can neither start a line of its
/// own nor drive a terminal; and only the first [`MAX_UNTRUSTED_CHARS`]
/// characters are shown, followed by `… (N more bytes)`.
///
/// It displays any [`Display`](fmt::Display) value, so an error whose
/// message carries a peer's words is wrapped whole:
/// `tracing::warn!(error = %Untrusted(&error), "…")`.
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<T>(pub T);

impl<T: fmt::Display> fmt::Display for Untrusted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut escaper = Escaper {
            out: f,
            shown: 0,
            hidden_bytes: 0,
        };
        write!(escaper, "{}", self.0)?;
        if escaper.hidden_bytes > 0 {
            write!(escaper.out, "… ({} more bytes)", escaper.hidden_bytes)?;
        }
        Ok(())
    }
}

/// Writes text escaped and cut at [`MAX_UNTRUSTED_CHARS`], counting what
/// it leaves out.
struct Escaper<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    shown: usize,
    hidden_bytes: usize,
}

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            if self.shown >= MAX_UNTRUSTED_CHARS {
                self.hidden_bytes += c.len_utf8();
                continue;
            }
            self.shown += 1;
            match c {
                '\n' => self.out.write_str("\\n")?,
                '\r' => self.out.write_str("\\r")?,
                '\t' => self.out.write_str("\\t")?,
                '\\' => self.out.write_str("\\\\")?,
                c if needs_escape(c) => write!(self.out, "\\u{{{:x}}}", u32::from(c))?,
                c => self.out.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Whether `c` could break a log line or change how a terminal shows it.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Line and paragraph separators: some viewers start a new line.
            '\u{2028}' | '\u{2029}'
            // Bidirectional marks, embeddings, overrides and isolates:
            // they reorder what follows on screen.
            | '\u{200e}' | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
        )
}

/// What to do with one warning, as decided by [`WarnLimiter::note`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Log it. If warnings of this kind were suppressed in an interval that
    /// has ended and not been summarised yet, `suppressed` says how many:
    /// log that summary first.
    Log {
        /// The suppressed warnings of the ended interval, if any.
        suppressed: Option<Suppressed>,
    },
    /// Do not log it: the interval's share is used up. It is counted for
    /// the summary. `first` is true for the first suppressed warning of the
    /// interval: the moment to arrange for [`WarnLimiter::summary`] to be
    /// called once the interval ends ([`WarnLimiter::interval_ends`]).
    Suppressed {
        /// Whether this is the interval's first suppressed warning.
        first: bool,
    },
}

/// The warnings of one kind that were not logged in one interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// How many were not logged.
    pub count: u64,
    /// The length of the interval they were counted in.
    pub interval: Duration,
    /// The detail the caller gave for the most recent one (already made
    /// safe for the log by the caller, e.g. with [`Untrusted`]).
    pub most_recent: String,
}

/// Decides which warnings of one kind reach the log: at most `burst` per
/// interval, the rest counted and summarised in one line once the interval
/// ends. A plain state machine: it reads no clock (callers pass `now`) and
/// logs nothing itself.
///
/// Keep one per kind of warning (failed handshakes, refused restores, …),
/// so that a flood of one kind does not hide the others.
#[derive(Debug, Clone)]
pub struct WarnLimiter {
    burst: u32,
    interval: Duration,
    window: Option<Window>,
}

/// The interval being counted.
#[derive(Debug, Clone)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
    most_recent: String,
}

impl WarnLimiter {
    /// A limiter letting `burst` warnings through per `interval`.
    pub fn new(burst: u32, interval: Duration) -> WarnLimiter {
        WarnLimiter {
            burst,
            interval,
            window: None,
        }
    }

    /// Notes one warning at `now` and says whether to log it. `detail` is
    /// called only when the warning is suppressed: it describes the
    /// warning for the summary (e.g. "from ADDR: REASON").
    pub fn note(&mut self, now: Instant, detail: impl FnOnce() -> String) -> Verdict {
        let suppressed = self.summary(now);
        let window = self.window.get_or_insert_with(|| Window {
            started: now,
            logged: 0,
            suppressed: 0,
            most_recent: String::new(),
        });
        if window.logged < self.burst {
            window.logged += 1;
            return Verdict::Log { suppressed };
        }
        window.suppressed += 1;
        window.most_recent = detail();
        Verdict::Suppressed {
            first: window.suppressed == 1,
        }
    }

    /// When the current interval ends, if one is being counted.
    pub fn interval_ends(&self) -> Option<Instant> {
        self.window.as_ref().map(|w| w.started + self.interval)
    }

    /// If the current interval has ended by `now`: closes it and returns
    /// what it suppressed (`None` if it suppressed nothing). `None` while
    /// it is still running.
    pub fn summary(&mut self, now: Instant) -> Option<Suppressed> {
        let ended = self.interval_ends().is_some_and(|end| now >= end);
        if !ended {
            return None;
        }
        let window = self.window.take()?;
        if window.suppressed == 0 {
            return None;
        }
        Some(Suppressed {
            count: window.suppressed,
            interval: self.interval,
            most_recent: window.most_recent,
        })
    }
}

/// How many warnings of one kind captp logs per [`DEFAULT_WARN_INTERVAL`]
/// before it only counts them.
pub const DEFAULT_WARN_BURST: u32 = 5;

/// The interval over which captp rate-limits warnings of one kind; at its
/// end one line says how many were not logged.
pub const DEFAULT_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// A [`WarnLimiter`] on the clock, for the warnings of one kind that a
/// peer can cause: logs the summary line itself once an interval with
/// suppressed warnings ends. Must be used inside a vat (it spawns a local
/// task to log the summary).
#[derive(Debug, Clone)]
pub(crate) struct Throttled {
    limiter: Rc<RefCell<WarnLimiter>>,
    /// The span the summaries are logged in: the one current at creation
    /// (a listener's, say), not that of whichever warning was suppressed.
    span: tracing::Span,
    /// What the warnings are, in the plural, for the summary ("failed TLS
    /// handshakes").
    kind: &'static str,
}

impl Throttled {
    /// Warnings of `kind`, [`DEFAULT_WARN_BURST`] per [`DEFAULT_WARN_INTERVAL`],
    /// summarised in the current span.
    pub(crate) fn new(kind: &'static str) -> Throttled {
        Throttled {
            span: tracing::Span::current(),
            limiter: Rc::new(RefCell::new(WarnLimiter::new(
                DEFAULT_WARN_BURST,
                DEFAULT_WARN_INTERVAL,
            ))),
            kind,
        }
    }

    /// Calls `log` (which logs the warning) unless this kind is over its
    /// share; `detail` describes a suppressed one for the summary, e.g.
    /// "from ADDR: REASON" (made safe with [`Untrusted`]).
    pub(crate) fn warn(&self, detail: impl FnOnce() -> String, log: impl FnOnce()) {
        let verdict = self.limiter.borrow_mut().note(vat_env::now(), detail);
        match verdict {
            Verdict::Log { suppressed } => {
                if let Some(suppressed) = suppressed {
                    self.log_summary(&suppressed);
                }
                log();
            }
            Verdict::Suppressed { first: true } => {
                let Some(end) = self.limiter.borrow().interval_ends() else {
                    return;
                };
                let this = self.clone();
                let span = self.span.clone();
                vat_env::spawn(
                    async move {
                        vat_env::sleep_until(end).await;
                        let summary = this.limiter.borrow_mut().summary(vat_env::now());
                        if let Some(suppressed) = summary {
                            this.log_summary(&suppressed);
                        }
                    }
                    .instrument(span),
                );
            }
            Verdict::Suppressed { first: false } => {}
        }
    }

    fn log_summary(&self, suppressed: &Suppressed) {
        let _entered = self.span.enter();
        tracing::warn!(
            suppressed = suppressed.count,
            "{} more {} in the last {:?} (most recent {})",
            suppressed.count,
            self.kind,
            suppressed.interval,
            suppressed.most_recent
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_printable_text_is_kept() {
        let shown = Untrusted("a\r\nb\x1b[31mc\td\u{7f}é\\").to_string();
        assert_eq!(shown, r"a\r\nb\u{1b}[31mc\td\u{7f}é\\");
    }

    #[test]
    fn bidirectional_overrides_and_line_separators_are_escaped() {
        let shown = Untrusted("x\u{202e}y\u{2028}z").to_string();
        assert_eq!(shown, r"x\u{202e}y\u{2028}z");
    }

    #[test]
    fn long_text_is_cut_and_the_rest_counted_in_bytes() {
        let text = format!("{}{}", "a".repeat(MAX_UNTRUSTED_CHARS), "éé");
        let shown = Untrusted(&text).to_string();
        assert_eq!(shown, format!("{}… (4 more bytes)", "a".repeat(512)));
    }

    #[test]
    fn an_error_is_escaped_through_its_display() {
        let error = capnp::Error::failed("line one\nline two".to_string());
        assert!(!Untrusted(&error).to_string().contains('\n'));
    }

    #[test]
    fn a_burst_is_logged_then_the_rest_counted_until_the_interval_ends() {
        let start = vat_env::now();
        let second = Duration::from_secs(1);
        let mut limiter = WarnLimiter::new(3, 10 * second);
        let verdicts: Vec<Verdict> = (0..6)
            .map(|i| limiter.note(start + i * second, || format!("#{i}")))
            .collect();
        let log = Verdict::Log { suppressed: None };
        assert_eq!(verdicts[..3], [log.clone(), log.clone(), log]);
        assert_eq!(verdicts[3], Verdict::Suppressed { first: true });
        assert_eq!(verdicts[5], Verdict::Suppressed { first: false });
        assert_eq!(limiter.interval_ends(), Some(start + 10 * second));
        assert_eq!(limiter.summary(start + 9 * second), None, "not yet");
        let summary = limiter.summary(start + 10 * second).unwrap();
        assert_eq!(summary.count, 3);
        assert_eq!(summary.most_recent, "#5");
        assert_eq!(limiter.summary(start + 11 * second), None, "once");
    }

    #[test]
    fn the_next_warning_after_an_unsummarised_interval_carries_its_count() {
        let start = vat_env::now();
        let mut limiter = WarnLimiter::new(1, Duration::from_secs(10));
        limiter.note(start, String::new);
        limiter.note(start, || "late".to_string());
        match limiter.note(start + Duration::from_secs(30), String::new) {
            Verdict::Log {
                suppressed: Some(summary),
            } => assert_eq!((summary.count, summary.most_recent.as_str()), (1, "late")),
            other => panic!("expected a log with a summary, got {other:?}"),
        }
    }

    #[test]
    fn an_interval_without_suppressions_has_no_summary() {
        let start = vat_env::now();
        let mut limiter = WarnLimiter::new(5, Duration::from_secs(10));
        limiter.note(start, String::new);
        assert_eq!(limiter.summary(start + Duration::from_secs(10)), None);
        assert_eq!(limiter.interval_ends(), None);
    }
}
