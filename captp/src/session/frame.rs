//! Cap'n Proto's stream framing: a segment table, then the segments.
//!
//! A message's body is read into a buffer that grows only as its bytes
//! arrive (64 KiB first, then doubling, by at most 1 MiB a step), never to
//! the size its table announces before those bytes are here. A message
//! larger than 64 KiB reserves the rest of its size from the vat's budget
//! for partial messages once its first 64 KiB are here
//! ([`budget`](super::budget)). Once a message's first bytes have arrived,
//! all of it must arrive within [`Limits::message_body_timeout`].

use std::time::Duration;

use capnp::message::{Builder, HeapAllocator, Reader, ReaderOptions, ReaderSegments};
use capnp::Word;
use futures::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::budget::{Partial, FREE_BYTES};
use crate::Limits;

/// More segments than any sane message has; the format allows 2^32.
const MAX_SEGMENTS: usize = 512;
/// A body's buffer first grows by this many words (64 KiB)...
const FIRST_STEP_WORDS: usize = FREE_BYTES / 8;
/// ...then doubles, by at most this many words (1 MiB) at a time, so that
/// it never holds much more than what has arrived.
const MAX_STEP_WORDS: usize = 1024 * 1024 / 8;

/// A failure of the stream itself: whatever the operating system said
/// (reset, timed out because the peer went silent, cut off mid-message), the
/// connection is gone. capnp would call a time-out "overloaded", which would
/// invite a caller to retry on a connection that is dead.
fn lost(error: std::io::Error) -> FrameError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        // rustls's wording (a missing close_notify) reads like an attack;
        // in practice the peer's vat stopped or its process died.
        return FrameError::Lost(capnp::Error::disconnected(
            "the peer closed the connection without saying goodbye (its vat stopped or its \
             process died)"
                .to_string(),
        ));
    }
    FrameError::Lost(capnp::Error::disconnected(format!(
        "the connection failed: {error}"
    )))
}

/// Why no message could be read: the connection must end.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    /// The stream failed or ended in the middle of a message.
    #[error(transparent)]
    Lost(capnp::Error),
    /// The segment table claims more segments than are accepted.
    #[error("a message claims {count} segments; at most {MAX_SEGMENTS} are accepted")]
    TooManySegments {
        /// The segments claimed.
        count: usize,
    },
    /// The segment table announces a message over `max_message_bytes`.
    #[error(
        "a message of {bytes} bytes is larger than the limit of {max} bytes (max_message_bytes)"
    )]
    TooLarge {
        /// The size announced.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// The segment table announces a message that alone needs more than
    /// the vat's whole budget for partial messages.
    #[error(
        "connection limit max_partial_bytes_per_vat exceeded: a message of {bytes} bytes needs \
         more than the vat's whole budget for partial messages ({max} bytes beyond each \
         message's first 64 KiB)"
    )]
    TooLargeForVat {
        /// The size announced.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// The message did not arrive in full within `message_body_timeout` of
    /// its first bytes.
    #[error(
        "connection limit message_body_timeout exceeded: {received} of a message's {announced} \
         bytes arrived within {timeout:?} of its first"
    )]
    BodyTimeout {
        /// The bytes of the message that had arrived.
        received: usize,
        /// The bytes of it known by then: its table's and, once the table
        /// was read, its segments'.
        announced: usize,
        /// The bound.
        timeout: Duration,
    },
}

impl FrameError {
    /// The [`Limits`] field the peer broke, for the bounds that are logged
    /// as such (the others end the session with capnp-rpc's own report).
    pub(super) fn bound(&self) -> Option<&'static str> {
        match self {
            FrameError::TooLargeForVat { .. } => Some("max_partial_bytes_per_vat"),
            FrameError::BodyTimeout { .. } => Some("message_body_timeout"),
            FrameError::Lost(_)
            | FrameError::TooManySegments { .. }
            | FrameError::TooLarge { .. } => None,
        }
    }
}

impl From<FrameError> for capnp::Error {
    fn from(error: FrameError) -> capnp::Error {
        match error {
            FrameError::Lost(error) => error,
            FrameError::TooManySegments { .. } | FrameError::TooLarge { .. } => {
                capnp::Error::failed(error.to_string())
            }
            FrameError::TooLargeForVat { .. } | FrameError::BodyTimeout { .. } => {
                capnp::Error::overloaded(error.to_string())
            }
        }
    }
}

/// A message's segments, in one buffer of whole (so aligned) words.
pub(super) struct FrameSegments {
    words: Vec<Word>,
    /// Where each segment ends, in words from the start of `words`.
    ends: Vec<usize>,
}

impl ReaderSegments for FrameSegments {
    fn get_segment(&self, index: u32) -> Option<&[u8]> {
        let index = usize::try_from(index).ok()?;
        let end = *self.ends.get(index)?;
        let start = match index.checked_sub(1) {
            Some(previous) => *self.ends.get(previous)?,
            None => 0,
        };
        self.words.get(start..end).map(Word::words_to_bytes)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// How much of the message being read has arrived, counted in the vat's
/// budget too.
struct Arrival {
    partial: Partial,
    received: usize,
    announced: usize,
}

impl Arrival {
    fn arrived(&mut self, bytes: usize) {
        self.received += bytes;
        self.partial.received(bytes);
    }
}

/// Reads one message and its size in bytes (its segments'), or `None` at
/// a clean end of stream.
///
/// The segment table is checked against `options`' traversal limit before
/// anything is allocated, and the body's buffer grows only as its bytes
/// arrive, within `limits`' budget for partial messages; the whole message
/// must arrive within `limits.message_body_timeout` of its first bytes.
pub(super) async fn read_message<R>(
    reader: &mut R,
    limits: &Limits,
    options: ReaderOptions,
) -> Result<Option<(Reader<FrameSegments>, usize)>, FrameError>
where
    R: AsyncBufRead + Unpin,
{
    let mut first = [0u8; 8];
    let read = reader.read(&mut first).await.map_err(lost)?;
    if read == 0 {
        return Ok(None);
    }
    let timeout = limits.message_body_timeout;
    // A bound too far to be a time is no bound.
    let deadline = vat_env::now().checked_add(timeout);
    let mut arrival = Arrival {
        partial: Partial::begin(),
        received: 0,
        announced: first.len(),
    };
    arrival.arrived(read);
    let rest = read_rest(reader, &mut first, &mut arrival, limits, options);
    let in_time = match deadline {
        Some(deadline) => vat_env::timeout_at(deadline, rest).await,
        None => Ok(rest.await),
    };
    match in_time {
        Ok(result) => result.map(|(segments, bytes)| Some((Reader::new(segments, options), bytes))),
        Err(_) => Err(FrameError::BodyTimeout {
            received: arrival.received,
            announced: arrival.announced,
            timeout,
        }),
    }
}

/// Reads the rest of a message whose first bytes are in `first`.
async fn read_rest<R>(
    reader: &mut R,
    first: &mut [u8; 8],
    arrival: &mut Arrival,
    limits: &Limits,
    options: ReaderOptions,
) -> Result<(FrameSegments, usize), FrameError>
where
    R: AsyncBufRead + Unpin,
{
    let read = arrival.received;
    reader.read_exact(&mut first[read..]).await.map_err(lost)?;
    arrival.arrived(first.len() - read);
    let count = word_half(first, 0) as usize + 1;
    if count > MAX_SEGMENTS || count == 0 {
        return Err(FrameError::TooManySegments { count });
    }
    let mut lengths = Vec::with_capacity(count);
    lengths.push(word_half(first, 1) as usize);
    if count > 1 {
        // The rest of the table, padded to a whole word.
        let mut rest = vec![0u8; (count & !1) * 4];
        arrival.announced += rest.len();
        reader.read_exact(&mut rest).await.map_err(lost)?;
        arrival.arrived(rest.len());
        lengths.extend((0..count - 1).map(|index| word_half(&rest, index) as usize));
    }
    let total_words = lengths
        .iter()
        .fold(0usize, |total, length| total.saturating_add(*length));
    if let Some(limit) = options.traversal_limit_in_words {
        if total_words > limit {
            return Err(FrameError::TooLarge {
                bytes: total_words * 8,
                max: limit * 8,
            });
        }
    }
    let bytes = total_words.saturating_mul(8);
    if bytes.saturating_sub(FREE_BYTES) > limits.max_partial_bytes_per_vat {
        return Err(FrameError::TooLargeForVat {
            bytes,
            max: limits.max_partial_bytes_per_vat,
        });
    }
    arrival.announced += bytes;
    let words = read_body(
        reader,
        total_words,
        arrival,
        limits.max_partial_bytes_per_vat,
    )
    .await?;
    let ends = lengths
        .iter()
        .scan(0, |end, length| {
            *end += length;
            Some(*end)
        })
        .collect();
    Ok((FrameSegments { words, ends }, bytes))
}

/// Reads `total_words` words of body into a buffer that grows only once
/// bytes beyond what it holds have arrived.
async fn read_body<R>(
    reader: &mut R,
    total_words: usize,
    arrival: &mut Arrival,
    max_partial_bytes: usize,
) -> Result<Vec<Word>, FrameError>
where
    R: AsyncBufRead + Unpin,
{
    let total = total_words * 8;
    let mut words: Vec<Word> = Vec::new();
    let mut filled = 0;
    while filled < total {
        if filled == words.len() * 8 {
            // Full: hold more only for bytes that are here.
            if reader.fill_buf().await.map_err(lost)?.is_empty() {
                return Err(cut_off());
            }
            if filled == FREE_BYTES {
                // Past its free bytes a message reserves the rest of itself.
                arrival
                    .partial
                    .reserve(total - FREE_BYTES, max_partial_bytes)
                    .await;
            }
            let more = next_step(words.len(), total_words);
            words.reserve_exact(more);
            words.resize(words.len() + more, capnp::word(0, 0, 0, 0, 0, 0, 0, 0));
            arrival.partial.buffered(more * 8);
        }
        let space = &mut Word::words_to_bytes_mut(&mut words)[filled..];
        let read = reader.read(space).await.map_err(lost)?;
        if read == 0 {
            return Err(cut_off());
        }
        filled += read;
        arrival.arrived(read);
    }
    Ok(words)
}

/// How many words a body's buffer that holds `held` of `total_words` grows
/// by next.
fn next_step(held: usize, total_words: usize) -> usize {
    held.clamp(FIRST_STEP_WORDS, MAX_STEP_WORDS)
        .min(total_words - held)
}

/// The stream ended in the middle of a message.
fn cut_off() -> FrameError {
    lost(std::io::ErrorKind::UnexpectedEof.into())
}

/// The `index`th little-endian `u32` of `bytes`.
fn word_half(bytes: &[u8], index: usize) -> u32 {
    let mut half = [0u8; 4];
    if let Some(source) = bytes.get(index * 4..index * 4 + 4) {
        half.copy_from_slice(source);
    }
    u32::from_le_bytes(half)
}

/// How many bytes `message` takes on the wire.
pub(super) fn wire_bytes(message: &Builder<HeapAllocator>) -> usize {
    let segments = message.get_segments_for_output();
    let table_words = segments.len() / 2 + 1;
    table_words * 8 + segments.iter().map(|s| s.len()).sum::<usize>()
}

/// Writes one message (without flushing).
pub(super) async fn write_message<W>(
    writer: &mut W,
    message: &Builder<HeapAllocator>,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let segments = message.get_segments_for_output();
    let table_words = segments.len() / 2 + 1;
    let mut table = Vec::with_capacity(table_words * 8);
    // A message has at least one segment, so this does not wrap.
    let count = u32::try_from(segments.len().saturating_sub(1)).unwrap_or(u32::MAX);
    table.extend_from_slice(&count.to_le_bytes());
    for segment in segments.iter() {
        let words = u32::try_from(segment.len() / 8).unwrap_or(u32::MAX);
        table.extend_from_slice(&words.to_le_bytes());
    }
    table.resize(table_words * 8, 0);
    writer.write_all(&table).await?;
    for segment in segments.iter() {
        writer.write_all(segment).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // unit tests: a panic is a failed test

    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::rc::Rc;
    use std::task::{Context, Poll};

    use super::*;
    use crate::session::budget::{partial_messages, PartialMessages};
    use futures::executor::block_on;
    use futures::io::{BufReader, Cursor};

    /// Runs `future` on a runtime with a clock, as a vat does.
    fn run<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// Polls `future` once.
    fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(futures::task::noop_waker_ref()))
    }

    /// A message whose root is `words` words of data (0, 1, 2, ...), in
    /// two segments: the first is too small for the data.
    fn message_of(words: u32) -> Builder<HeapAllocator> {
        let mut message = Builder::new(HeapAllocator::new().first_segment_words(2));
        let root: capnp::data::Builder = message.initn_root(words * 8);
        for (index, byte) in root.iter_mut().enumerate() {
            *byte = index as u8;
        }
        message
    }

    fn wire(message: &Builder<HeapAllocator>) -> Vec<u8> {
        let mut bytes = Vec::new();
        block_on(write_message(&mut bytes, message)).unwrap();
        bytes
    }

    /// A table announcing one segment of `words` words.
    fn table_of(words: u32) -> Vec<u8> {
        let mut table = 0u32.to_le_bytes().to_vec();
        table.extend_from_slice(&words.to_le_bytes());
        table
    }

    fn limits() -> Limits {
        Limits::default()
    }

    /// A stream that hands out what it was given, at most `most_per_read`
    /// bytes per read, and then waits (or ends, once told to).
    #[derive(Clone)]
    struct Trickle(Rc<RefCell<TrickleState>>);

    struct TrickleState {
        bytes: VecDeque<u8>,
        most_per_read: usize,
        ended: bool,
    }

    impl Trickle {
        fn new(bytes: &[u8], most_per_read: usize) -> Trickle {
            Trickle(Rc::new(RefCell::new(TrickleState {
                bytes: bytes.iter().copied().collect(),
                most_per_read,
                ended: false,
            })))
        }

        fn give(&self, bytes: &[u8]) {
            self.0.borrow_mut().bytes.extend(bytes);
        }

        fn end(&self) {
            self.0.borrow_mut().ended = true;
        }
    }

    impl futures::AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let mut state = self.0.borrow_mut();
            if state.bytes.is_empty() {
                // The tests poll again themselves, or a timer wakes them.
                return if state.ended {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                };
            }
            let count = buf.len().min(state.most_per_read).min(state.bytes.len());
            for (slot, byte) in buf.iter_mut().zip(state.bytes.drain(..count)) {
                *slot = byte;
            }
            Poll::Ready(Ok(count))
        }
    }

    #[test]
    fn a_written_message_reads_back_and_its_size_is_counted() {
        let message = message_of(100);
        assert!(message.get_segments_for_output().len() > 1);
        let bytes = wire(&message);
        assert_eq!(bytes.len(), wire_bytes(&message));
        let mut stream = Cursor::new(bytes);
        let (read, size) = run(read_message(&mut stream, &limits(), ReaderOptions::new()))
            .unwrap()
            .unwrap();
        assert_eq!(
            size,
            wire_bytes(&message) - 16,
            "all but the two-word table"
        );
        let data: capnp::data::Reader = read.get_root().unwrap();
        assert_eq!(data.len(), 800);
        assert_eq!(data[799], (799 % 256) as u8);
        assert!(
            run(read_message(&mut stream, &limits(), ReaderOptions::new()))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_message_split_into_many_small_reads_reads_back_right() {
        // 320 KiB of data: the buffer grows four times on the way.
        let message = message_of(40_000);
        let bytes = wire(&message);
        let mut stream = BufReader::with_capacity(5, Trickle::new(&bytes, 7));
        let (read, size) = run(read_message(&mut stream, &limits(), ReaderOptions::new()))
            .unwrap()
            .unwrap();
        assert_eq!(size, bytes.len() - 16);
        let data: capnp::data::Reader = read.get_root().unwrap();
        assert_eq!(data.len(), 320_000);
        assert!(data
            .iter()
            .enumerate()
            .all(|(index, byte)| *byte == index as u8));
        assert_eq!(read.into_segments().words.capacity() * 8, size);
        assert_eq!(
            partial_messages(),
            PartialMessages::default(),
            "a complete message is no longer partial"
        );
    }

    #[test]
    fn a_header_alone_holds_no_buffer_and_a_few_bytes_hold_at_most_one_step() {
        // A table announcing 16 MiB, the default limit.
        let stream = Trickle::new(&table_of(2 * 1024 * 1024), 8);
        let mut reader = BufReader::new(stream.clone());
        let options = limits().reader_options();
        let limits = limits();
        let mut reading = pin!(read_message(&mut reader, &limits, options));
        run(async {
            assert!(poll_once(reading.as_mut()).is_pending());
            assert_eq!(
                partial_messages(),
                PartialMessages {
                    messages: 1,
                    received_bytes: 8,
                    ..PartialMessages::default()
                }
            );
            stream.give(&[1; 4096]);
            assert!(poll_once(reading.as_mut()).is_pending());
            assert_eq!(
                partial_messages(),
                PartialMessages {
                    messages: 1,
                    received_bytes: 8 + 4096,
                    buffered_bytes: FREE_BYTES,
                    ..PartialMessages::default()
                }
            );
        });
        stream.end();
        let error = run(reading).map(|_| ()).unwrap_err();
        assert!(matches!(error, FrameError::Lost(_)), "{error}");
        assert_eq!(partial_messages(), PartialMessages::default());
    }

    #[test]
    fn a_message_that_does_not_arrive_in_time_fails_naming_message_body_timeout() {
        let mut bytes = table_of(1000);
        bytes.extend_from_slice(&[0; 100]);
        let mut reader = BufReader::new(Trickle::new(&bytes, 1000));
        let limits = Limits {
            message_body_timeout: Duration::from_millis(50),
            ..Limits::default()
        };
        let error = run(read_message(&mut reader, &limits, limits.reader_options()))
            .map(|_| ())
            .unwrap_err();
        let FrameError::BodyTimeout {
            received,
            announced,
            timeout,
        } = error
        else {
            panic!("{error}");
        };
        assert_eq!(
            (received, announced, timeout),
            (108, 8008, Duration::from_millis(50))
        );
        assert_eq!(error.bound(), Some("message_body_timeout"));
        assert!(
            error.to_string().contains("message_body_timeout"),
            "{error}"
        );
        assert_eq!(partial_messages(), PartialMessages::default());
    }

    #[test]
    fn past_the_vat_budget_a_big_message_waits_and_a_small_one_does_not() {
        let limits = Limits {
            max_partial_bytes_per_vat: FREE_BYTES,
            ..Limits::default()
        };
        let options = limits.reader_options();
        // 100 KiB arrived of a message of 128 KiB: past its free 64 KiB it
        // reserves the other 64 KiB, all there is, and reads on.
        let mut first_bytes = table_of(2 * FREE_BYTES as u32 / 8);
        first_bytes.extend_from_slice(&[1; 100 * 1024]);
        let first = Trickle::new(&first_bytes, usize::MAX);
        let mut first_reader = BufReader::new(first.clone());
        let mut first_reading = pin!(read_message(&mut first_reader, &limits, options));
        // Another message of the same size, all of it here, waits for room.
        let mut second_bytes = table_of(2 * FREE_BYTES as u32 / 8);
        second_bytes.extend_from_slice(&[2; 2 * FREE_BYTES]);
        let mut second_reader = BufReader::new(Trickle::new(&second_bytes, usize::MAX));
        let mut second_reading = pin!(read_message(&mut second_reader, &limits, options));
        run(async {
            assert!(poll_once(first_reading.as_mut()).is_pending());
            assert!(poll_once(second_reading.as_mut()).is_pending());
            let counts = partial_messages();
            assert_eq!(counts.messages, 2);
            assert_eq!(counts.waiting, 1);
            assert_eq!(counts.reserved_bytes, FREE_BYTES);
            assert_eq!(
                counts.received_bytes,
                8 + 100 * 1024 + 8 + FREE_BYTES,
                "the waiting message read only its free bytes"
            );

            // A small message is read in full meanwhile.
            let small = wire(&message_of(100));
            let mut small_reader = BufReader::new(Cursor::new(small));
            let small = read_message(&mut small_reader, &limits, options).await;
            assert!(small.unwrap().is_some());

            // Once the first is abandoned, the waiting one goes on.
            first.end();
            assert!(matches!(
                poll_once(first_reading.as_mut()),
                Poll::Ready(Err(FrameError::Lost(_)))
            ));
            let Poll::Ready(second) = poll_once(second_reading.as_mut()) else {
                panic!("the second message was not read once there was room");
            };
            let (second, _) = second.unwrap().unwrap();
            assert_eq!(second.into_segments().words.len() * 8, 2 * FREE_BYTES);
        });
        assert_eq!(partial_messages(), PartialMessages::default());
    }

    #[test]
    fn a_message_larger_than_the_vat_budget_is_refused_before_it_is_read() {
        let limits = Limits {
            max_partial_bytes_per_vat: 1024 * 1024,
            ..Limits::default()
        };
        let bytes = FREE_BYTES + 1024 * 1024 + 8;
        let mut reader = Cursor::new(table_of(bytes as u32 / 8));
        let error = run(read_message(&mut reader, &limits, limits.reader_options()))
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(error, FrameError::TooLargeForVat { bytes: b, max: 1048576 } if b == bytes),
            "{error}"
        );
        assert_eq!(error.bound(), Some("max_partial_bytes_per_vat"));
    }

    #[test]
    fn a_message_over_the_limit_is_refused_before_it_is_read() {
        let mut bytes = wire(&message_of(1000));
        bytes.truncate(16); // only the table: the body is never needed
        let mut options = ReaderOptions::new();
        options.traversal_limit_in_words(Some(100));
        let error = run(read_message(&mut Cursor::new(bytes), &limits(), options))
            .map(|_| ())
            .unwrap_err();
        assert!(error.to_string().contains("max_message_bytes"), "{error}");
    }

    #[test]
    fn a_table_claiming_too_many_segments_is_refused() {
        let mut bytes = vec![0xff, 0xff, 0, 0, 1, 0, 0, 0];
        bytes.resize(64, 0);
        let error = run(read_message(
            &mut Cursor::new(bytes),
            &limits(),
            ReaderOptions::new(),
        ))
        .map(|_| ())
        .unwrap_err();
        assert!(error.to_string().contains("segments"), "{error}");
    }
}
