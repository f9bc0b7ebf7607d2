//! Benchmarks of the vat runtime, each measured beside a baseline in the same
//! run of the same harness, so that the pair can be compared directly:
//!
//! | group | ours | baseline |
//! |---|---|---|
//! | `near_call` | `Ref::call` | a plain method call on a struct |
//! | `local_send_one` | `Ref::send` then await, one at a time | a `capnp_rpc::new_client` call, one at a time |
//! | `local_send_batch_1000` | 1000 `Ref::send`s, then await each | 1000 local capnp calls, then await each |
//! | `tcp_echo_one` | `Host.echo` between two vats over loopback TCP | the same over a bare two-party `RpcSystem` |
//! | `tcp_echo_128_in_flight` | 128 `Host.echo` calls sent, then awaited | the same, bare |
//! | `tcp_pipeline_depth_10` | `chain().next()`×10`.depth()`, pipelined | the same, bare |
//!
//! Ours and the baseline both run on a thread holding a tokio current-thread
//! runtime and a `LocalSet`: ours inside a vat (`VatHandle::run_async`), the
//! baseline on a plain thread set up the same way. Each sample times a loop
//! of iterations on that thread (`iter_custom`), so the cross-thread hop that
//! starts a sample is not counted for either.
//!
//! Run with `cargo bench -p vat --bench runtime`.

// A benchmark harness: a failed set-up or call should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use capnp_rpc::{rpc_twoparty_capnp, twoparty, RpcSystem};
use criterion::{criterion_group, Criterion, Throughput};
use futures::io::{BufReader, BufWriter};
use futures::AsyncReadExt;
use schema::demo_capnp::{chain, counter, host};
use tokio::sync::mpsc;
use tokio_util::compat::TokioAsyncReadCompatExt;
use vat::VatHandle;

/// How many sends one iteration of a batch benchmark makes.
const BATCH: u64 = 1000;
/// How many echo calls are in flight at once in the wide round-trip benchmark.
const IN_FLIGHT: u64 = 128;
/// How many `next` calls the pipelined chain makes before `depth`.
const DEPTH: u32 = 10;

// ---------------------------------------------------------------------------
// Objects

/// The object of the near-call and local-send benchmarks.
#[derive(Default)]
struct Counter {
    n: u64,
}

impl Counter {
    /// The plain method the near call is compared with.
    fn bump(&mut self) {
        self.n += 1;
    }
}

/// A Host-like server for the bare baseline: `echo` and `chain` only.
struct PlainHost;

impl host::Server for PlainHost {
    async fn echo(
        self: Rc<Self>,
        params: host::EchoParams,
        mut results: host::EchoResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_value(params.get()?.get_value());
        Ok(())
    }

    async fn chain(
        self: Rc<Self>,
        _: host::ChainParams,
        mut results: host::ChainResults,
    ) -> Result<(), capnp::Error> {
        results
            .get()
            .set_link(capnp_rpc::new_client(PlainLink { depth: 0 }));
        Ok(())
    }
}

/// A chain link for the bare baseline, as `vat::demo::Link` but not exported
/// through a vat.
struct PlainLink {
    depth: u32,
}

impl chain::Server for PlainLink {
    async fn next(
        self: Rc<Self>,
        _: chain::NextParams,
        mut results: chain::NextResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_link(capnp_rpc::new_client(PlainLink {
            depth: self.depth + 1,
        }));
        Ok(())
    }

    async fn depth(
        self: Rc<Self>,
        _: chain::DepthParams,
        mut results: chain::DepthResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_depth(self.depth);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The baseline's threads

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A plain thread running a tokio current-thread runtime and a `LocalSet`,
/// the same set-up as a vat's but with nothing of the vat runtime in it.
struct PlainThread {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl PlainThread {
    fn start(name: &str) -> PlainThread {
        let (jobs, mut inbox) = mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    while let Some(job) = inbox.recv().await {
                        tokio::task::spawn_local(job());
                    }
                });
            })
            .expect("a thread");
        PlainThread {
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Runs `work` on the thread and waits for its result.
    fn run<R, F, Fut>(&self, work: F) -> R
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = tx.send(work().await);
            })
        });
        let sent = self.jobs.as_ref().expect("running").send(job);
        assert!(sent.is_ok(), "the thread takes jobs");
        rx.recv().expect("the job finished")
    }
}

impl Drop for PlainThread {
    fn drop(&mut self) {
        // Closing the job channel ends the thread; its LocalSet drops every
        // task, which closes the sockets.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

thread_local! {
    /// The client side's bootstrap capability (`Host`), kept on the client
    /// thread between samples: in the client vat for ours, on the bare client
    /// thread for the baseline.
    static HOST: RefCell<Option<host::Client>> = const { RefCell::new(None) };
}

/// The client thread's `Host` capability.
fn peer_host() -> host::Client {
    HOST.with(|h| h.borrow().clone().expect("the client is connected"))
}

fn set_peer_host(client: Option<host::Client>) {
    HOST.with(|h| *h.borrow_mut() = client);
}

/// Starts a bare two-party RPC session over `stream`, as `captp` does.
fn plain_session(
    stream: tokio::net::TcpStream,
    side: rpc_twoparty_capnp::Side,
    bootstrap: Option<capnp::capability::Client>,
) -> RpcSystem<rpc_twoparty_capnp::Side> {
    stream.set_nodelay(true).expect("nodelay");
    let (reader, writer) = stream.compat().split();
    let mut options = capnp::message::ReaderOptions::new();
    let limits = vat::net::Limits::default();
    options
        .traversal_limit_in_words(Some(limits.max_message_bytes / 8))
        .nesting_limit(limits.max_nesting);
    let network = twoparty::VatNetwork::new(
        BufReader::new(reader),
        BufWriter::new(writer),
        side,
        options,
    );
    RpcSystem::new(Box::new(network), bootstrap)
}

// ---------------------------------------------------------------------------
// The two set-ups over loopback TCP

/// Two vats: a server offering `vat::demo::Host`, a client connected to it.
struct VatPair {
    server: VatHandle,
    client: VatHandle,
}

impl VatPair {
    fn start() -> VatPair {
        let server = VatHandle::start("bench-server").expect("server vat");
        let client = VatHandle::start("bench-client").expect("client vat");
        let addr: SocketAddr = server
            .run_async(|| async {
                let listener = vat::net::Listener::bind(loopback()).await.expect("bind");
                let addr = listener.local_addr();
                let host: host::Client = vat::export(vat::demo::Host::new("bench-server"));
                listener.serve(host.client, vat::net::Limits::default());
                addr
            })
            .wait()
            .expect("server up");
        client
            .run_async(move || async move {
                let connection = vat::net::dial(addr, None, vat::net::Limits::default())
                    .await
                    .expect("dial");
                // Capabilities obtained through the connection keep it open.
                set_peer_host(Some(connection.peer()));
            })
            .wait()
            .expect("client up");
        VatPair { server, client }
    }

    /// Runs `work` in the client vat and returns the time it reports.
    fn time<F, Fut>(&self, work: F) -> Duration
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Duration> + 'static,
    {
        self.client.run_async(work).wait().expect("client vat runs")
    }

    fn stop(self) {
        let _ = self.client.run(|| set_peer_host(None)).wait();
        self.client.stop().expect("client vat stops");
        self.server.stop().expect("server vat stops");
    }
}

/// Two plain threads: a bare capnp-rpc server offering `PlainHost`, and a
/// client connected to it.
struct PlainPair {
    server: PlainThread,
    client: PlainThread,
}

impl PlainPair {
    fn start() -> PlainPair {
        let server = PlainThread::start("plain-server");
        let client = PlainThread::start("plain-client");
        let addr: SocketAddr = server.run(|| async {
            let listener = tokio::net::TcpListener::bind(loopback())
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let host: host::Client = capnp_rpc::new_client(PlainHost);
            tokio::task::spawn_local(async move {
                loop {
                    let (stream, _) = listener.accept().await.expect("accept");
                    let system = plain_session(
                        stream,
                        rpc_twoparty_capnp::Side::Server,
                        Some(host.clone().client),
                    );
                    tokio::task::spawn_local(system);
                }
            });
            addr
        });
        client.run(move || async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut system = plain_session(stream, rpc_twoparty_capnp::Side::Client, None);
            let host: host::Client = system.bootstrap(rpc_twoparty_capnp::Side::Server);
            tokio::task::spawn_local(system);
            set_peer_host(Some(host));
        });
        PlainPair { server, client }
    }

    /// Runs `work` on the client thread and returns the time it reports.
    fn time<F, Fut>(&self, work: F) -> Duration
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Duration> + 'static,
    {
        self.client.run(work)
    }

    fn stop(self) {
        self.client.run(|| async { set_peer_host(None) });
        drop(self.client);
        drop(self.server);
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

// ---------------------------------------------------------------------------
// The round trips, the same code for ours and the baseline

/// `iters` echo calls, one at a time.
async fn echo_one(iters: u64) -> Duration {
    let host = peer_host();
    let start = Instant::now();
    for i in 0..iters {
        let mut request = host.echo_request();
        request.get().set_value(i);
        let reply = request.send().promise.await.expect("echo");
        black_box(reply.get().expect("results").get_value());
    }
    start.elapsed()
}

/// `iters` rounds of `IN_FLIGHT` echo calls: all sent, then all awaited.
async fn echo_in_flight(iters: u64) -> Duration {
    let host = peer_host();
    let mut replies = Vec::with_capacity(IN_FLIGHT as usize);
    let start = Instant::now();
    for _ in 0..iters {
        for i in 0..IN_FLIGHT {
            let mut request = host.echo_request();
            request.get().set_value(i);
            replies.push(request.send().promise);
        }
        for reply in replies.drain(..) {
            let reply = reply.await.expect("echo");
            black_box(reply.get().expect("results").get_value());
        }
    }
    start.elapsed()
}

/// `iters` pipelined chains: `chain()`, `next()` × `DEPTH`, `depth()`, only
/// the last awaited.
async fn pipeline_chain(iters: u64) -> Duration {
    let host = peer_host();
    let start = Instant::now();
    for _ in 0..iters {
        let mut link = host.chain_request().send().pipeline.get_link();
        for _ in 0..DEPTH {
            link = link.next_request().send().pipeline.get_link();
        }
        let reply = link.depth_request().send().promise.await.expect("depth");
        let depth = reply.get().expect("results").get_depth();
        assert_eq!(depth, DEPTH);
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------
// The benchmarks

fn near_call(c: &mut Criterion, vat: &VatHandle) {
    let mut group = c.benchmark_group("near_call");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plain_method", |b| {
        b.iter_custom(|iters| {
            vat.run(move || {
                let mut counter = Counter::default();
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(&mut counter).bump();
                }
                let elapsed = start.elapsed();
                black_box(counter.n);
                elapsed
            })
            .wait()
            .expect("vat runs")
        })
    });
    group.bench_function("vat_ref_call", |b| {
        b.iter_custom(|iters| {
            vat.run(move || {
                let counter = vat::spawn(Counter::default());
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(&counter).call(|c| c.n += 1).expect("alive");
                }
                let elapsed = start.elapsed();
                black_box(counter.call(|c| c.n).expect("alive"));
                elapsed
            })
            .wait()
            .expect("vat runs")
        })
    });
    group.finish();
}

fn local_send(c: &mut Criterion, vat: &VatHandle) {
    let mut group = c.benchmark_group("local_send_one");
    group.throughput(Throughput::Elements(1));
    group.bench_function("capnp_local", |b| {
        b.iter_custom(|iters| {
            vat.run_async(move || async move {
                let counter: counter::Client = capnp_rpc::new_client(vat::demo::Counter::default());
                let start = Instant::now();
                for _ in 0..iters {
                    let mut request = counter.add_request();
                    request.get().set_by(1);
                    let reply = request.send().promise.await.expect("add");
                    black_box(reply.get().expect("results").get_value());
                }
                start.elapsed()
            })
            .wait()
            .expect("vat runs")
        })
    });
    group.bench_function("vat_send", |b| {
        b.iter_custom(|iters| {
            vat.run_async(move || async move {
                let counter = vat::spawn(Counter::default());
                let start = Instant::now();
                for _ in 0..iters {
                    let n = counter
                        .send(|c| {
                            c.n += 1;
                            c.n
                        })
                        .await
                        .expect("send");
                    black_box(n);
                }
                start.elapsed()
            })
            .wait()
            .expect("vat runs")
        })
    });
    group.finish();

    let mut group = c.benchmark_group("local_send_batch_1000");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("capnp_local", |b| {
        b.iter_custom(|iters| {
            vat.run_async(move || async move {
                let counter: counter::Client = capnp_rpc::new_client(vat::demo::Counter::default());
                let mut replies = Vec::with_capacity(BATCH as usize);
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..BATCH {
                        let mut request = counter.add_request();
                        request.get().set_by(1);
                        replies.push(request.send().promise);
                    }
                    for reply in replies.drain(..) {
                        let reply = reply.await.expect("add");
                        black_box(reply.get().expect("results").get_value());
                    }
                }
                start.elapsed()
            })
            .wait()
            .expect("vat runs")
        })
    });
    group.bench_function("vat_send", |b| {
        b.iter_custom(|iters| {
            vat.run_async(move || async move {
                let counter = vat::spawn(Counter::default());
                let mut replies = Vec::with_capacity(BATCH as usize);
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..BATCH {
                        replies.push(counter.send(|c| {
                            c.n += 1;
                            c.n
                        }));
                    }
                    for reply in replies.drain(..) {
                        black_box(reply.await.expect("send"));
                    }
                }
                start.elapsed()
            })
            .wait()
            .expect("vat runs")
        })
    });
    group.finish();
}

fn over_tcp(c: &mut Criterion) {
    let ours = VatPair::start();
    let bare = PlainPair::start();

    let mut group = c.benchmark_group("tcp_echo_one");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bare_capnp", |b| {
        b.iter_custom(|iters| bare.time(move || echo_one(iters)))
    });
    group.bench_function("vat", |b| {
        b.iter_custom(|iters| ours.time(move || echo_one(iters)))
    });
    group.finish();

    let mut group = c.benchmark_group("tcp_echo_128_in_flight");
    group.throughput(Throughput::Elements(IN_FLIGHT));
    group.bench_function("bare_capnp", |b| {
        b.iter_custom(|iters| bare.time(move || echo_in_flight(iters)))
    });
    group.bench_function("vat", |b| {
        b.iter_custom(|iters| ours.time(move || echo_in_flight(iters)))
    });
    group.finish();

    let mut group = c.benchmark_group("tcp_pipeline_depth_10");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bare_capnp", |b| {
        b.iter_custom(|iters| bare.time(move || pipeline_chain(iters)))
    });
    group.bench_function("vat", |b| {
        b.iter_custom(|iters| ours.time(move || pipeline_chain(iters)))
    });
    group.finish();

    ours.stop();
    bare.stop();
}

fn runtime(c: &mut Criterion) {
    let vat = VatHandle::start("bench").expect("a vat");
    near_call(c, &vat);
    local_send(c, &vat);
    vat.stop().expect("the vat stops");
    over_tcp(c);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = runtime
}

/// `VAT_RUNTIME=near:N` (or `send:N`, `echo:N`) makes the binary make N
/// near calls, N local sends or N TCP echo calls and exit, for counting
/// instructions from outside: `valgrind --tool=callgrind` at two values of
/// N, the difference divided by the difference in N is the instructions
/// per operation, set-up cancelled.
fn count_mode(spec: &str) {
    let (kind, count) = spec
        .split_once(':')
        .expect("VAT_RUNTIME=near:N, send:N or echo:N");
    let count: u64 = count.parse().expect("a number of operations");
    if kind == "echo" {
        let ours = VatPair::start();
        black_box(ours.time(move || echo_one(count)));
        return;
    }
    let vat = VatHandle::start("count").expect("a vat");
    match kind {
        "near" => vat
            .run(move || {
                let counter = vat::spawn(Counter::default());
                for _ in 0..count {
                    black_box(&counter).call(|c| c.n += 1).expect("alive");
                }
            })
            .wait()
            .expect("vat runs"),
        "send" => vat
            .run_async(move || async move {
                let counter = vat::spawn(Counter::default());
                for _ in 0..count {
                    counter.send(|c| c.n += 1).await.expect("send");
                }
            })
            .wait()
            .expect("vat runs"),
        other => panic!("VAT_RUNTIME names near, send or echo, not {other}"),
    }
    vat.stop().expect("the vat stops");
}

fn main() {
    if let Ok(spec) = std::env::var("VAT_RUNTIME") {
        count_mode(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
