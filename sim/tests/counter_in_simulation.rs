//! Testing a vat program in simulation: the example the README walks
//! through. Copy it, put your own objects in the vats, and state what must
//! hold after every run.
//!
//! A server vat keeps a durable counter and serves it by token; a client
//! vat adds to it through a healing reference. The scenario kills the
//! server and cuts the network at random; afterwards no acknowledged add
//! may be missing. `cargo test -p vat-sim --test counter_in_simulation`
//! runs 100 seeds; a failure prints the seed and the command replaying it.

// A test: a set-up step that fails should stop it with its reason.
#![allow(clippy::expect_used)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use rand::Rng;
use schema::demo_capnp::counter;
use sturdyrefs::SturdyRef;
use vat::demo::DurableCounter;
use vat::net::Limits;
use vat::sturdy::{healing, object_ref, HealOptions};
use vat_sim::property::{self, Verdict};
use vat_sim::{Report, SimBuilder};

/// What the scenario sees; every vat runs on this one thread, so plain
/// `Rc`s carry it.
#[derive(Default)]
struct Seen {
    token: RefCell<Option<SturdyRef>>,
    acknowledged: Cell<i64>,
}

fn run(builder: SimBuilder) -> Report<Verdict> {
    let sim = builder.build().expect("a runtime for the simulation");
    sim.run(|sim| async move {
        let seen = Rc::new(Seen::default());

        // The server: its program runs at every start, from what its disk kept.
        let server_seen = seen.clone();
        sim.add_vat("server", move |vat| {
            let seen = server_seen.clone();
            async move {
                let persistence = vat.persistence().expect("the server's store");
                let counter = object_ref("counter", 1).expect("an object name");
                persistence
                    .durable::<DurableCounter>(1)
                    .expect("the counter");
                vat.serve(&persistence, 4000, Limits::default())
                    .expect("port 4000");
                if seen.token.borrow().is_none() {
                    let token = persistence.mint(&counter, Default::default()).await;
                    *seen.token.borrow_mut() = token.ok();
                }
                let _keep = persistence;
                std::future::pending::<()>().await;
            }
        });

        // The client: adds 1 every 50 ms through a healing reference.
        let client_seen = seen.clone();
        sim.add_vat("client", move |vat| {
            let seen = client_seen.clone();
            async move {
                let token = loop {
                    if let Some(token) = seen.token.borrow().clone() {
                        break token;
                    }
                    vat_env::sleep(Duration::from_millis(10)).await;
                };
                let counter: counter::Client =
                    healing(token, Some(vat.identity().clone()), HealOptions::default()).cast_to();
                loop {
                    vat_env::sleep(Duration::from_millis(50)).await;
                    let mut add = counter.add_request();
                    add.get().set_by(1);
                    if add.send().promise.await.is_ok() {
                        seen.acknowledged.set(seen.acknowledged.get() + 1);
                    }
                }
            }
        });

        // Faults for 20 simulated seconds, drawn from the seed.
        for _ in 0..10 {
            tokio::time::sleep(sim.random_duration(Duration::ZERO, Duration::from_secs(2))).await;
            if sim.random(|rng| rng.random_bool(0.5)) {
                sim.crash("server");
                tokio::time::sleep(Duration::from_millis(500)).await;
                sim.restart("server");
            } else {
                sim.partition("client", "server");
                tokio::time::sleep(Duration::from_secs(1)).await;
                sim.heal_all();
            }
        }

        // The invariant: the server holds at least every acknowledged add.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let token = seen.token.borrow().clone().ok_or("no token was minted")?;
        let held = sim
            .within("client", move || async move {
                let counter: counter::Client =
                    healing(token, None, HealOptions::default()).cast_to();
                let reply = counter.get_request().send().promise.await.ok()?;
                reply.get().ok().map(|r| r.get_value())
            })
            .await
            .flatten()
            .ok_or("the server could not be reached at the end")?;
        let acknowledged = seen.acknowledged.get();
        if held < acknowledged {
            return Err(format!("{acknowledged} adds acknowledged, {held} kept"));
        }
        Ok(())
    })
}

#[test]
fn no_acknowledged_add_is_lost_across_crashes_and_partitions() {
    property::check(
        "counter",
        "cargo test -p vat-sim --test counter_in_simulation -- --nocapture",
        100,
        run,
    );
}
