#![allow(clippy::unwrap_used, clippy::expect_used)] // test scaffolding: a failure here is a failed test
#![allow(dead_code)] // each test file uses a part

//! A peer that speaks Cap'n Proto RPC by hand, over plain TCP, and does
//! what capnp-rpc would not: floods, never reads, never finishes, lies.

use std::net::SocketAddr;
use std::time::Duration;

use capnp::message::{Builder, HeapAllocator, Reader, ReaderOptions};
use capnp::serialize::OwnedSegments;
use capnp::traits::HasTypeId;
use capnp_rpc::rpc_capnp::{exception, message};
use schema::demo_capnp::host;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The ordinal of `Host.echo`.
const ECHO: u16 = 6;
/// The ordinal of `Host.counter`.
const COUNTER: u16 = 0;

/// Where a hand-made call goes.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The capability the answer to this question will be (pipelining).
    Answer(u32),
    /// A capability the other side exported to us.
    Import(u32),
}

/// A hand-driven connection.
pub struct RawPeer {
    stream: TcpStream,
}

impl RawPeer {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> RawPeer {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawPeer { stream }
    }

    /// Connects to `addr` with a small receive buffer, so that replies it
    /// does not read back up into the sender quickly.
    pub async fn connect_with_small_buffer(addr: SocketAddr) -> RawPeer {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawPeer { stream }
    }

    /// Sends the messages (in one write).
    pub async fn send(&mut self, messages: &[Builder<HeapAllocator>]) -> std::io::Result<()> {
        self.stream.write_all(&wire(messages)).await
    }

    /// Sends raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Takes back a stream given up by [`RawPeer::into_stream`].
    pub fn from_stream(stream: TcpStream) -> RawPeer {
        RawPeer { stream }
    }

    /// Gives up the stream, e.g. to write from another task.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads one message; `None` at the end of the stream or on an error.
    pub async fn receive(&mut self) -> Option<Reader<OwnedSegments>> {
        let mut table = [0u8; 4];
        self.stream.read_exact(&mut table).await.ok()?;
        let count = u32::from_le_bytes(table) as usize + 1;
        assert!(count < 512, "a sane segment count: {count}");
        let mut lengths = vec![0u8; 4 * (count | 1)];
        self.stream.read_exact(&mut lengths).await.ok()?;
        let words: usize = lengths
            .chunks(4)
            .take(count)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
            .sum();
        let mut bytes = table.to_vec();
        bytes.extend_from_slice(&lengths);
        let header = bytes.len();
        bytes.resize(header + words * 8, 0);
        self.stream.read_exact(&mut bytes[header..]).await.ok()?;
        let mut slice = &bytes[..];
        Some(capnp::serialize::read_message(&mut slice, ReaderOptions::new()).unwrap())
    }

    /// Reads messages until an `Abort` (returns its reason) or the end of
    /// the stream (`None`), within a generous hang guard.
    pub async fn abort_reason(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(m) = self.receive().await {
                if let Ok(message::Abort(Ok(abort))) = body(&m).which() {
                    return Some(abort.get_reason().unwrap().to_string().unwrap());
                }
            }
            None
        })
        .await
        .expect("the connection ends (hang guard)")
    }

    /// Reads until the return for `question` and gives back its exception's
    /// type and reason, or `None` if it returned results.
    pub async fn exception_for(&mut self, question: u32) -> Option<(exception::Type, String)> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(120), self.receive())
                .await
                .expect("a reply (hang guard)")
                .expect("the connection is open");
            if let Ok(message::Return(Ok(ret))) = body(&m).which() {
                if ret.get_answer_id() != question {
                    continue;
                }
                return match ret.which().unwrap() {
                    capnp_rpc::rpc_capnp::return_::Exception(e) => {
                        let e = e.unwrap();
                        Some((
                            e.get_type().unwrap(),
                            e.get_reason().unwrap().to_string().unwrap(),
                        ))
                    }
                    _ => None,
                };
            }
        }
    }
}

/// The body of a received message.
pub fn body(m: &Reader<OwnedSegments>) -> message::Reader<'_> {
    m.get_root().unwrap()
}

/// The messages as the bytes on the wire.
pub fn wire(messages: &[Builder<HeapAllocator>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for m in messages {
        capnp::serialize::write_message(&mut bytes, m).unwrap();
    }
    bytes
}

/// `Bootstrap` as question `question`.
pub fn bootstrap(question: u32) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
    m.init_root::<message::Builder>()
        .init_bootstrap()
        .set_question_id(question);
    m
}

/// `Finish` of question `question`.
pub fn finish(question: u32) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
    let mut finish = m.init_root::<message::Builder>().init_finish();
    finish.set_question_id(question);
    finish.set_release_result_caps(false);
    m
}

/// `Host.echo(value)` as question `question` to `target`, carrying the
/// sender-hosted capabilities `caps` in its cap table (which the host
/// ignores).
pub fn echo(question: u32, target: Target, value: u64, caps: &[u32]) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
    {
        let mut call = m.init_root::<message::Builder>().init_call();
        call.set_question_id(question);
        call.set_interface_id(host::Client::TYPE_ID);
        call.set_method_id(ECHO);
        match target {
            Target::Answer(q) => call
                .reborrow()
                .init_target()
                .init_promised_answer()
                .set_question_id(q),
            Target::Import(id) => call.reborrow().init_target().set_imported_cap(id),
        }
        let mut params = call.init_params();
        params
            .reborrow()
            .get_content()
            .init_as::<host::echo_params::Builder>()
            .set_value(value);
        let mut table = params.init_cap_table(caps.len() as u32);
        for (i, &id) in caps.iter().enumerate() {
            table.reborrow().get(i as u32).set_sender_hosted(id);
        }
    }
    m
}

/// `Host.counter()` as question `question` to `target`.
pub fn counter(question: u32, target: Target) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
    {
        let mut call = m.init_root::<message::Builder>().init_call();
        call.set_question_id(question);
        call.set_interface_id(host::Client::TYPE_ID);
        call.set_method_id(COUNTER);
        match target {
            Target::Answer(q) => call
                .reborrow()
                .init_target()
                .init_promised_answer()
                .set_question_id(q),
            Target::Import(id) => call.reborrow().init_target().set_imported_cap(id),
        }
        call.init_params().get_content().clear();
    }
    m
}
