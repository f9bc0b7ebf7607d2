use tokio::io::DuplexStream;

/// One end of an in-memory byte stream between two vats of one process.
///
/// `PipeEnd` is `Send`: make a pair with [`pipe`] on any thread, move each end
/// into its vat and open a [`Connection`](crate::Connection) on it there.
pub type PipeEnd = DuplexStream;

/// Bytes buffered in each direction of a pipe before the writer waits.
const PIPE_BUFFER_BYTES: usize = 256 * 1024;

/// Makes an in-memory, full-duplex byte stream for joining two vats of one
/// process. The bytes are the same Cap'n Proto messages a socket would carry.
pub fn pipe() -> (PipeEnd, PipeEnd) {
    tokio::io::duplex(PIPE_BUFFER_BYTES)
}
