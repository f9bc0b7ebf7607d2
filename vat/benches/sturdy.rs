//! Benchmarks of sturdyrefs and persistence, each beside its baseline in the
//! same run:
//!
//! | group | measured | baseline |
//! |---|---|---|
//! | `restore` | restoring a token and one call on the result, on a new TLS connection (dial, handshake, restore) | the same on an existing connection (restore only) |
//! | `echo_round_trip` | `Host.echo` between two vats over TLS | the same over plain TCP |
//! | `handoff_round_trip` | `Host.echo` from vat C to vat B through a handed-off reference | through a token C restored itself, and through the introducer A (capnp-rpc's relaying) |
//! | `durable_add` | `add` on a persistent counter, acknowledged after commit: 1 caller at a time, and 64 in flight | `add` on the in-memory counter |
//!
//! The server vat keeps its store in a temporary folder on the machine's
//! disk: commit figures include a real `fsync`.
//!
//! Run with `cargo bench -p vat --bench sturdy`.

// A benchmark harness: a failed set-up or call should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capnp::capability::FromClientHook;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use schema::demo_capnp::{counter, host};
use schema::gateway_capnp::gateway;
use sturdyrefs::{MintOptions, SturdyRef};
use vat::demo::{DurableCounter, Host};
use vat::net::{tls, Identity, Limits, Listener};
use vat::sturdy::{connect, object_ref, restore_on, vat_id, Persistence};
use vat::{Root, VatHandle};

/// Calls in flight in the wide commit benchmark.
const CALLERS: u64 = 64;

/// A serving vat: a durable counter, an in-memory counter and a Host behind
/// tokens on TLS, and a Host on plain TCP.
struct Server {
    vat: VatHandle,
    _dir: tempfile::TempDir,
    durable: String,
    memory: String,
    host: String,
    plain: SocketAddr,
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let vat = VatHandle::start("server").unwrap();
    let path = dir.path().to_path_buf();
    let (tokens, plain) = vat
        .run_async(move || async move {
            let identity = Identity::generate().unwrap();
            let persistence = Persistence::open(&path, vat_id(identity.public_key())).unwrap();
            persistence.durable::<DurableCounter>(1).unwrap();
            let memory: counter::Client = vat::export(vat::demo::Counter::default());
            persistence.provide(object_ref("memory", 1).unwrap(), memory.client);
            let host: host::Client = vat::export(Host::new("server"));
            persistence.provide(object_ref("host", 1).unwrap(), host.client.clone());
            let listener = tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &identity)
                .await
                .unwrap();
            persistence.set_hints(vec![listener.local_addr().to_string().parse().unwrap()]);
            persistence.serve(listener, Limits::default());
            let plain = Listener::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
            let plain_addr = plain.local_addr();
            plain.serve(host.client, Limits::default());
            let mut tokens = Vec::new();
            for (kind, id) in [("counter", 1), ("memory", 1), ("host", 1)] {
                let object = object_ref(kind, id).unwrap();
                let token = persistence.mint(&object, MintOptions::default()).await;
                tokens.push(token.unwrap().to_string());
            }
            (tokens, plain_addr)
        })
        .wait()
        .unwrap();
    let [durable, memory, host]: [String; 3] = tokens.try_into().unwrap();
    Server {
        vat,
        _dir: dir,
        durable,
        memory,
        host,
        plain,
    }
}

/// What the client vat keeps between samples.
struct Held {
    gateway: gateway::Client,
    swiss: sturdyrefs::SwissNumber,
    tls_host: host::Client,
    plain_host: host::Client,
    durable: counter::Client,
    memory: counter::Client,
}

fn client(server: &Server) -> (VatHandle, Arc<Root<Held>>) {
    let vat = VatHandle::start("client").unwrap();
    let durable: SturdyRef = server.durable.parse().unwrap();
    let memory: SturdyRef = server.memory.parse().unwrap();
    let host: SturdyRef = server.host.parse().unwrap();
    let plain = server.plain;
    let root = vat
        .run_async(move || async move {
            let connection = connect(&host, None, Limits::default()).await.unwrap();
            let gateway: gateway::Client = connection.peer();
            let tls_host: host::Client = restore_on(&connection, host.swiss()).cast_to();
            let durable: counter::Client = restore_on(&connection, durable.swiss()).cast_to();
            let memory: counter::Client = restore_on(&connection, memory.swiss()).cast_to();
            let plain = vat::net::dial(plain, None, Limits::default())
                .await
                .unwrap();
            let held = vat::spawn(Held {
                gateway,
                swiss: host.swiss().clone(),
                tls_host,
                plain_host: plain.peer(),
                durable,
                memory,
            });
            vat::current().root(&held)
        })
        .wait()
        .unwrap();
    (vat, Arc::new(root))
}

/// Times `iters` rounds of `round` inside the client vat.
fn timed<F, Fut>(vat: &VatHandle, root: &Arc<Root<Held>>, iters: u64, round: F) -> Duration
where
    F: Fn(Arc<Root<Held>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let root = Arc::clone(root);
    vat.run_async(move || async move {
        let started = Instant::now();
        for _ in 0..iters {
            round(Arc::clone(&root)).await;
        }
        started.elapsed()
    })
    .wait()
    .unwrap()
}

fn held(root: &Root<Held>) -> vat::Ref<Held> {
    root.get().unwrap()
}

async fn echo(host: &host::Client) {
    let mut request = host.echo_request();
    request.get().set_value(7);
    let reply = request.send().promise.await.unwrap();
    assert_eq!(reply.get().unwrap().get_value(), 7);
}

async fn add(counter: &counter::Client) {
    let mut request = counter.add_request();
    request.get().set_by(1);
    request.send().promise.await.unwrap();
}

fn benches(c: &mut Criterion) {
    let server = server();
    let (client, root) = client(&server);

    let mut group = c.benchmark_group("restore");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(4));
    let token: SturdyRef = server.host.parse().unwrap();
    group.bench_function("new_tls_connection", |b| {
        b.iter_custom(|iters| {
            let token = token.clone();
            client
                .run_async(move || async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let connection = connect(&token, None, Limits::default()).await.unwrap();
                        let host: host::Client = restore_on(&connection, token.swiss()).cast_to();
                        echo(&host).await;
                        drop(host);
                        connection.close().await.unwrap();
                    }
                    started.elapsed()
                })
                .wait()
                .unwrap()
        })
    });
    group.bench_function("existing_connection", |b| {
        b.iter_custom(|iters| {
            timed(&client, &root, iters, |root| async move {
                let (gateway, swiss) = held(&root)
                    .call(|h| (h.gateway.clone(), h.swiss.clone()))
                    .unwrap();
                let mut request = gateway.restore_request();
                request.get().set_swiss_number(swiss.as_bytes());
                let object = request.send().pipeline.get_object();
                let host: host::Client = capnp::capability::Client::new(object.as_cap()).cast_to();
                echo(&host).await;
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("echo_round_trip");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("tls", |b| {
        b.iter_custom(|iters| {
            timed(&client, &root, iters, |root| async move {
                let host = held(&root).call(|h| h.tls_host.clone()).unwrap();
                echo(&host).await;
            })
        })
    });
    group.bench_function("plain_tcp", |b| {
        b.iter_custom(|iters| {
            timed(&client, &root, iters, |root| async move {
                let host = held(&root).call(|h| h.plain_host.clone()).unwrap();
                echo(&host).await;
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("durable_add");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (name, durable) in [("durable", true), ("in_memory", false)] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}_1_caller"), |b| {
            b.iter_custom(|iters| {
                timed(&client, &root, iters, move |root| async move {
                    let counter = held(&root)
                        .call(|h| {
                            if durable {
                                h.durable.clone()
                            } else {
                                h.memory.clone()
                            }
                        })
                        .unwrap();
                    add(&counter).await;
                })
            })
        });
        group.throughput(Throughput::Elements(CALLERS));
        group.bench_function(format!("{name}_{CALLERS}_callers"), |b| {
            b.iter_custom(|iters| {
                timed(&client, &root, iters, move |root| async move {
                    let counter = held(&root)
                        .call(|h| {
                            if durable {
                                h.durable.clone()
                            } else {
                                h.memory.clone()
                            }
                        })
                        .unwrap();
                    let calls: Vec<_> = (0..CALLERS)
                        .map(|_| {
                            let mut request = counter.add_request();
                            request.get().set_by(1);
                            request.send().promise
                        })
                        .collect();
                    for call in calls {
                        call.await.unwrap();
                    }
                })
            })
        });
    }
    group.finish();

    drop(root);
    client.stop().unwrap();
    server.vat.stop().unwrap();
}

/// The three ways vat C can reach an object of vat B that vat A holds.
struct Routes {
    carol: VatHandle,
    introducer: VatHandle,
    hosts: Arc<Root<[host::Client; 3]>>,
}

/// Vat A restores B's host and (1) hands it off to C, (2) serves it to C
/// through itself; C also (3) restores B's token directly.
fn routes(server: &Server) -> Routes {
    let introducer = VatHandle::start("introducer").unwrap();
    let carol = VatHandle::start("carol").unwrap();
    let carol_id = Identity::generate().unwrap();
    let carol_key = vat_id(carol_id.public_key());
    let token: SturdyRef = server.host.parse().unwrap();
    let held = token.clone();
    let (handed, relay) = introducer
        .run_async(move || async move {
            let (object, _) = vat::sturdy::restore(&held, None, Limits::default())
                .await
                .unwrap();
            let handed = vat::sturdy::handoff(&held, &object, carol_key, None, Limits::default())
                .await
                .unwrap();
            // The proxied route: A offers B's host to whoever dials it.
            let relay = Listener::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
            let addr = relay.local_addr();
            relay.serve(object, Limits::default());
            (handed, addr)
        })
        .wait()
        .unwrap();
    let hosts = carol
        .run_async(move || async move {
            let limits = Limits::default();
            let (direct, _) = vat::sturdy::restore(&token, Some(&carol_id), limits)
                .await
                .unwrap();
            let (handed, _) = vat::sturdy::restore(&handed, Some(&carol_id), limits)
                .await
                .unwrap();
            let proxied = vat::net::dial(relay, None, limits).await.unwrap();
            let hosts = vat::spawn([direct.cast_to(), handed.cast_to(), proxied.peer()]);
            vat::current().root(&hosts)
        })
        .wait()
        .unwrap();
    Routes {
        carol,
        introducer,
        hosts: Arc::new(hosts),
    }
}

fn handoff_benches(c: &mut Criterion) {
    let server = server();
    let routes = routes(&server);
    let mut group = c.benchmark_group("handoff_round_trip");
    group.measurement_time(Duration::from_secs(4));
    for (name, route) in [
        ("direct", 0),
        ("handed_off", 1),
        ("proxied_through_introducer", 2),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let hosts = Arc::clone(&routes.hosts);
                routes
                    .carol
                    .run_async(move || async move {
                        let host = hosts.get().unwrap().call(|h| h[route].clone()).unwrap();
                        let started = Instant::now();
                        for _ in 0..iters {
                            echo(&host).await;
                        }
                        started.elapsed()
                    })
                    .wait()
                    .unwrap()
            })
        });
    }
    group.finish();
    drop(routes.hosts);
    routes.carol.stop().unwrap();
    routes.introducer.stop().unwrap();
    server.vat.stop().unwrap();
}

criterion_group!(sturdy, benches, handoff_benches);
criterion_main!(sturdy);
