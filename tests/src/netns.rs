//! Test hosts in network namespaces, each with an address of its own:
//!
//! - [`Hosts`]: two namespaces joined by a veth pair, a link that can be cut
//!   and healed;
//! - [`Lan`]: N hosts on two switches (bridges) joined by one link, which
//!   can be split into two partitions, and hosts that can be isolated.
//!
//! Needs root and iproute2 (`ip`, `tc`), as the test machines have. Every
//! name and subnet carries this process's id, so parallel runs do not
//! collide; dropping a [`Hosts`] or [`Lan`] deletes its namespaces, and the
//! links and bridges inside them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs `ip` with `args`; panics, naming the command, if it fails.
fn ip(args: &[&str]) {
    run("ip", args);
}

/// Runs `program` (from iproute2) with `args`; panics, naming the command,
/// if it fails.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}` (iproute2 is needed): {e}"));
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A command that runs `program` in namespace `ns`.
fn in_namespace(ns: &str, program: &Path) -> Command {
    // `ip netns exec` enters the namespace and execs the program, so the
    // child's pid is the program's own: killing it kills the program.
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).arg(program);
    command
}

/// Two hosts, `a` and `b`, each a network namespace, joined by one link.
#[derive(Debug)]
pub struct Hosts {
    a: String,
    b: String,
    dev_a: String,
    /// `a`'s address on the link.
    pub addr_a: Ipv4Addr,
    /// `b`'s address on the link.
    pub addr_b: Ipv4Addr,
}

impl Hosts {
    /// Makes the two namespaces and the link between them, up.
    pub fn new() -> Hosts {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{serial}", std::process::id());
        // A /24 of 10.201.0.0/16 chosen by the tag: private to these namespaces.
        let net = u8::try_from((std::process::id() + serial * 7) % 250).unwrap_or(0) + 1;
        let hosts = Hosts {
            a: format!("vt{tag}a"),
            b: format!("vt{tag}b"),
            dev_a: format!("vt{tag}A"),
            addr_a: Ipv4Addr::new(10, 201, net, 1),
            addr_b: Ipv4Addr::new(10, 201, net, 2),
        };
        let dev_b = format!("vt{tag}B");
        // `hosts` exists already: if a step fails, dropping it cleans up.
        ip(&["netns", "add", &hosts.a]);
        ip(&["netns", "add", &hosts.b]);
        ip(&[
            "link",
            "add",
            &hosts.dev_a,
            "type",
            "veth",
            "peer",
            "name",
            &dev_b,
        ]);
        ip(&["link", "set", &hosts.dev_a, "netns", &hosts.a]);
        ip(&["link", "set", &dev_b, "netns", &hosts.b]);
        for (ns, dev, addr) in [
            (&hosts.a, &hosts.dev_a, hosts.addr_a),
            (&hosts.b, &dev_b, hosts.addr_b),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    /// A command that runs `program` on host `a`.
    pub fn on_a(&self, program: &Path) -> Command {
        self.on(&self.a, program)
    }

    /// A command that runs `program` on host `b`.
    pub fn on_b(&self, program: &Path) -> Command {
        self.on(&self.b, program)
    }

    fn on(&self, ns: &str, program: &Path) -> Command {
        in_namespace(ns, program)
    }

    /// Cuts the link: `a`'s side goes down, and packets stop both ways.
    pub fn cut(&self) {
        ip(&["-n", &self.a, "link", "set", &self.dev_a, "down"]);
    }

    /// Restores the link.
    pub fn heal(&self) {
        ip(&["-n", &self.a, "link", "set", &self.dev_a, "up"]);
    }
}

impl Default for Hosts {
    fn default() -> Self {
        Hosts::new()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and so the pair.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A LAN of hosts: each host a namespace whose one interface, `eth0`, is
/// plugged into switch A or switch B; the switches are bridges in a
/// namespace of their own, joined by one link.
///
/// ```text
///  host 0 ─┐                 ┌─ host 2
///  host 1 ─┤ A ═══ trunk ═══ B ├─ host 3
///          │                 └─ host 4
/// ```
///
/// [`split`](Lan::split) cuts the trunk (hosts on one switch still reach
/// each other); [`isolate`](Lan::isolate) makes one host's cable drop
/// every packet both ways, silently, while its link stays up.
#[derive(Debug)]
pub struct Lan {
    switch: String,
    hosts: Vec<Host>,
}

/// One host of a [`Lan`].
#[derive(Debug)]
struct Host {
    ns: String,
    /// The host's cable's end in the switch namespace.
    port: String,
    addr: Ipv4Addr,
}

/// The host's own interface, in its namespace.
const HOST_DEV: &str = "eth0";
/// The trunk's end on switch A, in the switch namespace.
const TRUNK_A: &str = "trunkA";
/// The trunk's end on switch B.
const TRUNK_B: &str = "trunkB";

impl Lan {
    /// A LAN of `sides[0]` hosts on switch A, then `sides[1]` on switch B
    /// (`&[2, 3]`: hosts 0 and 1 on A, 2 to 4 on B), every link up.
    pub fn new(sides: &[usize]) -> Lan {
        assert!(
            sides.len() == 2,
            "a LAN has two switches; {} sides given",
            sides.len()
        );
        let count = sides[0] + sides[1];
        assert!(count <= 250, "at most 250 hosts on one LAN");
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{serial}", std::process::id());
        // A /24 of 10.202.0.0/16 chosen by the tag: private to these
        // namespaces, and apart from [`Hosts`]' 10.201.0.0/16.
        let net = u8::try_from((std::process::id() + serial * 7) % 250).unwrap_or(0) + 1;
        let mut lan = Lan {
            switch: format!("vl{tag}s"),
            hosts: Vec::new(),
        };
        // `lan` exists already: if a step fails, dropping it cleans up.
        ip(&["netns", "add", &lan.switch]);
        let sw = lan.switch.clone();
        for bridge in ["brA", "brB"] {
            ip(&["-n", &sw, "link", "add", bridge, "type", "bridge"]);
            ip(&["-n", &sw, "link", "set", bridge, "up"]);
        }
        ip(&[
            "-n", &sw, "link", "add", TRUNK_A, "type", "veth", "peer", "name", TRUNK_B,
        ]);
        for (end, bridge) in [(TRUNK_A, "brA"), (TRUNK_B, "brB")] {
            ip(&["-n", &sw, "link", "set", end, "master", bridge]);
            ip(&["-n", &sw, "link", "set", end, "up"]);
        }
        for i in 0..count {
            let host = Host {
                ns: format!("vl{tag}h{i}"),
                port: format!("port{i}"),
                addr: Ipv4Addr::new(10, 202, net, u8::try_from(i + 1).unwrap_or(u8::MAX)),
            };
            ip(&["netns", "add", &host.ns]);
            lan.hosts.push(host);
            let host = &lan.hosts[i];
            let bridge = if i < sides[0] { "brA" } else { "brB" };
            ip(&[
                "-n", &sw, "link", "add", &host.port, "type", "veth", "peer", "name", HOST_DEV,
                "netns", &host.ns,
            ]);
            ip(&["-n", &sw, "link", "set", &host.port, "master", bridge]);
            ip(&["-n", &sw, "link", "set", &host.port, "up"]);
            let cidr = format!("{}/24", host.addr);
            ip(&["-n", &host.ns, "addr", "add", &cidr, "dev", HOST_DEV]);
            ip(&["-n", &host.ns, "link", "set", HOST_DEV, "up"]);
            ip(&["-n", &host.ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    /// How many hosts the LAN has.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the LAN has no host.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.hosts[i].addr
    }

    /// A command that runs `program` on host `i`.
    pub fn command(&self, i: usize, program: &Path) -> Command {
        in_namespace(&self.hosts[i].ns, program)
    }

    /// Cuts the trunk between the switches: hosts on A and hosts on B no
    /// longer reach each other (packets stop both ways), hosts on the same
    /// switch still do.
    pub fn split(&self) {
        ip(&["-n", &self.switch, "link", "set", TRUNK_A, "down"]);
    }

    /// Restores the trunk.
    pub fn join(&self) {
        ip(&["-n", &self.switch, "link", "set", TRUNK_A, "up"]);
    }

    /// Makes host `i`'s cable drop every packet, both ways: a queue of no
    /// length on each end. The links stay up, so nothing tells the host
    /// or its peers; their packets vanish.
    pub fn isolate(&self, i: usize) {
        for (ns, dev) in self.cable(i) {
            run(
                "tc",
                &[
                    "-n", ns, "qdisc", "replace", "dev", dev, "root", "pfifo", "limit", "0",
                ],
            );
        }
    }

    /// Gives host `i`'s cable its usual queues back.
    pub fn rejoin(&self, i: usize) {
        for (ns, dev) in self.cable(i) {
            run("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"]);
        }
    }

    /// Host `i`'s cable's two ends: (namespace, device).
    fn cable(&self, i: usize) -> [(&str, &str); 2] {
        let host = &self.hosts[i];
        [
            (host.ns.as_str(), HOST_DEV),
            (self.switch.as_str(), host.port.as_str()),
        ]
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes the devices inside it: each veth with
        // its peer, and the bridges.
        for ns in self.hosts.iter().map(|h| &h.ns).chain([&self.switch]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
