//! Vats in two processes: capabilities cross the process boundary both ways,
//! chains pipeline in both directions, and killing the peer process breaks
//! the calls waiting on it.
//!
//! The peer is the `demo_peer` binary of this crate: a vat serving
//! `vat::demo::Host` on loopback TCP.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use schema::demo_capnp::{callback, host};
use tests::{pipelined_chain, text, PeerProcess, Route, Silent};
use vat::{ErrorKind, ObjectState, VatHandle};

const NEXTS: u32 = 10;
/// How long a vat may take to notice that its peer process is gone: the
/// kernel closes a killed process's sockets at once, so this is far below
/// the 30 s a silent peer would take (`Limits::dead_peer_timeout`), and
/// far above what a busy machine adds.
const PROMPTLY: Duration = Duration::from_secs(10);
/// How long to wait for anything that should happen at all.
const PATIENCE: Duration = Duration::from_secs(10);

fn peer() -> PeerProcess {
    PeerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_demo_peer")))
}

#[test]
fn capabilities_cross_between_processes_both_ways() {
    let peer = peer();
    let alice = VatHandle::start("alice").unwrap();
    let route = Route::Tcp(peer.addr());
    let (reply, back, greeter) = alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();
            // Alice gives the peer a capability; the peer calls it and hands
            // back one of its own, which alice calls.
            let mine: callback::Client = vat::export(vat::demo::Greeter::new("alice"));
            let mut greet = host.greet_request();
            greet.get().set_callback(mine.clone());
            greet.get().set_name("alice");
            let response = greet.send().promise.await?;
            let results = response.get()?;
            let reply = text(results.get_reply())?;
            let theirs = results.get_callback()?;
            let mut call = theirs.call_request();
            call.get().set_message("thanks");
            let back = text(call.send().promise.await?.get()?.get_reply())?;
            // Looked at while `mine` keeps the greeter alive.
            let greeter = vat::current()
                .heap()
                .into_iter()
                .find(|o| o.type_name.ends_with("demo::objects::Greeter"));
            Ok::<_, capnp::Error>((reply, back, greeter))
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(reply, "alice heard \"hello alice, from peer\"");
    assert_eq!(back, "peer heard \"thanks\"");

    // The peer's call ran in alice's vat, on her greeter.
    let greeter = greeter.expect("alice's greeter is in her heap");
    assert_eq!(greeter.messages, 1, "{greeter:?}");
    assert_eq!(greeter.state, ObjectState::Alive);
    alice.stop().unwrap();
}

#[test]
fn chains_pipeline_across_processes_in_both_directions() {
    let peer = peer();
    let alice = VatHandle::start("alice").unwrap();
    let route = Route::Tcp(peer.addr());
    let (there, back, my_host) = alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();

            // Alice pipelines a chain on the peer's host: one await in all.
            let there = pipelined_chain(&host, NEXTS).await?;

            // The peer pipelines a chain on alice's host.
            let mine: host::Client = vat::export(vat::demo::Host::new("alice"));
            let mut request = host.pipeline_on_request();
            request.get().set_host(mine.clone());
            request.get().set_depth(NEXTS);
            let back = request.send().promise.await?.get()?.get_depth();

            let my_host = vat::current()
                .heap()
                .into_iter()
                .find(|o| o.type_name.ends_with("demo::objects::Host"));
            Ok::<_, capnp::Error>((there, back, my_host))
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(there, NEXTS);
    assert_eq!(back, NEXTS);
    // The peer's chain started with a call on alice's host, in alice's vat.
    let my_host = my_host.expect("alice's host is in her heap");
    assert_eq!(my_host.messages, 1, "{my_host:?}");
    alice.stop().unwrap();
}

#[test]
fn killing_the_peer_process_breaks_pending_and_later_calls() {
    let mut peer = peer();
    let alice = VatHandle::start("alice").unwrap();
    let route = Route::Tcp(peer.addr());
    let (silent, called) = Silent::new();
    let (outcomes, heard) = mpsc::channel::<(&'static str, Result<(), vat::Error>)>();

    alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();
            // The peer's greet calls this back and waits for it forever.
            let mine: callback::Client = vat::export(silent);
            let mut greet = host.greet_request();
            greet.get().set_callback(mine);
            greet.get().set_name("alice");
            let greeting = greet.send();
            tokio::task::spawn_local(async move {
                let result = greeting.promise.await.map(|_| ()).map_err(vat::Error::from);
                let _ = outcomes.send(("pending", result));
                let mut echo = host.echo_request();
                echo.get().set_value(1);
                let result = echo
                    .send()
                    .promise
                    .await
                    .map(|_| ())
                    .map_err(vat::Error::from);
                let _ = outcomes.send(("next", result));
            });
        })
        .wait()
        .unwrap();

    called
        .recv_timeout(PATIENCE)
        .expect("the peer calls alice's callback");
    assert!(
        heard.try_recv().is_err(),
        "the greeting must still be pending"
    );
    let killed = Instant::now();
    peer.kill();
    for expected in ["pending", "next"] {
        let (call, result) = heard
            .recv_timeout(PATIENCE)
            .expect("alice's calls break once the peer is gone");
        assert_eq!(call, expected);
        let error = result.expect_err(call);
        assert_eq!(error.kind(), ErrorKind::Disconnected, "{call}: {error}");
    }
    assert!(
        killed.elapsed() < PROMPTLY,
        "the calls broke {:?} after the kill",
        killed.elapsed()
    );
    alice.stop().unwrap();
}

#[test]
fn the_peer_process_exits_cleanly_when_its_input_closes() {
    let mut peer = peer();
    let alice = VatHandle::start("alice").unwrap();
    let route = Route::Tcp(peer.addr());
    let echoed = alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();
            let mut echo = host.echo_request();
            echo.get().set_value(9);
            let value = echo.send().promise.await?.get()?.get_value();
            Ok::<_, capnp::Error>(value)
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, 9);
    // The peer stops its vat (with alice still connected) and exits.
    let status = peer
        .finish(PATIENCE)
        .expect("the peer exits once its input closes");
    assert!(status.success(), "{status}");
    alice.stop().unwrap();
}
