//! `vat demo`: a federation of three vats on loopback, narrated step by step.
//!
//! alice, bob and carol each run on a thread of their own with a fresh
//! ed25519 identity. bob and carol listen on loopback over mutual TLS and
//! offer a `Host` (see `schema/capnp/demo.capnp`); alice works with near
//! objects, then dials them and uses their objects with promise pipelining,
//! passes capabilities both ways and between the other two, watches a
//! crash get caught, and a supervisor restart a crashed object behind a
//! reference that keeps working. Every figure printed is measured as it happens.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::demo_capnp::{callback, counter, host};
use vat::demo::{Greeter, Host};
use vat::net::{tls, Identity, IdentityError, Limits, NetError, PublicKey};
use vat::supervise::{ChildSpec, Restart, SupervisorBuilder};
use vat::{ErrorKind, ObjectInfo, ObjectState, Root, VatHandle};

/// Why the demo stopped half-way.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A vat, or a call to an object, failed.
    #[error(transparent)]
    Vat(#[from] vat::Error),
    /// A connection could not be made.
    #[error(transparent)]
    Net(#[from] NetError),
    /// An identity could not be made.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A step did not behave as the system promises.
    #[error("the demo expected {0}")]
    Unexpected(String),
}

impl From<capnp::Error> for DemoError {
    fn from(error: capnp::Error) -> DemoError {
        DemoError::Vat(error.into())
    }
}

/// Prints numbered steps and the lines under them.
struct Narrator {
    step: u32,
    out: std::io::Stdout,
}

impl Narrator {
    fn step(&mut self, title: &str) {
        self.step += 1;
        // Output that cannot be written (a closed pipe) is not worth failing for.
        let _ = writeln!(self.out, "\n[{}] {title}", self.step);
    }

    fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "    {}", line.as_ref());
    }
}

/// A near object: a plain Rust value that records the messages it received.
#[derive(Debug, Default)]
struct Tally {
    seen: Vec<&'static str>,
}

/// A near object that makes other objects.
struct Maker;

/// A near object that panics on demand.
struct Fragile;

/// What alice keeps between steps: the bootstrap objects of bob and carol,
/// and the counter she gets from bob.
struct Peers {
    bob: host::Client,
    carol: host::Client,
    counter: Option<counter::Client>,
}

/// Runs the whole demo.
pub fn run() -> Result<(), DemoError> {
    let mut n = Narrator {
        step: 0,
        out: std::io::stdout(),
    };
    let _ = writeln!(
        n.out,
        "vat demo: a federation of three vats on loopback (RUST_LOG=debug shows every turn)"
    );

    n.step("Start three vats: each is a thread with one event loop and its own ed25519 key");
    let alice = VatHandle::start("alice")?;
    let bob = VatHandle::start("bob")?;
    let carol = VatHandle::start("carol")?;
    let alice_id = Identity::generate()?;
    let bob_id = Identity::generate()?;
    let carol_id = Identity::generate()?;
    for (vat, id) in [(&alice, &alice_id), (&bob, &bob_id), (&carol, &carol_id)] {
        n.say(format!("{:<6} key {}", vat.name(), short(id.public_key())));
    }

    near_objects(&mut n, &alice)?;

    n.step("bob and carol listen on loopback over mutual TLS, each offering a Host");
    let bob_addr = listen(&bob, bob_id.clone())?;
    let carol_addr = listen(&carol, carol_id.clone())?;
    n.say(format!(
        "bob    on {bob_addr}, proving key {}",
        short(bob_id.public_key())
    ));
    n.say(format!(
        "carol  on {carol_addr}, proving key {}",
        short(carol_id.public_key())
    ));

    let peers = connect(
        &mut n,
        &alice,
        alice_id,
        (bob_addr, bob_id.public_key()),
        (carol_addr, carol_id.public_key()),
    )?;
    pipelining(&mut n, &alice, &peers)?;
    capabilities_both_ways(&mut n, &alice, &peers)?;
    far_crash(&mut n, &alice, &bob, &peers)?;
    supervised_crash(&mut n, &alice)?;

    n.step("bob stops: his thread ends and alice's calls into bob break");
    bob.stop()?;
    let peers_after = Arc::clone(&peers);
    let outcome = alice
        .run_async(move || async move {
            let peers = peers_after.get()?;
            let Some(counter) = peers.call(|p| p.counter.clone())? else {
                return Err(vat::Error::new(ErrorKind::Failed, "no counter kept"));
            };
            Ok(add(&counter, 1).await)
        })
        .wait()??;
    match outcome {
        Err(error) if error.kind() == ErrorKind::Disconnected => {
            n.say(format!("alice's next add on bob's counter: {error}"));
        }
        other => {
            return Err(DemoError::Unexpected(format!(
                "a disconnected error after bob stopped, not {other:?}"
            )))
        }
    }

    n.step("Stop alice and carol");
    drop(peers);
    alice.stop()?;
    carol.stop()?;
    n.say("every vat stopped and its thread joined; the demo is over");
    Ok(())
}

/// Near calls, eventual sends, pipelining within a vat, and a caught crash,
/// all inside alice.
fn near_objects(n: &mut Narrator, alice: &VatHandle) -> Result<(), DemoError> {
    n.step("Near objects in alice: a near call runs now, an eventual send in a later turn");
    let lines = alice
        .run_async(|| async {
            let mut lines = Vec::new();
            let tally = vat::spawn(Tally::default());
            lines.push(format!(
                "spawned {} {} (a plain Rust value; its Ref cannot leave alice)",
                tally.id(),
                short_type(tally.info().type_name)
            ));
            tally.call(|t| t.seen.push("near call"))?;
            let first = tally.send(|t| {
                t.seen.push("first send");
                t.seen.len()
            });
            let second = tally.send(|t| {
                t.seen.push("second send");
                t.seen.len()
            });
            let seen_now = tally.call(|t| t.seen.len())?;
            lines.push(format!(
                "one near call and two sends later: the tally has seen {seen_now} message(s), \
                 alice's queue holds {}",
                vat::current().queued()
            ));
            let (first, second) = (first.await?, second.await?);
            lines.push(format!(
                "the sends' promises resolved in later turns, in the order sent: {:?} \
                 (lengths {first} and {second})",
                tally.call(|t| t.seen.clone())?
            ));

            let maker = vat::spawn(Maker);
            let made = maker.send(|_| vat::spawn(Tally::default()));
            let piped = made.send(|t| {
                t.seen.push("pipelined");
                t.seen.len()
            });
            lines.push(format!(
                "sent to a promise for a tally the maker had not made yet: {} message \
                 delivered once it resolved (pipelining within a vat)",
                piped.await?
            ));
            Ok::<_, vat::Error>(lines)
        })
        .wait()??;
    for line in lines {
        n.say(line);
    }

    n.step("A panic inside a turn is caught: the caller's promise breaks, the vat goes on");
    let (lines, heap) = alice
        .run_async(|| async {
            let mut lines = Vec::new();
            let fragile = vat::spawn(Fragile);
            let tally = vat::spawn(Tally::default());
            let crashed = fragile.send(|_: &mut Fragile| -> u32 { panic!("fragile gave up") });
            let fine = tally.send(|t| {
                t.seen.push("after the crash");
                t.seen.len()
            });
            match crashed.await {
                Err(error) if error.kind() == ErrorKind::Crashed => {
                    lines.push(format!("the panicking send's promise broke: {error}"));
                }
                other => {
                    return Err(vat::Error::new(
                        ErrorKind::Failed,
                        format!("expected a crashed error, got {other:?}"),
                    ))
                }
            }
            lines.push(format!(
                "a send to another object in the same vat still ran: tally length {}",
                fine.await?
            ));
            let again = fragile.send(|_| ()).await;
            lines.push(format!(
                "the crashed object refuses further messages: {}",
                again.err().map(|e| e.to_string()).unwrap_or_default()
            ));
            Ok::<_, vat::Error>((lines, vat::current().heap()))
        })
        .wait()??;
    for line in lines {
        n.say(line);
    }
    n.say("alice's heap:");
    for object in heap {
        n.say(format!("  {}", describe(&object)));
    }
    Ok(())
}

/// Makes `vat` listen on a free loopback port over TLS, offering a `Host`.
fn listen(vat: &VatHandle, identity: Identity) -> Result<SocketAddr, DemoError> {
    let name = vat.name().to_owned();
    let addr = vat
        .run_async(move || async move {
            let host: host::Client = vat::export(Host::crashable(name));
            let listener = tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &identity).await?;
            let addr = listener.local_addr();
            listener.serve(move |_caller| Some(host.client.clone()), Limits::default());
            Ok::<_, NetError>(addr)
        })
        .wait()??;
    Ok(addr)
}

/// alice dials bob and carol, each under the key it must prove; a dial
/// under the wrong key is refused.
fn connect(
    n: &mut Narrator,
    alice: &VatHandle,
    identity: Identity,
    bob: (SocketAddr, PublicKey),
    carol: (SocketAddr, PublicKey),
) -> Result<Arc<Root<Peers>>, DemoError> {
    n.step("alice dials bob and carol: each must prove the key alice dialled");
    let (refused, root) = alice
        .run_async(move || async move {
            let limits = Limits::default();
            // bob's address, carol's key: bob cannot prove a key he lacks.
            let refused = tls::dial(bob.0, carol.1, Some(&identity), None, limits)
                .await
                .err()
                .map(|e| e.to_string());
            let to_bob = tls::dial(bob.0, bob.1, Some(&identity), None, limits).await?;
            let to_carol = tls::dial(carol.0, carol.1, Some(&identity), None, limits).await?;
            let peers = vat::spawn(Peers {
                bob: to_bob.peer(),
                carol: to_carol.peer(),
                counter: None,
            });
            Ok::<_, NetError>((refused, vat::current().root(&peers)))
        })
        .wait()??;
    match refused {
        Some(reason) => n.say(format!(
            "dialling bob's address under carol's key is refused: {reason}"
        )),
        None => {
            return Err(DemoError::Unexpected(
                "bob to fail to prove carol's key".into(),
            ))
        }
    }
    n.say("under their own keys both handshakes succeed; alice now holds bob's and carol's Host");
    Ok(Arc::new(root))
}

/// Far calls on bob's objects, pipelined and not.
fn pipelining(
    n: &mut Narrator,
    alice: &VatHandle,
    peers: &Arc<Root<Peers>>,
) -> Result<(), DemoError> {
    n.step("Promise pipelining: alice uses bob's objects before they exist");
    let peers = Arc::clone(peers);
    let lines = alice
        .run_async(move || async move {
            let peers = peers.get()?;
            let bob = peers.call(|p| p.bob.clone())?;
            let mut lines = Vec::new();

            // Both adds leave before bob has answered for the counter.
            let counter = bob.counter_request().send().pipeline.get_counter();
            let first = add_request(&counter, 40).send().promise;
            let second = add_request(&counter, 2).send().promise;
            first.await?;
            let value = second.await?.get()?.get_value();
            lines.push(format!(
                "counter(), add(40), add(2) sent at once, without waiting: the counter reads {value}"
            ));
            peers.call(|p| p.counter = Some(counter))?;

            const LINKS: u32 = 10;
            let started = Instant::now();
            let mut link = bob.chain_request().send().pipeline.get_link();
            for _ in 0..LINKS {
                link = link.next_request().send().pipeline.get_link();
            }
            let depth = link.depth_request().send().promise.await?.get()?.get_depth();
            let pipelined = started.elapsed();

            let started = Instant::now();
            let mut link = bob.chain_request().send().promise.await?.get()?.get_link()?;
            for _ in 0..LINKS {
                link = link.next_request().send().promise.await?.get()?.get_link()?;
            }
            let awaited_depth = link.depth_request().send().promise.await?.get()?.get_depth();
            let awaited = started.elapsed();
            lines.push(format!(
                "a chain of {} calls, pipelined: depth {depth} in {} (one round trip)",
                LINKS + 2,
                millis(pipelined)
            ));
            lines.push(format!(
                "the same chain awaiting each call: depth {awaited_depth} in {} ({} round trips)",
                millis(awaited),
                LINKS + 2
            ));
            Ok::<_, vat::Error>(lines)
        })
        .wait()??;
    for line in lines {
        n.say(line);
    }
    Ok(())
}

/// alice and bob call each other back; carol uses bob's Host, which alice
/// handed her.
fn capabilities_both_ways(
    n: &mut Narrator,
    alice: &VatHandle,
    peers: &Arc<Root<Peers>>,
) -> Result<(), DemoError> {
    n.step("Capabilities travel both ways, and from one vat to a third");
    let peers = Arc::clone(peers);
    let lines = alice
        .run_async(move || async move {
            let peers = peers.get()?;
            let (bob, carol) = peers.call(|p| (p.bob.clone(), p.carol.clone()))?;
            let mut lines = Vec::new();

            let mine: callback::Client = vat::export(Greeter::new("alice"));
            let mut greet = bob.greet_request();
            greet.get().set_callback(mine);
            greet.get().set_name("alice");
            let response = greet.send().promise.await?;
            let results = response.get()?;
            lines.push(format!(
                "alice gave bob a callback; bob called it and it answered: {}",
                text(results.get_reply()?)?
            ));
            let theirs = results.get_callback()?;
            let mut call = theirs.call_request();
            call.get().set_message("thanks");
            let back = call.send().promise.await?;
            lines.push(format!(
                "bob handed alice a callback of his own; alice called it: {}",
                text(back.get()?.get_reply()?)?
            ));

            let mut handed = carol.pipeline_on_request();
            handed.get().set_host(bob);
            handed.get().set_depth(5);
            let depth = handed.send().promise.await?.get()?.get_depth();
            lines.push(format!(
                "alice handed carol bob's Host; carol pipelined a chain on it and reached depth {depth}"
            ));
            lines.push(
                "(carol's calls to bob travel through alice's two connections: the introducer relays them)"
                    .to_owned(),
            );
            Ok::<_, vat::Error>(lines)
        })
        .wait()??;
    for line in lines {
        n.say(line);
    }
    Ok(())
}

/// bob's Host panics inside a far call; bob goes on serving.
fn far_crash(
    n: &mut Narrator,
    alice: &VatHandle,
    bob: &VatHandle,
    peers: &Arc<Root<Peers>>,
) -> Result<(), DemoError> {
    n.step("A far object panics: alice's call breaks with the panic message; bob serves on");
    let peers = Arc::clone(peers);
    let lines = alice
        .run_async(move || async move {
            let peers = peers.get()?;
            let (host, counter) = peers.call(|p| (p.bob.clone(), p.counter.clone()))?;
            let mut lines = Vec::new();
            let error = crash(&host, "the demo asked bob's Host to panic").await?;
            lines.push(format!("alice's call broke: {error}"));
            if let Some(counter) = counter {
                lines.push(format!(
                    "bob's counter, another object in the same vat, still answers: {}",
                    add(&counter, 1).await?
                ));
            }
            Ok::<_, vat::Error>(lines)
        })
        .wait()??;
    for line in lines {
        n.say(line);
    }
    n.say("bob's heap (far objects: Cap'n Proto servers; messages: calls handled):");
    for object in bob.heap().wait()? {
        n.say(format!("  {}", describe(&object)));
    }
    Ok(())
}

/// A supervised Host in alice crashes and is restarted; alice's reference
/// to it keeps working.
fn supervised_crash(n: &mut Narrator, alice: &VatHandle) -> Result<(), DemoError> {
    n.step("A supervisor restarts a crashed object: the caller's reference keeps working");
    let lines = alice
        .run_async(|| async {
            let mut lines = Vec::new();
            let supervisor = SupervisorBuilder::new("demo")
                .child(ChildSpec::local("host", Restart::Permanent, |_| {
                    Ok(vat::export::<host::Client, _>(Host::crashable("alice")).client)
                }))
                .start()
                .await?;
            let host: host::Client = supervisor.child("host")?;
            lines.push(format!(
                "supervisor `demo` started child `host`; through its stable reference echo(1) answers {}",
                echo(&host, 1).await?
            ));
            let error = crash(&host, "the demo asked the supervised Host to panic").await?;
            lines.push(format!("the call that crashed it broke: {error}"));
            let after = echo(&host, 2).await?;
            let child = supervisor.children().into_iter().next();
            lines.push(format!(
                "the same reference reaches the new incarnation: echo(2) answers {after} \
                 (incarnation {}, restarts {})",
                child.as_ref().map_or(0, |c| c.incarnation),
                child.as_ref().map_or(0, |c| c.restarts)
            ));
            for entry in supervisor.crash_log() {
                lines.push(format!(
                    "crash log: child `{}` after {} restart(s): {}",
                    entry.child, entry.restarts, entry.error
                ));
            }
            supervisor.shutdown().await;
            Ok::<_, vat::Error>(lines)
        })
        .wait()??;
    for line in lines {
        n.say(line);
    }
    Ok(())
}

/// `Host.echo(value)` on a far host.
async fn echo(host: &host::Client, value: u64) -> Result<u64, vat::Error> {
    let mut request = host.echo_request();
    request.get().set_value(value);
    Ok(request.send().promise.await?.get()?.get_value())
}

/// Asks `host` to panic with `message`; returns the crashed error its call
/// broke with (anything else is a failure of the demo).
async fn crash(host: &host::Client, message: &str) -> Result<vat::Error, vat::Error> {
    let mut request = host.crash_request();
    request.get().set_message(message);
    match request.send().promise.await.map_err(vat::Error::from) {
        Err(error) if error.kind() == ErrorKind::Crashed => Ok(error),
        other => Err(vat::Error::new(
            ErrorKind::Failed,
            format!(
                "expected a crashed error, got {:?}",
                other.map(|_| "a reply")
            ),
        )),
    }
}

/// A request to add `by` to a far counter; it leaves when sent.
fn add_request(
    counter: &counter::Client,
    by: i64,
) -> capnp::capability::Request<counter::add_params::Owned, counter::add_results::Owned> {
    let mut request = counter.add_request();
    request.get().set_by(by);
    request
}

/// Adds `by` to a far counter and returns the new value.
async fn add(counter: &counter::Client, by: i64) -> Result<i64, vat::Error> {
    let response = add_request(counter, by).send().promise.await?;
    Ok(response.get()?.get_value())
}

/// A Cap'n Proto text field as a `String`, refusing bytes that are not UTF-8.
fn text(reader: capnp::text::Reader<'_>) -> Result<String, vat::Error> {
    let text = reader.to_str().map_err(capnp::Error::from)?;
    Ok(text.to_owned())
}

/// One heap record as a line.
fn describe(object: &ObjectInfo) -> String {
    let state = match &object.state {
        ObjectState::Alive => "alive".to_owned(),
        ObjectState::Crashed { reason } => format!("crashed ({reason})"),
    };
    format!(
        "{:<4} {:<10} {:<5} {:>3} message(s)  {state}",
        object.id.to_string(),
        short_type(object.type_name),
        format!("{:?}", object.kind).to_lowercase(),
        object.messages
    )
}

/// The last segment of a type path: `vat::demo::objects::Counter` → `Counter`.
fn short_type(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

/// The first bytes of a key in hex, enough to tell keys apart.
fn short(key: PublicKey) -> String {
    let mut text = String::new();
    for byte in &key.as_bytes()[..6] {
        let _ = write!(text, "{byte:02x}");
    }
    text.push('…');
    text
}

fn millis(elapsed: Duration) -> String {
    format!("{:.2} ms", elapsed.as_secs_f64() * 1000.0)
}
