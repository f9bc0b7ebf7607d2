//! Why a `vat` command failed: one typed error for the whole tool, printed
//! as `vat: <message>` with exit status 1 (usage errors are clap's, status 2).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use sturdyrefs::{ParseError, StoreError, VatId};
use vat::net::{IdentityError, NetError};
use vat::sturdy::RestoreError;

use crate::data::Holders;
use crate::holder::Holder;

/// A failure of a `vat` command, worded for the person who ran it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The data folder holds no identity.
    #[error("{source} (make one with `vat init --data {}`)", dir.display())]
    NoIdentity {
        /// The data folder named on the command line.
        dir: PathBuf,
        /// What the identity loader said.
        source: IdentityError,
    },
    /// The identity exists but could not be read or made.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The vat runtime, or a call through it, failed.
    #[error(transparent)]
    Vat(#[from] vat::Error),
    /// A connection could not be made or a listener bound.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The token store failed.
    #[error("the token store {} failed: {source}", path.display())]
    Store {
        /// The store file.
        path: PathBuf,
        /// What went wrong.
        source: StoreError,
    },
    /// The vat of this data folder is running, so its store is locked.
    #[error(
        "the vat in {} is already running{} (its store {} is locked); stop it first",
        dir.display(),
        holder.as_ref().map(|h| format!(" as {h}")).unwrap_or_default(),
        store.display()
    )]
    AlreadyRunning {
        /// The data folder.
        dir: PathBuf,
        /// The store file.
        store: PathBuf,
        /// The serving process, when it could be found.
        holder: Option<Holder>,
    },
    /// Another process holds the store, and it is not a serving vat (or
    /// one that has not said where it listens yet).
    #[error(
        "the store {} is held by {} and did not come free within {waited:?}: the vat is \
         starting or stopping, or another command has the store open; try again once it is done",
        store.display(),
        Holders(holders)
    )]
    Busy {
        /// The store file.
        store: PathBuf,
        /// The processes that have it open (empty: none could be found).
        holders: Vec<Holder>,
        /// How long the command waited.
        waited: std::time::Duration,
    },
    /// A data folder, or a file in it, that the group or others may read.
    #[error(
        "{} has mode {mode:04o}: others may read the vat's key or its objects' state; make it \
         owner-only with `chmod {wanted:o} {}`",
        path.display(),
        path.display()
    )]
    Exposed {
        /// The folder or file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// The mode to give it.
        wanted: u32,
    },
    /// The command needs the vat to be running.
    #[error("the vat in {} is not running: {why}; start it with `vat serve`", dir.display())]
    NotRunning {
        /// The data folder.
        dir: PathBuf,
        /// Why running matters here.
        why: &'static str,
    },
    /// The address file of a running vat does not hold an address.
    #[error("{} does not hold a socket address: {problem}", path.display())]
    BadAddrFile {
        /// The address file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A file of the data folder could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// What was being done ("write", "remove", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Listening on 0.0.0.0 or :: says nothing about where callers should
    /// dial, so tokens need explicit hints.
    #[error(
        "{addr} is not an address callers can dial: give the addresses to write into tokens \
         with --hint HOST:PORT"
    )]
    UnspecifiedListen {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Signal handlers could not be installed.
    #[error("cannot watch for SIGINT and SIGTERM: {0}")]
    Signals(io::Error),
    /// The text given is not a token.
    #[error("bad token: {0}")]
    BadToken(#[from] ParseError),
    /// The token could not be restored.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The token names another vat than the one whose folder was given.
    #[error("the token names vat {token_vat}, but the vat in this folder is {this_vat}")]
    WrongVat {
        /// The vat the token names.
        token_vat: VatId,
        /// The vat of the data folder.
        this_vat: VatId,
    },
    /// A hash prefix that is not one.
    #[error("{0}")]
    BadPrefix(String),
    /// No token matches.
    #[error("the vat has no token whose hash starts with {0}")]
    NoSuchToken(String),
    /// Several tokens match a prefix.
    #[error("{count} tokens' hashes start with {prefix}: give more digits")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many tokens it matches.
        count: usize,
    },
    /// A method or its arguments that `vat call` does not know.
    #[error("{0}")]
    BadCall(String),
    /// A companion program (`vat-directory`) could not be started.
    #[error(
        "cannot run {program} (it is installed beside vat, from the vat-directory crate): {source}"
    )]
    Companion {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<capnp::Error> for CliError {
    fn from(error: capnp::Error) -> CliError {
        CliError::Vat(error.into())
    }
}

impl From<std::str::Utf8Error> for CliError {
    fn from(error: std::str::Utf8Error) -> CliError {
        CliError::from(capnp::Error::from(error))
    }
}

impl CliError {
    /// Names what to do when the data folder `dir` holds no identity.
    pub fn identity(dir: &std::path::Path, error: IdentityError) -> CliError {
        match error {
            IdentityError::Missing { .. } => CliError::NoIdentity {
                dir: dir.to_path_buf(),
                source: error,
            },
            other => CliError::Identity(other),
        }
    }
}
