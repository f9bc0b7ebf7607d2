//! Bindings on two hosts in this process (each a vat of its own, real TLS
//! and redb), over a three-member directory: a binding reaches every
//! provider instance and actor instance, survives instances being removed
//! and moved to the other host, is idempotent, reconfigures, reports a
//! provider that cannot provision it, and its removal closes the port and
//! revokes what it granted.

// Test setup failing is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use vat::VatHandle;
use vat_directory::command::FacetKind;
use vat_directory::operator::LocalMembers;
use vat_directory::{DirectoryClient, DirectoryToken};
use vat_lattice::demo::Hello;
use vat_lattice::providers::{http::HttpProvider, kv::KeyValueProvider};
use vat_lattice::{
    BindingId, Config, Host, HostBuilder, Kind, Lattice, LatticeError, DEFAULT_LINK,
};

mod support;

use support::{free_port, get, says, until, PATIENCE};

thread_local! {
    /// The host of the vat whose thread this is.
    static HOST: RefCell<Option<Host>> = const { RefCell::new(None) };
}

fn greeter() -> Kind {
    Kind::new("greeter", "1.0.0").unwrap()
}

struct Lab {
    _members: LocalMembers,
    admin: DirectoryToken,
    operator: VatHandle,
    hosts: Vec<VatHandle>,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new(hosts: usize) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let members = LocalMembers::start(&dir.path().join("directory"), 3).unwrap();
        let operator = VatHandle::start("operator").unwrap();
        let admin = members.form_cluster(&operator).unwrap();
        let mut lab = Lab {
            _members: members,
            admin,
            operator,
            hosts: Vec::new(),
            _dir: dir,
        };
        for i in 0..hosts {
            let path = lab._dir.path().join(format!("host{i}"));
            lab.add_host(&path, i);
        }
        lab
    }

    fn add_host(&mut self, dir: &Path, i: usize) {
        let vat = VatHandle::start(format!("host{i}")).unwrap();
        let admin = self.admin.clone();
        let dir = dir.to_owned();
        vat.block_on(move || async move {
            let served = vat_lattice::serve::serve(&dir, ([127, 0, 0, 1], 0).into()).await?;
            let vat_id = served.persistence.vat().to_string();
            let facet = DirectoryClient::new(admin, None)
                .mint_facet(FacetKind::Host { vat: vat_id })
                .await
                .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
            let host = HostBuilder::new()
                .actor(greeter(), move |context| {
                    Ok(Hello::new(context, &format!("host{i}")).export())
                })
                .provider(Kind::new("http", "1.0.0").unwrap(), |_| {
                    Ok(Box::new(HttpProvider::new()))
                })
                .provider(Kind::new("kv", "1.0.0").unwrap(), |context| {
                    Ok(Box::new(KeyValueProvider::new(context.persistence.clone())))
                })
                .join(
                    DirectoryClient::new(facet, Some(served.identity.clone())),
                    served.persistence.clone(),
                    Some(served.identity.clone()),
                )
                .await
                .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
            HOST.with(|h| *h.borrow_mut() = Some(host));
            Ok::<_, vat::Error>(())
        })
        .unwrap();
        self.hosts.push(vat);
    }

    /// Runs `f` with host `i`'s host, in its vat.
    fn on_host<T, F, Fut>(&self, i: usize, f: F) -> Result<T, LatticeError>
    where
        T: Send + 'static,
        F: FnOnce(Host) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, LatticeError>> + 'static,
    {
        self.hosts[i]
            .run_async(move || async move {
                let host = HOST.with(|h| h.borrow().clone()).expect("host joined");
                f(host).await
            })
            .wait()
            .expect("host vat runs")
    }

    fn start(&self, i: usize, actor: bool, name: &'static str) -> u64 {
        self.on_host(i, move |host| async move {
            if actor {
                host.start_actor(name, None).await
            } else {
                host.start_provider(name, None).await
            }
        })
        .unwrap()
    }

    fn stop(&self, i: usize, number: u64) {
        self.on_host(i, move |host| async move { host.stop(number).await })
            .unwrap();
    }

    fn lattice<T, F, Fut>(&self, f: F) -> Result<T, LatticeError>
    where
        T: Send + 'static,
        F: FnOnce(Lattice) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, LatticeError>> + 'static,
    {
        let admin = self.admin.clone();
        self.operator
            .run_async(
                move || async move { f(Lattice::new(DirectoryClient::new(admin, None))).await },
            )
            .wait()
            .expect("operator vat runs")
    }

    fn bind(
        &self,
        actor: &str,
        provider: &str,
        config: &[(&str, &str)],
    ) -> Result<(), LatticeError> {
        let id = BindingId::new(actor, provider, DEFAULT_LINK).unwrap();
        let config: Config = config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.lattice(move |lattice| async move { lattice.set_binding(&id, config).await.map(drop) })
    }

    /// Each grant of a binding and the log index of its last write:
    /// unchanged means no provider instance provisioned it anew.
    fn grants(&self, actor: &str, provider: &str) -> Vec<(String, u64)> {
        let id = BindingId::new(actor, provider, DEFAULT_LINK).unwrap();
        self.lattice(move |lattice| async move {
            let status = lattice.binding(&id).await?.expect("the binding exists");
            Ok(status
                .grants
                .into_iter()
                .map(|g| (g.instance, g.index))
                .collect())
        })
        .unwrap()
    }

    fn unbind(&self, actor: &str, provider: &str) {
        let id = BindingId::new(actor, provider, DEFAULT_LINK).unwrap();
        self.lattice(move |lattice| async move { lattice.remove_binding(&id).await })
            .unwrap();
    }
}

fn served(reply: &Option<(u16, String)>) -> bool {
    matches!(reply, Some((200, _)))
}

#[test]
fn a_binding_follows_its_actor_across_hosts_and_its_removal_closes_the_port() {
    let lab = Lab::new(2);
    let port = free_port();
    let actor = lab.start(0, true, "greeter");
    lab.start(0, false, "http");
    lab.bind("greeter", "http", &[("port", &port.to_string())])
        .unwrap();
    // set_binding returned once the provider instance took it: served now.
    let reply = get(port, "/").unwrap();
    assert_eq!(
        reply,
        (200, format!("hello from greeter@1.0.0 on host0/{actor}"))
    );

    // Setting it again changes nothing: no instance provisions it anew.
    let grants = lab.grants("greeter", "http");
    lab.bind("greeter", "http", &[("port", &port.to_string())])
        .unwrap();
    assert!(served(&get(port, "/")));
    assert_eq!(lab.grants("greeter", "http"), grants, "re-provisioned");

    // A changed config reaches the instance, which reconfigures: the new
    // port serves, the old one closes.
    let port = {
        let new_port = free_port();
        lab.bind("greeter", "http", &[("port", &new_port.to_string())])
            .unwrap();
        assert!(served(&get(new_port, "/")));
        assert_eq!(
            until(port, "/", Option::is_none),
            None,
            "the old port still answers"
        );
        new_port
    };

    // The actor's only instance gone: the binding stays, calls fail fast.
    lab.stop(0, actor);
    let reply = until(port, "/", |r| matches!(r, Some((503, _))));
    assert!(matches!(reply, Some((503, _))), "{reply:?}");
    let statuses = lab
        .lattice(|lattice| async move { lattice.bindings().await })
        .unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(
        (statuses[0].actor_instances, statuses[0].provider_instances),
        (0, 1)
    );

    // The actor started on the other host: the provider reaches it there.
    let moved = lab.start(1, true, "greeter");
    let reply = until(port, "/", served);
    assert_eq!(
        reply,
        Some((200, format!("hello from greeter@1.0.0 on host1/{moved}")))
    );

    // Removed: the port refuses connections.
    lab.unbind("greeter", "http");
    let reply = until(port, "/", Option::is_none);
    assert_eq!(reply, None, "the port still answers");
}

#[test]
fn a_provider_instance_started_later_receives_existing_bindings_and_reports_failures() {
    let lab = Lab::new(2);
    let port = free_port();
    lab.start(0, true, "greeter");
    // No provider instance yet: recorded, nothing to wait for.
    lab.bind("greeter", "http", &[("port", &port.to_string())])
        .unwrap();
    assert_eq!(get(port, "/"), None);
    lab.start(1, false, "http");
    let reply = until(port, "/", served);
    assert!(served(&reply), "{reply:?}");

    // A second binding on a port already taken: set_binding names the
    // instance that failed, and the status shows it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    lab.start(1, true, "greeter");
    let outcome = lab.bind("greeter", "http", &[("port", &taken_port.to_string())]);
    match outcome {
        Err(LatticeError::NotProvisioned { failures, .. }) => {
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert!(
                failures[0].1.contains(&taken_port.to_string()),
                "{failures:?}"
            );
        }
        other => panic!("expected NotProvisioned, got {other:?}"),
    }
    // The reconfigure failed: the binding's old port stays closed or open
    // as the provider left it; freeing the port and setting it again works.
    drop(taken);
    lab.bind("greeter", "http", &[("port", &taken_port.to_string())])
        .unwrap();
    assert!(served(&get(taken_port, "/")));
}

/// Two hosts: the actor and the HTTP provider on the first, bound to a
/// port, the key-value provider on the second, bound to the actor; answers
/// once the actor's grant of a bucket arrived.
fn kv_lab() -> (Lab, u16) {
    let lab = Lab::new(2);
    let port = free_port();
    lab.start(0, true, "greeter");
    lab.start(0, false, "http");
    lab.start(1, false, "kv");
    lab.bind("greeter", "http", &[("port", &port.to_string())])
        .unwrap();
    lab.bind("greeter", "kv", &[]).unwrap();
    let ready = until(port, "/kv/set/ready/yes", says("set"));
    assert!(says("set")(&ready), "{ready:?}");
    (lab, port)
}

#[test]
fn an_actor_bound_to_the_key_value_provider_keeps_values_and_loses_the_grant_on_removal() {
    let (lab, port) = kv_lab();
    assert_eq!(
        get(port, "/kv/set/colour/green"),
        Some((200, "set".to_owned()))
    );
    assert_eq!(get(port, "/kv/get/colour"), Some((200, "green".to_owned())));

    // The provider's only instance stopped: the binding stays, the actor's
    // calls fail at once; a new instance receives the binding at start.
    let kv = lab
        .on_host(1, |host| async move {
            Ok(host
                .inventory()
                .into_iter()
                .map(|i| i.number)
                .collect::<Vec<_>>())
        })
        .unwrap();
    lab.stop(1, kv[0]);
    let reply = until(
        port,
        "/kv/get/colour",
        |r| matches!(r, Some((200, body)) if body.starts_with("error")),
    );
    assert!(
        matches!(&reply, Some((200, body)) if body.starts_with("error")),
        "{reply:?}"
    );
    lab.start(1, false, "kv");
    let reply = until(port, "/kv/get/colour", says("green"));
    assert!(says("green")(&reply), "{reply:?}");

    // The key-value binding removed: the actor's capability is revoked
    // (or taken from its links), its calls fail.
    lab.unbind("greeter", "kv");
    let reply = until(
        port,
        "/kv/get/colour",
        |r| !matches!(r, Some((200, body)) if body == "green"),
    );
    assert!(
        !matches!(&reply, Some((200, body)) if body == "green"),
        "{reply:?}"
    );
}

/// A raw request `text` to `port` from source address `from`; the reply's
/// status, or `None` if the connection was closed without one.
fn send_from(from: [u8; 4], port: u16, text: &[u8]) -> Option<u16> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    socket
        .connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)).into(),
            Duration::from_secs(5),
        )
        .ok()?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // The server may answer (and close) before reading everything sent.
    let _ = stream.write_all(text);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

#[test]
fn the_http_provider_bounds_what_sources_hold_and_what_a_request_sends() {
    let lab = Lab::new(1);
    let port = free_port();
    lab.start(0, true, "greeter");
    lab.start(0, false, "http");
    lab.bind("greeter", "http", &[("port", &port.to_string())])
        .unwrap();

    // A body beyond the bound: refused with 413, the server goes on.
    let size = vat_lattice::providers::http::MAX_BODY_BYTES + 1;
    let mut post = format!(
        "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    post.resize(post.len() + size, b'x');
    assert_eq!(send_from([127, 0, 0, 1], port, &post), Some(413));
    assert_eq!(send_from([127, 0, 0, 1], port, GET), Some(200));

    // Every place taken by sockets that never speak, from eight addresses
    // (each its whole share): an honest client is served all the same, from
    // a new address or from one of theirs, the oldest silent socket closed
    // to make room.
    use vat_lattice::providers::http::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE};
    let sources = MAX_CONNECTIONS / MAX_CONNECTIONS_PER_SOURCE;
    let connect_from = |from: [u8; 4]| {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
        socket
            .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
            .unwrap();
        TcpStream::from(socket)
    };
    let silent: Vec<TcpStream> = (0..sources)
        .flat_map(|s| (0..MAX_CONNECTIONS_PER_SOURCE).map(move |_| [127, 0, 1, s as u8 + 1]))
        .map(connect_from)
        .collect();
    // Let the provider accept them all before the honest clients come.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        send_from([127, 0, 0, 1], port, GET),
        Some(200),
        "a new address"
    );
    assert_eq!(
        send_from([127, 0, 1, 1], port, GET),
        Some(200),
        "an attacker's address"
    );

    // Connections that spoke keep their places: one source's share full of
    // them, its newcomer is closed; another source is served.
    drop(silent);
    let spoken: Vec<TcpStream> = (0..MAX_CONNECTIONS_PER_SOURCE)
        .map(|_| {
            let mut stream = connect_from([127, 0, 2, 1]);
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                .unwrap();
            // Its answer read: it spoke, and stays open (keep-alive).
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut answer = [0u8; 12];
            stream.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"HTTP/1.1 200");
            stream
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while send_from([127, 0, 2, 1], port, GET).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        send_from([127, 0, 2, 1], port, GET),
        None,
        "the source's share is full"
    );
    assert_eq!(
        send_from([127, 0, 0, 1], port, GET),
        Some(200),
        "another source is served"
    );
    drop(spoken);
}

#[test]
fn a_binding_revoked_under_load_fails_no_call_made_before_the_removal() {
    let (lab, port) = kv_lab();

    // Four callers set values as fast as they can, each call timed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut calls = Vec::new();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let started = Instant::now();
                    let reply = get(port, &format!("/kv/set/k{i}/{n}"));
                    calls.push((started, Instant::now(), reply));
                    n += 1;
                }
                calls
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let removal = Instant::now();
    lab.unbind("greeter", "kv");
    // Until the actor's host applied the removal, calls still go through;
    // wait until they fail, then a little longer.
    let failing = until(
        port,
        "/kv/set/x/y",
        |r| !matches!(r, Some((200, b)) if b == "set"),
    );
    assert!(
        !matches!(&failing, Some((200, b)) if b == "set"),
        "{failing:?}"
    );
    let revoked = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let calls: Vec<_> = callers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let ok = |reply: &Option<(u16, String)>| matches!(reply, Some((200, b)) if b == "set");
    let before: Vec<_> = calls
        .iter()
        .filter(|(_, ended, _)| *ended < removal)
        .collect();
    assert!(
        before.len() > 10,
        "too few calls before the removal: {}",
        before.len()
    );
    assert!(
        before.iter().all(|(_, _, reply)| ok(reply)),
        "a call made before the removal failed"
    );
    let after: Vec<_> = calls
        .iter()
        .filter(|(started, _, _)| *started > revoked)
        .collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|(_, _, reply)| !ok(reply)),
        "a call made after the revocation went through"
    );
    // Every call got an answer: none hung, none lost its connection.
    assert!(calls.iter().all(|(_, _, reply)| reply.is_some()));
}
