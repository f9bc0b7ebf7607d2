//! A vat serving a sturdyref in a process of its own, for clients written
//! in other languages (see `docs/PROTOCOL.md` and
//! `tests/tests/third_party_python.rs`).
//!
//! `sturdy_peer [DATA_DIR [LISTEN_ADDR]]` opens the vat's identity and store
//! in `DATA_DIR` (or in a fresh folder under the system's temporary
//! directory, removed at exit), provides the durable counter `counter#1`,
//! serves the sturdyref gateway on a TLS listener on `LISTEN_ADDR` (default:
//! a free loopback port), mints a token for the counter, and prints two
//! lines on standard output:
//!
//! ```text
//! listening 127.0.0.1:PORT
//! token captp://<vat-id>@127.0.0.1:PORT/<swiss>
//! ```
//!
//! It then runs until its standard input closes or it is killed.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use vat::demo::DurableCounter;
use vat::net::tls::TlsListener;
use vat::net::{Identity, Limits};
use vat::sturdy::{object_ref, vat_id, Persistence};
use vat::VatHandle;

/// A data folder that exists only while the process runs.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover folder in the temporary directory harms nobody.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A folder name under the temporary directory that no other run uses.
fn scratch_dir() -> Result<Scratch, std::io::Error> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!("sturdy_peer-{}-{nanos}", std::process::id()));
    // `create_dir` (not `create_dir_all`) fails if the name is taken.
    std::fs::create_dir(&path)?;
    Ok(Scratch(path))
}

/// Starts serving inside `vat`; returns the listener's address and the token.
fn serve(vat: &VatHandle, dir: &Path, listen: SocketAddr) -> Result<(String, String), String> {
    let identity = Identity::load_or_create(dir)
        .map_err(|e| format!("cannot load the vat identity in {}: {e}", dir.display()))?;
    let dir = dir.to_path_buf();
    vat.run_async(move || async move {
        let persistence = Persistence::open(&dir, vat_id(identity.public_key()))
            .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))?;
        persistence
            .durable::<DurableCounter>(1)
            .map_err(|e| format!("cannot revive counter#1: {e}"))?;
        let listener = TlsListener::bind(listen, &identity)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().to_string();
        let hint = addr
            .parse()
            .map_err(|e| format!("{addr} is not a location hint: {e}"))?;
        persistence.set_hints(vec![hint]);
        // The listener keeps a clone of the persistence, and so the counter, alive.
        persistence.serve(listener, Limits::default());
        let counter = object_ref("counter", 1).map_err(|e| e.to_string())?;
        let token = persistence
            .mint(&counter, Default::default())
            .await
            .map_err(|e| format!("cannot mint a token for counter#1: {e}"))?;
        Ok((addr, token.to_string()))
    })
    .wait()
    .map_err(|e| format!("the vat stopped: {e}"))?
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Declared before the vat, so the folder outlives it (locals drop in reverse).
    let (dir, _scratch) = match std::env::args_os().nth(1) {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let scratch = scratch_dir()?;
            (scratch.0.clone(), Some(scratch))
        }
    };

    let listen = match std::env::args().nth(2) {
        Some(addr) => addr.parse()?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };

    let vat = VatHandle::start("sturdy-peer")?;
    let (addr, token) = serve(&vat, &dir, listen)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {addr}")?;
    writeln!(stdout, "token {token}")?;
    stdout.flush()?;
    drop(stdout);

    // The parent closes our stdin (or exits) when it is done with us.
    let mut stdin = std::io::stdin().lock();
    let mut buffer = [0u8; 256];
    while stdin.read(&mut buffer)? > 0 {}
    vat.stop()?;
    Ok(())
}
