//! A vat's data folder as the commands see it: the identity key, the token
//! store, and `serve.addr`, where a running vat says it listens.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sturdyrefs::{RedbStore, StoreError, VatId};
use vat::net::Identity;

use crate::error::CliError;

/// The file in which `vat serve` writes the address it listens on. It holds
/// no secret: the commands that read it must still prove the vat's key.
pub const ADDR_FILE: &str = "serve.addr";

/// One vat's data folder.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

/// The token store, as the commands can reach it.
pub enum StoreAccess {
    /// The vat is not running: the store is ours to open (`None`: the vat
    /// has never made one, so it holds no tokens).
    Closed(Option<RedbStore>),
    /// The vat is running and holds the store; it listens here.
    Running(SocketAddr),
}

impl DataDir {
    /// The data folder at `path`.
    pub fn new(path: PathBuf) -> DataDir {
        DataDir { path }
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The identity kept in the folder; never makes one.
    pub fn identity(&self) -> Result<Identity, CliError> {
        Identity::load(&self.path).map_err(|e| CliError::identity(&self.path, e))
    }

    /// The vat id of an identity, in its text form.
    pub fn vat_id(identity: &Identity) -> VatId {
        vat::sturdy::vat_id(identity.public_key())
    }

    /// The token store's file.
    pub fn store_path(&self) -> PathBuf {
        self.path.join(vat::sturdy::STORE_FILE)
    }

    /// The address file's path.
    pub fn addr_path(&self) -> PathBuf {
        self.path.join(ADDR_FILE)
    }

    /// Opens the store if the vat is not running, or finds the running vat.
    /// The store's lock decides which: `serve.addr` may outlive a vat that
    /// was killed, the lock does not.
    pub fn store(&self) -> Result<StoreAccess, CliError> {
        let path = self.store_path();
        if !path.exists() {
            return Ok(StoreAccess::Closed(None));
        }
        match RedbStore::open(&path) {
            Ok(store) => Ok(StoreAccess::Closed(Some(store))),
            Err(StoreError::InUse { .. }) => match self.read_addr()? {
                Some(addr) => Ok(StoreAccess::Running(addr)),
                None => Err(CliError::Busy {
                    store: path,
                    addr_file: self.addr_path(),
                }),
            },
            Err(source) => Err(CliError::Store { path, source }),
        }
    }

    /// Writes the address file, whole or not at all (a reader never sees
    /// half an address).
    pub fn write_addr(&self, addr: SocketAddr) -> Result<(), CliError> {
        let path = self.addr_path();
        let temporary = self.path.join(format!(".{ADDR_FILE}.tmp"));
        let failed = |source| CliError::File {
            action: "write",
            path: path.clone(),
            source,
        };
        fs::write(&temporary, format!("{addr}\n")).map_err(failed)?;
        fs::rename(&temporary, &path).map_err(failed)
    }

    /// The address in the address file, if there is one.
    pub fn read_addr(&self) -> Result<Option<SocketAddr>, CliError> {
        let path = self.addr_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CliError::File {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|e: std::net::AddrParseError| CliError::BadAddrFile {
                path,
                problem: e.to_string(),
            })
    }

    /// Removes the address file (it may be gone already).
    pub fn remove_addr(&self) -> Result<(), CliError> {
        let path = self.addr_path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CliError::File {
                action: "remove",
                path,
                source,
            }),
        }
    }
}
