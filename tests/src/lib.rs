//! Helpers shared by the cross-crate acceptance tests in `tests/tests/`.
//!
//! The tests start many vats, join them over in-memory pipes, loopback TCP,
//! a delaying TCP proxy or a second process, and check what the runtime
//! promises: E-order, pipelining, crash isolation, what stopping a vat does
//! to its peers, and that stopped vats leave nothing behind.

// These helpers are part of the tests: a failure in them is a failed test, so
// they panic with a message like an assertion does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod netns;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use schema::demo_capnp::{callback, chain, host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use vat::net::{Connection, Limits, PipeEnd, Side};
use vat::VatHandle;

/// How one vat reaches another: the two transports the runtime offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// An in-memory pipe between two vats of this process.
    Pipe,
    /// Plain TCP on the loopback interface.
    Tcp,
}

/// Where a served host can be reached: one end of a pipe, or an address.
#[derive(Debug)]
pub enum Route {
    /// The dialler's end of a pipe whose other end the serving vat holds.
    Pipe(PipeEnd),
    /// The address of a listener in the serving vat.
    Tcp(SocketAddr),
}

impl Route {
    /// Opens an RPC session along this route, offering `bootstrap` (if any)
    /// to the other side. Must run inside a vat.
    pub async fn connect(self, bootstrap: Option<capnp::capability::Client>) -> Connection {
        match self {
            Route::Pipe(end) => {
                Connection::open(end, Side::Dialer, bootstrap, Limits::default(), "pipe")
            }
            Route::Tcp(addr) => vat::net::dial(addr, bootstrap, Limits::default())
                .await
                .expect("dial the serving vat over loopback TCP"),
        }
    }
}

/// Makes `vat` serve a fresh [`vat::demo::Host`] named `name` over
/// `transport`, and returns the route other vats use to reach it.
///
/// Over TCP the vat keeps accepting connections until it stops; over a pipe
/// it serves the one session on the returned pipe end.
pub fn serve_host(vat: &VatHandle, name: &str, transport: Transport) -> Route {
    let name = name.to_owned();
    match transport {
        Transport::Pipe => {
            let (ours, theirs) = vat::net::pipe();
            vat.run(move || {
                let host: host::Client = vat::export(vat::demo::Host::crashable(&name));
                // The session lives as long as the vat or the pipe; the handle is not needed.
                let _session = Connection::open(
                    theirs,
                    Side::Acceptor,
                    Some(host.client),
                    Limits::default(),
                    "pipe",
                );
            })
            .wait()
            .expect("the serving vat runs");
            Route::Pipe(ours)
        }
        Transport::Tcp => {
            let addr = vat
                .run_async(move || async move {
                    let host: host::Client = vat::export(vat::demo::Host::crashable(&name));
                    let listener = vat::net::Listener::bind(loopback())
                        .await
                        .expect("bind a loopback port");
                    let addr = listener.local_addr();
                    listener.serve(host.client, Limits::default());
                    addr
                })
                .wait()
                .expect("the serving vat runs");
            Route::Tcp(addr)
        }
    }
}

/// `host.chain()`, then `next()` `nexts` times, then `depth()`, every call
/// sent before any answer; returns the depth reached (`nexts`).
pub async fn pipelined_chain(host: &host::Client, nexts: u32) -> capnp::Result<u32> {
    let mut link: chain::Client = host.chain_request().send().pipeline.get_link();
    for _ in 0..nexts {
        link = link.next_request().send().pipeline.get_link();
    }
    Ok(link
        .depth_request()
        .send()
        .promise
        .await?
        .get()?
        .get_depth())
}

/// `127.0.0.1:0`: a free loopback port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The text of a Cap'n Proto text field, as an owned string.
pub fn text(field: capnp::Result<capnp::text::Reader<'_>>) -> capnp::Result<String> {
    Ok(field?.to_str()?.to_owned())
}

/// A callback that tells the test it was called and then never answers: it
/// keeps a call genuinely pending in whatever vat is waiting for it.
#[derive(Debug)]
pub struct Silent {
    called: mpsc::Sender<()>,
}

impl Silent {
    /// A silent callback, and the receiver that hears of each call to it.
    pub fn new() -> (Silent, mpsc::Receiver<()>) {
        let (called, heard) = mpsc::channel();
        (Silent { called }, heard)
    }
}

impl callback::Server for Silent {
    async fn call(
        self: Rc<Self>,
        _: callback::CallParams,
        _: callback::CallResults,
    ) -> Result<(), capnp::Error> {
        // The test may have stopped listening; the call stays pending anyway.
        let _ = self.called.send(());
        futures::future::pending::<()>().await;
        Ok(())
    }
}

/// How many threads this process has now (entries of `/proc/self/task`).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// Polls `condition` every few milliseconds until it holds or `patience`
/// runs out; returns whether it held. For liveness only: the caller asserts
/// on the outcome.
pub fn eventually(patience: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP proxy on loopback that delays every chunk of bytes by a fixed
/// one-way latency, in both directions.
///
/// Each chunk is released at its arrival time plus the delay, so delays do
/// not add up along a stream and the byte order is kept: the link behaves
/// like a network path with that latency and ample bandwidth. The proxy runs
/// on a thread of its own; dropping it closes every proxied connection.
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DelayProxy {
    /// Starts a proxy that forwards each connection it accepts to `target`,
    /// delaying each direction by `one_way`.
    pub fn start(target: SocketAddr, one_way: Duration) -> DelayProxy {
        let socket = std::net::TcpListener::bind(loopback()).expect("bind the proxy's port");
        socket
            .set_nonblocking(true)
            .expect("make the proxy's socket non-blocking");
        let addr = socket.local_addr().expect("the proxy's address");
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("delay-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(socket).expect("adopt the proxy socket");
                    tokio::select! {
                        _ = stop => {}
                        _ = accept_and_forward(listener, target, one_way) => {}
                    }
                });
                // Dropping the runtime drops the forwarding tasks and their sockets.
            })
            .expect("start the proxy's thread");
        DelayProxy {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The address to dial instead of the target's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_and_forward(listener: TcpListener, target: SocketAddr, one_way: Duration) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            return;
        };
        let outbound = TcpStream::connect(target)
            .await
            .expect("the proxy reaches its target");
        // The delay must be the proxy's only one: no Nagle batching.
        inbound.set_nodelay(true).expect("nodelay");
        outbound.set_nodelay(true).expect("nodelay");
        let (in_read, in_write) = inbound.into_split();
        let (out_read, out_write) = outbound.into_split();
        tokio::spawn(forward(in_read, out_write, one_way));
        tokio::spawn(forward(out_read, in_write, one_way));
    }
}

/// Copies `from` to `to`, releasing each chunk `delay` after it was read.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let release = tokio::time::Instant::now() + delay;
                    if chunks.send((release, buffer[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping `chunks` lets the writer finish the chunks in flight, then close.
    };
    let writer = async move {
        while let Some((release, chunk)) = due.recv().await {
            tokio::time::sleep_until(release).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A vat program running in a child process (`demo_peer`, `sturdy_peer`),
/// killed when this guard is dropped so that no process outlives its test.
#[derive(Debug)]
pub struct PeerProcess {
    child: Child,
    // Held so that the peer sees its stdin close only when asked to finish.
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    // What the peer prints on its standard output, line by line, read by a
    // thread of its own.
    lines: mpsc::Receiver<std::io::Result<String>>,
}

impl PeerProcess {
    /// Starts `program` and waits (up to 30 s) for the line
    /// `listening ADDR` on its standard output.
    pub fn spawn(program: &Path) -> PeerProcess {
        PeerProcess::spawn_command(Command::new(program))
    }

    /// [`PeerProcess::spawn`] for a prepared command (arguments, a network
    /// namespace: see [`netns`]).
    pub fn spawn_command(mut command: Command) -> PeerProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the peer process");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the peer's stdout");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if line_tx.send(line).is_err() {
                    return;
                }
            }
        });
        // Construct the guard first: if the peer never answers, dropping the
        // guard while panicking below still kills it.
        let mut peer = PeerProcess {
            child,
            stdin,
            addr: loopback(),
            lines: line_rx,
        };
        let line = peer
            .next_line(Duration::from_secs(30))
            .expect("the peer prints its address within 30 s");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the peer printed {line:?}, not `listening ADDR`"));
        peer.addr = addr.parse().expect("the peer's address parses");
        peer
    }

    /// The address the peer's vat listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next line the peer prints on its standard output after the
    /// `listening` line, waiting up to `patience`; `None` if none came in
    /// time or the peer closed its output.
    pub fn next_line(&self, patience: Duration) -> Option<String> {
        match self.lines.recv_timeout(patience) {
            Ok(line) => Some(line.expect("read the peer's stdout")),
            Err(_) => None,
        }
    }

    /// Closes the peer's standard input, which asks it to stop its vat and
    /// exit, and waits up to `patience` for it to do so. Returns its exit
    /// status, or `None` if it is still running (the guard kills it later).
    pub fn finish(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        drop(self.stdin.take());
        let mut status = None;
        eventually(patience, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// Kills the peer process and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …), in KiB: what the
/// memory tests read of a vat in a child process.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
