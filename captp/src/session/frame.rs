//! Cap'n Proto's stream framing: a segment table, then the segments.

use capnp::message::{Builder, HeapAllocator, Reader, ReaderOptions};
use capnp::serialize::{OwnedSegments, SegmentLengthsBuilder};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// More segments than any sane message has; the format allows 2^32.
const MAX_SEGMENTS: usize = 512;

/// A failure of the stream itself: whatever the operating system said
/// (reset, timed out because the peer went silent, cut off mid-message), the
/// connection is gone. capnp would call a time-out "overloaded", which would
/// invite a caller to retry on a connection that is dead.
fn lost(error: std::io::Error) -> capnp::Error {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        // rustls's wording (a missing close_notify) reads like an attack;
        // in practice the peer's vat stopped or its process died.
        return capnp::Error::disconnected(
            "the peer closed the connection without saying goodbye (its vat stopped or its \
             process died)"
                .to_string(),
        );
    }
    capnp::Error::disconnected(format!("the connection failed: {error}"))
}

/// Reads one message and its size in bytes, or `None` at a clean end of
/// stream.
///
/// The segment table is checked against `options`' traversal limit before
/// anything is allocated, so a peer cannot make the vat allocate more than
/// one largest message by lying about sizes.
pub(super) async fn read_message<R>(
    reader: &mut R,
    options: ReaderOptions,
) -> capnp::Result<Option<(Reader<OwnedSegments>, usize)>>
where
    R: AsyncRead + Unpin,
{
    let mut first = [0u8; 8];
    let read = reader.read(&mut first).await.map_err(lost)?;
    if read == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut first[read..]).await.map_err(lost)?;
    let count = word_half(&first, 0) as usize + 1;
    if count > MAX_SEGMENTS || count == 0 {
        return Err(capnp::Error::failed(format!(
            "a message claims {count} segments; at most {MAX_SEGMENTS} are accepted"
        )));
    }
    let mut lengths = SegmentLengthsBuilder::with_capacity(count);
    lengths.try_push_segment(word_half(&first, 1) as usize)?;
    if count > 1 {
        // The rest of the table, padded to a whole word.
        let mut rest = vec![0u8; (count & !1) * 4];
        reader.read_exact(&mut rest).await.map_err(lost)?;
        for index in 0..count - 1 {
            lengths.try_push_segment(word_half(&rest, index) as usize)?;
        }
    }
    if let Some(limit) = options.traversal_limit_in_words {
        if lengths.total_words() > limit {
            return Err(capnp::Error::failed(format!(
                "a message of {} bytes is larger than the limit of {} bytes (max_message_bytes)",
                lengths.total_words() * 8,
                limit * 8
            )));
        }
    }
    let bytes = lengths.total_words() * 8;
    let mut segments = lengths.into_owned_segments();
    reader.read_exact(&mut segments[..]).await.map_err(lost)?;
    Ok(Some((Reader::new(segments, options), bytes)))
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

    use super::*;
    use futures::executor::block_on;

    fn message_of(words: u32) -> Builder<HeapAllocator> {
        let mut message = Builder::new(HeapAllocator::new().first_segment_words(2));
        let root: capnp::data::Builder = message.initn_root(words * 8);
        root[0] = 7;
        message
    }

    #[test]
    fn a_written_message_reads_back_and_its_size_is_counted() {
        // Two segments: the first is too small for the data.
        let message = message_of(100);
        assert!(message.get_segments_for_output().len() > 1);
        let mut bytes = Vec::new();
        block_on(write_message(&mut bytes, &message)).unwrap();
        assert_eq!(bytes.len(), wire_bytes(&message));
        let mut stream = futures::io::Cursor::new(bytes);
        let (read, size) = block_on(read_message(&mut stream, ReaderOptions::new()))
            .unwrap()
            .unwrap();
        assert_eq!(
            size,
            wire_bytes(&message) - 16,
            "all but the two-word table"
        );
        let data: capnp::data::Reader = read.get_root().unwrap();
        assert_eq!(data.len(), 800);
        assert_eq!(data[0], 7);
        assert!(block_on(read_message(&mut stream, ReaderOptions::new()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_message_over_the_limit_is_refused_before_it_is_read() {
        let mut bytes = Vec::new();
        block_on(write_message(&mut bytes, &message_of(1000))).unwrap();
        bytes.truncate(16); // only the table: the body is never needed
        let mut options = ReaderOptions::new();
        options.traversal_limit_in_words(Some(100));
        let error = block_on(read_message(&mut futures::io::Cursor::new(bytes), options))
            .map(|_| ())
            .unwrap_err();
        assert!(error.to_string().contains("max_message_bytes"), "{error}");
    }

    #[test]
    fn a_table_claiming_too_many_segments_is_refused() {
        let mut bytes = vec![0xff, 0xff, 0, 0, 1, 0, 0, 0];
        bytes.resize(64, 0);
        let error = block_on(read_message(
            &mut futures::io::Cursor::new(bytes),
            ReaderOptions::new(),
        ))
        .map(|_| ())
        .unwrap_err();
        assert!(error.to_string().contains("segments"), "{error}");
    }
}
