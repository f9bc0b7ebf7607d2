//! A first vat program: the README's walkthrough, runnable.
//!
//! ```sh
//! cargo run -p examples --example first_vat
//! ```
//!
//! Two vats, alice and bob. alice holds near objects and talks to them with
//! near calls and eventual sends; bob spawns a counter and serves it over
//! mutual TLS on loopback, and alice calls the same object from afar. Along
//! the way an object panics and everything else carries on.

use schema::demo_capnp::counter;
use vat::net::{Dialer, Identity, Server};
use vat::{ErrorKind, VatHandle};

/// One object, written once: a plain struct and its methods.
struct Counter {
    n: i64,
}

#[vat::object(counter)]
impl Counter {
    fn add(&mut self, params: counter::AddParams, mut results: counter::AddResults) -> vat::Reply {
        self.n += params.get()?.get_by();
        results.get().set_value(self.n);
        vat::done()
    }
}

fn main() -> Result<(), vat::Error> {
    // 1. Start a vat: a thread with its own event loop. The handle is `Send`.
    let alice = VatHandle::start("alice")?;

    // 2. Spawn an object and call it: a near call runs now, an eventual send
    //    in a later turn of the vat, returning a promise at once.
    let total = alice.block_on(|| async {
        let counter = vat::spawn(Counter { n: 0 });
        counter.call(|c| c.n += 1)?; // near call: on this stack, now
        counter.tell(|c| c.n += 1); // eventual send, no answer wanted
        counter.send(|c| c.n).await // messages on one reference keep their order
    })?;
    println!("near call, then two sends: the counter reads {total}");

    // 3. Pipeline: send to a promise for a reference before it resolves.
    let piped = alice.block_on(|| async {
        let factory = vat::spawn(());
        let made = factory.send(|_| vat::spawn(Counter { n: 0 })); // Promise<Ref<Counter>>
        made.tell(|c| c.n += 10); // sent before `made` resolves
        made.send(|c| c.n).await
    })?;
    println!("sent to a counter before it existed: it reads {piped}");

    // 4. Go far: bob spawns a counter and serves it over mutual TLS; alice
    //    dials bob's address *and key*, so only bob can answer.
    let bob = VatHandle::start("bob")?;
    let bob_identity = Identity::generate()?;
    let bob_key = bob_identity.public_key();
    let addr = bob.block_on(move || async move {
        let counter: counter::Client = vat::spawn(Counter { n: 100 }).export();
        let loopback = ([127, 0, 0, 1], 0).into();
        let served = Server::new(counter.client)
            .tls(loopback, &bob_identity)
            .await;
        Ok::<_, vat::Error>(served?)
    })?;
    let far = alice.block_on(move || async move {
        let connection = Dialer::new(addr).tls(bob_key).await?;
        let counter: counter::Client = connection.peer();
        let mut add = counter.add_request();
        add.get().set_by(5);
        Ok::<_, vat::Error>(add.send().promise.await?.get()?.get_value())
    })?;
    println!("bob's counter, called from alice's vat: {far}");

    // 5. Crash, and go on: a panic breaks only the promise of its turn.
    let (crashed, steady) = alice.block_on(|| async {
        let fragile = vat::spawn(Counter { n: 0 });
        let crashed = fragile.send(|_| -> i64 { panic!("no") }).await;
        let steady = vat::spawn(Counter { n: 1 }).send(|c| c.n).await;
        Ok::<_, vat::Error>((crashed.err().map(|e| e.kind()), steady?))
    })?;
    println!("a panic broke its promise ({crashed:?}); another object answered {steady}");

    // 6. Stop: queued messages break with VatStopped, peers see Disconnected.
    alice.stop()?;
    bob.stop()?;
    assert_eq!((total, piped, far), (2, 10, 105));
    assert_eq!(crashed, Some(ErrorKind::Crashed));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_walkthrough_runs_to_the_end() {
        super::main().unwrap();
    }
}
