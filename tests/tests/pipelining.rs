//! Promise pipelining over a link with real latency: a chain of calls on
//! results not yet returned costs about one round trip, where awaiting each
//! step costs one round trip per call.
//!
//! The link is a TCP proxy that delays every chunk by [`ONE_WAY`] in each
//! direction. Noise on a busy machine only ever adds time, so the upper
//! bounds take the best of a few runs and the lower bound a single one.

// The helpers below are parts of tests: they fail the way assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use schema::demo_capnp::{chain, host};
use tests::{pipelined_chain, serve_host, DelayProxy, Route, Transport};
use vat::{ObjectState, VatHandle};

/// The proxy's delay in each direction.
const ONE_WAY: Duration = Duration::from_millis(20);
/// One round trip through the proxy.
const RTT: Duration = Duration::from_millis(2 * 20);
/// Calls in each chain: `chain()` then `next()` ten times, then `depth()`.
const NEXTS: u32 = 10;
/// Timed runs of which the fastest counts, against scheduling noise.
const ATTEMPTS: usize = 3;

/// Alice, and bob serving a host behind a delaying proxy.
struct Delayed {
    alice: VatHandle,
    bob: VatHandle,
    proxy: DelayProxy,
}

impl Delayed {
    fn start() -> Delayed {
        let alice = VatHandle::start("alice").unwrap();
        let bob = VatHandle::start("bob").unwrap();
        let Route::Tcp(addr) = serve_host(&bob, "bob", Transport::Tcp) else {
            unreachable!("a TCP host is reached by address")
        };
        let proxy = DelayProxy::start(addr, ONE_WAY);
        Delayed { alice, bob, proxy }
    }

    /// Runs `work` in alice with bob's host, reached through the proxy and
    /// already resolved, so only the work itself is timed.
    fn with_host<R, F, Fut>(&self, work: F) -> R
    where
        F: FnOnce(host::Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<R, capnp::Error>> + 'static,
        R: Send + 'static,
    {
        let route = Route::Tcp(self.proxy.addr());
        self.alice
            .run_async(move || async move {
                let connection = route.connect(None).await;
                let host: host::Client = connection.peer();
                let mut echo = host.echo_request();
                echo.get().set_value(7);
                let echoed = echo.send().promise.await?.get()?.get_value();
                assert_eq!(echoed, 7);
                work(host).await
            })
            .wait()
            .unwrap()
            .unwrap()
    }

    fn stop(self) {
        drop(self.proxy);
        self.alice.stop().unwrap();
        self.bob.stop().unwrap();
    }
}

/// `host.chain().next()…next().depth()`, every call sent before any answer,
/// and how long it took.
async fn timed_pipelined_chain(host: &host::Client) -> Result<(u32, Duration), capnp::Error> {
    let start = Instant::now();
    let depth = pipelined_chain(host, NEXTS).await?;
    Ok((depth, start.elapsed()))
}

/// The same chain, awaiting each answer before making the next call.
async fn awaited_chain(host: &host::Client) -> Result<(u32, Duration), capnp::Error> {
    let start = Instant::now();
    let mut link: chain::Client = host
        .chain_request()
        .send()
        .promise
        .await?
        .get()?
        .get_link()?;
    for _ in 0..NEXTS {
        link = link
            .next_request()
            .send()
            .promise
            .await?
            .get()?
            .get_link()?;
    }
    let depth = link
        .depth_request()
        .send()
        .promise
        .await?
        .get()?
        .get_depth();
    Ok((depth, start.elapsed()))
}

#[test]
fn a_pipelined_chain_of_calls_costs_about_one_round_trip() {
    let delayed = Delayed::start();
    let runs = delayed.with_host(|host| async move {
        let mut runs = Vec::new();
        for _ in 0..ATTEMPTS {
            runs.push(timed_pipelined_chain(&host).await?);
        }
        Ok(runs)
    });
    for (depth, _) in &runs {
        assert_eq!(*depth, NEXTS, "chain() starts at 0 and each next() adds 1");
    }
    let fastest = runs.iter().map(|(_, elapsed)| *elapsed).min().unwrap();
    // One round trip carries the whole chain; the physics of the proxy
    // forbid less, and a lost pipeline would cost many more.
    assert!(fastest >= RTT, "faster than the link allows: {fastest:?}");
    assert!(
        fastest < 2 * RTT,
        "{} pipelined calls took {fastest:?}, not under two round trips of {RTT:?}",
        NEXTS + 2
    );
    delayed.stop();
}

#[test]
fn the_same_chain_awaited_step_by_step_costs_a_round_trip_per_call() {
    let delayed = Delayed::start();
    let (depth, elapsed) = delayed.with_host(|host| async move { awaited_chain(&host).await });
    assert_eq!(depth, NEXTS);
    assert!(
        elapsed >= 10 * RTT,
        "{} awaited calls took {elapsed:?}, under ten round trips of {RTT:?}",
        NEXTS + 2
    );
    delayed.stop();
}

#[test]
fn a_peer_pipelines_a_chain_on_a_host_it_is_given() {
    let delayed = Delayed::start();
    let (runs, my_host_messages) = delayed.with_host(|host| async move {
        let mine: host::Client = vat::export(vat::demo::Host::new("alice"));
        let mut runs = Vec::new();
        for _ in 0..ATTEMPTS {
            let start = Instant::now();
            let mut request = host.pipeline_on_request();
            request.get().set_host(mine.clone());
            request.get().set_depth(NEXTS);
            let depth = request.send().promise.await?.get()?.get_depth();
            runs.push((depth, start.elapsed()));
        }
        // Bob's chain ran on alice's host: one `chain` call per run.
        let heap = vat::current().heap();
        let host = heap
            .iter()
            .find(|o| o.type_name.ends_with("demo::objects::Host"))
            .expect("alice's host is in her heap");
        assert_eq!(host.state, ObjectState::Alive);
        Ok((runs, host.messages))
    });
    for (depth, _) in &runs {
        assert_eq!(*depth, NEXTS);
    }
    assert_eq!(my_host_messages, ATTEMPTS as u64);
    let fastest = runs.iter().map(|(_, elapsed)| *elapsed).min().unwrap();
    // One round trip for alice's call to bob, one for bob's pipelined chain
    // on alice's host; awaiting each step would cost thirteen.
    assert!(
        fastest >= 2 * RTT,
        "faster than the link allows: {fastest:?}"
    );
    assert!(
        fastest < 3 * RTT,
        "pipelineOn took {fastest:?}, not under three round trips of {RTT:?}"
    );
    delayed.stop();
}
