//! A first vat program: the README's walkthrough, runnable.
//!
//! ```sh
//! cargo run -p examples --example first_vat
//! ```
//!
//! Two vats, alice and bob. alice holds near objects (plain Rust values) and
//! talks to them with near calls and eventual sends; bob serves a Cap'n Proto
//! `Host` over mutual TLS on loopback, which alice reaches as a far
//! reference, with promise pipelining. Along the way an object panics and
//! everything else carries on.

use schema::demo_capnp::host;
use vat::net::{tls, Identity, Limits};
use vat::{ErrorKind, Ref, VatHandle};

/// Any error this program can meet, as one type that may cross threads.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A near object: a plain Rust value living in one vat.
struct Counter {
    n: u64,
}

/// A near object that makes counters.
struct Factory;

impl Factory {
    fn make_counter(&mut self) -> Ref<Counter> {
        vat::spawn(Counter { n: 0 })
    }
}

fn main() -> Result<(), BoxError> {
    // 1. Start a vat: a thread with its own event loop. The handle is `Send`.
    let alice = VatHandle::start("alice")?;

    // 2. Spawn an object and call it: a near call runs now, an eventual send
    //    in a later turn of the vat, returning a promise at once.
    let total = alice
        .run_async(|| async {
            let counter = vat::spawn(Counter { n: 0 });
            counter.call(|c| c.n += 1)?; // near call: on this stack, now
            drop(counter.send(|c| c.n += 1)); // eventual send, result not wanted
            counter.send(|c| c.n).await // messages on one reference keep their order
        })
        .wait()??;
    println!("near call, then two sends: the counter reads {total}");
    assert_eq!(total, 2);

    // 3. Pipeline: send to a promise for a reference before it resolves.
    let piped = alice
        .run_async(|| async {
            let factory = vat::spawn(Factory);
            let made = factory.send(|f| f.make_counter()); // Promise<Ref<Counter>>
            drop(made.send(|c| c.n += 10)); // sent before `made` resolves
            made.send(|c| c.n).await
        })
        .wait()??;
    println!("sent to a counter before it existed: it reads {piped}");
    assert_eq!(piped, 10);

    // 4. Go far. bob exports a Cap'n Proto server and listens over mutual
    //    TLS; alice dials bob's address *and key*, so only bob can answer.
    let bob = VatHandle::start("bob")?;
    let bob_identity = Identity::generate()?;
    let bob_key = bob_identity.public_key();
    let addr = bob
        .run_async(move || async move {
            let host: host::Client = vat::export(vat::demo::Host::new("bob"));
            let loopback = ([127, 0, 0, 1], 0).into();
            let listener = tls::TlsListener::bind(loopback, &bob_identity).await?;
            let addr = listener.local_addr();
            listener.serve(move |_caller| Some(host.client.clone()), Limits::default());
            Ok::<_, BoxError>(addr)
        })
        .wait()??;

    let value = alice
        .run_async(move || async move {
            // No identity of our own: alice calls anonymously.
            let connection = tls::dial(addr, bob_key, None, None, Limits::default()).await?;
            let host: host::Client = connection.peer();
            // Pipelined: `add` goes out before bob has answered `counter`.
            let counter = host.counter_request().send().pipeline.get_counter();
            let mut add = counter.add_request();
            add.get().set_by(5);
            let reply = add.send().promise.await?;
            Ok::<_, BoxError>(reply.get()?.get_value())
        })
        .wait()??;
    println!("bob's counter, reached through a pipelined call: {value}");
    assert_eq!(value, 5);

    // 5. Crash, and go on: a panic breaks only the promise of its turn.
    let ((error, others_fine), heap) = alice
        .run_async(|| async {
            let fragile = vat::spawn(Counter { n: 0 });
            let steady = vat::spawn(Counter { n: 0 });
            let crashed = fragile.send(|c: &mut Counter| {
                if c.n == 0 {
                    panic!("refusing to count from zero");
                }
            });
            let fine = steady.send(|c| {
                c.n += 1;
                c.n
            });
            let outcome = (crashed.await.err(), fine.await);
            // The heap lists live objects: take the snapshot while both are.
            (outcome, vat::current().heap())
        })
        .wait()?;
    let error = error.ok_or("the fragile counter should have crashed")?;
    println!("the panicking send broke its promise: {error}");
    assert_eq!(error.kind(), ErrorKind::Crashed);
    println!(
        "a send to another object of the vat went on: {}",
        others_fine?
    );

    for object in &heap {
        println!(
            "  alice's heap: {} {} {:?}, {} message(s)",
            object.id, object.type_name, object.state, object.messages
        );
    }
    assert!(heap
        .iter()
        .any(|o| matches!(o.state, vat::ObjectState::Crashed { .. })));

    // 6. Stop: queued messages break with VatStopped, peers see Disconnected.
    alice.stop()?;
    bob.stop()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_walkthrough_runs_to_the_end() {
        super::main().unwrap();
    }
}
