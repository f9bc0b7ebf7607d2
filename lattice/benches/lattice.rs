//! Benchmarks of bindings, each beside its baseline in the same run:
//!
//! | group | measured | baseline |
//! |---|---|---|
//! | `bound_call` | `Counter.add` on another vat (TLS on loopback) through what an actor holds for a binding (`bound`: a caretaker over a group over a healing reference to the provider's grant), and each layer alone | the same counter through a reference restored from the same token (`direct`) |
//! | `binding_latency` | `set_binding` to the first HTTP request served on the new port; `remove_binding` to the port refusing connections (a directory of three members and one host in this process) | none: a figure of its own |
//! | `http` | requests through the HTTP provider to a bound actor, 8 keep-alive connections | a plain hyper server in a vat answering the same body |
//! | `router_same_vat` | `Counter.add` on a counter of this vat through a kind's router (one version and no route; two versions by weights; a live version) | the same through the version's own group (`versioned`) |
//! | `router_across_vats` | `Counter.add` on another vat's counter through a router with no route, and by weights | the version's own group (`versioned`) and the restored reference (`direct` in `bound_call`) |
//! | `route_follow` | a route's write committed in the directory to the host's router following it (`commit_to_router`), and `set_route` whole (write, then every host asked) | none: figures of their own |
//!
//! Run with `cargo bench -p vat-lattice --bench lattice`; instructions per
//! call with `VAT_CALLS` (see `main`).

// A benchmark harness: a failed set-up or call should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use schema::demo_capnp::counter;
use vat::group::{Group, Strategy};
use vat::VatHandle;
use vat_directory::command::FacetKind;
use vat_directory::operator::LocalMembers;
use vat_directory::{DirectoryClient, DirectoryToken};
use vat_lattice::demo::Hello;
use vat_lattice::providers::http::HttpProvider;
use vat_lattice::route::{parse_weights, Fields, RoutePick, Router};
use vat_lattice::{BindingId, Config, Host, HostBuilder, Kind, Lattice, Route, DEFAULT_LINK};

thread_local! {
    static COUNTERS: RefCell<Vec<counter::Client>> = const { RefCell::new(Vec::new()) };
    static HOST: RefCell<Option<Host>> = const { RefCell::new(None) };
    static LOCAL: RefCell<Vec<counter::Client>> = const { RefCell::new(Vec::new()) };
}

/// The ways `router_same_vat` reaches a counter of its own vat, in the
/// order `LOCAL` holds them.
const LOCAL_TARGETS: [&str; 4] = [
    "versioned",
    "router_one_version",
    "router_weights",
    "router_live",
];

/// Counters of this vat behind routers, each way of `LOCAL_TARGETS`.
fn local_counters(vat: &VatHandle) {
    vat.block_on(|| async {
        let counter = |_| -> counter::Client { vat::export(vat::demo::Counter::default()) };
        let mut one = Router::new("counter", Fields::new());
        let kept_one = one.join("1.0.0", counter(0));
        let mut two = Router::new("counter", Fields::new());
        let kept_two = [two.join("1.0.0", counter(1)), two.join("2.0.0", counter(2))];
        two.route(Some(Route {
            rules: Vec::new(),
            pick: RoutePick::Weights {
                weights: parse_weights("1.0.0=90,2.0.0=10").unwrap(),
                sticky: false,
            },
        }));
        let mut live = Router::new("counter", Fields::new());
        let kept_live = [
            live.join("1.0.0", counter(3)),
            live.join("2.0.0", counter(4)),
        ];
        live.route(Some(Route {
            rules: Vec::new(),
            pick: RoutePick::Live {
                version: "1.0.0".into(),
                previous: None,
            },
        }));
        let all = vec![
            one.version("1.0.0"),
            one.client(),
            two.client(),
            live.client(),
        ];
        std::mem::forget((one, two, live, kept_one, kept_two, kept_live));
        LOCAL.with(|l| *l.borrow_mut() = all);
        Ok::<_, vat::Error>(())
    })
    .unwrap();
}

/// `iters` calls one after another on local target number `which`.
fn local_calls(vat: &VatHandle, which: usize, iters: u64) -> Duration {
    timed(vat, iters, move || {
        LOCAL.with(|l| l.borrow()[which].clone())
    })
}

fn router_same_vat(c: &mut Criterion) {
    let vat = VatHandle::start("routers").unwrap();
    local_counters(&vat);
    let mut group = c.benchmark_group("router_same_vat");
    for (which, name) in LOCAL_TARGETS.into_iter().enumerate() {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| local_calls(&vat, which, iters))
        });
    }
    group.finish();
    vat.stop().unwrap();
}

fn router_across_vats(c: &mut Criterion) {
    let (provider, actor, _dir) = counters();
    let mut group = c.benchmark_group("router_across_vats");
    for name in ["versioned", "router"] {
        let which = TARGETS.iter().position(|t| *t == name).unwrap();
        group.bench_function(name, |b| b.iter_custom(|iters| calls(&actor, which, iters)));
    }
    group.finish();
    actor.stop().unwrap();
    provider.stop().unwrap();
}

/// The ways `bound_call` reaches one counter of another vat, in the order
/// `COUNTERS` holds them: restored from its token (the baseline), what an
/// actor holds for a binding (a caretaker over a group over a healing
/// reference), and each of those layers alone.
const TARGETS: [&str; 7] = [
    "direct",
    "bound",
    "healing",
    "group",
    "caretaker",
    "versioned",
    "router",
];

/// A provider vat serving a counter over TLS, and an actor vat holding it
/// each way of `TARGETS`.
fn counters() -> (VatHandle, VatHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let provider = VatHandle::start("provider").unwrap();
    let path = dir.path().join("provider");
    let token = provider
        .block_on(move || async move {
            let served = vat_lattice::serve::serve(&path, ([127, 0, 0, 1], 0).into()).await?;
            let counter: counter::Client = vat::export(vat::demo::Counter::default());
            let object = vat::sturdy::object_ref("bench.counter", 1)?;
            served.persistence.provide(object.clone(), counter.client);
            let token = served
                .persistence
                .mint(&object, sturdyrefs::MintOptions::default())
                .await?;
            std::mem::forget(served);
            Ok::<_, vat::Error>(token)
        })
        .unwrap();
    let actor = VatHandle::start("actor").unwrap();
    actor
        .block_on(move || async move {
            let (direct, _) = vat::sturdy::restore(&token, None, vat::net::Limits::default())
                .await
                .unwrap();
            let group = Group::new("grants", Strategy::RoundRobin);
            let healing = vat::sturdy::healing(token, None, vat::sturdy::HealOptions::default());
            group.join_forwarding(healing.clone()).keep();
            let (bound, revoker) = vat::caretaker(group.client());
            let plain = Group::new("plain", Strategy::RoundRobin);
            plain.join(direct.clone()).keep();
            let (caretaker, revoker2) = vat::caretaker(direct.clone());
            let mut router = Router::new("counter", Fields::new());
            let membership = router.join("1.0.0", direct.clone());
            let versioned = router.version("1.0.0");
            let routed = router.client();
            let all: Vec<counter::Client> = [
                direct,
                bound,
                healing,
                plain.client(),
                caretaker,
                versioned,
                routed,
            ]
            .into_iter()
            .map(|client| counter::Client { client })
            .collect();
            // Held for the process's life.
            std::mem::forget((group, plain, revoker, revoker2, router, membership));
            // The first call on each connects.
            for c in &all {
                c.add_request().send().promise.await?;
            }
            COUNTERS.with(|h| *h.borrow_mut() = all);
            Ok::<_, vat::Error>(())
        })
        .unwrap();
    (provider, actor, dir)
}

/// `iters` calls one after another on target number `which`.
fn calls(actor: &VatHandle, which: usize, iters: u64) -> Duration {
    timed(actor, iters, move || {
        COUNTERS.with(|h| h.borrow()[which].clone())
    })
}

/// `iters` calls one after another, in `vat`, on the counter `target`
/// picks there.
fn timed(
    vat: &VatHandle,
    iters: u64,
    target: impl FnOnce() -> counter::Client + Send + 'static,
) -> Duration {
    vat.run_async(move || async move {
        let target = target();
        let started = Instant::now();
        for _ in 0..iters {
            let mut add = target.add_request();
            add.get().set_by(1);
            add.send().promise.await.unwrap();
        }
        started.elapsed()
    })
    .wait()
    .unwrap()
}

fn bound_call(c: &mut Criterion) {
    let (provider, actor, _dir) = counters();
    let mut group = c.benchmark_group("bound_call");
    for (which, name) in TARGETS.into_iter().enumerate() {
        group.bench_function(name, |b| b.iter_custom(|iters| calls(&actor, which, iters)));
    }
    group.finish();
    actor.stop().unwrap();
    provider.stop().unwrap();
}

/// A directory of three and one host running `hello` and `http`.
struct Lab {
    _members: LocalMembers,
    admin: DirectoryToken,
    host: VatHandle,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let members = LocalMembers::start(&dir.path().join("directory"), 3).unwrap();
        let host = VatHandle::start("host").unwrap();
        let path = dir.path().join("host");
        let admin = members.form_cluster(&host).unwrap();
        host.block_on({
            let admin = admin.clone();
            move || async move {
                let served = vat_lattice::serve::serve(&path, ([127, 0, 0, 1], 0).into())
                    .await
                    .unwrap();
                let facet = DirectoryClient::new(admin, None)
                    .mint_facet(FacetKind::Host {
                        vat: served.persistence.vat().to_string(),
                    })
                    .await?;
                let host = HostBuilder::new()
                    .actor(Kind::new("hello", "1.0.0").unwrap(), |cx| {
                        Ok(Hello::new(cx, "bench").export())
                    })
                    .provider(Kind::new("http", "1.0.0").unwrap(), |_| {
                        Ok(Box::new(HttpProvider::new()))
                    })
                    .join(
                        DirectoryClient::new(facet, None),
                        served.persistence.clone(),
                        Some(served.identity.clone()),
                    )
                    .await
                    .unwrap();
                host.start_actor("hello", None).await.unwrap();
                host.start_provider("http", None).await.unwrap();
                HOST.with(|h| *h.borrow_mut() = Some(host));
                Ok::<_, vat_directory::DirectoryError>(())
            }
        })
        .unwrap();
        Lab {
            _members: members,
            admin,
            host,
            _dir: dir,
        }
    }

    fn lattice<T: Send + 'static, Fut: std::future::Future<Output = T> + 'static>(
        &self,
        f: impl FnOnce(Lattice) -> Fut + Send + 'static,
    ) -> T {
        let admin = self.admin.clone();
        self.host
            .run_async(
                move || async move { f(Lattice::new(DirectoryClient::new(admin, None))).await },
            )
            .wait()
            .unwrap()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `GET /` on a kept connection; panics on anything but a 200.
fn request(reader: &mut BufReader<TcpStream>) {
    reader
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        .unwrap();
    let mut length = 0;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
}

fn served(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_ok()
        && {
            let mut line = String::new();
            reader.read_line(&mut line).is_ok() && line.starts_with("HTTP/1.1 200")
        }
}

fn binding_latency(c: &mut Criterion) {
    let lab = Lab::new();
    let id = BindingId::new("hello", "http", DEFAULT_LINK).unwrap();
    let mut group = c.benchmark_group("binding_latency");
    group.sample_size(20);
    group.bench_function("set_binding_to_first_request_served", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let port = free_port();
                let config: Config = [("port".to_owned(), port.to_string())].into();
                let id = id.clone();
                let started = Instant::now();
                let bound = id.clone();
                lab.lattice(move |l| async move { l.set_binding(&bound, config).await.unwrap() });
                while !served(port) {
                    std::thread::sleep(Duration::from_micros(100));
                }
                total += started.elapsed();
                lab.lattice(move |l| async move { l.remove_binding(&id).await.unwrap() });
                while TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            total
        });
    });
    group.bench_function("remove_binding_to_port_refusing", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let port = free_port();
                let config: Config = [("port".to_owned(), port.to_string())].into();
                let bound = id.clone();
                lab.lattice(move |l| async move { l.set_binding(&bound, config).await.unwrap() });
                while !served(port) {
                    std::thread::sleep(Duration::from_micros(100));
                }
                let removed = id.clone();
                let started = Instant::now();
                lab.lattice(move |l| async move { l.remove_binding(&removed).await.unwrap() });
                while TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    std::thread::sleep(Duration::from_micros(100));
                }
                total += started.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn route_follow(c: &mut Criterion) {
    let lab = Lab::new();
    // Bound to http, the host routes calls to hello: it follows its route.
    let id = BindingId::new("hello", "http", DEFAULT_LINK).unwrap();
    let config: Config = [("port".to_owned(), free_port().to_string())].into();
    lab.lattice(move |l| async move { l.set_binding(&id, config).await.unwrap() });
    let routes = [
        Route {
            rules: Vec::new(),
            pick: RoutePick::Live {
                version: "1.0.0".into(),
                previous: None,
            },
        },
        Route {
            rules: Vec::new(),
            pick: RoutePick::Weights {
                weights: parse_weights("1.0.0=100").unwrap(),
                sticky: false,
            },
        },
    ];
    let mut group = c.benchmark_group("route_follow");
    group.sample_size(20);
    group.bench_function("commit_to_router", |b| {
        let routes = routes.clone();
        b.iter_custom(|iters| {
            let admin = lab.admin.clone();
            let routes = routes.clone();
            lab.host
                .run_async(move || async move {
                    let directory = DirectoryClient::new(admin, None);
                    let host = HOST.with(|h| h.borrow().clone()).unwrap();
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        let route = routes[(i % 2) as usize].clone();
                        let index = directory
                            .put("routes/hello", vat_directory::record::Record::Route(route))
                            .await
                            .unwrap();
                        let committed = Instant::now();
                        while host.followed("hello").unwrap_or(0) < index {
                            vat_env::sleep(Duration::from_micros(50)).await;
                        }
                        total += committed.elapsed();
                    }
                    total
                })
                .wait()
                .unwrap()
        });
    });
    group.bench_function("set_route", |b| {
        let routes = routes.clone();
        b.iter_custom(|iters| {
            let routes = routes.clone();
            lab.lattice(move |l| async move {
                let started = Instant::now();
                for i in 0..iters {
                    l.set_route("hello", routes[(i % 2) as usize].clone())
                        .await
                        .unwrap();
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

/// A plain hyper server in a vat, answering every request with `body`.
fn plain_hyper(vat: &VatHandle, body: &'static str) -> u16 {
    vat.block_on(move || async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        vat_env::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                vat_env::spawn(async move {
                    let service = hyper::service::service_fn(|_request| async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(hyper::body::Bytes::from(body)),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok::<_, vat::Error>(port)
    })
    .unwrap()
}

/// `connections` keep-alive connections to `port`, each making `each`
/// requests; the time they took.
fn load(port: u16, connections: usize, each: u64) -> Duration {
    let started = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            std::thread::spawn(move || {
                let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut reader = BufReader::new(stream);
                for _ in 0..each {
                    request(&mut reader);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    started.elapsed()
}

fn http(c: &mut Criterion) {
    let lab = Lab::new();
    let port = free_port();
    let id = BindingId::new("hello", "http", DEFAULT_LINK).unwrap();
    let config: Config = [("port".to_owned(), port.to_string())].into();
    lab.lattice(move |l| async move { l.set_binding(&id, config).await.unwrap() });
    let plain = VatHandle::start("plain-hyper").unwrap();
    let plain_port = plain_hyper(&plain, "hello from hello@1.0.0 on bench/0");
    const CONNECTIONS: usize = 8;
    const EACH: u64 = 50;
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(CONNECTIONS as u64 * EACH));
    for (name, port) in [("plain_hyper", plain_port), ("through_provider", port)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| load(port, CONNECTIONS, EACH)).sum());
        });
    }
    group.finish();
    plain.stop().unwrap();
}

criterion_group!(
    benches,
    bound_call,
    binding_latency,
    http,
    router_same_vat,
    router_across_vats,
    route_follow
);

/// `VAT_CALLS=NAME:N` (NAME one of `TARGETS`, or `local.NAME` with NAME
/// one of `LOCAL_TARGETS`) makes the binary make N calls that way and
/// exit, for counting instructions from outside: `valgrind
/// --tool=callgrind` at two values of N, the difference divided by the
/// difference in N is the instructions per call, set-up cancelled.
fn main() {
    if let Some(spec) = std::env::var("VAT_CALLS")
        .ok()
        .and_then(|s| s.strip_prefix("local.").map(str::to_owned))
    {
        let (name, count) = spec.split_once(':').expect("VAT_CALLS=local.NAME:N");
        let which = LOCAL_TARGETS
            .iter()
            .position(|t| *t == name)
            .unwrap_or_else(|| panic!("local.NAME names one of {LOCAL_TARGETS:?}, not {name}"));
        let vat = VatHandle::start("routers").unwrap();
        local_counters(&vat);
        local_calls(&vat, which, count.parse().expect("a number of calls"));
        vat.stop().unwrap();
        return;
    }
    if let Ok(spec) = std::env::var("VAT_CALLS") {
        let (name, count) = spec.split_once(':').expect("VAT_CALLS=NAME:N");
        let which = TARGETS
            .iter()
            .position(|t| *t == name)
            .unwrap_or_else(|| panic!("VAT_CALLS names one of {TARGETS:?}, not {name}"));
        let (provider, actor, _dir) = counters();
        calls(&actor, which, count.parse().expect("a number of calls"));
        actor.stop().unwrap();
        provider.stop().unwrap();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
