//! The `vat-lattice` tool (also run as `vat lattice`): runs a host, and
//! lets the operator see and change the lattice with the directory's admin
//! token.
//!
//! - `host` runs a host in a data folder: the shipped providers (`http`,
//!   `kv`) and the example actor under each `--actor NAME`, until SIGINT or
//!   SIGTERM.
//! - `hosts`, `inventory`, `start`, `stop`, `scale`: the hosts and what
//!   they run (a kind as `NAME` or `NAME@VERSION`).
//! - `bind`, `unbind`, `bindings`: the bindings.
//! - `versions`, `route`, `swap`: the versions of a kind, and how calls on
//!   its unversioned reference pick one.
//!
//! What the commands print goes to standard output; logs to standard
//! error, filtered by `RUST_LOG` (default: warnings). A failure prints
//! `vat-lattice: <message>` and exits with 1.

mod commands;
mod host;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

pub use commands::CliError;

/// Hosts, actors, providers and bindings of a lattice.
#[derive(Debug, Parser)]
#[command(name = "vat lattice", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Actor or provider, on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// A kind of object bound to providers.
    Actor,
    /// A kind of capability provider.
    Provider,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a host in a data folder until SIGINT or SIGTERM: the providers
    /// `http` (serving on the host's address unless a binding names one)
    /// and `kv`, and the example actor under each `--actor` name.
    /// It starts again what it ran before (its plan, in the folder).
    Host {
        /// The data folder (made, with an identity, if missing).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The address to listen on (port 0: one the system picks).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// This host's facet of the directory (`vat directory mint ADMIN
        /// --host VAT-ID`); kept in the folder, so later starts may omit it.
        #[arg(long, value_name = "TOKEN")]
        directory: Option<String>,
        /// Offer the example actor under this kind, `NAME` (at 1.0.0) or
        /// `NAME@VERSION` (repeatable: several versions may be offered).
        #[arg(long = "actor", value_name = "NAME[@VERSION]")]
        actors: Vec<String>,
        /// Offer the HTTP provider under this kind name too, beside `http`
        /// (repeatable).
        #[arg(long = "http-provider", value_name = "NAME")]
        http_providers: Vec<String>,
        /// The host's lease.
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        lease_ms: u64,
    },
    /// List the hosts: vat id, alive or gone, hints, instances.
    Hosts {
        /// The directory's admin token.
        admin: String,
    },
    /// What each host (or one) runs, and what it could run.
    Inventory {
        /// The directory's admin token.
        admin: String,
        /// Only this host (vat id).
        #[arg(long, value_name = "VAT-ID")]
        host: Option<String>,
    },
    /// Start an instance of an actor or provider on a host; prints its number.
    Start {
        /// The directory's admin token.
        admin: String,
        /// Actor or provider.
        role: RoleArg,
        /// The kind: `NAME` (the host's only version) or `NAME@VERSION`.
        name: String,
        /// The host (vat id).
        #[arg(long, value_name = "VAT-ID")]
        host: String,
        /// The kind's version (as `NAME@VERSION` does).
        #[arg(long)]
        version: Option<String>,
    },
    /// Stop the instances of an actor or provider on a host (`NAME@VERSION`:
    /// of that version only; `NAME`: refused if several versions run
    /// there). Its bindings stay.
    Stop {
        /// The directory's admin token.
        admin: String,
        /// Actor or provider.
        role: RoleArg,
        /// The kind: `NAME` or `NAME@VERSION`.
        name: String,
        /// The host (vat id).
        #[arg(long, value_name = "VAT-ID")]
        host: String,
        /// Only this instance.
        #[arg(long, value_name = "N")]
        number: Option<u64>,
    },
    /// Run COUNT instances of a kind on a host, starting or stopping some
    /// (`NAME@VERSION`: of that version; `NAME`: refused if several run).
    Scale {
        /// The directory's admin token.
        admin: String,
        /// The kind: `NAME` or `NAME@VERSION`.
        name: String,
        /// How many instances.
        count: u32,
        /// The host (vat id).
        #[arg(long, value_name = "VAT-ID")]
        host: String,
    },
    /// The versions of a kind that run, where, and its route.
    Versions {
        /// The directory's admin token.
        admin: String,
        /// The kind's name.
        name: String,
    },
    /// Show or set how calls on a kind's unversioned reference pick a
    /// version; waits until every host's routers follow. With no option,
    /// prints the route.
    Route {
        /// The directory's admin token.
        admin: String,
        /// The kind's name.
        name: String,
        /// Weights per version: `1.0.0=90,1.1.0=10`.
        #[arg(long, value_name = "V=W,...", conflicts_with = "live")]
        weights: Option<String>,
        /// With --weights: a caller's routing key keeps its version while
        /// the weights do not move it.
        #[arg(long, requires = "weights")]
        sticky: bool,
        /// Every call to this version (blue/green; `swap` changes it).
        #[arg(long, value_name = "VERSION")]
        live: Option<String>,
        /// A content rule, tried in order before the rest:
        /// `key:PATTERN=VERSION` or `field.NAME:PATTERN=VERSION` (`*` in a
        /// pattern matches any run). Repeatable; needs --weights or --live
        /// for the calls no rule matches.
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
        /// Remove the route: calls spread over every instance again.
        #[arg(long, conflicts_with_all = ["weights", "live", "rules"])]
        clear: bool,
    },
    /// Blue/green: make another version live, atomically; waits until
    /// every host's routers follow.
    Swap {
        /// The directory's admin token.
        admin: String,
        /// The kind's name.
        name: String,
        /// The version to make live (default: the one live before, or the
        /// only other one running).
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
    },
    /// Bind an actor to a provider: every instance of the provider takes it.
    Bind {
        /// The directory's admin token.
        admin: String,
        /// The actor kind.
        actor: String,
        /// The provider kind.
        provider: String,
        /// The link name.
        #[arg(long, default_value = crate::DEFAULT_LINK)]
        link: String,
        /// A setting KEY=VALUE (repeatable), e.g. port=8080.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// How long to wait for every provider instance.
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        wait_ms: u64,
    },
    /// Remove a binding: its provider instances release what it provisioned
    /// and every capability it granted is revoked.
    Unbind {
        /// The directory's admin token.
        admin: String,
        /// The actor kind.
        actor: String,
        /// The provider kind.
        provider: String,
        /// The link name.
        #[arg(long, default_value = crate::DEFAULT_LINK)]
        link: String,
    },
    /// List the bindings, with their instance counts and each provider
    /// instance's grant.
    Bindings {
        /// The directory's admin token.
        admin: String,
    },
}

/// The tool's entry point: parses the command line, runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let outcome = match cli.command {
        Command::Host {
            data,
            listen,
            directory,
            actors,
            http_providers,
            lease_ms,
        } => host::run(host::HostArgs {
            data,
            listen,
            directory,
            actors,
            http_providers,
            lease_ms,
        }),
        other => commands::run(other),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vat-lattice: {}", captp::log::Untrusted(&error));
            ExitCode::FAILURE
        }
    }
}
