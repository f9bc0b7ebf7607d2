//! Crash isolation: an object that panics breaks only its caller's promise
//! (with a `Crashed` error naming the object and the panic) and refuses
//! further messages; every other object of its vat goes on, including those
//! whose messages were queued around the fatal turn. Objects whose near call
//! the panic unwound through crash with it, and a panic after an `.await`
//! counts like any other.

use std::sync::Arc;

use futures::future::join_all;
use schema::demo_capnp::{counter, host};
use tests::{serve_host, Transport};
use vat::{ErrorKind, ObjectInfo, ObjectState, Ref, VatHandle};

/// Messages to other objects, half queued before the fatal one, half after.
const CALLS: u64 = 1_000;

/// Panics when told to explode.
struct Bomb {
    fuse: &'static str,
}

impl Bomb {
    fn explode(&mut self) -> usize {
        panic!("{}", self.fuse)
    }
}

/// Counts the messages it is sent.
#[derive(Default)]
struct Tally {
    count: u64,
}

const TALLIES: usize = 10;
const FUSE: &str = "the fuse was lit";

fn crashed_reason(info: &ObjectInfo) -> &str {
    match &info.state {
        ObjectState::Crashed { reason } => reason,
        ObjectState::Alive => panic!("{info:?} should have crashed"),
    }
}

#[test]
fn a_panicking_near_object_crashes_alone() {
    let alice = VatHandle::start("alice").unwrap();
    let bomb = Arc::new(alice.spawn(|| Bomb { fuse: FUSE }).wait().unwrap());
    let tallies = Arc::new(
        (0..TALLIES)
            .map(|_| alice.spawn(Tally::default).wait().unwrap())
            .collect::<Vec<_>>(),
    );

    let (inside_bomb, inside_tallies) = (bomb.clone(), tallies.clone());
    let (exploded, others, later_send, later_call) = alice
        .run_async(move || async move {
            let bomb = inside_bomb.get().unwrap();
            let tallies: Vec<Ref<Tally>> =
                inside_tallies.iter().map(|t| t.get().unwrap()).collect();
            let mut sent = Vec::new();
            let mut explosion = None;
            for i in 0..CALLS {
                if i == CALLS / 2 {
                    explosion = Some(bomb.send(Bomb::explode));
                }
                sent.push(tallies[i as usize % TALLIES].send(|t| {
                    t.count += 1;
                    t.count
                }));
            }
            let exploded = explosion.unwrap().await;
            let others = join_all(sent).await;
            // Harmless messages now: were they delivered, they would succeed.
            let later_send = bomb.send(|b| b.fuse.len()).await;
            let later_call = bomb.call(|b| b.fuse.len());
            (exploded, others, later_send, later_call)
        })
        .wait()
        .unwrap();

    let error = exploded.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Crashed, "{error}");
    assert!(error.message().contains(FUSE), "{error}");
    assert!(error.message().contains("Bomb"), "{error}");
    assert!(error.message().contains(&bomb.id().to_string()), "{error}");

    // Each tally saw its messages, in order, before and after the crash.
    assert_eq!(others.len() as u64, CALLS);
    for (i, result) in others.into_iter().enumerate() {
        assert_eq!(result, Ok(i as u64 / TALLIES as u64 + 1), "message {i}");
    }

    let heap = alice.heap().wait().unwrap();
    let bomb_info = heap.iter().find(|o| o.id == bomb.id()).unwrap();
    assert!(crashed_reason(bomb_info).contains(FUSE), "{bomb_info:?}");
    assert_eq!(
        bomb_info.messages, 1,
        "a crashed object takes no more messages"
    );
    for tally in tallies.iter() {
        let info = heap.iter().find(|o| o.id == tally.id()).unwrap();
        assert_eq!(info.state, ObjectState::Alive, "{info:?}");
        assert_eq!(info.messages, CALLS / TALLIES as u64, "{info:?}");
    }

    for refused in [later_send.unwrap_err(), later_call.unwrap_err()] {
        assert_eq!(refused.kind(), ErrorKind::Crashed, "{refused}");
        assert!(refused.message().contains(FUSE), "{refused}");
    }
    // The vat itself is fine.
    assert_eq!(alice.run(|| 1 + 1).wait().unwrap(), 2);
    alice.stop().unwrap();
}

/// Holds a bomb and near-calls it from inside its own methods.
struct Holder {
    bomb: Ref<Bomb>,
}

#[test]
fn a_panic_crashes_every_object_whose_near_call_it_unwinds_through() {
    let alice = VatHandle::start("alice").unwrap();
    let (error, holder_crashed, bomb_crashed, refused, bystander) = alice
        .run_async(|| async {
            let bomb = vat::spawn(Bomb { fuse: FUSE });
            let holder = vat::spawn(Holder { bomb: bomb.clone() });
            let bystander = vat::spawn(Tally::default());
            let error = holder
                .send(|h| h.bomb.call(Bomb::explode))
                .await
                .unwrap_err();
            let refused = holder.send(|h| h.bomb.id()).await.unwrap_err();
            let bystander = bystander
                .send(|t| {
                    t.count += 1;
                    t.count
                })
                .await;
            (
                error,
                holder.is_crashed(),
                bomb.is_crashed(),
                refused,
                bystander,
            )
        })
        .wait()
        .unwrap();
    assert_eq!(error.kind(), ErrorKind::Crashed, "{error}");
    assert!(error.message().contains("Holder"), "{error}");
    assert!(error.message().contains(FUSE), "{error}");
    assert!(holder_crashed, "the object whose turn panicked");
    assert!(
        bomb_crashed,
        "the object whose near call the panic left half-way"
    );
    assert_eq!(refused.kind(), ErrorKind::Crashed, "{refused}");
    assert_eq!(bystander, Ok(1));
    alice.stop().unwrap();
}

/// Panics: the end of a future that was to produce a number.
fn explode_later() -> u32 {
    panic!("{FUSE} after an await")
}

#[test]
fn a_panic_after_an_await_crashes_the_object_too() {
    let alice = VatHandle::start("alice").unwrap();
    let (error, crashed, refused, bystander) = alice
        .run_async(|| async {
            let slow = vat::spawn(Tally::default());
            let bystander = vat::spawn(Tally::default());
            let error = slow
                .send_async(|_| async {
                    tokio::task::yield_now().await;
                    explode_later()
                })
                .await
                .unwrap_err();
            let refused = slow.send(|t| t.count).await.unwrap_err();
            let bystander = bystander.send(|t| t.count).await;
            (error, slow.is_crashed(), refused, bystander)
        })
        .wait()
        .unwrap();
    assert_eq!(error.kind(), ErrorKind::Crashed, "{error}");
    assert!(error.message().contains("after an await"), "{error}");
    assert!(error.message().contains("Tally"), "{error}");
    assert!(crashed);
    assert_eq!(refused.kind(), ErrorKind::Crashed, "{refused}");
    assert_eq!(bystander, Ok(0));
    alice.stop().unwrap();
}

#[test]
fn a_panicking_far_object_crashes_alone() {
    const COUNTERS: usize = 4;
    let alice = VatHandle::start("alice").unwrap();
    let bob = VatHandle::start("bob").unwrap();
    let route = serve_host(&bob, "bob", Transport::Pipe);

    let bob_seen_from_alice = bob.clone();
    let (crash, adds, later, totals, heap) = alice
        .run_async(move || async move {
            let connection = route.connect(None).await;
            let host: host::Client = connection.peer();
            let mut counters: Vec<counter::Client> = Vec::new();
            for _ in 0..COUNTERS {
                let response = host.counter_request().send().promise.await.unwrap();
                counters.push(response.get().unwrap().get_counter().unwrap());
            }
            let mut adds = Vec::new();
            let mut crash = None;
            for i in 0..CALLS {
                if i == CALLS / 2 {
                    let mut request = host.crash_request();
                    request.get().set_message(FUSE);
                    crash = Some(request.send().promise);
                }
                let mut add = counters[i as usize % COUNTERS].add_request();
                add.get().set_by(1);
                adds.push(add.send().promise);
            }
            let crash = crash.unwrap().await.map(|_| ()).map_err(vat::Error::from);
            let adds: Vec<Result<i64, vat::Error>> = join_all(adds)
                .await
                .into_iter()
                .map(|r| Ok(r?.get()?.get_value()))
                .collect();
            let mut echo = host.echo_request();
            echo.get().set_value(1);
            let later = echo
                .send()
                .promise
                .await
                .map(|_| ())
                .map_err(vat::Error::from);
            let mut totals = Vec::new();
            for counter in &counters {
                let response = counter.get_request().send().promise.await.unwrap();
                totals.push(response.get().unwrap().get_value());
            }
            // Bob's heap, taken while alice still holds the counters (once
            // she lets go, bob releases them).
            let heap = bob_seen_from_alice.heap().await.unwrap();
            (crash, adds, later, totals, heap)
        })
        .wait()
        .unwrap();

    let error = crash.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Crashed, "{error}");
    assert!(error.message().contains(FUSE), "{error}");
    assert!(error.message().contains("Host"), "{error}");

    assert_eq!(adds.len() as u64, CALLS);
    for (i, result) in adds.into_iter().enumerate() {
        assert_eq!(result, Ok((i / COUNTERS) as i64 + 1), "add {i}");
    }
    let refused = later.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Crashed, "{refused}");
    assert_eq!(totals, vec![(CALLS / COUNTERS as u64) as i64; COUNTERS]);

    let host = heap
        .iter()
        .find(|o| o.type_name.ends_with("demo::objects::Host"))
        .unwrap();
    assert!(crashed_reason(host).contains(FUSE), "{host:?}");
    // `counter` four times and `crash` once; the echo was refused uncounted.
    assert_eq!(host.messages, COUNTERS as u64 + 1, "{host:?}");
    let counters: Vec<_> = heap
        .iter()
        .filter(|o| o.type_name.ends_with("demo::objects::Counter"))
        .collect();
    assert_eq!(counters.len(), COUNTERS);
    for info in counters {
        assert_eq!(info.state, ObjectState::Alive, "{info:?}");
        // The adds and the final get.
        assert_eq!(info.messages, CALLS / COUNTERS as u64 + 1, "{info:?}");
    }
    alice.stop().unwrap();
    bob.stop().unwrap();
}
