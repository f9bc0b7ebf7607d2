//! The `vat-directory` tool (also run as `vat directory`): runs a directory member,
//! makes a cluster of members, and reads and writes the directory.
//!
//! - `serve` runs a member in a data folder; its first start prints the
//!   member's token (also kept in `DIR/directory-member.token`).
//! - `init` makes a cluster of members from their tokens and prints the
//!   admin token, the one token that names every member.
//! - `status`, `put`, `get`, `list`, `watch`, `rm` use a token;
//!   `mint`/`revoke` manage facets; `add-member`/`remove-member` change the
//!   membership (admin token).
//!
//! What the commands print goes to standard output; logs to standard
//! error, filtered by `RUST_LOG` (default: warnings). A failure prints
//! `vat-directory: <message>` and exits with 1.

mod commands;
mod serve;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sturdyrefs::LocationHint;
use tracing_subscriber::EnvFilter;

/// The replicated directory of a federation of vats.
#[derive(Debug, Parser)]
#[command(name = "vat directory", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Who the command proves it is to the members.
#[derive(Debug, Args, Clone)]
struct As {
    /// Prove the identity in this data folder (else call anonymously;
    /// a facet does not need it).
    #[arg(long = "as", value_name = "DIR", global = true)]
    as_dir: Option<PathBuf>,
}

/// How to read.
#[derive(Debug, Args, Clone, Copy)]
struct ReadArgs {
    /// Read whatever the answering member applied (it may be stale; the
    /// answer says how stale) instead of a linearizable read.
    #[arg(long)]
    any: bool,
    /// Ask only the token's member number N (from 0).
    #[arg(long, value_name = "N")]
    member: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a directory member in a data folder until SIGINT or SIGTERM
    /// (the same as `vat serve --directory-member`, which does not exist:
    /// a member is a vat of its own).
    Serve {
        /// The data folder (made, with an identity, if missing).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The address to listen on, e.g. 127.0.0.1:4100.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Where members and clients should dial (repeatable); without it,
        /// the address bound.
        #[arg(long = "hint", value_name = "HOST:PORT")]
        hints: Vec<LocationHint>,
    },
    /// Make a cluster of the members whose tokens are given (each printed
    /// by its `serve`) and print the admin token.
    Init {
        /// The members' tokens, captp://... (3 or 5 for a cluster that
        /// survives losing 1 or 2).
        #[arg(required = true, value_name = "MEMBER-TOKEN")]
        members: Vec<String>,
        #[command(flatten)]
        who: As,
    },
    /// Show the members, the leader, the term, the commit index and each
    /// member's lag.
    Status {
        /// A directory token (vatdir://...).
        token: String,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        who: As,
    },
    /// Write a record, of the kind its key's prefix holds: a name's or an
    /// instance's sturdyrefs (`--ref`, repeatable), a vat's record
    /// (`--vat-hint`, `--label`, `--lease-ms`) or a binding's config
    /// (`--config`, repeatable).
    Put {
        /// A directory token.
        token: String,
        /// The key: names/<name>, vats/<vat-id>,
        /// instances/<kind>@<version>/<vat-id>/<n> or
        /// bindings/<actor>/<provider>/<link>.
        key: String,
        /// A sturdyref for a name's or an instance's record (repeatable).
        #[arg(long = "ref", value_name = "TOKEN")]
        refs: Vec<String>,
        /// A binding's setting key=value (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// A location hint for a vat's record (repeatable).
        #[arg(long = "vat-hint", value_name = "HOST:PORT")]
        vat_hints: Vec<String>,
        /// A label key=value for a vat's record (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// A vat record's lease.
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        lease_ms: u64,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        who: As,
    },
    /// Print one record.
    Get {
        /// A directory token.
        token: String,
        /// The key.
        key: String,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        who: As,
    },
    /// Print the records under a prefix.
    List {
        /// A directory token.
        token: String,
        /// The prefix (default: everything the facet may read).
        #[arg(default_value = "")]
        prefix: String,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        who: As,
    },
    /// Print every change under a prefix as it commits, in log order.
    Watch {
        /// A directory token.
        token: String,
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
        /// Start after this log index (0: the prefix's state first).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<usize>,
        #[command(flatten)]
        who: As,
    },
    /// Delete a record.
    Rm {
        /// A directory token.
        token: String,
        /// The key.
        key: String,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        who: As,
    },
    /// Mint a facet (admin token): --admin, --host VAT, --reader PREFIX or
    /// --writer PREFIX; prints its token.
    Mint {
        /// The admin token.
        token: String,
        /// Everything.
        #[arg(long, group = "kind")]
        admin: bool,
        /// One vat's own records.
        #[arg(long, value_name = "VAT-ID", group = "kind")]
        host: Option<String>,
        /// Read keys under a prefix.
        #[arg(long, value_name = "PREFIX", group = "kind")]
        reader: Option<String>,
        /// Read and write keys under a prefix.
        #[arg(long, value_name = "PREFIX", group = "kind")]
        writer: Option<String>,
        #[command(flatten)]
        who: As,
    },
    /// Revoke a facet (admin token).
    Revoke {
        /// The admin token.
        token: String,
        /// The facet's token.
        facet: String,
        #[command(flatten)]
        who: As,
    },
    /// Add a member (admin token): the new member's token, from its serve.
    AddMember {
        /// The admin token.
        token: String,
        /// The new member's token, captp://...
        member: String,
        #[command(flatten)]
        who: As,
    },
    /// Remove a member (admin token), by vat id: a dead one too.
    RemoveMember {
        /// The admin token.
        token: String,
        /// The member's vat id.
        vat: String,
        #[command(flatten)]
        who: As,
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
        Command::Serve {
            data,
            listen,
            hints,
        } => serve::run(data, listen, hints),
        other => commands::run(other),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vat-directory: {}", captp::log::Untrusted(&error));
            ExitCode::FAILURE
        }
    }
}
