//! Why a `vat` command failed: one typed error for the whole tool, printed
//! as `vat: <message>` with exit status 1 (usage errors are clap's, status 2).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use sturdyrefs::{ParseError, StoreError, VatId};
use vat::net::{IdentityError, NetError};
use vat::sturdy::RestoreError;

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
        "the vat in {} is already running (its store {} is locked); stop it first",
        dir.display(),
        store.display()
    )]
    AlreadyRunning {
        /// The data folder.
        dir: PathBuf,
        /// The store file.
        store: PathBuf,
    },
    /// The store is locked, yet no address says where the vat listens.
    #[error(
        "the store {} is in use but {} does not exist: the vat is starting or stopping, or \
         another `vat` command has the store open; try again",
        store.display(),
        addr_file.display()
    )]
    Busy {
        /// The store file.
        store: PathBuf,
        /// The missing address file.
        addr_file: PathBuf,
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
