//! Test hosts in network namespaces: two namespaces joined by a veth pair,
//! each with an address of its own, and a link that can be cut and healed.
//!
//! Needs root and iproute2 (`ip`), as the test machines have. Every name
//! and subnet carries this process's id, so parallel runs do not collide;
//! dropping the [`Hosts`] deletes the namespaces, and the veth pair with
//! them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs `ip` with `args`; panics, naming the command, if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2 is needed): {e}"));
    assert!(
        output.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
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
        // `ip netns exec` enters the namespace and execs the program, so the
        // child's pid is the program's own: killing it kills the program.
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).arg(program);
        command
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
