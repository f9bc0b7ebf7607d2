//! Benchmarks of supervision, each beside its baseline in the same run:
//!
//! | group | measured | baseline |
//! |---|---|---|
//! | `stable_call_local` | `Counter.add` through a supervised child's stable reference, in the same vat | the same on a directly exported `Counter` |
//! | `stable_call_tcp` | the same from another vat over loopback TCP, one call at a time and 64 in flight | the same on a direct reference over TCP |
//! | `restart` | a call that crashes the child, then a call answered by the next incarnation: for a child with no state, and for one revived from the store | two calls answered by the same incarnation |
//!
//! Run with `cargo bench -p vat --bench supervise`.

// A benchmark harness: a failed set-up or call should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use schema::demo_capnp::{counter, host};
use vat::demo::{Counter, Host};
use vat::net::{Limits, Listener};
use vat::sturdy::{vat_id, Durable, Persistence, StateCell};
use vat::supervise::{ChildSpec, Intensity, Restart, SupervisorBuilder};
use vat::{Root, VatHandle};

/// A persistent counter that panics on `add(-1)`.
struct Tally(StateCell<i64>);

impl Durable for Tally {
    const KIND: &'static str = "tally";
    type State = i64;
    fn revive(state: StateCell<i64>) -> capnp::capability::Client {
        vat::export::<counter::Client, _>(Tally(state)).client
    }
}

impl counter::Server for Tally {
    async fn add(
        self: Rc<Self>,
        params: counter::AddParams,
        mut results: counter::AddResults,
    ) -> Result<(), capnp::Error> {
        let by = params.get()?.get_by();
        assert!(by != -1, "asked to crash");
        let value = self
            .0
            .update(|n| {
                *n += by;
                *n
            })
            .await?;
        results.get().set_value(value);
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        _: counter::GetParams,
        mut results: counter::GetResults,
    ) -> Result<(), capnp::Error> {
        results
            .get()
            .set_value(self.0.read_committed(|n| *n).await?);
        Ok(())
    }
}

/// What the supervising vat keeps between samples.
struct Held {
    direct: counter::Client,
    stable: counter::Client,
    host: host::Client,
    tally: counter::Client,
    _persistence: Persistence,
}

fn supervising(
    dir: &std::path::Path,
) -> (
    VatHandle,
    Arc<Root<Held>>,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let vat = VatHandle::start("supervising").unwrap();
    let path = dir.to_path_buf();
    let (root, direct_addr, stable_addr) = vat
        .run_async(move || async move {
            let identity = vat::net::Identity::generate().unwrap();
            let persistence = Persistence::open(&path, vat_id(identity.public_key())).unwrap();
            let supervisor = SupervisorBuilder::new("bench")
                .intensity(Intensity::new(usize::MAX, Duration::from_secs(1)))
                .child(ChildSpec::local("counter", Restart::Permanent, |_| {
                    Ok(vat::export::<counter::Client, _>(Counter::default()).client)
                }))
                .child(ChildSpec::local("host", Restart::Permanent, |_| {
                    Ok(vat::export::<host::Client, _>(Host::crashable("bench")).client)
                }))
                .child(ChildSpec::durable::<Tally>(
                    "tally",
                    Restart::Permanent,
                    persistence.clone(),
                    1,
                ))
                .start()
                .await
                .unwrap();
            let direct: counter::Client = vat::export(Counter::default());
            let stable: counter::Client = supervisor.child("counter").unwrap();
            let plain_direct = Listener::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
            let plain_stable = Listener::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
            let (direct_addr, stable_addr) = (plain_direct.local_addr(), plain_stable.local_addr());
            plain_direct.serve(direct.client.clone(), Limits::default());
            plain_stable.serve(stable.client.clone(), Limits::default());
            let held = vat::spawn(Held {
                direct,
                stable,
                host: supervisor.child("host").unwrap(),
                tally: supervisor.child("tally").unwrap(),
                _persistence: persistence,
            });
            // The supervisor lives on in its task; the children in it.
            std::mem::forget(supervisor);
            (vat::current().root(&held), direct_addr, stable_addr)
        })
        .wait()
        .unwrap();
    (vat, Arc::new(root), direct_addr, stable_addr)
}

/// Times `iters` rounds of `round` inside `vat`.
fn timed<T, F, Fut>(vat: &VatHandle, root: &Arc<Root<T>>, iters: u64, round: F) -> Duration
where
    T: 'static,
    F: Fn(vat::Ref<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let root = Arc::clone(root);
    vat.run_async(move || async move {
        let object = root.get().unwrap();
        let started = Instant::now();
        for _ in 0..iters {
            round(object.clone()).await;
        }
        started.elapsed()
    })
    .wait()
    .unwrap()
}

async fn add(counter: &counter::Client, by: i64) -> Result<i64, capnp::Error> {
    let mut request = counter.add_request();
    request.get().set_by(by);
    Ok(request.send().promise.await?.get()?.get_value())
}

async fn echo(host: &host::Client) {
    let mut request = host.echo_request();
    request.get().set_value(7);
    let reply = request.send().promise.await.unwrap();
    assert_eq!(reply.get().unwrap().get_value(), 7);
}

/// Calls in flight in the wide TCP benchmark.
const IN_FLIGHT: usize = 64;

/// The far side of the TCP benchmark: two connections, one to each listener.
struct Remote {
    direct: counter::Client,
    stable: counter::Client,
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (vat, root, direct_addr, stable_addr) = supervising(dir.path());

    let mut group = c.benchmark_group("stable_call_local");
    for (name, stable) in [("direct", false), ("stable", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(&vat, &root, iters, move |held| async move {
                    let counter = held
                        .call(|h| {
                            if stable {
                                h.stable.clone()
                            } else {
                                h.direct.clone()
                            }
                        })
                        .unwrap();
                    add(&counter, 1).await.unwrap();
                })
            })
        });
    }
    group.finish();

    let client = VatHandle::start("caller").unwrap();
    let remote = client
        .run_async(move || async move {
            let direct = vat::net::dial(direct_addr, None, Limits::default())
                .await
                .unwrap();
            let stable = vat::net::dial(stable_addr, None, Limits::default())
                .await
                .unwrap();
            let remote = vat::spawn(Remote {
                direct: direct.peer(),
                stable: stable.peer(),
            });
            vat::current().root(&remote)
        })
        .wait()
        .unwrap();
    let remote = Arc::new(remote);
    let mut group = c.benchmark_group("stable_call_tcp");
    for (name, stable) in [("direct", false), ("stable", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(&client, &remote, iters, move |r| async move {
                    let counter = r
                        .call(|r| {
                            if stable {
                                r.stable.clone()
                            } else {
                                r.direct.clone()
                            }
                        })
                        .unwrap();
                    add(&counter, 1).await.unwrap();
                })
            })
        });
        // Many calls in flight: less at the mercy of how deeply an idle
        // core sleeps between round trips than one call at a time.
        group.bench_function(format!("{name}_{IN_FLIGHT}_in_flight"), |b| {
            b.iter_custom(|iters| {
                timed(&client, &remote, iters, move |r| async move {
                    let counter = r
                        .call(|r| {
                            if stable {
                                r.stable.clone()
                            } else {
                                r.direct.clone()
                            }
                        })
                        .unwrap();
                    let calls = (0..IN_FLIGHT).map(|_| {
                        let mut request = counter.add_request();
                        request.get().set_by(1);
                        request.send().promise
                    });
                    for outcome in futures::future::join_all(calls).await {
                        outcome.unwrap();
                    }
                })
            })
        });
    }
    group.finish();

    // Every restart sample panics on purpose: keep the default panic
    // report (and its backtrace) out of the output.
    std::panic::set_hook(Box::new(|_| {}));
    let mut group = c.benchmark_group("restart");
    group.sample_size(30);
    group.bench_function("no_crash_two_calls", |b| {
        b.iter_custom(|iters| {
            timed(&vat, &root, iters, |held| async move {
                let host = held.call(|h| h.host.clone()).unwrap();
                echo(&host).await;
                echo(&host).await;
            })
        })
    });
    group.bench_function("stateless", |b| {
        b.iter_custom(|iters| {
            timed(&vat, &root, iters, |held| async move {
                let host = held.call(|h| h.host.clone()).unwrap();
                let mut crash = host.crash_request();
                crash.get().set_message("bench");
                assert!(crash.send().promise.await.is_err());
                echo(&host).await;
            })
        })
    });
    group.bench_function("from_store", |b| {
        b.iter_custom(|iters| {
            timed(&vat, &root, iters, |held| async move {
                let tally = held.call(|h| h.tally.clone()).unwrap();
                assert!(add(&tally, -1).await.is_err());
                let value = tally.get_request().send().promise.await.unwrap();
                value.get().unwrap().get_value();
            })
        })
    });
    group.finish();

    drop(remote);
    client.stop().unwrap();
    drop(root);
    vat.stop().unwrap();
}

criterion_group!(supervise, benches);
criterion_main!(supervise);
