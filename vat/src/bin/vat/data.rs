//! A vat's data folder as the commands see it: the identity key, the token
//! store, and `serve.addr`, where a running vat says it listens.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sturdyrefs::{RedbStore, StoreError, VatId};
use vat::net::Identity;

use crate::error::CliError;
use crate::holder::{holders, Holder};

/// How long a command waits for a store held by another short command
/// (which holds it for milliseconds) before it gives up.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// How often it looks again meanwhile.
const LOCK_POLL: Duration = Duration::from_millis(50);

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
    /// The store's lock decides which, with the processes that hold it:
    /// `serve.addr` may outlive a vat that was killed, the lock does not,
    /// and a lock held by a short command (another `vat tokens list`) is
    /// waited for, up to [`LOCK_PATIENCE`].
    pub fn store(&self) -> Result<StoreAccess, CliError> {
        let path = self.store_path();
        if !path.exists() {
            return Ok(StoreAccess::Closed(None));
        }
        let deadline = Instant::now() + LOCK_PATIENCE;
        loop {
            let holders = match RedbStore::open(&path) {
                Ok(store) => return Ok(StoreAccess::Closed(Some(store))),
                Err(StoreError::InUse { .. }) => holders(&path),
                Err(source) => return Err(CliError::Store { path, source }),
            };
            let addr = self.read_addr()?;
            // Nobody found (no procfs, another user's process): the address
            // file is all there is to go by.
            let serving = holders.is_empty() || holders.iter().any(Holder::is_serving);
            if let (true, Some(addr)) = (serving, addr) {
                return Ok(StoreAccess::Running(addr));
            }
            if Instant::now() >= deadline {
                return Err(CliError::Busy {
                    store: path,
                    holders,
                    waited: LOCK_PATIENCE,
                });
            }
            std::thread::sleep(LOCK_POLL);
        }
    }

    /// Opens the store for the vat that is about to serve it. A lock held
    /// by a serving vat means it is running already; one held by anything
    /// else (a short command) is waited for, up to [`LOCK_PATIENCE`],
    /// saying so on standard error.
    pub fn open_store_to_serve(&self) -> Result<RedbStore, CliError> {
        let path = self.store_path();
        let deadline = Instant::now() + LOCK_PATIENCE;
        let mut said = false;
        loop {
            let holders = match RedbStore::open(&path) {
                Ok(store) => return Ok(store),
                Err(StoreError::InUse { .. }) => holders(&path),
                Err(source) => return Err(CliError::Store { path, source }),
            };
            if let Some(serving) = holders.iter().find(|h| h.is_serving()) {
                return Err(CliError::AlreadyRunning {
                    dir: self.path.clone(),
                    store: path,
                    holder: Some(serving.clone()),
                });
            }
            if Instant::now() >= deadline {
                return Err(CliError::Busy {
                    store: path,
                    holders,
                    waited: LOCK_PATIENCE,
                });
            }
            if !said {
                said = true;
                eprintln!(
                    "the store {} is open in {}; waiting up to {LOCK_PATIENCE:?} for it",
                    path.display(),
                    Holders(&holders)
                );
            }
            std::thread::sleep(LOCK_POLL);
        }
    }

    /// Refuses a data folder, or a file in it, that the group or others
    /// may read, naming the `chmod` that fixes it: it holds the vat's key
    /// and the state of its objects.
    pub fn check_private(&self) -> Result<(), CliError> {
        let files = [Identity::KEY_FILE, vat::sturdy::STORE_FILE, ADDR_FILE];
        let paths = std::iter::once((self.path.clone(), 0o700))
            .chain(files.iter().map(|name| (self.path.join(name), 0o600)));
        for (path, wanted) in paths {
            let metadata = match fs::metadata(&path) {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(CliError::File {
                        action: "inspect",
                        path,
                        source,
                    })
                }
            };
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(CliError::Exposed { path, mode, wanted });
            }
        }
        Ok(())
    }

    /// Makes the folder owner-only (mode 0700) if it is not; returns the
    /// mode it had if it changed it.
    pub fn make_private(&self) -> Result<Option<u32>, CliError> {
        let failed = |source| CliError::File {
            action: "restrict",
            path: self.path.clone(),
            source,
        };
        let mode = fs::metadata(&self.path)
            .map_err(failed)?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o077 == 0 {
            return Ok(None);
        }
        fs::set_permissions(&self.path, fs::Permissions::from_mode(mode & 0o700))
            .map_err(failed)?;
        Ok(Some(mode))
    }

    /// Writes the address file, whole or not at all (a reader never sees
    /// half an address), owner-only like everything in the folder.
    pub fn write_addr(&self, addr: SocketAddr) -> Result<(), CliError> {
        let path = self.addr_path();
        let temporary = self.path.join(format!(".{ADDR_FILE}.tmp"));
        let failed = |source| CliError::File {
            action: "write",
            path: path.clone(),
            source,
        };
        // A temporary file left by a vat that was killed mid-write goes.
        match fs::remove_file(&temporary) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(failed(source)),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(failed)?;
        file.write_all(format!("{addr}\n").as_bytes())
            .map_err(failed)?;
        drop(file);
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

/// A list of holders, for a message: "process 12 (vat tokens list ...)",
/// or "another process" when none could be named.
pub struct Holders<'a>(pub &'a [Holder]);

impl fmt::Display for Holders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("another process");
        }
        for (index, holder) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{holder}")?;
        }
        Ok(())
    }
}
