//! Stopping a vat breaks what waited on it: peers' calls into it break with
//! `Disconnected` at once, and work pending inside it reports `VatStopped`.

// The helpers below are parts of tests: they fail the way assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use schema::demo_capnp::{callback, host};
use tests::{serve_host, Silent, Transport};
use vat::{ErrorKind, VatHandle};

/// How long a peer may take to notice that a vat stopped.
const PROMPTLY: Duration = Duration::from_secs(1);
/// How long to wait for anything that should happen at all.
const PATIENCE: Duration = Duration::from_secs(10);

/// Which call of alice's broke, how, and when she saw it.
type Outcome = (&'static str, Result<(), vat::Error>, Instant);

/// Alice has calls pending in bob when bob stops: they break promptly with
/// `Disconnected`, and so does her next call.
fn stopping_breaks_peers_calls(transport: Transport) {
    let alice = VatHandle::start("alice").unwrap();
    let bob = VatHandle::start("bob").unwrap();
    let route = serve_host(&bob, "bob", transport);
    let (silent, called) = Silent::new();
    let (outcomes, heard) = mpsc::channel::<Outcome>();

    alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();
            // Bob's greet calls this back and waits, forever, for the answer.
            let mine: callback::Client = vat::export(silent);
            let mut greet = host.greet_request();
            greet.get().set_callback(mine);
            greet.get().set_name("alice");
            let greeting = greet.send();
            // Queued behind the greeting: a call on its unanswered result.
            let mut call = greeting.pipeline.get_callback().call_request();
            call.get().set_message("are you there?");
            let pipelined = call.send().promise;

            let report = outcomes.clone();
            tokio::task::spawn_local(async move {
                let result = pipelined.await.map(|_| ()).map_err(vat::Error::from);
                let _ = report.send(("pipelined", result, Instant::now()));
            });
            tokio::task::spawn_local(async move {
                let result = greeting.promise.await.map(|_| ()).map_err(vat::Error::from);
                let _ = outcomes.send(("greet", result, Instant::now()));
                let mut echo = host.echo_request();
                echo.get().set_value(1);
                let result = echo
                    .send()
                    .promise
                    .await
                    .map(|_| ())
                    .map_err(vat::Error::from);
                let _ = outcomes.send(("next", result, Instant::now()));
            });
        })
        .wait()
        .unwrap();

    // Bob is inside greet, waiting on alice: the calls are genuinely pending.
    called
        .recv_timeout(PATIENCE)
        .expect("bob calls alice's callback");
    assert!(
        heard.try_recv().is_err(),
        "no call may have finished before bob stops"
    );

    let stopping = Instant::now();
    bob.stop().unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (call, result, at) = heard
            .recv_timeout(PATIENCE)
            .expect("every pending call of alice's breaks");
        let error = result.expect_err(call);
        assert_eq!(error.kind(), ErrorKind::Disconnected, "{call}: {error}");
        let after = at.duration_since(stopping);
        assert!(after < PROMPTLY, "{call} broke {after:?} after bob stopped");
        seen.push(call);
    }
    seen.sort_unstable();
    assert_eq!(seen, ["greet", "next", "pipelined"]);
    alice.stop().unwrap();
}

#[test]
fn stopping_a_vat_breaks_its_peers_calls_over_tcp() {
    stopping_breaks_peers_calls(Transport::Tcp);
}

#[test]
fn stopping_a_vat_breaks_its_peers_calls_over_a_pipe() {
    stopping_breaks_peers_calls(Transport::Pipe);
}

/// An object whose messages only record that they were delivered.
struct Tally;

#[test]
fn work_pending_in_a_stopped_vat_reports_vat_stopped() {
    let bob = VatHandle::start("bob").unwrap();
    let delivered = Arc::new(AtomicBool::new(false));

    // A promise nothing will ever resolve.
    let forever = bob.run_async(|| async {
        let (promise, resolver) = vat::promise::<u32>();
        let result = promise.await;
        drop(resolver);
        result
    });

    // A message pipelined on a promise for an object that never comes.
    let flag = delivered.clone();
    let pipelined = bob.run_async(move || async move {
        let (target, resolver) = vat::promise::<vat::Ref<Tally>>();
        let result = target
            .send(move |_| flag.store(true, Ordering::SeqCst))
            .await;
        drop(resolver);
        result
    });

    // A message in the turn queue when the vat stops: queued in a command
    // that then blocks the vat until the stop request is in.
    let (started, is_started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let flag = delivered.clone();
    let queued = bob.run_async(move || {
        let tally = vat::spawn(Tally);
        let message = tally.send(move |_| flag.store(true, Ordering::SeqCst));
        started.send(()).unwrap();
        released.recv().unwrap();
        message
    });
    is_started
        .recv_timeout(PATIENCE)
        .expect("bob runs the command");
    bob.request_stop();
    // Submitted after the stop request: it must never run.
    let flag = delivered.clone();
    let after_stop = bob.run(move || flag.store(true, Ordering::SeqCst));
    release.send(()).unwrap();
    bob.stop().unwrap();

    for (work, result) in [
        ("forever", forever.wait().map(|_| ())),
        ("pipelined", pipelined.wait().map(|_| ())),
        ("queued", queued.wait().map(|_| ())),
        ("after stop", after_stop.wait()),
        ("stopped", bob.run(|| ()).wait()),
    ] {
        let error = result.expect_err(work);
        assert_eq!(error.kind(), ErrorKind::VatStopped, "{work}: {error}");
    }
    assert!(
        !delivered.load(Ordering::SeqCst),
        "no message may be delivered once the vat stops"
    );
    assert!(!bob.is_running());
}
