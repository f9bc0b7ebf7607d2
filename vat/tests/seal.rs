//! `vat::Brand`: a vat recognises its own exports of one brand, locally and
//! when they come back over TLS from another vat, and nothing else.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use schema::demo_capnp::{host, sequencer};
use vat::net::{tls, Identity, Limits, PublicKey};
use vat::{Brand, VatHandle};

/// An object of the brand: counts the numbers pushed to it; pushing
/// `u64::MAX` makes it panic.
#[derive(Default)]
struct Token {
    pushes: Cell<u64>,
}

impl sequencer::Server for Token {
    async fn push(
        self: Rc<Self>,
        params: sequencer::PushParams,
        _: sequencer::PushResults,
    ) -> Result<(), capnp::Error> {
        if params.get()?.get_n() == u64::MAX {
            panic!("asked to crash");
        }
        self.pushes.set(self.pushes.get() + 1);
        Ok(())
    }
}

/// A proxy: forwards every push to its target.
struct Forward(sequencer::Client);

impl sequencer::Server for Forward {
    async fn push(
        self: Rc<Self>,
        params: sequencer::PushParams,
        _: sequencer::PushResults,
    ) -> Result<(), capnp::Error> {
        let mut request = self.0.push_request();
        request.get().set_n(params.get()?.get_n());
        request.send().promise.await?;
        Ok(())
    }
}

/// A host whose `reflect` hands back a proxy of its own for the sequencer
/// it is given, not the sequencer itself.
struct ProxyingHost;

impl host::Server for ProxyingHost {
    async fn reflect(
        self: Rc<Self>,
        params: host::ReflectParams,
        mut results: host::ReflectResults,
    ) -> Result<(), capnp::Error> {
        let target = params.get()?.get_sequencer()?;
        let proxy: sequencer::Client = vat::export(Forward(target));
        results.get().set_sequencer(proxy);
        Ok(())
    }
}

/// A host whose `sequencer` is a Token of a brand of its vat's own.
struct BrandingHost(Brand<Token>);

impl host::Server for BrandingHost {
    async fn sequencer(
        self: Rc<Self>,
        _: host::SequencerParams,
        mut results: host::SequencerResults,
    ) -> Result<(), capnp::Error> {
        let token: sequencer::Client = self.0.export(Token::default());
        results.get().set_sequencer(token);
        Ok(())
    }
}

/// Starts a vat serving `make()` as its bootstrap over TLS on loopback.
fn serve<F>(name: &str, make: F) -> (VatHandle, SocketAddr, PublicKey)
where
    F: FnOnce() -> capnp::capability::Client + Send + 'static,
{
    let vat = VatHandle::start(name).unwrap();
    let identity = Identity::generate().unwrap();
    let key = identity.public_key();
    let addr = vat
        .run_async(move || async move {
            let bootstrap = make();
            let listener = tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &identity)
                .await
                .unwrap();
            let addr = listener.local_addr();
            listener.serve(move |_| Some(bootstrap.clone()), Limits::default());
            addr
        })
        .wait()
        .unwrap();
    (vat, addr, key)
}

/// Runs `work` in a vat alice with the host a vat bob serves over TLS
/// (the one `make` exports), then stops both.
fn alice_calls_bobs_host<W, Fut>(make: fn() -> host::Client, work: W)
where
    W: FnOnce(host::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (bob, addr, key) = serve("bob", move || make().client);
    let alice = VatHandle::start("alice").unwrap();
    alice
        .run_async(move || async move { work(dial(addr, key).await).await })
        .wait()
        .unwrap();
    alice.stop().unwrap();
    bob.stop().unwrap();
}

/// The bootstrap of the vat at `addr`, dialled over TLS.
async fn dial<C: capnp::capability::FromClientHook>(addr: SocketAddr, key: PublicKey) -> C {
    let connection = tls::dial(addr, key, None, None, Limits::default())
        .await
        .unwrap();
    connection.peer()
}

/// What `host.reflect` hands back for `sequencer`.
async fn reflect(host: &host::Client, sequencer: &sequencer::Client) -> sequencer::Client {
    let mut reflect = host.reflect_request();
    reflect.get().set_sequencer(sequencer.clone());
    let response = reflect.send().promise.await.unwrap();
    response.get().unwrap().get_sequencer().unwrap()
}

async fn push(target: &sequencer::Client, n: u64) -> Result<(), capnp::Error> {
    let mut request = target.push_request();
    request.get().set_n(n);
    request.send().promise.await.map(|_| ())
}

/// Waits (as a hang guard, 60 s) until `done` holds.
async fn eventually(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn a_brands_own_export_is_recognised_locally_and_nothing_else_is() {
    let vat = VatHandle::start("local").unwrap();
    vat.run_async(|| async {
        let brand = Brand::new();
        let mine: sequencer::Client = brand.export(Token::default());
        push(&mine, 1).await.unwrap();
        let found = brand.recognise(&mine).await.expect("our own export");
        assert_eq!(
            found.pushes.get(),
            1,
            "the very object behind the capability"
        );
        // A copy of the capability is the same object.
        assert!(brand.recognise(&mine.clone()).await.is_some());

        let other_brand = Brand::new();
        let theirs: sequencer::Client = other_brand.export(Token::default());
        assert!(brand.recognise(&theirs).await.is_none(), "another brand's");
        assert!(
            other_brand.recognise(&mine).await.is_none(),
            "another brand's"
        );

        let plain: sequencer::Client = vat::export(Token::default());
        assert!(brand.recognise(&plain).await.is_none(), "a plain export");

        let proxy: sequencer::Client = vat::export(Forward(mine.clone()));
        push(&proxy, 2).await.unwrap();
        assert_eq!(found.pushes.get(), 2, "the proxy reaches our object");
        assert!(brand.recognise(&proxy).await.is_none(), "a proxy to ours");

        // A promise is followed to what it resolves to.
        let (sender, receiver) = tokio::sync::oneshot::channel::<sequencer::Client>();
        let promise: sequencer::Client = capnp_rpc::new_future_client(async move {
            receiver
                .await
                .map_err(|_| capnp::Error::failed("gone".into()))
        });
        sender.send(mine.clone()).ok().unwrap();
        assert!(
            brand.recognise(&promise).await.is_some(),
            "a promise for ours"
        );

        let broken: sequencer::Client = capnp_rpc::new_future_client(async {
            Err::<sequencer::Client, _>(capnp::Error::failed("never".into()))
        });
        assert!(brand.recognise(&broken).await.is_none(), "a broken promise");
        let broken = sequencer::Client {
            client: capnp_rpc::new_broken_cap(capnp::Error::failed("broken".into())),
        };
        assert!(
            brand.recognise(&broken).await.is_none(),
            "a broken reference"
        );
    })
    .wait()
    .unwrap();
    vat.stop().unwrap();
}

#[test]
fn a_crashed_object_is_not_recognised() {
    let vat = VatHandle::start("crash").unwrap();
    vat.run_async(|| async {
        let brand = Brand::new();
        let mine: sequencer::Client = brand.export(Token::default());
        let crash = push(&mine, u64::MAX).await.map_err(vat::Error::from);
        assert_eq!(crash.unwrap_err().kind(), vat::ErrorKind::Crashed);
        assert!(brand.recognise(&mine).await.is_none());
    })
    .wait()
    .unwrap();
    vat.stop().unwrap();
}

#[test]
fn an_export_sent_to_another_vat_and_handed_back_is_recognised() {
    alice_calls_bobs_host(
        || vat::export(vat::demo::Host::new("bob")),
        |host| async move {
            let brand = Brand::new();
            let mine: sequencer::Client = brand.export(Token::default());

            let back = reflect(&host, &mine).await;
            let found = brand.recognise(&back).await.expect("ours, handed back");
            push(&back, 7).await.unwrap();
            assert_eq!(found.pushes.get(), 1);

            // Pipelined: a promise (over the network) for what bob hands back.
            let mut reflect = host.reflect_request();
            reflect.get().set_sequencer(mine.clone());
            // The answer is kept (not awaited): a dropped answer is a
            // cancelled question, whose pipeline never resolves.
            let answer = reflect.send();
            let promised = answer.pipeline.get_sequencer();
            assert!(
                brand.recognise(&promised).await.is_some(),
                "a promise for ours"
            );
            answer.promise.await.unwrap();
            // Resolved by now: followed without waiting for more.
            assert!(
                brand.recognise(&promised).await.is_some(),
                "a resolved promise"
            );
        },
    );
}

#[test]
fn another_vats_object_of_the_same_type_is_not_recognised() {
    alice_calls_bobs_host(
        || vat::export(BrandingHost(Brand::new())),
        |host| async move {
            let response = host.sequencer_request().send().promise.await.unwrap();
            let theirs = response.get().unwrap().get_sequencer().unwrap();
            push(&theirs, 1).await.unwrap();
            let brand: Brand<Token> = Brand::new();
            let _mine: sequencer::Client = brand.export(Token::default());
            assert!(brand.recognise(&theirs).await.is_none());
        },
    );
}

#[test]
fn a_proxy_in_another_vat_is_not_recognised() {
    alice_calls_bobs_host(
        || vat::export(ProxyingHost),
        |host| async move {
            let brand = Brand::new();
            let mine: sequencer::Client = brand.export(Token::default());
            let proxy = reflect(&host, &mine).await;
            // The proxy reaches our object, through bob...
            push(&proxy, 1).await.unwrap();
            let found = brand.recognise(&mine).await.unwrap();
            assert_eq!(found.pushes.get(), 1);
            // ...but it is bob's object, not ours.
            assert!(brand.recognise(&proxy).await.is_none());
        },
    );
}

#[test]
fn a_dropped_export_leaves_no_entry() {
    let (bob, addr, key) = serve("bob", || {
        let host: host::Client = vat::export(vat::demo::Host::new("bob"));
        host.client
    });
    let alice = VatHandle::start("alice").unwrap();
    alice
        .run_async(move || async move {
            let brand = Brand::new();
            let exports: Vec<sequencer::Client> =
                (0..100).map(|_| brand.export(Token::default())).collect();
            assert_eq!(brand.len(), 100);
            assert_eq!(brand.members().len(), 100);
            drop(exports);
            assert!(brand.is_empty(), "entries leave with their objects");
            assert!(brand.members().is_empty());

            // One that went to bob and came back: its entry stays while
            // anyone holds it, and leaves once both vats have let go.
            let host: host::Client = dial(addr, key).await;
            let mine: sequencer::Client = brand.export(Token::default());
            let watch = Rc::downgrade(&brand.recognise(&mine).await.unwrap());
            let back = reflect(&host, &mine).await;
            drop(mine);
            assert_eq!(brand.len(), 1);
            drop(back);
            eventually(|| brand.is_empty()).await;
            assert!(watch.upgrade().is_none(), "the object itself is gone");
        })
        .wait()
        .unwrap();
    alice.stop().unwrap();
    bob.stop().unwrap();
}

/// A sequencer of the one object model: its count is a plain field.
#[derive(Default)]
struct Tally {
    pushes: u64,
}

#[vat::object(sequencer)]
impl Tally {
    fn push(&mut self, _: sequencer::PushParams, _: sequencer::PushResults) -> vat::Reply {
        self.pushes += 1;
        vat::done()
    }
}

#[test]
fn an_object_of_the_one_model_is_recognised_when_handed_back_and_strangers_are_not() {
    alice_calls_bobs_host(
        || vat::export(vat::demo::Host::new("bob")),
        |host| async move {
            let brand: Brand<Tally> = Brand::new();
            let tally = vat::spawn(Tally::default());
            let mine: sequencer::Client = brand.export_object(&tally);
            assert_eq!(brand.objects().len(), 1);

            // Sent to bob and handed back: the same object, reached near.
            let back = reflect(&host, &mine).await;
            let found = brand
                .recognise_object(&back)
                .await
                .expect("ours, handed back");
            assert!(found.same_object(&tally));
            push(&back, 1).await.unwrap();
            assert_eq!(found.call(|t| t.pushes).unwrap(), 1);

            // The same type's capability made without the brand, another
            // brand's, and a server export are strangers.
            let plain: sequencer::Client = vat::spawn(Tally::default()).export();
            let other_brand: Brand<Tally> = Brand::new();
            let other: sequencer::Client = other_brand.export_object(&vat::spawn(Tally::default()));
            let server: sequencer::Client = vat::export(Token::default());
            for stranger in [plain, other, server] {
                assert!(brand.recognise_object(&stranger).await.is_none());
            }

            // Dropped everywhere (bob's proxy too), the member goes.
            drop((mine, back, found, tally));
            eventually(|| brand.objects().is_empty() && brand.is_empty()).await;
        },
    );
}
