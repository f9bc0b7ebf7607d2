//! `vat-directory serve`: one directory member in its own vat, until a
//! signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use sturdyrefs::LocationHint;
use vat::net::Identity;
use vat::sturdy::vat_id;
use vat::VatHandle;

use super::commands::CliError;
use crate::member::RaftTimeouts;

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
    // Installed before anything is printed: a script that stops the member
    // as soon as it reads "serving" must find the handlers in place.
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|source| CliError::Io {
            what: "installing signal handlers".to_owned(),
            source,
        })?;
    let vat = VatHandle::start(format!("directory-{}", &id.to_string()[..8]))?;
    let folder = dir.clone();
    let started = vat
        .run_async(move || async move {
            let served =
                crate::operator::serve(&folder, identity, listen, hints, RaftTimeouts::default())
                    .await
                    .map_err(Box::new)?;
            Ok::<_, CliError>((served.token.to_string(), served.addr))
        })
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
