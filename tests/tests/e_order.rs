//! E-order: messages sent on one reference arrive in the order sent, whether
//! the target is near, a near promise, far, a far promise, or a promise that
//! resolves back into the sender's own vat (the embargo case).
//!
//! Every test sends all its messages before awaiting any of them.

// The helpers below are parts of tests: they fail the way assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::future::try_join_all;
use schema::demo_capnp::{host, sequencer};
use tests::{serve_host, Transport};
use vat::{ObjectState, VatHandle};

const MESSAGES: u64 = 10_000;

/// Records the numbers it is sent, in the order they arrive.
#[derive(Default)]
struct Recorder {
    seen: Vec<u64>,
}

/// Makes recorders: its `send` results are promises for near references.
struct Maker;

fn expected() -> Vec<u64> {
    (0..MESSAGES).collect()
}

#[test]
fn sends_to_a_near_reference_arrive_in_the_order_sent() {
    let alice = VatHandle::start("alice").unwrap();
    let seen = alice
        .run_async(|| async {
            let recorder = vat::spawn(Recorder::default());
            let sent: Vec<_> = (0..MESSAGES)
                .map(|n| recorder.send(move |r| r.seen.push(n)))
                .collect();
            try_join_all(sent).await?;
            recorder.call(|r| r.seen.clone())
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(seen.len() as u64, MESSAGES);
    assert!(seen == expected(), "near sends arrived out of order");
    alice.stop().unwrap();
}

#[test]
fn sends_to_a_near_promise_keep_their_order_across_its_resolution() {
    let alice = VatHandle::start("alice").unwrap();
    let (seen, was_pending, queued_at_resolution) = alice
        .run_async(|| async {
            let maker = vat::spawn(Maker);
            let made = maker.send(|_| vat::spawn(Recorder::default()));
            let half = MESSAGES / 2;
            let was_pending = !made.is_settled();
            let mut sent: Vec<_> = (0..half)
                .map(|n| made.send(move |r| r.seen.push(n)))
                .collect();
            // This message is queued behind the one that makes the recorder,
            // so it runs after `made` resolved (which queued the first half)
            // and before the first half is delivered: the second half is sent
            // to the resolved promise while the first is still in the queue.
            let second = maker
                .send(move |_| {
                    let queued = vat::current().queued() as u64;
                    let rest: Vec<_> = (half..MESSAGES)
                        .map(|n| made.send(move |r| r.seen.push(n)))
                        .collect();
                    (made, rest, queued)
                })
                .await?;
            let (made, rest, queued_at_resolution) = second;
            sent.extend(rest);
            try_join_all(sent).await?;
            let recorder = made.await?;
            let seen = recorder.call(|r| r.seen.clone())?;
            Ok::<_, vat::Error>((seen, was_pending, queued_at_resolution))
        })
        .wait()
        .unwrap()
        .unwrap();
    assert!(
        was_pending,
        "the first half must be sent before the promise resolves"
    );
    assert!(
        queued_at_resolution >= MESSAGES / 2,
        "the second half must be sent while the first is queued ({queued_at_resolution} queued)"
    );
    assert!(seen == expected(), "pipelined sends arrived out of order");
    alice.stop().unwrap();
}

/// Pushes `0..count` (offset by `from`) to `sequencer` without waiting.
fn push_all(
    sequencer: &sequencer::Client,
    from: u64,
    count: u64,
) -> Vec<
    capnp::capability::Promise<
        capnp::capability::Response<sequencer::push_results::Owned>,
        capnp::Error,
    >,
> {
    (from..from + count)
        .map(|n| {
            let mut push = sequencer.push_request();
            push.get().set_n(n);
            push.send().promise
        })
        .collect()
}

/// Whether capnp-rpc has resolved this (pipelined) capability to its target.
fn resolved(sequencer: &sequencer::Client) -> bool {
    sequencer.client.hook.get_resolved().is_some()
}

/// What a sequencer says it received.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    received: u64,
    in_order: bool,
    first_gap: u64,
}

const ALL_IN_ORDER: Report = Report {
    received: MESSAGES,
    in_order: true,
    first_gap: 0,
};

async fn report(sequencer: &sequencer::Client) -> capnp::Result<Report> {
    let response = sequencer.report_request().send().promise.await?;
    let report = response.get()?;
    Ok(Report {
        received: report.get_received(),
        in_order: report.get_in_order(),
        first_gap: report.get_first_gap(),
    })
}

/// Pushes to a sequencer of bob's that alice holds resolved, over `transport`.
fn far_resolved(transport: Transport) {
    let alice = VatHandle::start("alice").unwrap();
    let bob = VatHandle::start("bob").unwrap();
    let route = serve_host(&bob, "bob", transport);
    let report = alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();
            let response = host.sequencer_request().send().promise.await?;
            let sequencer = response.get()?.get_sequencer()?;
            try_join_all(push_all(&sequencer, 0, MESSAGES)).await?;
            report(&sequencer).await
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(report, ALL_IN_ORDER);
    alice.stop().unwrap();
    bob.stop().unwrap();
}

#[test]
fn sends_to_a_far_reference_arrive_in_order_over_a_pipe() {
    far_resolved(Transport::Pipe);
}

#[test]
fn sends_to_a_far_reference_arrive_in_order_over_tcp() {
    far_resolved(Transport::Tcp);
}

/// Pushes to a sequencer of bob's through the promise for it, all before it
/// resolves, over `transport`.
fn far_promise(transport: Transport) {
    let alice = VatHandle::start("alice").unwrap();
    let bob = VatHandle::start("bob").unwrap();
    let route = serve_host(&bob, "bob", transport);
    let report = alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();
            // No await until every push is sent: they all go out pipelined
            // on the unresolved answer and follow it to the sequencer.
            let sequencer = host.sequencer_request().send().pipeline.get_sequencer();
            let pushed = push_all(&sequencer, 0, MESSAGES);
            let report = report(&sequencer);
            try_join_all(pushed).await?;
            report.await
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(report, ALL_IN_ORDER);
    alice.stop().unwrap();
    bob.stop().unwrap();
}

#[test]
fn sends_to_a_far_promise_arrive_in_order_over_a_pipe() {
    far_promise(Transport::Pipe);
}

#[test]
fn sends_to_a_far_promise_arrive_in_order_over_tcp() {
    far_promise(Transport::Tcp);
}

#[test]
fn sends_to_a_far_promise_keep_their_order_across_its_resolution() {
    let alice = VatHandle::start("alice").unwrap();
    let bob = VatHandle::start("bob").unwrap();
    let route = serve_host(&bob, "bob", Transport::Pipe);
    let report = alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();
            let request = host.sequencer_request().send();
            let sequencer = request.pipeline.get_sequencer();
            let half = MESSAGES / 2;
            let mut pushed = push_all(&sequencer, 0, half);
            // Once the answer is back the promise resolves to bob's import;
            // the second half goes through the resolved promise.
            request.promise.await?;
            assert!(
                resolved(&sequencer),
                "the second half must be sent after the promise resolved"
            );
            pushed.extend(push_all(&sequencer, half, MESSAGES - half));
            try_join_all(pushed).await?;
            report(&sequencer).await
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(report, ALL_IN_ORDER);
    alice.stop().unwrap();
    bob.stop().unwrap();
}

/// Alice pipelines pushes on bob's reflection of her own sequencer, over
/// `transport`: half before the promise resolves back home, half after.
fn resolves_back_home(transport: Transport) {
    let alice = VatHandle::start("alice").unwrap();
    let bob = VatHandle::start("bob").unwrap();
    let route = serve_host(&bob, "bob", transport);
    let (report, heap) = alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();
            let mine: sequencer::Client = vat::export(vat::demo::Sequencer::default());
            let mut reflect = host.reflect_request();
            reflect.get().set_sequencer(mine);
            let request = reflect.send();
            // A promise held by bob's answer that resolves to alice's own sequencer.
            let sequencer = request.pipeline.get_sequencer();
            let half = MESSAGES / 2;
            // The first half travels to bob and is reflected back to alice.
            let mut pushed = push_all(&sequencer, 0, half);
            // Once the answer is back the promise resolves to the local
            // sequencer; the second half must wait (the embargo) until the
            // first half has come home, or it would overtake it.
            request.promise.await?;
            assert!(
                resolved(&sequencer),
                "the second half must be sent after the promise resolved"
            );
            pushed.extend(push_all(&sequencer, half, MESSAGES - half));
            let report = report(&sequencer);
            try_join_all(pushed).await?;
            let report = report.await?;
            // Looked at while the sequencer is still referenced.
            Ok::<_, capnp::Error>((report, vat::current().heap()))
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(report, ALL_IN_ORDER);

    // Every push ran in alice's vat, on her own sequencer.
    let sequencer = heap
        .iter()
        .find(|o| o.type_name.ends_with("demo::objects::Sequencer"))
        .expect("alice's sequencer is in her heap");
    assert_eq!(sequencer.state, ObjectState::Alive);
    assert_eq!(
        sequencer.messages,
        MESSAGES + 1,
        "the pushes and the report"
    );
    alice.stop().unwrap();
    bob.stop().unwrap();
}

#[test]
fn sends_to_a_promise_that_resolves_back_home_arrive_in_order_over_a_pipe() {
    resolves_back_home(Transport::Pipe);
}

#[test]
fn sends_to_a_promise_that_resolves_back_home_arrive_in_order_over_tcp() {
    resolves_back_home(Transport::Tcp);
}
