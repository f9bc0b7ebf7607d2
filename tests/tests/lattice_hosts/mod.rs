//! Host processes for the lattice's tests: `vat-lattice host` processes
//! over a three-member directory in the test's process, the operator's
//! `vat-lattice` commands, and HTTP on a raw socket.

// Test setup failing is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

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

/// Generous: the machine may be busy.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn tool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vat_lattice"))
}

/// A `vat-lattice host` process, killed when dropped.
pub struct HostProcess {
    child: Child,
    pub id: String,
}

impl HostProcess {
    /// Starts a host in `dir` listening on `ip`, with the host facet
    /// `facet` (none: the one kept in `dir`), offering what `offers` says
    /// (`--actor NAME`, `--http-provider NAME`, ...).
    pub fn start(
        dir: &Path,
        ip: IpAddr,
        facet: Option<&DirectoryToken>,
        offers: &[&str],
    ) -> HostProcess {
        let mut command = Command::new(tool());
        command
            .arg("host")
            .arg("--data")
            .arg(dir)
            .arg("--listen")
            .arg(SocketAddr::new(ip, 0).to_string())
            .args(offers)
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

    pub fn kill(&mut self) {
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
pub struct Lab {
    _members: LocalMembers,
    pub admin: DirectoryToken,
    pub operator: VatHandle,
    dir: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
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
    pub fn prepare_host(&self, name: &str) -> (PathBuf, DirectoryToken) {
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
    pub fn cli(&self, verb: &str, args: &[&str]) -> (bool, String) {
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

    pub fn ok(&self, verb: &str, args: &[&str]) -> String {
        let (ok, out) = self.cli(verb, args);
        assert!(ok, "vat-lattice {verb} {args:?} failed: {out}");
        out
    }

    /// Runs `vat-lattice VERB ADMIN ARGS...`, which must fail; answers what
    /// it printed on standard error.
    pub fn fails(&self, verb: &str, args: &[&str]) -> String {
        let output = Command::new(tool())
            .arg(verb)
            .arg(self.admin.to_string())
            .args(args)
            .output()
            .expect("run vat-lattice");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !output.status.success(),
            "vat-lattice {verb} {args:?} succeeded: {stderr}"
        );
        stderr
    }

    pub fn start(&self, role: &str, name: &str, host: &HostProcess) {
        self.ok("start", &[role, name, "--host", &host.id]);
    }

    pub fn stop(&self, role: &str, name: &str, host: &HostProcess) {
        self.ok("stop", &[role, name, "--host", &host.id]);
    }
}

/// A free port (bound on the wildcard address and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` at `ip:port`: the status and body, or `None` if nothing
/// listens (or nothing answers).
pub fn get(ip: IpAddr, port: u16, path: &str) -> Option<(u16, String)> {
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
pub fn until(
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
