//! Two vats of one process joined by an in-memory pipe exchange capabilities.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use schema::demo_capnp::{callback, counter, host};
use vat::demo::{Greeter, Host};
use vat::net::{pipe, Connection, Limits, Side};
use vat::{ErrorKind, VatHandle};

/// Starts `bob` serving a Host over one end of a pipe; returns the other end.
fn serve_host(bob: &VatHandle) -> vat::net::PipeEnd {
    let (ours, theirs) = pipe();
    bob.run(move || {
        let host: host::Client = vat::export(Host::crashable("bob"));
        Connection::open(
            theirs,
            Side::Acceptor,
            Some(host.client),
            Limits::default(),
            "alice",
        );
    })
    .wait()
    .expect("bob runs");
    ours
}

#[test]
fn capabilities_cross_a_pipe_in_both_directions() {
    let alice = VatHandle::start("alice").expect("start alice");
    let bob = VatHandle::start("bob").expect("start bob");
    let end = serve_host(&bob);

    let bob_handle = bob.clone();
    let (value, reply, back, heap) = alice
        .run_async(move || async move {
            let connection = Connection::open(end, Side::Dialer, None, Limits::default(), "bob");
            let host: host::Client = connection.peer();

            // Pipelined: add to the counter before the counter's promise resolves.
            let counter = host.counter_request().send().pipeline.get_counter();
            let mut add = counter.add_request();
            add.get().set_by(40);
            let _ = add.send().promise.await.expect("add 40");
            let mut add = counter.add_request();
            add.get().set_by(2);
            let value = add
                .send()
                .promise
                .await
                .expect("add 2")
                .get()
                .expect("results")
                .get_value();

            // Alice gives Bob a callback; Bob calls it and hands back one of his own.
            let mine: callback::Client = vat::export(Greeter::new("alice"));
            let mut greet = host.greet_request();
            greet.get().set_callback(mine);
            greet.get().set_name("alice");
            let response = greet.send().promise.await.expect("greet");
            let results = response.get().expect("results");
            let reply = results
                .get_reply()
                .expect("reply")
                .to_string()
                .expect("utf-8");
            let theirs = results.get_callback().expect("callback");
            let mut call = theirs.call_request();
            call.get().set_message("thanks");
            let back = call.send().promise.await.expect("call back");
            let back = back
                .get()
                .expect("results")
                .get_reply()
                .expect("reply")
                .to_string()
                .expect("utf-8");
            // Read bob's heap while alice still holds the counter: once she
            // drops it, bob releases it and it leaves his heap.
            let heap = bob_handle.heap().await.expect("bob's heap");
            drop(counter);
            (value, reply, back, heap)
        })
        .wait()
        .expect("alice runs");

    assert_eq!(value, 42);
    assert_eq!(reply, "alice heard \"hello alice, from bob\"");
    assert_eq!(back, "bob heard \"thanks\"");

    // Bob's heap shows the counter handled both adds.
    let counter = heap
        .iter()
        .find(|o| o.type_name.ends_with("demo::objects::Counter"))
        .expect("counter in bob's heap");
    assert_eq!(counter.messages, 2);

    alice.stop().expect("stop alice");
    bob.stop().expect("stop bob");
}

#[test]
fn a_panicking_far_method_breaks_only_its_call() {
    let alice = VatHandle::start("alice").expect("start alice");
    let bob = VatHandle::start("bob").expect("start bob");
    let end = serve_host(&bob);

    let (crash, after) = alice
        .run_async(move || async move {
            let connection = Connection::open(end, Side::Dialer, None, Limits::default(), "bob");
            let host: host::Client = connection.peer();
            let counter: counter::Client = host.counter_request().send().pipeline.get_counter();
            let mut crash = host.crash_request();
            crash.get().set_message("boom");
            let crash = crash
                .send()
                .promise
                .await
                .map(|_| ())
                .map_err(vat::Error::from);
            let mut add = counter.add_request();
            add.get().set_by(1);
            let after = add
                .send()
                .promise
                .await
                .map(|r| r.get().map(|r| r.get_value()).unwrap_or(-1));
            (crash, after.map_err(vat::Error::from))
        })
        .wait()
        .expect("alice runs");

    let error = crash.expect_err("crash must fail");
    assert_eq!(error.kind(), ErrorKind::Crashed);
    assert!(error.message().contains("boom"), "{error}");
    assert!(error.message().contains("Host"), "{error}");
    assert_eq!(after, Ok(1));

    alice.stop().expect("stop alice");
    bob.stop().expect("stop bob");
}
