//! Sturdyrefs between vats over TLS: restore, the refusals, revocation of
//! live references, expiry, binding, and persistent state across a restart
//! of the serving vat.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use capnp::capability::FromClientHook;
use schema::demo_capnp::counter;
use schema::gateway_capnp::gateway;
use sturdyrefs::{MintOptions, SturdyRef, SwissNumber, VatId};
use vat::demo::DurableCounter;
use vat::net::{tls, Identity, Limits};
use vat::sturdy::{healing, object_ref, restore, vat_id, HealOptions, Persistence, RestoreError};
use vat::{ErrorKind, Root, VatHandle};

/// A vat serving a durable counter (`counter#1`) from a data folder.
struct Server {
    vat: VatHandle,
    persistence: Arc<Root<Persistence>>,
    key: VatId,
    addr: std::net::SocketAddr,
}

impl Server {
    /// Starts a server on `port` (0: any free port).
    fn start(dir: &Path, identity: &Identity, port: u16) -> Server {
        let vat = VatHandle::start("server").unwrap();
        let (dir, id) = (dir.to_path_buf(), identity.clone());
        let (persistence, addr) = vat
            .run_async(move || async move {
                let persistence = Persistence::open(&dir, vat_id(id.public_key())).unwrap();
                persistence.durable::<DurableCounter>(1).unwrap();
                let host: schema::demo_capnp::host::Client =
                    vat::export(vat::demo::Host::new("server"));
                persistence.provide(object_ref("host", 1).unwrap(), host.client);
                let listener = tls::TlsListener::bind(([127, 0, 0, 1], port).into(), &id)
                    .await
                    .unwrap();
                let addr = listener.local_addr();
                persistence.set_hints(vec![addr.to_string().parse().unwrap()]);
                persistence.serve(listener, Limits::default());
                let kept = vat::spawn(persistence);
                (vat::current().root(&kept), addr)
            })
            .wait()
            .unwrap();
        Server {
            vat,
            persistence: Arc::new(persistence),
            key: vat_id(identity.public_key()),
            addr,
        }
    }

    /// Runs `work` with the server's persistence, inside its vat.
    fn with<R, F, Fut>(&self, work: F) -> R
    where
        F: FnOnce(Persistence) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let root = Arc::clone(&self.persistence);
        self.vat
            .run_async(move || async move {
                let persistence = root.get().unwrap().call(|p| p.clone()).unwrap();
                work(persistence).await
            })
            .wait()
            .unwrap()
    }

    /// Mints a token for the counter.
    fn mint(&self, options: MintOptions) -> String {
        self.mint_for("counter", options)
    }

    /// Mints a token for `kind#1`.
    fn mint_for(&self, kind: &'static str, options: MintOptions) -> String {
        self.with(move |p| async move {
            let object = object_ref(kind, 1).unwrap();
            p.mint(&object, options).await.unwrap().to_string()
        })
    }

    /// Revokes `token`; returns whether the vat knew it.
    fn revoke(&self, token: &str) -> bool {
        let hash = token.parse::<SturdyRef>().unwrap().swiss().hash();
        self.with(move |p| async move { p.revoke(&hash).await.unwrap() })
    }

    fn stop(self) {
        drop(self.persistence);
        self.vat.stop().unwrap();
    }
}

/// What a holder got when it used a token.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The counter's value after the call.
    Value(i64),
    /// The serving vat (or the reference) refused, with this kind.
    Refused(ErrorKind),
    /// No peer proved the token's vat key; the attempts, as text.
    Unreachable(String),
}

/// A vat holding tokens, with an identity of its own (or none).
struct Client {
    vat: VatHandle,
    identity: Option<Identity>,
}

/// A counter reference kept inside the client's vat between steps.
struct Held(counter::Client);

impl Client {
    fn start(name: &str, anonymous: bool) -> Client {
        Client {
            vat: VatHandle::start(name).unwrap(),
            identity: (!anonymous).then(|| Identity::generate().unwrap()),
        }
    }

    fn id(&self) -> VatId {
        vat_id(self.identity.as_ref().unwrap().public_key())
    }

    /// Restores `token` and keeps the reference.
    fn restore(&self, token: &str) -> Result<Arc<Root<Held>>, Outcome> {
        let token: SturdyRef = token.parse().unwrap();
        let identity = self.identity.clone();
        let kept = self
            .vat
            .run_async(move || async move {
                match restore(&token, identity.as_ref(), Limits::default()).await {
                    Ok((object, kind)) => {
                        assert_eq!(kind, "counter");
                        let held = vat::spawn(Held(object.cast_to()));
                        Ok(vat::current().root(&held))
                    }
                    Err(RestoreError::Refused(error)) => Err(Outcome::Refused(error.kind())),
                    Err(unreachable) => Err(Outcome::Unreachable(unreachable.to_string())),
                }
            })
            .wait()
            .unwrap()?;
        Ok(Arc::new(kept))
    }

    /// Adds `by` through a kept reference.
    fn add_on(&self, held: &Arc<Root<Held>>, by: i64) -> Outcome {
        let held = Arc::clone(held);
        self.vat
            .run_async(move || async move {
                let counter = held.get().unwrap().call(|h| h.0.clone()).unwrap();
                match add(&counter, by).await {
                    Ok(value) => Outcome::Value(value),
                    Err(error) => Outcome::Refused(error.kind()),
                }
            })
            .wait()
            .unwrap()
    }

    /// Asks the vat of `token` (which this client restored into `held`) for
    /// a handoff token of the same object for `recipient`.
    fn hand_off(&self, token: &str, held: &Arc<Root<Held>>, recipient: VatId) -> String {
        let token: SturdyRef = token.parse().unwrap();
        let identity = self.identity.clone();
        let held = Arc::clone(held);
        self.vat
            .run_async(move || async move {
                let object = held.get().unwrap().call(|h| h.0.client.clone()).unwrap();
                vat::sturdy::handoff(
                    &token,
                    &object,
                    recipient,
                    identity.as_ref(),
                    Limits::default(),
                )
                .await
                .unwrap()
                .to_string()
            })
            .wait()
            .unwrap()
    }

    /// A healing reference to the counter `token` names, kept in the vat.
    fn heal(&self, token: &str, wait: Duration) -> Arc<Root<Held>> {
        let token: SturdyRef = token.parse().unwrap();
        let identity = self.identity.clone();
        let options = HealOptions {
            wait,
            ..HealOptions::default()
        };
        let kept = self
            .vat
            .run(move || {
                let held = vat::spawn(Held(healing(token, identity, options).cast_to()));
                vat::current().root(&held)
            })
            .wait()
            .unwrap();
        Arc::new(kept)
    }

    /// The call-one face of a group whose one member is a healing reference
    /// to the counter `token` names, joined as a forwarding member.
    fn heal_in_group(&self, token: &str) -> Arc<Root<Held>> {
        let token: SturdyRef = token.parse().unwrap();
        let identity = self.identity.clone();
        let options = HealOptions {
            wait: Duration::from_secs(20),
            ..HealOptions::default()
        };
        let kept = self
            .vat
            .run(move || {
                let group = vat::group::Group::new("healing", vat::group::Strategy::RoundRobin);
                group
                    .join_forwarding(healing(token, identity, options))
                    .keep();
                let held = vat::spawn(Held(group.client()));
                vat::current().root(&held)
            })
            .wait()
            .unwrap();
        Arc::new(kept)
    }

    /// Restores `token` afresh and adds `by` to the counter it names.
    fn add(&self, token: &str, by: i64) -> Outcome {
        match self.restore(token) {
            Ok(held) => self.add_on(&held, by),
            Err(outcome) => outcome,
        }
    }
}

async fn add(counter: &counter::Client, by: i64) -> Result<i64, vat::Error> {
    let mut request = counter.add_request();
    request.get().set_by(by);
    Ok(request.send().promise.await?.get()?.get_value())
}

/// `token` with its swiss number replaced by `swiss`.
fn with_swiss(token: &str, swiss: SwissNumber) -> String {
    let parsed: SturdyRef = token.parse().unwrap();
    SturdyRef::new(*parsed.vat(), parsed.hints().to_vec(), swiss)
        .unwrap()
        .to_string()
}

#[test]
fn a_token_minted_in_one_vat_is_restored_and_called_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let token = server.mint(MintOptions::default());
    assert!(token.starts_with("captp://"), "{token}");
    assert!(token.contains(&server.key.to_string()), "{token}");
    assert!(token.contains(&server.addr.to_string()), "{token}");

    let client = Client::start("client", false);
    assert_eq!(client.add(&token, 5), Outcome::Value(5));
    // A second restore reaches the same object, with the same state.
    assert_eq!(client.add(&token, 2), Outcome::Value(7));
    // So does an anonymous holder: the token is the authority.
    let anonymous = Client::start("anonymous", true);
    assert_eq!(anonymous.add(&token, 1), Outcome::Value(8));
    server.stop();
}

#[test]
fn tampered_tokens_are_refused_and_the_vat_goes_on_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let token = server.mint(MintOptions::default());
    let client = Client::start("client", false);

    // Another swiss number: unknown.
    let guessed = with_swiss(&token, SwissNumber::generate().unwrap());
    assert_eq!(
        client.add(&guessed, 1),
        Outcome::Refused(ErrorKind::UnknownToken)
    );

    // Another vat id: the vat at the hinted address cannot prove it.
    let other = vat_id(Identity::generate().unwrap().public_key());
    let parsed: SturdyRef = token.parse().unwrap();
    let forged = SturdyRef::new(other, parsed.hints().to_vec(), parsed.swiss().clone())
        .unwrap()
        .to_string();
    match client.add(&forged, 1) {
        Outcome::Unreachable(why) => assert!(why.contains("it proved it is vat"), "{why}"),
        other => panic!("expected unreachable, got {other:?}"),
    }

    // Another port: nothing there. (A vat with a connection to the server
    // already would use it: hints only locate the vat the id names.)
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap();
    drop(closed);
    let moved = token.replace(&server.addr.to_string(), &dead_port.to_string());
    let newcomer = Client::start("newcomer", false);
    match newcomer.add(&moved, 1) {
        Outcome::Unreachable(why) => assert!(why.contains("cannot connect"), "{why}"),
        other => panic!("expected unreachable, got {other:?}"),
    }

    // Through all that the vat served the real token.
    assert_eq!(client.add(&token, 3), Outcome::Value(3));
    server.stop();
}

#[test]
fn a_vat_with_another_key_at_the_right_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let token = real.mint(MintOptions::default());
    let impostor_dir = tempfile::tempdir().unwrap();
    let impostor = Server::start(impostor_dir.path(), &Identity::generate().unwrap(), 0);
    // The token as it would read if the impostor sat at the hinted address.
    let redirected = token.replace(&real.addr.to_string(), &impostor.addr.to_string());
    let client = Client::start("client", false);
    match client.add(&redirected, 1) {
        Outcome::Unreachable(why) => {
            assert!(
                why.contains(&format!("is not vat {:?}", vat::sturdy::vat_key(&real.key))),
                "{why}"
            );
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
    assert_eq!(client.add(&token, 1), Outcome::Value(1));
    real.stop();
    impostor.stop();
}

#[test]
fn revoking_a_token_breaks_it_and_every_reference_restored_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let doomed = server.mint(MintOptions::default());
    let kept = server.mint(MintOptions::default());
    let client = Client::start("client", false);
    let live = client.restore(&doomed).unwrap();
    assert_eq!(client.add_on(&live, 1), Outcome::Value(1));

    assert!(server.revoke(&doomed));
    assert_eq!(
        client.add_on(&live, 1),
        Outcome::Refused(ErrorKind::Revoked)
    );
    assert_eq!(client.add(&doomed, 1), Outcome::Refused(ErrorKind::Revoked));
    // Another token for the same object still stands.
    assert_eq!(client.add(&kept, 1), Outcome::Value(2));
    // Revoking an unknown token says so.
    assert!(!server.revoke(&with_swiss(&doomed, SwissNumber::generate().unwrap())));
    server.stop();
}

#[test]
fn an_expired_token_is_refused_and_its_references_die_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let lifetime = Duration::from_millis(800);
    let token = server.mint(MintOptions {
        expires_at: Some(SystemTime::now() + lifetime),
        bound_to: None,
        single_use: false,
    });
    let client = Client::start("client", false);
    let live = client.restore(&token).unwrap();
    assert_eq!(client.add_on(&live, 1), Outcome::Value(1));
    std::thread::sleep(lifetime + Duration::from_millis(100));
    assert_eq!(
        client.add_on(&live, 1),
        Outcome::Refused(ErrorKind::Expired)
    );
    assert_eq!(client.add(&token, 1), Outcome::Refused(ErrorKind::Expired));
    server.stop();
}

#[test]
fn a_token_bound_to_one_vat_is_unknown_to_every_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let owner = Client::start("owner", false);
    let thief = Client::start("thief", false);
    let anonymous = Client::start("anonymous", true);
    let token = server.mint(MintOptions {
        expires_at: None,
        bound_to: Some(owner.id()),
        single_use: false,
    });
    assert_eq!(
        thief.add(&token, 1),
        Outcome::Refused(ErrorKind::UnknownToken)
    );
    assert_eq!(
        anonymous.add(&token, 1),
        Outcome::Refused(ErrorKind::UnknownToken)
    );
    assert_eq!(owner.add(&token, 1), Outcome::Value(1));
    // Revoked, it still looks unknown to the thief: nothing leaks.
    assert!(server.revoke(&token));
    assert_eq!(
        thief.add(&token, 1),
        Outcome::Refused(ErrorKind::UnknownToken)
    );
    assert_eq!(owner.add(&token, 1), Outcome::Refused(ErrorKind::Revoked));
    server.stop();
}

#[test]
fn restores_from_one_vat_share_one_connection_per_vat() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let token = server.mint(MintOptions::default());
    let client = Client::start("client", false);
    for expected in 1..=20 {
        assert_eq!(client.add(&token, 1), Outcome::Value(expected));
    }
    // The server's heap holds one gateway per connection it accepted.
    let gateways = server
        .vat
        .heap()
        .wait()
        .unwrap()
        .iter()
        .filter(|o| o.type_name.ends_with("Gateway"))
        .count();
    assert_eq!(gateways, 1);
    server.stop();
}

#[test]
fn tokens_and_state_survive_a_restart_of_the_serving_vat() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate().unwrap();
    let server = Server::start(dir.path(), &identity, 0);
    let port = server.addr.port();
    let token = server.mint(MintOptions::default());
    let revoked = server.mint(MintOptions::default());
    let client = Client::start("client", false);
    assert_eq!(client.add(&token, 40), Outcome::Value(40));
    assert!(server.revoke(&revoked));
    server.stop();

    let server = Server::start(dir.path(), &identity, port);
    assert_eq!(client.add(&token, 2), Outcome::Value(42));
    assert_eq!(
        client.add(&revoked, 1),
        Outcome::Refused(ErrorKind::Revoked)
    );
    server.stop();
}

#[test]
fn a_swiss_number_of_the_wrong_length_is_an_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let token: SturdyRef = server.mint(MintOptions::default()).parse().unwrap();
    let client = Client::start("client", true);
    let kind = client
        .vat
        .run_async(move || async move {
            let connection = vat::sturdy::connect(&token, None, Limits::default())
                .await
                .unwrap();
            let gateway: schema::gateway_capnp::gateway::Client = connection.peer();
            let mut request = gateway.restore_request();
            request.get().set_swiss_number(&[7; 5]);
            let error = request.send().promise.await.err().unwrap();
            let error = vat::Error::from(error);
            assert!(
                error.message().contains("32 bytes; 5 were presented"),
                "{error}"
            );
            error.kind()
        })
        .wait()
        .unwrap();
    assert_eq!(kind, ErrorKind::InvalidArgument);
    server.stop();
}

/// One token as the admin lists it: hash, object, revoked.
type Listed = (Vec<u8>, String, bool);

/// Asks the gateway at `token`'s vat for the admin capability, proving
/// `identity`, and has it mint a token for `counter#1`, list the tokens and
/// revoke the first one listed.
fn administer(
    client: &VatHandle,
    token: &str,
    identity: Identity,
) -> Result<(String, Vec<Listed>), ErrorKind> {
    let token: SturdyRef = token.parse().unwrap();
    client
        .run_async(move || async move {
            let connection = vat::sturdy::connect(&token, Some(&identity), Limits::default())
                .await
                .unwrap();
            let gateway: gateway::Client = connection.peer();
            let admin = gateway.admin_request().send().pipeline.get_admin();
            let mut mint = admin.mint_request();
            mint.get().set_object("counter#1");
            let minted = mint
                .send()
                .promise
                .await
                .map_err(|e| vat::Error::from(e).kind())?;
            let minted = minted
                .get()
                .unwrap()
                .get_token()
                .unwrap()
                .to_string()
                .unwrap();
            let listed = admin.tokens_request().send().promise.await.unwrap();
            let listed: Vec<_> = listed
                .get()
                .unwrap()
                .get_tokens()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t.get_hash().unwrap().to_vec(),
                        t.get_object().unwrap().to_string().unwrap(),
                        t.get_revoked(),
                    )
                })
                .collect();
            Ok((minted, listed))
        })
        .wait()
        .unwrap()
}

#[test]
fn the_operator_proving_the_vats_own_key_gets_the_admin_capability_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate().unwrap();
    let server = Server::start(dir.path(), &identity, 0);
    let token = server.mint(MintOptions::default());
    let client = Client::start("client", false);

    let stranger = administer(&client.vat, &token, Identity::generate().unwrap());
    assert_eq!(stranger.err(), Some(ErrorKind::UnknownToken));

    let (minted, listed) = administer(&client.vat, &token, identity).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .all(|(_, object, revoked)| object == "counter#1" && !revoked));
    let minted_hash = minted.parse::<SturdyRef>().unwrap().swiss().hash();
    assert!(listed
        .iter()
        .any(|(hash, ..)| hash[..] == minted_hash.as_bytes()[..]));
    assert_eq!(client.add(&minted, 4), Outcome::Value(4));
    server.stop();
}

#[test]
fn a_handoff_lets_a_third_vat_reach_the_object_directly_once_the_introducer_left() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let token = server.mint(MintOptions::default());
    let alice = Client::start("alice", true);
    let carol = Client::start("carol", false);
    let mallory = Client::start("mallory", false);

    let alices = alice.restore(&token).unwrap();
    assert_eq!(alice.add_on(&alices, 1), Outcome::Value(1));
    let for_carol = alice.hand_off(&token, &alices, carol.id());
    assert!(for_carol.contains(&server.key.to_string()), "{for_carol}");
    assert_ne!(for_carol, token);

    // Bound to carol: to anyone else it is unknown (and not used up).
    assert_eq!(
        mallory.add(&for_carol, 1),
        Outcome::Refused(ErrorKind::UnknownToken)
    );

    // The introducer leaves before carol ever calls: nothing can pass through it.
    drop(alices);
    alice.vat.stop().unwrap();
    let carols = carol.restore(&for_carol).unwrap();
    for expected in 2..=101 {
        assert_eq!(carol.add_on(&carols, 1), Outcome::Value(expected));
    }
    // Single use.
    let again = Client {
        vat: VatHandle::start("carol again").unwrap(),
        identity: carol.identity.clone(),
    };
    assert_eq!(
        again.add(&for_carol, 1),
        Outcome::Refused(ErrorKind::Revoked)
    );
    // The recipient's reference lives no longer than the introducer's token.
    assert!(server.revoke(&token));
    assert_eq!(
        carol.add_on(&carols, 1),
        Outcome::Refused(ErrorKind::Revoked)
    );
    server.stop();
}

#[test]
fn only_an_object_of_the_vat_reached_through_its_gateway_can_be_handed_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let token: SturdyRef = server.mint(MintOptions::default()).parse().unwrap();
    let client = Client::start("client", true);
    let error = client
        .vat
        .run_async(move || async move {
            // A counter of the client's own, not of the server's.
            let own: counter::Client = vat::export(vat::demo::Counter::default());
            let recipient = VatId::from_bytes([9; 32]);
            match vat::sturdy::handoff(&token, &own.client, recipient, None, Limits::default())
                .await
            {
                Err(RestoreError::Refused(error)) => error,
                other => panic!("expected a refusal, got {other:?}"),
            }
        })
        .wait()
        .unwrap();
    assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
    assert!(
        error.message().contains("not an object of this vat"),
        "{error}"
    );
    server.stop();
}

/// Adds `by` through `held` in `vat`, from any thread.
fn add_in(vat: &VatHandle, held: &Arc<Root<Held>>, by: i64) -> Outcome {
    let held = Arc::clone(held);
    vat.run_async(move || async move {
        let counter = held.get().unwrap().call(|h| h.0.clone()).unwrap();
        match add(&counter, by).await {
            Ok(value) => Outcome::Value(value),
            Err(error) => Outcome::Refused(error.kind()),
        }
    })
    .wait()
    .unwrap()
}

/// A counter reached the way `reach` makes (from the client and the
/// counter's token) answers, then a call made while its vat is down (after
/// `pause`) waits, and is answered once the vat is back at its address.
fn a_call_waits_through_a_restart(
    reach: impl Fn(&Client, &str) -> Arc<Root<Held>>,
    pause: Duration,
) {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate().unwrap();
    let server = Server::start(dir.path(), &identity, 0);
    let port = server.addr.port();
    let token = server.mint(MintOptions::default());
    let client = Client::start("client", false);
    let counter = reach(&client, &token);
    assert_eq!(client.add_on(&counter, 1), Outcome::Value(1));

    server.stop();
    std::thread::sleep(pause);
    let (vat, held) = (client.vat.clone(), Arc::clone(&counter));
    let waiting = std::thread::spawn(move || add_in(&vat, &held, 1));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiting.is_finished(),
        "the call waits while the vat is down"
    );
    let server = Server::start(dir.path(), &identity, port);
    assert_eq!(waiting.join().unwrap(), Outcome::Value(2));
    assert_eq!(client.add_on(&counter, 1), Outcome::Value(3));
    server.stop();
}

#[test]
fn a_group_of_a_forwarding_healing_member_waits_through_its_vats_restart() {
    // Connected, a call takes the member's own request. Once the healing
    // reference saw its connection end, the member has no connection's
    // request to give: the call is lent to it and waits for the vat,
    // rather than failing.
    a_call_waits_through_a_restart(
        |client, token| client.heal_in_group(token),
        Duration::from_millis(300),
    );
}

#[test]
fn a_healing_reference_comes_back_after_its_vat_restarts_with_no_action_by_the_caller() {
    // A call made while the vat is down waits for it.
    a_call_waits_through_a_restart(
        |client, token| client.heal(token, Duration::from_secs(20)),
        Duration::ZERO,
    );
}

#[test]
fn calls_made_while_a_vat_stays_down_fail_after_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &Identity::generate().unwrap(), 0);
    let token = server.mint(MintOptions::default());
    let client = Client::start("client", false);
    let wait = Duration::from_millis(400);
    let counter = client.heal(&token, wait);
    assert_eq!(client.add_on(&counter, 1), Outcome::Value(1));
    server.stop();
    let started = std::time::Instant::now();
    assert_eq!(
        client.add_on(&counter, 1),
        Outcome::Refused(ErrorKind::Disconnected)
    );
    let waited = started.elapsed();
    // Only the lower bound holds on a busy machine; the simulator checks
    // the upper one to the millisecond (tests/tests/sim_timing.rs).
    assert!(waited >= wait, "failed after {waited:?}, before the wait");
}

#[test]
fn a_call_in_flight_when_the_link_drops_fails_and_is_never_sent_again() {
    use schema::demo_capnp::{callback, host};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A callback that counts its calls and never answers.
    struct Mute(Arc<AtomicU32>);
    impl callback::Server for Mute {
        async fn call(
            self: std::rc::Rc<Self>,
            _: callback::CallParams,
            _: callback::CallResults,
        ) -> Result<(), capnp::Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            futures::future::pending::<()>().await;
            Ok(())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate().unwrap();
    let server = Server::start(dir.path(), &identity, 0);
    let port = server.addr.port();
    let token: SturdyRef = server
        .mint_for("host", MintOptions::default())
        .parse()
        .unwrap();
    let client = Client::start("client", false);
    let calls = Arc::new(AtomicU32::new(0));
    let mute = Arc::clone(&calls);
    // greet() calls the mute callback back, so it stays in flight.
    let greeting = client.vat.run_async(move || async move {
        let host: host::Client = healing(token, None, HealOptions::default()).cast_to();
        let mut greet = host.greet_request();
        greet.get().set_callback(vat::export(Mute(mute)));
        greet.get().set_name("carol");
        let outcome = greet
            .send()
            .promise
            .await
            .map(|_| ())
            .map_err(vat::Error::from);
        let mut echo = host.echo_request();
        echo.get().set_value(7);
        let echoed = echo
            .send()
            .promise
            .await
            .map(|r| r.get().unwrap().get_value());
        (outcome, echoed.map_err(vat::Error::from))
    });
    let started = std::time::Instant::now();
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "greet never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.stop();
    let server = Server::start(dir.path(), &identity, port);
    let (greeted, echoed) = greeting.wait().unwrap();
    assert_eq!(greeted.unwrap_err().kind(), ErrorKind::Disconnected);
    // The next call went to the vat's new incarnation...
    assert_eq!(echoed.unwrap(), 7);
    // ...and the interrupted greet was not sent again.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    server.stop();
}
