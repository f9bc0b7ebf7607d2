//! Bindings across host processes: wasmCloud's acceptance scenario for
//! lattice bindings, step by step, with two `vat-lattice host` processes
//! (on 127.0.0.1 and 127.0.0.2), two actors, two HTTP providers, the
//! operator's `vat-lattice` commands, and HTTP requests on a raw socket
//! checking each step. Then: two instances of one provider both serve the
//! bound port; a host killed with `kill -9` and restarted gets its
//! bindings back. The directory is three members in this process.

// Test setup failing is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vat::VatHandle;
use vat_directory::command::FacetKind;
use vat_directory::operator::LocalMembers;
use vat_directory::{DirectoryClient, DirectoryToken};
use vat_lattice::{BindingId, Lattice, DEFAULT_LINK};

/// Generous: the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(60);

fn tool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vat_lattice"))
}

/// A `vat-lattice host` process, killed when dropped.
struct HostProcess {
    child: Child,
    id: String,
}

impl HostProcess {
    /// Starts a host in `dir` listening on `ip`, with the host facet
    /// `facet` (none: the one kept in `dir`).
    fn start(dir: &Path, ip: IpAddr, facet: Option<&DirectoryToken>) -> HostProcess {
        let mut command = Command::new(tool());
        command
            .arg("host")
            .arg("--data")
            .arg(dir)
            .arg("--listen")
            .arg(SocketAddr::new(ip, 0).to_string())
            .args(["--actor", "actor1", "--actor", "actor2"])
            .args(["--http-provider", "web1", "--http-provider", "web2"])
            .args(["--lease-ms", "3000"]);
        if let Some(facet) = facet {
            command.arg("--directory").arg(facet.to_string());
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start vat-lattice host");
        let stdout = child.stdout.take().expect("the host's stdout");
        let (lines, first) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut host = HostProcess {
            child,
            id: String::new(),
        };
        let line = first
            .recv_timeout(PATIENCE)
            .expect("the host prints its id and address");
        host.id = line
            .strip_prefix("host ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("the host printed {line:?}"))
            .to_owned();
        host
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The directory, its admin token, and a vat to act as the operator in.
struct Lab {
    _members: LocalMembers,
    admin: DirectoryToken,
    operator: VatHandle,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let members = LocalMembers::start(&dir.path().join("directory"), 3).unwrap();
        let operator = VatHandle::start("operator").unwrap();
        let admin = members.form_cluster(&operator).unwrap();
        Lab {
            _members: members,
            admin,
            operator,
            dir,
        }
    }

    /// A host's data folder with its identity, and a host facet minted for it.
    fn prepare_host(&self, name: &str) -> (PathBuf, DirectoryToken) {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let identity = vat::net::Identity::load_or_create(&dir).unwrap();
        let vat = vat::sturdy::vat_id(identity.public_key()).to_string();
        let admin = self.admin.clone();
        let facet = self
            .operator
            .block_on(move || async move {
                DirectoryClient::new(admin, None)
                    .mint_facet(FacetKind::Host { vat })
                    .await
            })
            .unwrap();
        (dir, facet)
    }

    /// Runs `vat-lattice ARGS...` with the admin token after the verb;
    /// answers its standard output, and whether it succeeded.
    fn cli(&self, verb: &str, args: &[&str]) -> (bool, String) {
        let output = Command::new(tool())
            .arg(verb)
            .arg(self.admin.to_string())
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .expect("run vat-lattice");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    fn ok(&self, verb: &str, args: &[&str]) -> String {
        let (ok, out) = self.cli(verb, args);
        assert!(ok, "vat-lattice {verb} {args:?} failed: {out}");
        out
    }

    fn start(&self, role: &str, name: &str, host: &HostProcess) {
        self.ok("start", &[role, name, "--host", &host.id]);
    }

    fn stop(&self, role: &str, name: &str, host: &HostProcess) {
        self.ok("stop", &[role, name, "--host", &host.id]);
    }

    /// The log index of each grant of a binding: unchanged means no
    /// provider instance re-provisioned it.
    fn grant_indexes(&self, actor: &str, provider: &str) -> Vec<(String, u64)> {
        let id = BindingId::new(actor, provider, DEFAULT_LINK).unwrap();
        let admin = self.admin.clone();
        self.operator
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
}

/// A free port (bound on the wildcard address and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` at `ip:port`: the status and body, or `None` if nothing
/// listens (or nothing answers).
fn get(ip: IpAddr, port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::new(ip, port);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Polls `GET /` at `ip:port` until `accept` holds (or patience runs out);
/// answers the last reply.
fn until(
    ip: IpAddr,
    port: u16,
    accept: impl Fn(&Option<(u16, String)>) -> bool,
) -> Option<(u16, String)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = get(ip, port, "/");
        if accept(&reply) || Instant::now() > deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let host1 = HostProcess::start(&dir1, ip1, Some(&facet1));
    let mut host2 = HostProcess::start(&dir2, ip2, Some(&facet2));
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
    let grants = lab.grant_indexes("actor1", "web1");
    lab.start("actor", "actor1", &host2);
    let reply = until(ip1, port1, answered_by("actor1", &host2));
    assert!(answered_by("actor1", &host2)(&reply), "{reply:?}");
    assert_eq!(
        lab.grant_indexes("actor1", "web1"),
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
    let host2 = HostProcess::start(&dir2, ip2, None);
    let reply = until(ip2, port2, answered_by("actor2", &host1));
    assert!(answered_by("actor2", &host1)(&reply), "{reply:?}");
    let inventory = lab.ok("inventory", &["--host", &host2.id]);
    assert!(inventory.contains("provider web2@1.0.0"), "{inventory}");
}
