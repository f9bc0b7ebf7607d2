//! Benchmarks of groups, each beside its baseline in the same run:
//!
//! | group | measured | baseline |
//! |---|---|---|
//! | `group_call_local` | `Counter.add` through a group's call-one face, round-robin over three counters in the same vat | the same on one counter directly |
//! | `group_call_tcp` | the same from a vat whose group holds three counters of another vat, each over a loopback TCP connection of its own, one call at a time and 64 in flight: `group` (the default: the caller gets the member's own request) and `group_lent` (`resend_remote_refusals(true)`: the call is lent, its params and results copied) | the same on one of those counters directly (`direct`), and on the three in turn, picked by hand (`rotating`): the same network traffic as the group's |
//!
//! Run with `cargo bench -p vat --bench group`.

// A benchmark harness: a failed set-up or call should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use schema::demo_capnp::counter;
use vat::demo::Counter;
use vat::group::{Group, GroupBuilder, Strategy};
use vat::net::{Limits, Listener};
use vat::{Root, VatHandle};

/// What the calling vat keeps between samples.
struct Held {
    direct: counter::Client,
    group: counter::Client,
    /// The same members in a group that lends its calls to them.
    lent: counter::Client,
    _groups: [Group; 2],
    /// The members themselves, and which one is next, for the hand-picked baseline.
    members: Vec<counter::Client>,
    next: usize,
}

/// Makes a group of three counters (`members`) and keeps it with `direct`.
fn held(direct: counter::Client, members: Vec<counter::Client>) -> Held {
    let group = Group::new("bench", Strategy::RoundRobin);
    let lending = GroupBuilder::new("bench-lent")
        .strategy(Strategy::RoundRobin)
        .resend_remote_refusals(true)
        .build();
    for member in &members {
        group.join(member.clone()).keep();
        lending.join(member.clone()).keep();
    }
    Held {
        direct,
        group: group.client(),
        lent: lending.client(),
        _groups: [group, lending],
        members,
        next: 0,
    }
}

/// Times `iters` rounds of `round` inside `vat`.
fn timed<F, Fut>(vat: &VatHandle, root: &Arc<Root<Held>>, iters: u64, round: F) -> Duration
where
    F: Fn(vat::Ref<Held>) -> Fut + Send + 'static,
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

async fn add(counter: &counter::Client) {
    let mut request = counter.add_request();
    request.get().set_by(1);
    request.send().promise.await.unwrap();
}

/// Calls in flight in the wide TCP benchmark.
const IN_FLIGHT: usize = 64;

/// How a benchmark reaches the counters.
#[derive(Clone, Copy)]
enum Way {
    Direct,
    Group,
    Lent,
    Rotating,
}

fn pick(held: &vat::Ref<Held>, way: Way) -> counter::Client {
    held.call(|h| match way {
        Way::Direct => h.direct.clone(),
        Way::Group => h.group.clone(),
        Way::Lent => h.lent.clone(),
        Way::Rotating => {
            h.next = (h.next + 1) % h.members.len();
            h.members[h.next].clone()
        }
    })
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let local = VatHandle::start("local").unwrap();
    let root = local
        .run(|| {
            let direct: counter::Client = vat::export(Counter::default());
            let members = (0..3).map(|_| vat::export(Counter::default())).collect();
            let held = vat::spawn(held(direct, members));
            vat::current().root(&held)
        })
        .wait()
        .unwrap();
    let root = Arc::new(root);
    let mut bench = c.benchmark_group("group_call_local");
    for (name, way) in [("direct", Way::Direct), ("group", Way::Group)] {
        bench.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(&local, &root, iters, move |held| async move {
                    add(&pick(&held, way)).await;
                })
            })
        });
    }
    bench.finish();

    // Another vat serves three counters on loopback TCP, one listener each.
    let serving = VatHandle::start("serving").unwrap();
    let addrs = serving
        .run_async(|| async {
            let mut addrs = Vec::new();
            for _ in 0..3 {
                let counter: counter::Client = vat::export(Counter::default());
                let listener = Listener::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
                addrs.push(listener.local_addr());
                listener.serve(counter.client, Limits::default());
            }
            addrs
        })
        .wait()
        .unwrap();
    let caller = VatHandle::start("caller").unwrap();
    let remote = caller
        .run_async(move || async move {
            let mut members = Vec::new();
            for addr in addrs {
                let connection = vat::net::dial(addr, None, Limits::default()).await.unwrap();
                members.push(connection.peer::<counter::Client>());
                // The connection lives on in its vat's tasks.
                drop(connection);
            }
            let direct = members[0].clone();
            let held = vat::spawn(held(direct, members));
            vat::current().root(&held)
        })
        .wait()
        .unwrap();
    let remote = Arc::new(remote);
    let mut bench = c.benchmark_group("group_call_tcp");
    for (name, way) in [
        ("direct", Way::Direct),
        ("rotating", Way::Rotating),
        ("group", Way::Group),
        ("group_lent", Way::Lent),
    ] {
        bench.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(&caller, &remote, iters, move |held| async move {
                    add(&pick(&held, way)).await;
                })
            })
        });
        bench.bench_function(format!("{name}_{IN_FLIGHT}_in_flight"), |b| {
            b.iter_custom(|iters| {
                timed(&caller, &remote, iters, move |held| async move {
                    // Each call picks again: the rotating baseline spreads
                    // its calls over the members as the group does.
                    let counters: Vec<_> = (0..IN_FLIGHT).map(|_| pick(&held, way)).collect();
                    let calls = counters.iter().map(add);
                    futures::future::join_all(calls).await;
                })
            })
        });
    }
    bench.finish();

    drop(remote);
    caller.stop().unwrap();
    serving.stop().unwrap();
    drop(root);
    local.stop().unwrap();
}

criterion_group!(group, benches);
criterion_main!(group);
