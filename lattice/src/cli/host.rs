//! `vat-lattice host`: one host in its own vat, until a signal.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use vat::VatHandle;
use vat_directory::{DirectoryClient, DirectoryToken};

use super::commands::CliError;
use crate::demo::Hello;
use crate::providers::{http::HttpProvider, kv::KeyValueProvider};
use crate::{Host, HostBuilder, Kind};

/// The file in the data folder that keeps the host's facet of the directory.
pub const FACET_FILE: &str = "lattice-host.token";
/// The file in the data folder that keeps what the host runs.
pub const PLAN_FILE: &str = "lattice-plan";
/// The version of the shipped providers and of the example actor.
pub const SHIPPED_VERSION: &str = "1.0.0";

thread_local! {
    /// The host of this vat's thread, for the shutdown.
    static HOST: RefCell<Option<Host>> = const { RefCell::new(None) };
}

/// `vat-lattice host`'s arguments.
#[derive(Debug)]
pub struct HostArgs {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub directory: Option<String>,
    pub actors: Vec<String>,
    pub http_providers: Vec<String>,
    pub lease_ms: u64,
}

fn facet(dir: &Path, given: Option<String>) -> Result<DirectoryToken, CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(FACET_FILE);
    let text = match given {
        Some(text) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut file| file.write_all(text.as_bytes()).map(|()| file));
            if let Err(source) = file.as_mut() {
                return Err(CliError::Io {
                    what: format!("writing {}", path.display()),
                    source: std::io::Error::new(source.kind(), source.to_string()),
                });
            }
            text
        }
        None => std::fs::read_to_string(&path).map_err(|_| {
            CliError::Usage(format!(
                "no --directory given and no {} in {}: give this host's facet, from \
                 `vat directory mint ADMIN --host VAT-ID`",
                FACET_FILE,
                dir.display()
            ))
        })?,
    };
    Ok(text.trim().parse()?)
}

/// Runs the host until SIGINT or SIGTERM.
pub fn run(args: HostArgs) -> Result<(), CliError> {
    std::fs::create_dir_all(&args.data).map_err(|source| CliError::Io {
        what: format!("making {}", args.data.display()),
        source,
    })?;
    let token = facet(&args.data, args.directory)?;
    let actors: Vec<Kind> = args
        .actors
        .iter()
        .map(|text| {
            let (name, version) = super::commands::kind_arg(text)?;
            Ok(Kind::new(
                name,
                version.as_deref().unwrap_or(SHIPPED_VERSION),
            )?)
        })
        .collect::<Result<_, CliError>>()?;
    for name in &args.http_providers {
        crate::check_name("provider", name)?;
    }
    // Installed before anything is printed: a script that stops the host as
    // soon as it reads "listening" must find the handlers in place.
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|source| CliError::Io {
            what: "installing signal handlers".to_owned(),
            source,
        })?;
    let vat = VatHandle::start("lattice-host")?;
    let (data, listen, actors, https, lease) = (
        args.data.clone(),
        args.listen,
        actors,
        args.http_providers,
        Duration::from_millis(args.lease_ms),
    );
    let started = vat
        .run_async(move || async move {
            let served = crate::serve::serve(&data, listen).await?;
            let id = served.persistence.vat().to_string();
            let short = id[..8].to_owned();
            let version = SHIPPED_VERSION;
            let mut builder = HostBuilder::new()
                .lease(lease)
                .plan(data.join(PLAN_FILE))
                .provider(
                    Kind::new(crate::providers::http::NAME, version)?,
                    move |_| Ok(Box::new(HttpProvider::on(listen.ip()))),
                )
                .provider(Kind::new(crate::providers::kv::NAME, version)?, |context| {
                    Ok(Box::new(KeyValueProvider::new(context.persistence.clone())))
                });
            for name in https {
                builder = builder.provider(Kind::new(name, version)?, move |_| {
                    Ok(Box::new(HttpProvider::on(listen.ip())))
                });
            }
            for kind in actors {
                let short = short.clone();
                builder =
                    builder.actor(
                        kind,
                        move |context| Ok(Hello::new(context, &short).export()),
                    );
            }
            let directory = DirectoryClient::new(token, Some(served.identity.clone()));
            let host = builder
                .join(directory, served.persistence.clone(), Some(served.identity))
                .await?;
            HOST.with(|h| *h.borrow_mut() = Some(host));
            Ok::<_, CliError>((id, served.addr))
        })
        .wait()
        .map_err(CliError::from)
        .and_then(|started| started);
    let served = started.map(|(id, addr)| {
        println!("host {id} listening on {addr}");
        loop {
            if let Some(signal) = signals.pending().next() {
                return (
                    id,
                    if signal == SIGTERM {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    },
                );
            }
            if !vat.is_running() {
                return (id, "the vat stopped");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    // Stop every instance (ports close, grants go) before the vat.
    let shutdown = vat
        .run_async(|| async {
            let host = HOST.with(|h| h.borrow_mut().take());
            if let Some(host) = host {
                host.shutdown().await;
            }
        })
        .wait();
    let stopped = vat.stop();
    let (id, why) = served?;
    shutdown?;
    stopped?;
    println!("{why}: host {id} stopped");
    Ok(())
}
