//! The one object model against the way objects were written before it, in
//! one run of one harness: the same far objects (a host answering `echo`
//! and handing out `chain` links) served by two vats over loopback TCP,
//!
//! | group | `object` | `export` |
//! |---|---|---|
//! | `far_echo_one` | `Host.echo` on a `#[vat::object]` host, `vat::spawn(..).export()` | the same on an `Rc<Self>` server, `vat::export(..)` |
//! | `far_echo_128_in_flight` | 128 echoes sent, then awaited | the same |
//! | `far_pipeline_depth_10` | `chain().next()`×10`.depth()`, pipelined, `#[vat::object]` links | the same, `Rc<Self>` links |
//!
//! Near calls and local sends have one way only (`Ref::call`, `Ref::send`
//! on a plain struct): the `runtime` bench measures them.
//!
//! Run with `cargo bench -p vat --bench object_model`.

// A benchmark harness: a failed set-up or call should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::hint::black_box;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use schema::demo_capnp::{chain, host};
use vat::VatHandle;

const IN_FLIGHT: u64 = 128;
const DEPTH: u32 = 10;

// --- The objects, written the one-model way --------------------------------

struct Host;

#[vat::object(host)]
impl Host {
    fn echo(&mut self, params: host::EchoParams, mut results: host::EchoResults) -> vat::Reply {
        results.get().set_value(params.get()?.get_value());
        vat::done()
    }

    fn chain(&mut self, _: host::ChainParams, mut results: host::ChainResults) -> vat::Reply {
        results
            .get()
            .set_link(vat::spawn(Link { depth: 0 }).export());
        vat::done()
    }
}

struct Link {
    depth: u32,
}

#[vat::object(chain)]
impl Link {
    fn next(&mut self, _: chain::NextParams, mut results: chain::NextResults) -> vat::Reply {
        let next = Link {
            depth: self.depth + 1,
        };
        results.get().set_link(vat::spawn(next).export());
        vat::done()
    }

    fn depth(&mut self, _: chain::DepthParams, mut results: chain::DepthResults) -> vat::Reply {
        results.get().set_depth(self.depth);
        vat::done()
    }
}

// --- The same objects, written the way before it ---------------------------

struct OldHost;

impl host::Server for OldHost {
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
        results.get().set_link(vat::export(OldLink { depth: 0 }));
        Ok(())
    }
}

struct OldLink {
    depth: u32,
}

impl chain::Server for OldLink {
    async fn next(
        self: Rc<Self>,
        _: chain::NextParams,
        mut results: chain::NextResults,
    ) -> Result<(), capnp::Error> {
        let next = OldLink {
            depth: self.depth + 1,
        };
        results.get().set_link(vat::export(next));
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

// --- Two vats over loopback TCP ---------------------------------------------

thread_local! {
    static PEER: RefCell<Option<host::Client>> = const { RefCell::new(None) };
}

fn peer() -> host::Client {
    PEER.with(|p| p.borrow().clone()).expect("connected")
}

/// A server vat offering the host `make` builds, a client vat connected.
struct Pair {
    server: VatHandle,
    client: VatHandle,
}

impl Pair {
    fn start(make: fn() -> host::Client) -> Pair {
        let server = VatHandle::start("server").unwrap();
        let client = VatHandle::start("client").unwrap();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let addr = server
            .block_on(move || async move {
                let served = vat::net::Server::new(make().client).tcp(loopback).await;
                Ok::<_, vat::Error>(served?)
            })
            .unwrap();
        client
            .block_on(move || async move {
                let connection = vat::net::Dialer::new(addr).tcp().await?;
                PEER.with(|p| *p.borrow_mut() = Some(connection.peer()));
                Ok::<_, vat::Error>(())
            })
            .unwrap();
        Pair { server, client }
    }

    fn time<F: std::future::Future<Output = Duration> + 'static>(
        &self,
        work: fn(u64) -> F,
        iters: u64,
    ) -> Duration {
        self.client.run_async(move || work(iters)).wait().unwrap()
    }

    fn stop(self) {
        let _ = self
            .client
            .run(|| drop(PEER.with(|p| p.borrow_mut().take())))
            .wait();
        self.client.stop().unwrap();
        self.server.stop().unwrap();
    }
}

async fn echo_one(iters: u64) -> Duration {
    let host = peer();
    let start = Instant::now();
    for i in 0..iters {
        let mut request = host.echo_request();
        request.get().set_value(i);
        let reply = request.send().promise.await.unwrap();
        black_box(reply.get().unwrap().get_value());
    }
    start.elapsed()
}

async fn echo_in_flight(iters: u64) -> Duration {
    let host = peer();
    let mut replies = Vec::with_capacity(IN_FLIGHT as usize);
    let start = Instant::now();
    for _ in 0..iters {
        for i in 0..IN_FLIGHT {
            let mut request = host.echo_request();
            request.get().set_value(i);
            replies.push(request.send().promise);
        }
        for reply in replies.drain(..) {
            black_box(reply.await.unwrap().get().unwrap().get_value());
        }
    }
    start.elapsed()
}

async fn pipeline_chain(iters: u64) -> Duration {
    let host = peer();
    let start = Instant::now();
    for _ in 0..iters {
        let mut link = host.chain_request().send().pipeline.get_link();
        for _ in 0..DEPTH {
            link = link.next_request().send().pipeline.get_link();
        }
        let reply = link.depth_request().send().promise.await.unwrap();
        assert_eq!(reply.get().unwrap().get_depth(), DEPTH);
    }
    start.elapsed()
}

fn far(c: &mut Criterion) {
    let object = Pair::start(|| vat::spawn(Host).export());
    let export = Pair::start(|| vat::export(OldHost));

    let mut group = c.benchmark_group("far_echo_one");
    group.throughput(Throughput::Elements(1));
    group.bench_function("object", |b| b.iter_custom(|n| object.time(echo_one, n)));
    group.bench_function("export", |b| b.iter_custom(|n| export.time(echo_one, n)));
    group.finish();

    let mut group = c.benchmark_group("far_echo_128_in_flight");
    group.throughput(Throughput::Elements(IN_FLIGHT));
    group.bench_function("object", |b| {
        b.iter_custom(|n| object.time(echo_in_flight, n))
    });
    group.bench_function("export", |b| {
        b.iter_custom(|n| export.time(echo_in_flight, n))
    });
    group.finish();

    let mut group = c.benchmark_group("far_pipeline_depth_10");
    group.throughput(Throughput::Elements(1));
    group.bench_function("object", |b| {
        b.iter_custom(|n| object.time(pipeline_chain, n))
    });
    group.bench_function("export", |b| {
        b.iter_custom(|n| export.time(pipeline_chain, n))
    });
    group.finish();

    object.stop();
    export.stop();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = far
}

/// `VAT_CALLS=object:N` (or `export:N`) makes the binary run N echo calls
/// on that kind of host and exit, for counting instructions from outside:
/// `valgrind --tool=callgrind` at two values of N, the difference divided
/// by the difference in N is the instructions per call, set-up cancelled.
fn main() {
    if let Ok(spec) = std::env::var("VAT_CALLS") {
        let (kind, count) = spec
            .split_once(':')
            .expect("VAT_CALLS=object:N or export:N");
        let count: u64 = count.parse().expect("a number of calls");
        let pair = match kind {
            "object" => Pair::start(|| vat::spawn(Host).export()),
            "export" => Pair::start(|| vat::export(OldHost)),
            other => panic!("VAT_CALLS names object or export, not {other}"),
        };
        pair.time(echo_one, count);
        pair.stop();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
