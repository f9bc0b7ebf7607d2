//! Bindings across host processes: wasmCloud's acceptance scenario for
//! lattice bindings, step by step, with two `vat-lattice host` processes
//! (on 127.0.0.1 and 127.0.0.2), two actors, two HTTP providers, the
//! operator's `vat-lattice` commands, and HTTP requests on a raw socket
//! checking each step. Then: two instances of one provider both serve the
//! bound port; a host killed with `kill -9` and restarted gets its
//! bindings back. The directory is three members in this process.

// Test setup failing is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use vat_directory::DirectoryClient;
use vat_lattice::{BindingId, Lattice, DEFAULT_LINK};

mod lattice_hosts;

use lattice_hosts::{free_port, get, until, HostProcess, Lab};

/// What each host process offers.
const OFFERS: &[&str] = &[
    "--actor",
    "actor1",
    "--actor",
    "actor2",
    "--http-provider",
    "web1",
    "--http-provider",
    "web2",
];

/// The log index of each grant of a binding: unchanged means no
/// provider instance re-provisioned it.
fn grant_indexes(lab: &Lab, actor: &str, provider: &str) -> Vec<(String, u64)> {
    let id = BindingId::new(actor, provider, DEFAULT_LINK).unwrap();
    let admin = lab.admin.clone();
    lab.operator
        .block_on(move || async move {
            let status = Lattice::new(DirectoryClient::new(admin, None))
                .binding(&id)
                .await?;
            Ok::<_, vat_lattice::LatticeError>(
                status
                    .map(|s| {
                        s.grants
                            .into_iter()
                            .map(|g| (g.instance, g.index))
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .unwrap()
}

/// A reply from `actor` running on the host whose id starts the way `host`'s does.
fn answered_by(actor: &str, host: &HostProcess) -> impl Fn(&Option<(u16, String)>) -> bool {
    let expected = format!("hello from {actor}@1.0.0 on {}/", &host.id[..8]);
    move |reply| matches!(reply, Some((200, body)) if body.starts_with(&expected))
}

#[test]
fn wasmcloud_lattice_bindings_scenario_step_by_step() {
    let lab = Lab::new();
    let (ip1, ip2): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
    // Create 2 hosts with nothing.
    let (dir1, facet1) = lab.prepare_host("host1");
    let (dir2, facet2) = lab.prepare_host("host2");
    let host1 = HostProcess::start(&dir1, ip1, Some(&facet1), OFFERS);
    let mut host2 = HostProcess::start(&dir2, ip2, Some(&facet2), OFFERS);
    let hosts = lab.ok("hosts", &[]);
    assert!(
        hosts.contains(&host1.id) && hosts.contains(&host2.id),
        "{hosts}"
    );
    let inventory = lab.ok("inventory", &[]);
    let running = |line: &str| line.trim_start().starts_with(|c: char| c.is_ascii_digit());
    assert!(
        !inventory.lines().any(running),
        "nothing runs yet: {inventory}"
    );
    assert_eq!(inventory.matches("can run:").count(), 2, "{inventory}");

    // Add an actor and a provider to each.
    lab.start("actor", "actor1", &host1);
    lab.start("provider", "web1", &host1);
    lab.start("actor", "actor2", &host2);
    lab.start("provider", "web2", &host2);

    // Bind from either host: two bindings.
    let (port1, port2) = (free_port(), free_port());
    lab.ok(
        "bind",
        &["actor1", "web1", "--config", &format!("port={port1}")],
    );
    lab.ok(
        "bind",
        &["actor2", "web2", "--config", &format!("port={port2}")],
    );
    let reply = get(ip1, port1, "/");
    assert!(answered_by("actor1", &host1)(&reply), "{reply:?}");
    let reply = get(ip2, port2, "/");
    assert!(answered_by("actor2", &host2)(&reply), "{reply:?}");

    // Remove actor 1 from host 1: the binding stays.
    lab.stop("actor", "actor1", &host1);
    let bindings = lab.ok("bindings", &[]);
    assert!(bindings.contains("actor1 -> web1 (default)"), "{bindings}");
    assert!(
        matches!(
            until(ip1, port1, |r| matches!(r, Some((503, _)))),
            Some((503, _))
        ),
        "a binding without actor instances fails fast"
    );

    // Add actor 1 to host 2: no duplicate binding, the provider is not
    // re-initialised, a request through the provider reaches the actor.
    let grants = grant_indexes(&lab, "actor1", "web1");
    lab.start("actor", "actor1", &host2);
    let reply = until(ip1, port1, answered_by("actor1", &host2));
    assert!(answered_by("actor1", &host2)(&reply), "{reply:?}");
    assert_eq!(
        grant_indexes(&lab, "actor1", "web1"),
        grants,
        "web1 re-provisioned"
    );
    let bindings = lab.ok("bindings", &[]);
    assert_eq!(bindings.matches("actor1 -> web1").count(), 1, "{bindings}");

    // Remove actor 2 from host 2, add it to host 1: it works.
    lab.stop("actor", "actor2", &host2);
    lab.start("actor", "actor2", &host1);
    let reply = until(ip2, port2, answered_by("actor2", &host1));
    assert!(answered_by("actor2", &host1)(&reply), "{reply:?}");

    // Remove provider 1 from host 1 (its port closes), add it to host 2:
    // its bound actors answer through it there.
    lab.stop("provider", "web1", &host1);
    assert_eq!(
        until(ip1, port1, Option::is_none),
        None,
        "web1 still listens on host 1"
    );
    lab.start("provider", "web1", &host2);
    let reply = until(ip2, port1, answered_by("actor1", &host2));
    assert!(answered_by("actor1", &host2)(&reply), "{reply:?}");

    // Remove the binding of actor 1 and provider 1: the actor is still in
    // the lattice, and the port refuses connections.
    lab.ok("unbind", &["actor1", "web1"]);
    assert_eq!(
        until(ip2, port1, Option::is_none),
        None,
        "the port still answers"
    );
    let inventory = lab.ok("inventory", &["--host", &host2.id]);
    assert!(inventory.contains("actor actor1@1.0.0"), "{inventory}");
    let (ok, _) = lab.cli("unbind", &["actor1", "web1"]);
    assert!(!ok, "removing a binding twice is refused");

    // Two instances of one provider both serve the bound port, each on its
    // host's address.
    lab.start("provider", "web2", &host1);
    let reply = until(ip1, port2, answered_by("actor2", &host1));
    assert!(answered_by("actor2", &host1)(&reply), "{reply:?}");
    assert!(answered_by("actor2", &host1)(&get(ip2, port2, "/")));

    // Host 2 killed with kill -9 and restarted: it runs its instances
    // again and gets their bindings back.
    host2.kill();
    assert_eq!(until(ip2, port2, Option::is_none), None);
    let host2 = HostProcess::start(&dir2, ip2, None, OFFERS);
    let reply = until(ip2, port2, answered_by("actor2", &host1));
    assert!(answered_by("actor2", &host1)(&reply), "{reply:?}");
    let inventory = lab.ok("inventory", &["--host", &host2.id]);
    assert!(inventory.contains("provider web2@1.0.0"), "{inventory}");
}
