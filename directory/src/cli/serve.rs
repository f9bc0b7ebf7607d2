//! `vat-directory serve`: one directory member in its own vat.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::member::{RaftTimeouts, MEMBER_KIND};
use crate::{DirectoryMember, MemberConfig};
use signal_hook::consts::{SIGINT, SIGTERM};
use sturdyrefs::{Host, LocationHint, MintOptions};
use vat::net::tls::TlsListener;
use vat::net::{Identity, Limits};
use vat::sturdy::{object_ref, vat_id, Persistence};
use vat::VatHandle;

use super::commands::CliError;

/// Where the member's token is kept (mode 0600): the store keeps only its
/// hash.
pub const MEMBER_TOKEN_FILE: &str = "directory-member.token";
/// The member's own database (log, vote, state machine).
pub const DIRECTORY_FILE: &str = "directory.redb";

/// Runs the member until SIGINT or SIGTERM.
pub fn run(dir: PathBuf, listen: SocketAddr, hints: Vec<LocationHint>) -> Result<(), CliError> {
    if hints.is_empty() && listen.ip().is_unspecified() {
        return Err(CliError::Usage(format!(
            "{listen} is every address: give --hint HOST:PORT for members and clients to dial"
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io {
        what: format!("making {}", dir.display()),
        source,
    })?;
    let identity = Identity::load_or_create(&dir).map_err(|source| CliError::Identity {
        dir: dir.clone(),
        source,
    })?;
    let id = vat_id(identity.public_key());
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|source| CliError::Io {
            what: "installing signal handlers".to_owned(),
            source,
        })?;
    let vat = VatHandle::start(format!("directory-{}", &id.to_string()[..8]))?;
    let folder = dir.clone();
    let started = vat
        .run_async(move || start(folder, identity, listen, hints))
        .wait()
        .map_err(CliError::from)
        .and_then(|started| started);
    let served = started.map(|(token, addr)| {
        println!("member-token {token}");
        println!("serving directory member {id} on {addr}");
        loop {
            if let Some(signal) = signals.pending().next() {
                return if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
            }
            if !vat.is_running() {
                return "the vat stopped";
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let stopped = vat.stop();
    let why = served?;
    stopped?;
    println!("{why}: directory member {id} stopped");
    Ok(())
}

/// Inside the vat: serve the gateway, start the member, mint its token on
/// the first start.
async fn start(
    dir: PathBuf,
    identity: Identity,
    listen: SocketAddr,
    hints: Vec<LocationHint>,
) -> Result<(String, SocketAddr), CliError> {
    let id = vat_id(identity.public_key());
    let persistence = Persistence::open(&dir, id)?;
    let listener = TlsListener::bind(listen, &identity).await?;
    let addr = listener.local_addr();
    let hints = if hints.is_empty() {
        vec![hint_for(addr)?]
    } else {
        hints
    };
    persistence.set_hints(hints);
    let limits = Limits::default();
    persistence.serve(listener, limits);
    let path = dir.join(DIRECTORY_FILE);
    let db = redb::Database::create(&path)
        .map_err(|e| CliError::Usage(format!("opening {}: {e}", path.display())))?;
    DirectoryMember::start(MemberConfig {
        identity,
        persistence: persistence.clone(),
        db,
        limits,
        timeouts: RaftTimeouts::default(),
    })
    .await?;
    let token = member_token(&dir, &persistence).await?;
    Ok((token, addr))
}

/// The member's token: kept in the data folder from its first start.
async fn member_token(dir: &Path, persistence: &Persistence) -> Result<String, CliError> {
    let path = dir.join(MEMBER_TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_owned());
    }
    let token = persistence
        .mint(&object_ref(MEMBER_KIND, 1)?, MintOptions::default())
        .await?
        .to_string();
    write_private(&path, &token)?;
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| CliError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    writeln!(file, "{text}").map_err(io)?;
    file.sync_all().map_err(io)
}

fn hint_for(addr: SocketAddr) -> Result<LocationHint, CliError> {
    let host = match addr.ip() {
        IpAddr::V4(ip) => Host::Ipv4(ip),
        IpAddr::V6(ip) => Host::Ipv6(ip),
    };
    LocationHint::new(host, addr.port())
        .map_err(|e| CliError::Usage(format!("{addr} cannot be a location hint: {e}")))
}
