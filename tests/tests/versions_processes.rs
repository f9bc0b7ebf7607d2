//! Versions across a host process, driven by the operator's `vat-lattice`
//! commands: two versions of the example actor behind the HTTP provider,
//! blue/green by `route --live` and `swap`, weights, lifecycle commands
//! that refuse to guess a version, and a host killed with `kill -9` that
//! comes back following the current route. The directory is three
//! members in this process.

// Test setup failing is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

mod lattice_hosts;

use lattice_hosts::{free_port, get, until, HostProcess, Lab};

const OFFERS: &[&str] = &["--actor", "hello@1.0.0", "--actor", "hello@1.1.0"];

/// The version that answered `GET /` (`hello from hello@1.1.0 on ...`).
fn version(ip: IpAddr, port: u16) -> String {
    version_at(ip, port, "/")
}

/// The version that answered `GET path`.
fn version_at(ip: IpAddr, port: u16, path: &str) -> String {
    let (status, body) = get(ip, port, path).expect("an answer");
    assert_eq!(status, 200, "{body}");
    body.split('@')
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default()
        .to_owned()
}

/// How many instances `vat-lattice inventory` lists running as `what`
/// (`actor hello@1.0.0`): lines `  N actor hello@1.0.0`, not `can run:`.
fn running(inventory: &str, what: &str) -> usize {
    inventory
        .lines()
        .filter(|line| line.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .filter(|line| line.contains(what))
        .count()
}

#[test]
fn two_versions_behind_one_binding_swap_split_and_survive_a_kill() {
    let lab = Lab::new();
    let ip: IpAddr = [127, 0, 0, 1].into();
    let (dir, facet) = lab.prepare_host("host");
    let mut host = HostProcess::start(&dir, ip, Some(&facet), OFFERS);
    lab.ok("route", &["hello", "--live", "1.0.0"]);
    lab.start("actor", "hello@1.0.0", &host);
    lab.start("actor", "hello@1.1.0", &host);
    lab.start("provider", "http", &host);
    let port = free_port();
    lab.ok(
        "bind",
        &["hello", "http", "--config", &format!("port={port}")],
    );
    let versions = lab.ok("versions", &["hello"]);
    assert!(
        versions.contains("hello@1.0.0 instances=1")
            && versions.contains("hello@1.1.0 instances=1"),
        "{versions}"
    );
    assert!(versions.contains("route live 1.0.0"), "{versions}");

    // Blue is live: every request reaches it.
    for _ in 0..5 {
        assert_eq!(version(ip, port), "1.0.0");
    }
    // The swap answers once the host's router follows it: the next request
    // reaches green, with no polling.
    let swapped = lab.ok("swap", &["hello"]);
    assert!(swapped.contains("live 1.1.0 (was 1.0.0)"), "{swapped}");
    assert!(swapped.contains("followed by 1 hosts"), "{swapped}");
    for _ in 0..5 {
        assert_eq!(version(ip, port), "1.1.0");
    }

    // Weights: the host's router splits by them exactly.
    lab.ok("route", &["hello", "--weights", "1.0.0=50,1.1.0=50"]);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..20 {
        *counts.entry(version(ip, port)).or_insert(0) += 1;
    }
    assert_eq!(counts, [("1.0.0".into(), 10), ("1.1.0".into(), 10)].into());

    // A content rule on the request's path, the rest to blue; then no
    // route at all.
    lab.ok(
        "route",
        &[
            "hello",
            "--rule",
            "field.request.path:/beta/*=1.1.0",
            "--live",
            "1.0.0",
        ],
    );
    assert_eq!(version_at(ip, port, "/beta/cart"), "1.1.0");
    assert_eq!(version_at(ip, port, "/cart"), "1.0.0");
    let cleared = lab.ok("route", &["hello", "--clear"]);
    assert!(cleared.contains("removed the route of hello"), "{cleared}");
    let shown = lab.ok("route", &["hello"]);
    assert!(shown.contains("route none"), "{shown}");

    // Without a version, stop and scale are refused, naming both, and
    // nothing changes.
    let refused = lab.fails("stop", &["actor", "hello", "--host", &host.id]);
    assert!(refused.contains("1.0.0, 1.1.0"), "{refused}");
    let refused = lab.fails("scale", &["hello", "3", "--host", &host.id]);
    assert!(refused.contains("1.0.0, 1.1.0"), "{refused}");
    let inventory = lab.ok("inventory", &[]);
    assert_eq!(running(&inventory, "actor hello@"), 2, "{inventory}");

    // Live on green, then the host dies with kill -9 and comes back: it
    // follows the current route from its first request.
    lab.ok("route", &["hello", "--live", "1.1.0"]);
    host.kill();
    let host = HostProcess::start(&dir, ip, None, OFFERS);
    let first = until(ip, port, |reply| matches!(reply, Some((200, _))));
    assert!(
        matches!(&first, Some((200, body)) if body.contains("hello@1.1.0")),
        "{first:?}"
    );
    for _ in 0..5 {
        assert_eq!(version(ip, port), "1.1.0");
    }

    // With a version, stop and scale act on that version only.
    lab.ok("swap", &["hello", "--to", "1.0.0"]);
    let scaled = lab.ok("scale", &["hello@1.0.0", "2", "--host", &host.id]);
    assert!(scaled.contains("hello@1.0.0 runs 2 instances"), "{scaled}");
    lab.ok("stop", &["actor", "hello@1.1.0", "--host", &host.id]);
    let inventory = lab.ok("inventory", &[]);
    assert_eq!(running(&inventory, "actor hello@1.0.0"), 2, "{inventory}");
    assert_eq!(running(&inventory, "actor hello@1.1.0"), 0, "{inventory}");
    assert_eq!(version(ip, port), "1.0.0");
    // One version left: no version needed.
    lab.ok("stop", &["actor", "hello", "--host", &host.id]);
}
