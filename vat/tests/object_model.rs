//! One object, three ways to call it: an object written once with
//! `#[vat::object]` is called near, eventually, and far from another vat,
//! and every path is a turn of the same object.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use schema::demo_capnp::{counter, sequencer};
use vat::net::{tls, Identity, Limits};
use vat::{ErrorKind, VatHandle};

/// A counter written once: its state is plain fields.
struct Counter {
    value: i64,
    /// Calls answered, near or far.
    answered: u32,
}

#[vat::object(counter)]
impl Counter {
    fn add(&mut self, params: counter::AddParams, mut results: counter::AddResults) -> vat::Reply {
        let by = params.get()?.get_by();
        if by == i64::MIN {
            panic!("asked to add i64::MIN");
        }
        self.value += by;
        self.answered += 1;
        results.get().set_value(self.value);
        vat::done()
    }

    /// Answers after a pause, without holding the state meanwhile.
    fn get(&mut self, _: counter::GetParams, mut results: counter::GetResults) -> vat::Reply {
        let value = self.value;
        self.answered += 1;
        vat::later(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            results.get().set_value(value);
            Ok(())
        })
    }

    /// An ordinary method, for near calls.
    fn double(&mut self) -> i64 {
        self.value *= 2;
        self.value
    }
}

/// Records the order of pushes (E-order on the far path).
#[derive(Default)]
struct Sequence {
    received: u64,
    first_gap: Option<u64>,
}

#[vat::object(sequencer)]
impl Sequence {
    fn push(&mut self, params: sequencer::PushParams, _: sequencer::PushResults) -> vat::Reply {
        let n = params.get()?.get_n();
        if n != self.received && self.first_gap.is_none() {
            self.first_gap = Some(n);
        }
        self.received += 1;
        vat::done()
    }

    fn report(
        &mut self,
        _: sequencer::ReportParams,
        mut results: sequencer::ReportResults,
    ) -> vat::Reply {
        let mut report = results.get();
        report.set_received(self.received);
        report.set_in_order(self.first_gap.is_none());
        report.set_first_gap(self.first_gap.unwrap_or(0));
        vat::done()
    }
}

async fn add(counter: &counter::Client, by: i64) -> Result<i64, vat::Error> {
    let mut request = counter.add_request();
    request.get().set_by(by);
    Ok(request.send().promise.await?.get()?.get_value())
}

async fn get(counter: &counter::Client) -> Result<i64, vat::Error> {
    Ok(counter
        .get_request()
        .send()
        .promise
        .await?
        .get()?
        .get_value())
}

/// Serves `make()`'s capability from a new vat on loopback TLS; the vat,
/// and a dialler for it.
fn serve_far<C, F>(make: F) -> (VatHandle, std::net::SocketAddr, vat::net::PublicKey)
where
    C: capnp::capability::FromClientHook + Clone + 'static,
    F: FnOnce() -> C + Send + 'static,
{
    let identity = Identity::generate().unwrap();
    let key = identity.public_key();
    let server = VatHandle::start("server").unwrap();
    let addr = server
        .run_async(move || async move {
            let listener = tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &identity)
                .await
                .unwrap();
            let addr = listener.local_addr();
            let client = make().into_client_hook();
            listener.serve(
                move |_| Some(capnp::capability::Client::new(client.add_ref())),
                Limits::default(),
            );
            addr
        })
        .wait()
        .unwrap();
    (server, addr, key)
}

#[test]
fn near_eventual_and_far_calls_are_turns_of_the_same_object() {
    let vat = VatHandle::start("one").unwrap();
    let answers = vat
        .run_async(|| async {
            let counter = vat::spawn(Counter {
                value: 0,
                answered: 0,
            });
            let far: counter::Client = counter.export();
            let first = add(&far, 5).await?;
            let near = counter.call(|c| c.double())?;
            let eventual = counter.send(|c| c.value + 1).await?;
            let second = add(&far, 1).await?;
            let read = get(&far).await?;
            let answered = counter.call(|c| c.answered)?;
            // Spawned once: one object in the heap, near and far alike.
            let heap = vat::current().heap();
            let objects = heap
                .iter()
                .filter(|o| o.type_name.ends_with("Counter"))
                .count();
            Ok::<_, vat::Error>([
                first,
                near,
                eventual,
                second,
                read,
                i64::from(answered),
                i64::try_from(objects).unwrap(),
            ])
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(answers, [5, 10, 11, 11, 11, 3, 1]);
    vat.stop().unwrap();
}

#[test]
fn another_vat_calls_the_object_and_its_state_is_the_near_callers_state() {
    let (server, addr, key) = serve_far(|| {
        let counter = vat::spawn(Counter {
            value: 100,
            answered: 0,
        });
        // Kept by the capability, as long as another vat holds it.
        counter.export::<counter::Client>()
    });
    let client = VatHandle::start("client").unwrap();
    let values = client
        .run_async(move || async move {
            let connection = tls::dial(addr, key, None, None, Limits::default())
                .await
                .unwrap();
            let far: counter::Client = connection.peer();
            let added = add(&far, 23).await?;
            let read = get(&far).await?;
            Ok::<_, vat::Error>((added, read))
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(values, (123, 123));
    client.stop().unwrap();
    server.stop().unwrap();
}

#[test]
fn a_panic_in_a_far_call_crashes_the_object_for_near_callers_too() {
    let vat = VatHandle::start("crash").unwrap();
    let (crashed, near, far_after) = vat
        .run_async(|| async {
            let counter = vat::spawn(Counter {
                value: 0,
                answered: 0,
            });
            let far: counter::Client = counter.export();
            let crashed = add(&far, i64::MIN).await.unwrap_err();
            let near = counter.call(|c| c.value).unwrap_err();
            let far_after = add(&far, 1).await.unwrap_err();
            (crashed, near, far_after)
        })
        .wait()
        .unwrap();
    assert_eq!(crashed.kind(), ErrorKind::Crashed, "{crashed}");
    assert!(
        crashed.message().contains("asked to add i64::MIN"),
        "{crashed}"
    );
    assert_eq!(near.kind(), ErrorKind::Crashed, "{near}");
    assert_eq!(far_after.kind(), ErrorKind::Crashed, "{far_after}");
    vat.stop().unwrap();
}

#[test]
fn while_a_method_awaits_the_object_serves_other_calls() {
    let vat = VatHandle::start("await").unwrap();
    let (read, added) = vat
        .run_async(|| async {
            let counter = vat::spawn(Counter {
                value: 1,
                answered: 0,
            });
            let far: counter::Client = counter.export();
            // `get` read 1 and waits; `add` runs meanwhile.
            let (read, added) = futures::join!(get(&far), add(&far, 1));
            Ok::<_, vat::Error>((read?, added?))
        })
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!((read, added), (1, 2));
    vat.stop().unwrap();
}

#[test]
fn a_method_the_object_leaves_out_is_unimplemented() {
    struct Quiet;
    #[vat::object(counter)]
    impl Quiet {
        fn get(&mut self, _: counter::GetParams, mut results: counter::GetResults) -> vat::Reply {
            results.get().set_value(7);
            vat::done()
        }
    }
    let vat = VatHandle::start("partial").unwrap();
    let (got, added) = vat
        .run_async(|| async {
            let far: counter::Client = vat::spawn(Quiet).export();
            (get(&far).await, add(&far, 1).await)
        })
        .wait()
        .unwrap();
    assert_eq!(got, Ok(7));
    assert_eq!(added.unwrap_err().kind(), ErrorKind::Unimplemented);
    vat.stop().unwrap();
}

#[test]
fn far_calls_on_one_reference_arrive_in_the_order_sent() {
    let (server, addr, key) =
        serve_far(|| vat::spawn(Sequence::default()).export::<sequencer::Client>());
    let client = VatHandle::start("client").unwrap();
    let (received, in_order) = client
        .run_async(move || async move {
            let connection = tls::dial(addr, key, None, None, Limits::default())
                .await
                .unwrap();
            let far: sequencer::Client = connection.peer();
            let pushes: Vec<_> = (0..2_000u64)
                .map(|n| {
                    let mut push = far.push_request();
                    push.get().set_n(n);
                    push.send().promise
                })
                .collect();
            for push in pushes {
                push.await.unwrap();
            }
            let report = far.report_request().send().promise.await.unwrap();
            let report = report.get().unwrap();
            (report.get_received(), report.get_in_order())
        })
        .wait()
        .unwrap();
    assert_eq!((received, in_order), (2_000, true));
    client.stop().unwrap();
    server.stop().unwrap();
}
