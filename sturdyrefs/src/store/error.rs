//! What can go wrong in a store.

use std::error::Error;
use std::path::PathBuf;

use thiserror::Error;

use crate::swiss::{RandomError, SwissHash};

/// Why a store operation failed. After any error the operation changed
/// nothing.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process (or another handle in this one) has the database
    /// open.
    #[error("the database {} is already open elsewhere", path.display())]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The database was written by a newer version of this crate.
    #[error(
        "the database {} has format version {found}; this build reads version {supported}",
        path.display()
    )]
    UnsupportedFormat {
        /// The database file.
        path: PathBuf,
        /// The version it holds.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// Something read back from the store is not what was written there.
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A token with this hash is already stored.
    #[error("a token with swiss hash {0} is already stored")]
    AlreadyExists(SwissHash),
    /// A time before 1970, which the store cannot represent.
    #[error("times before 1970 cannot be stored")]
    TimeBeforeEpoch,
    /// No fresh swiss number could be made.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The backend failed (input/output, a full disk, a damaged file...).
    #[error("{operation}: {source}")]
    Backend {
        /// What the store was doing.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}
