/// Bounds on what one peer may make a vat read and hold.
///
/// A message that breaks a bound ends its connection with an error naming the
/// bound; other connections are not affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message accepted, in bytes (rounded down to 8-byte words).
    /// Default: 16 MiB.
    pub max_message_bytes: usize,
    /// How deeply structs and lists may nest inside one message. Default: 64.
    pub max_nesting: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 * 1024 * 1024,
            max_nesting: 64,
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
