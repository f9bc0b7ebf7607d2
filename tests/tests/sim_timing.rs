//! The runtime's timing promises, checked in the simulator, where time is
//! virtual: bounds a wall-clock test could only approximate (and which a
//! busy machine would break) hold here to the millisecond, in every run.

// A test: a set-up step that fails should stop it with its reason.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use captp::Limits;
use schema::demo_capnp::counter;
use sturdyrefs::SturdyRef;
use vat::demo::DurableCounter;
use vat::sturdy::{connections, healing, object_ref, restore, HealOptions};
use vat::ErrorKind;
use vat_sim::{SimBuilder, SimHandle};

/// Starts a vat `server` serving the durable counter `counter#1` on port
/// 4000, and returns its token once minted.
async fn serve_a_counter(sim: &SimHandle) -> SturdyRef {
    let token: Rc<RefCell<Option<SturdyRef>>> = Rc::default();
    let minted = token.clone();
    sim.add_vat("server", move |vat| {
        let minted = minted.clone();
        async move {
            let persistence = vat.persistence().unwrap();
            persistence.durable::<DurableCounter>(1).unwrap();
            vat.serve(&persistence, 4000, Limits::default()).unwrap();
            let counter = object_ref("counter", 1).unwrap();
            if minted.borrow().is_none() {
                *minted.borrow_mut() = Some(
                    persistence
                        .mint(&counter, Default::default())
                        .await
                        .unwrap(),
                );
            }
            let _keep = persistence;
            std::future::pending::<()>().await;
        }
    });
    loop {
        if let Some(token) = token.borrow().clone() {
            return token;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What a call on the counter gave, and when (simulated time).
async fn add_one(counter: &counter::Client) -> Result<i64, ErrorKind> {
    let mut add = counter.add_request();
    add.get().set_by(1);
    let reply = add
        .send()
        .promise
        .await
        .map_err(|e| vat::Error::from(e).kind())?;
    Ok(reply
        .get()
        .map_err(|e| vat::Error::from(e).kind())?
        .get_value())
}

#[test]
fn a_call_made_while_its_vat_stays_down_fails_exactly_after_the_healing_wait() {
    let wait = Duration::from_millis(400);
    let report = SimBuilder::new(1).build().unwrap().run(|sim| async move {
        let token = serve_a_counter(&sim).await;
        sim.add_vat("client", |_| async { std::future::pending::<()>().await });
        let options = HealOptions {
            wait,
            ..HealOptions::default()
        };
        let server = sim.clone();
        sim.within("client", move || async move {
            let counter: counter::Client = healing(token, None, options).cast_to();
            assert_eq!(add_one(&counter).await, Ok(1));
            server.crash("server");
            // The reference notices the reset one trip later; then a call waits.
            vat_env::sleep(Duration::from_millis(50)).await;
            let started = vat_env::now();
            let outcome = add_one(&counter).await;
            (outcome, started.elapsed())
        })
        .await
        .unwrap()
    });
    let (outcome, waited) = report.outcome.unwrap();
    assert_eq!(outcome, Err(ErrorKind::Disconnected));
    // Not before the wait, and not later than the timer's millisecond.
    assert!(waited >= wait, "failed after {waited:?}, before the wait");
    assert!(
        waited <= wait + Duration::from_millis(1),
        "failed only after {waited:?}"
    );
}

#[test]
fn an_idle_connection_closes_once_idle_for_the_timeout_and_a_later_restore_dials_again() {
    let idle = Duration::from_millis(600);
    let limits = Limits {
        idle_timeout: idle,
        ..Limits::default()
    };
    let report = SimBuilder::new(2).build().unwrap().run(|sim| async move {
        let token = serve_a_counter(&sim).await;
        sim.add_vat("client", |_| async { std::future::pending::<()>().await });
        sim.within("client", move || async move {
            let (object, _kind) = restore(&token, None, limits).await.unwrap();
            let counter: counter::Client = object.cast_to();
            assert_eq!(add_one(&counter).await, Ok(1));
            let first = connections();
            assert_eq!(first.len(), 1);
            drop(counter);
            let released = vat_env::now();
            while !connections().is_empty() {
                vat_env::sleep(Duration::from_millis(1)).await;
            }
            let closed_after = released.elapsed();
            let (object, _kind) = restore(&token, None, limits).await.unwrap();
            let counter: counter::Client = object.cast_to();
            let value = add_one(&counter).await;
            let second = connections();
            (first, closed_after, value, second)
        })
        .await
        .unwrap()
    });
    let (first, closed_after, value, second) = report.outcome.unwrap();
    assert!(closed_after >= idle, "closed after {closed_after:?}");
    assert!(
        closed_after <= idle * 2,
        "still open {closed_after:?} after its last use"
    );
    assert_eq!(value, Ok(2));
    assert_eq!(second.len(), 1);
    assert!(second[0].serial > first[0].serial, "a new connection");
}
