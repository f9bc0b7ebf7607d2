//! `vat serve`: runs the vat of a data folder until SIGINT or SIGTERM.
//!
//! The vat provides `host#1` (a [`Host`], alive while the vat runs, restarted
//! by the vat's root supervisor if it crashes) and the persistent
//! `counter#1` (a [`DurableCounter`]), and serves its gateway on
//! a TLS listener. On its first start it mints a token for each and prints
//! them; the store keeps only their hashes, so later starts cannot.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use schema::demo_capnp::host;
use signal_hook::consts::{SIGINT, SIGTERM};
use sturdyrefs::{Host as HintHost, LocationHint, MintOptions, RedbStore, VatId};
use vat::demo::{DurableCounter, Host};
use vat::net::tls::TlsListener;
use vat::net::{Identity, Limits};
use vat::sturdy::{object_ref, vat_id, Persistence};
use vat::supervise::{ChildSpec, Restart, SupervisorBuilder};
use vat::{ErrorKind, VatHandle};

use crate::data::DataDir;
use crate::error::CliError;
use crate::table::{Row, State};

/// The objects every `vat serve` offers, in the order their first tokens
/// are printed.
const OBJECTS: [(&str, u64); 2] = [("host", 1), ("counter", 1)];

/// How often the main thread looks for a signal and checks that the vat is
/// still running.
const WATCH_INTERVAL: Duration = Duration::from_millis(50);

/// `vat serve`'s arguments.
#[derive(Debug)]
pub struct ServeArgs {
    /// The data folder.
    pub dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where callers should dial, written into tokens; empty: the address
    /// actually bound.
    pub hints: Vec<LocationHint>,
    /// Whether host#1 obeys `Host.crash` (demonstrations and tests only).
    pub crash_on_demand: bool,
}

/// What the vat reports once it is serving.
struct Started {
    addr: SocketAddr,
    /// `(object, token)` for each token minted on a first start.
    minted: Vec<(String, String)>,
    /// The tokens already in the store, on a later start.
    existing: Vec<Row>,
}

/// SIGTERM and SIGINT, watched from the main thread. (signal-hook rather
/// than tokio's signals: with those, every vat's runtime would keep a signal
/// socket of its own.)
struct Signals {
    inner: signal_hook::iterator::Signals,
}

/// Runs the vat until a signal asks it to stop.
pub fn run(args: ServeArgs) -> Result<(), CliError> {
    if args.hints.is_empty() && args.listen.ip().is_unspecified() {
        return Err(CliError::UnspecifiedListen { addr: args.listen });
    }
    let dir = DataDir::new(args.dir);
    let identity = dir.identity()?;
    let id = DataDir::vat_id(&identity);
    dir.check_private()?;
    let store = dir.open_store_to_serve()?;
    // Installed before anything is printed: a script that stops the vat as
    // soon as it reads "serving" must find the handlers in place.
    let mut signals = Signals::install()?;

    let vat = VatHandle::start(format!("serve-{}", short(&id)))?;
    let (listen, hints, crashable) = (args.listen, args.hints, args.crash_on_demand);
    let started = vat
        .run_async(move || start(store, identity, listen, hints, crashable))
        .wait()
        .map_err(CliError::from)
        .and_then(|started| started);
    let served = started.and_then(|started| {
        announce(&dir, &id, &started)?;
        signals.wait(&vat)
    });
    // Stopping drops the vat's connections and its persistence, whose commit
    // thread finishes what was queued before the vat's thread ends.
    let stopped = vat.stop();
    let removed = dir.remove_addr();
    let signal = served?;
    stopped?;
    removed?;
    println!("{signal}: vat {id} stopped");
    Ok(())
}

/// Inside the vat: opens its persistence, provides its objects, binds the
/// listener, mints the first tokens if there are none, and serves.
async fn start(
    store: RedbStore,
    identity: Identity,
    listen: SocketAddr,
    hints: Vec<LocationHint>,
    crashable: bool,
) -> Result<Started, CliError> {
    let id = vat_id(identity.public_key());
    let persistence = Persistence::with_store(Arc::new(store), id)?;
    let host = supervised_host(format!("vat {}", short(&id)), crashable).await?;
    persistence.provide(object_ref("host", 1)?, host.client);
    persistence.durable::<DurableCounter>(1)?;

    let listener = TlsListener::bind(listen, &identity).await?;
    let addr = listener.local_addr();
    let hints = if hints.is_empty() {
        vec![hint_for(addr)?]
    } else {
        hints
    };
    persistence.set_hints(hints);

    let now = SystemTime::now();
    let existing: Vec<Row> = persistence
        .tokens()?
        .iter()
        .map(|record| Row::from_record(record, now))
        .collect();
    let mut minted = Vec::new();
    if existing.is_empty() {
        for (kind, number) in OBJECTS {
            let object = object_ref(kind, number)?;
            let token = persistence.mint(&object, MintOptions::default()).await?;
            tracing::info!(%object, "minted a first token");
            minted.push((object.to_string(), token.to_string()));
        }
    }
    // The listener's task keeps the persistence for as long as the vat runs.
    persistence.serve(listener, Limits::default());
    Ok(Started {
        addr,
        minted,
        existing,
    })
}

/// host#1 under the vat's root supervisor: a host that crashes (on demand,
/// or from a bug) is restarted, and the reference tokens reach is the
/// supervisor's stable one, so holders keep it. Should the supervisor give
/// up (restarts too frequent), the process exits with status 70 for its
/// own supervisor (systemd, a container runtime) to restart.
async fn supervised_host(name: String, crashable: bool) -> Result<host::Client, CliError> {
    let supervisor = SupervisorBuilder::new("serve")
        .child(ChildSpec::local("host", Restart::Permanent, move |_| {
            let host = if crashable {
                Host::crashable(name.clone())
            } else {
                Host::new(name.clone())
            };
            Ok(vat::export::<host::Client, _>(host).client)
        }))
        .start_root()
        .await?;
    Ok(supervisor.child("host")?)
}

/// The hint for a bound address (never an unspecified one: refused earlier).
fn hint_for(addr: SocketAddr) -> Result<LocationHint, CliError> {
    let host = match addr.ip() {
        IpAddr::V4(ip) => HintHost::Ipv4(ip),
        IpAddr::V6(ip) => HintHost::Ipv6(ip),
    };
    LocationHint::new(host, addr.port()).map_err(|e| {
        CliError::Vat(vat::Error::new(
            ErrorKind::InvalidArgument,
            format!("{addr} cannot be a location hint: {e}"),
        ))
    })
}

/// Prints the tokens (or how many there are), writes `serve.addr`, and
/// says the vat is serving.
fn announce(dir: &DataDir, id: &VatId, started: &Started) -> Result<(), CliError> {
    for (object, token) in &started.minted {
        println!("token {object} {token}");
    }
    if started.minted.is_empty() {
        let count = |state| started.existing.iter().filter(|r| r.state == state).count();
        println!(
            "the store holds {} tokens ({} live, {} revoked, {} expired); the live ones still \
             work. Only their hashes are kept, so they cannot be shown again: mint more with \
             `vat tokens mint`",
            started.existing.len(),
            count(State::Live),
            count(State::Revoked),
            count(State::Expired),
        );
    }
    dir.write_addr(dialable(started.addr))?;
    println!("serving vat {id} on {}", started.addr);
    // Whoever waits for this line reads a pipe, which Rust buffers.
    let _ = std::io::stdout().flush();
    Ok(())
}

/// An address other commands on this machine can dial: loopback in place
/// of an unspecified address.
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// The first characters of a vat id, to name threads and the host.
fn short(id: &VatId) -> String {
    id.to_string().chars().take(8).collect()
}

impl Signals {
    fn install() -> Result<Signals, CliError> {
        let inner =
            signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(CliError::Signals)?;
        Ok(Signals { inner })
    }

    /// Waits for SIGTERM or SIGINT and names it; fails if the vat stops on
    /// its own first.
    fn wait(&mut self, vat: &VatHandle) -> Result<&'static str, CliError> {
        loop {
            for signal in self.inner.pending() {
                match signal {
                    SIGTERM => return Ok("SIGTERM"),
                    SIGINT => return Ok("SIGINT"),
                    _ => {}
                }
            }
            if !vat.is_running() {
                return Err(CliError::Vat(vat::Error::new(
                    ErrorKind::VatStopped,
                    "the serving vat stopped on its own",
                )));
            }
            std::thread::sleep(WATCH_INTERVAL);
        }
    }
}
