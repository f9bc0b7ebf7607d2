//! `vat`: the command-line tool of the vat system.
//!
//! - `vat demo` starts a small federation on loopback and narrates it.
//! - `vat init` and `vat id` make and show a vat's identity.
//! - `vat serve` runs the vat of a data folder, serving sturdyrefs.
//! - `vat tokens` lists, revokes and mints that vat's tokens.
//! - `vat call` restores a token and calls the object it names.
//! - `vat schema id` prints a fresh Cap'n Proto file id.
//! - `vat directory ...` runs `vat-directory` (the replicated directory's
//!   tool, installed beside `vat`) with the rest of the arguments;
//!   `vat lattice ...` runs `vat-lattice` (hosts, actors, providers and
//!   bindings) the same way.
//!
//! Logs go to standard error, filtered by `RUST_LOG` (default: warnings and
//! errors), so what the commands print on standard output stays readable.
//! A failure prints `vat: <message>` and exits with status 1; a usage error
//! exits with status 2.

mod admin_client;
mod call;
mod companion;
mod data;
mod demo;
mod error;
mod holder;
mod init;
mod oneshot;
mod schema_id;
mod serve;
mod table;
mod tokens;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sturdyrefs::{LocationHint, VatId};
use tracing_subscriber::EnvFilter;

/// Vats: objects that call each other nearly, send to each other eventually,
/// and reach other vats only through Cap'n Proto capabilities.
#[derive(Debug, Parser)]
#[command(name = "vat", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The data folder a command works on.
#[derive(Debug, Args)]
struct Data {
    /// The vat's data folder: its identity key, its token store.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a federation of three vats on loopback and show, step by step,
    /// spawns, near calls, eventual sends, pipelining and a caught crash.
    Demo,
    /// Make a vat's identity (an ed25519 key in DIR/identity.key) and print
    /// its vat id; an identity already there is kept.
    Init(Data),
    /// Print the vat id of the identity in a data folder.
    Id(Data),
    /// Run the vat of a data folder, serving sturdyrefs over TLS, until
    /// SIGINT or SIGTERM. Its first start mints and prints a token for
    /// host#1 and one for counter#1.
    Serve {
        #[command(flatten)]
        data: Data,
        /// The address to listen on, e.g. 127.0.0.1:4000 (port 0: any free port).
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Where callers should dial, written into tokens (repeatable);
        /// without it, the address bound.
        #[arg(long = "hint", value_name = "HOST:PORT")]
        hints: Vec<LocationHint>,
        /// Let host#1 obey `Host.crash` (it panics on request, then its
        /// supervisor restarts it): for demonstrations and tests only, since
        /// any holder of its token could then crash it at will.
        #[arg(long)]
        crash_on_demand: bool,
    },
    /// List, revoke and mint the tokens of a vat (running or not).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Help with a crate's own Cap'n Proto schemas.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// The replicated directory: run a member, make a cluster, read and
    /// write records (`vat directory --help`). Runs `vat-directory`, which
    /// is installed beside `vat`.
    #[command(disable_help_flag = true)]
    Directory {
        /// The arguments `vat-directory` takes.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// The lattice: run a host, start and stop actors and providers, bind
    /// them (`vat lattice --help`). Runs `vat-lattice`, which is installed
    /// beside `vat`.
    #[command(disable_help_flag = true)]
    Lattice {
        /// The arguments `vat-lattice` takes.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Restore a token and call a method on its object: on a counter,
    /// `add N` or `get`; on a host, `echo N` or `greet NAME`.
    #[command(allow_negative_numbers = true)]
    Call {
        /// The token, captp://...
        token: String,
        /// The method: add, get, echo or greet.
        method: String,
        /// The method's arguments.
        args: Vec<String>,
        /// Prove the identity in this data folder (for a token bound to
        /// that vat) instead of calling anonymously.
        #[arg(long = "as", value_name = "DIR")]
        as_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Print a fresh file id (`@0x…;`), the first line every .capnp file needs.
    Id,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Print every token: hash prefix, object, times, binding and state.
    List(Data),
    /// Revoke a token, named by a prefix of its hash (at least 8 hex digits)
    /// or by its whole text.
    Revoke {
        #[command(flatten)]
        data: Data,
        /// A hash prefix, as `vat tokens list` prints it, or the token.
        #[arg(value_name = "HASH-PREFIX|TOKEN")]
        target: String,
    },
    /// Mint a token for an object of the running vat and print it.
    Mint {
        #[command(flatten)]
        data: Data,
        /// The object, kind#id: host#1 or counter#1.
        object: String,
        /// The token stops working this many seconds from now.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        expires_in: Option<u64>,
        /// Only the vat with this id may present the token.
        #[arg(long, value_name = "VATID")]
        bound_to: Option<VatId>,
    },
}

/// Runs the command; its error is what the user is told.
fn dispatch(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Demo => demo::run()?,
        Command::Init(Data { data }) => init::init(data)?,
        Command::Id(Data { data }) => init::id(data)?,
        Command::Serve {
            data,
            listen,
            hints,
            crash_on_demand,
        } => serve::run(serve::ServeArgs {
            dir: data.data,
            listen,
            hints,
            crash_on_demand,
        })?,
        Command::Schema(SchemaCommand::Id) => println!("{}", schema_id::file_id()),
        Command::Directory { args } => companion::run("vat-directory", args)?,
        Command::Lattice { args } => companion::run("vat-lattice", args)?,
        Command::Tokens(TokensCommand::List(Data { data })) => tokens::list(data)?,
        Command::Tokens(TokensCommand::Revoke { data, target }) => {
            tokens::revoke(data.data, &target)?
        }
        Command::Tokens(TokensCommand::Mint {
            data,
            object,
            expires_in,
            bound_to,
        }) => tokens::mint(
            data.data,
            tokens::MintRequest {
                object,
                expires_in: expires_in.map(std::time::Duration::from_secs),
                bound_to,
            },
        )?,
        Command::Call {
            token,
            method,
            args,
            as_dir,
        } => call::run(&token, &method, &args, as_dir)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The message may quote a peer (a remote refusal, a handshake
            // error): escaped, it cannot drive the terminal.
            eprintln!("vat: {}", captp::log::Untrusted(&error));
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error; `RUST_LOG` chooses what (e.g. `RUST_LOG=debug`
/// shows a span per vat, connection and turn).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
