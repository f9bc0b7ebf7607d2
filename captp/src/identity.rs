//! A vat's identity: its ed25519 key pair, kept in its data folder.
//!
//! The private key lives in `<data folder>/identity.key` as a PKCS#8 v1 PEM
//! block (`-----BEGIN PRIVATE KEY-----`, the form `openssl pkey` reads),
//! readable by its owner only. [`Identity::load_or_create`] makes it on a
//! vat's first start and reads it back on every later one, so the vat keeps
//! its [`PublicKey`] — its name on the network — across restarts.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::SigningKey;

use crate::PublicKey;

/// The first line of the PEM block an identity key file holds.
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";

/// Key files longer than this are refused unread: a real one is ~120 bytes.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Permission bits of a key file that must all be clear: any access by the
/// group or by others (the rule ssh applies to private keys).
const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// A vat's ed25519 key pair: the private key that lets it prove who it is,
/// and the [`PublicKey`] that names it.
///
/// `Debug` shows only the public key. The private key is wiped from memory
/// when the `Identity` is dropped.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The name of the key file inside a vat's data folder.
    pub const KEY_FILE: &'static str = "identity.key";

    /// Makes a fresh identity in memory, from the operating system's random
    /// number generator. Nothing is written anywhere (tests, throwaway vats).
    pub fn generate() -> Result<Identity, IdentityError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        vat_env::fill(&mut seed[..]).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Identity {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Loads the identity kept in `dir`, making one on first use.
    ///
    /// - If `dir` does not exist it is created (and its parents), mode 0700.
    /// - If `dir/identity.key` does not exist, a fresh key is written there,
    ///   mode 0600, atomically: it is written in full to a temporary file
    ///   created with mode 0600, then linked into place only if no key file
    ///   appeared meanwhile (if one did — another process won the race — that
    ///   one is loaded instead).
    /// - An existing key file is refused if the group or others have any
    ///   access to it ([`IdentityError::Exposed`]), or if it does not hold an
    ///   ed25519 key in PKCS#8 PEM form ([`IdentityError::Malformed`]).
    pub fn load_or_create(dir: impl AsRef<Path>) -> Result<Identity, IdentityError> {
        let dir = dir.as_ref();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| IdentityError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        let path = dir.join(Self::KEY_FILE);
        match File::open(&path) {
            Ok(file) => Self::read_key_file(file, &path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Self::create(dir, &path),
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    /// Loads the identity kept in `dir`, which must already hold one: unlike
    /// [`Identity::load_or_create`] it never creates the folder or a key, so
    /// a mistyped folder is an error ([`IdentityError::Missing`]) rather
    /// than a new vat. The key file is checked as `load_or_create` checks it.
    pub fn load(dir: impl AsRef<Path>) -> Result<Identity, IdentityError> {
        let path = dir.as_ref().join(Self::KEY_FILE);
        match File::open(&path) {
            Ok(file) => Self::read_key_file(file, &path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Err(IdentityError::Missing { path })
            }
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    /// The public half of the key pair: this vat's name on the network.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// The private key as PKCS#8 DER, the form rustls and rcgen take.
    pub(crate) fn pkcs8_der(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        let document = self.key.to_pkcs8_der().map_err(|e| e.to_string())?;
        Ok(zeroize::Zeroizing::new(document.as_bytes().to_vec()))
    }

    /// Reads and checks an existing key file.
    fn read_key_file(mut file: File, path: &Path) -> Result<Identity, IdentityError> {
        let read_error = |source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        };
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() {
            return Err(IdentityError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & FORBIDDEN_MODE_BITS != 0 {
            return Err(IdentityError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        (&mut file)
            .take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        let key = parse_key_file(&bytes).map_err(|found| IdentityError::Malformed {
            path: path.to_path_buf(),
            found,
        })?;
        Ok(Identity { key })
    }

    /// Writes a fresh key to `path` unless a key file appears there first.
    fn create(dir: &Path, path: &Path) -> Result<Identity, IdentityError> {
        let identity = Identity::generate()?;
        // PKCS#8 v1 (the private key alone): v2, which adds the public key,
        // is refused by OpenSSL 3.0 and so by the tools built on it.
        let pem = KeypairBytes {
            secret_key: identity.key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| IdentityError::Write {
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
        let temporary = dir.join(temporary_name()?);
        let written = write_new_file(&temporary, pem.as_bytes())
            .and_then(|()| fs::hard_link(&temporary, path));
        // The temporary name is only a stepping stone; a leftover one would
        // hold a key nobody uses. Removing it may fail if it was never made.
        let _ = fs::remove_file(&temporary);
        match written {
            Ok(()) => {
                sync_dir(dir).map_err(|source| IdentityError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
                tracing::info!(path = %path.display(), key = ?identity.public_key(), "created a new vat identity");
                Ok(identity)
            }
            // Another process created the key file first: use theirs.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                let file = File::open(path).map_err(|source| IdentityError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::read_key_file(file, path)
            }
            Err(source) => Err(IdentityError::Write {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Parses the bytes of a key file, or says what was found instead of a key.
fn parse_key_file(bytes: &[u8]) -> Result<SigningKey, String> {
    let length = bytes.len();
    if length == 0 {
        return Err("an empty file".to_string());
    }
    if length as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "more than {MAX_KEY_FILE_BYTES} bytes (an identity key file is about 120)"
        ));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(format!("{length} bytes of binary data, not PEM text"));
    };
    let first_line = text.lines().next().unwrap_or_default().trim_end();
    if first_line != PEM_BEGIN {
        let shown: String = first_line.chars().take(40).collect();
        return Err(format!(
            "{length} bytes of text starting with {shown:?}, not with {PEM_BEGIN:?}"
        ));
    }
    SigningKey::from_pkcs8_pem(text).map_err(|error| {
        format!("a {length}-byte PRIVATE KEY block that does not decode as an ed25519 key: {error}")
    })
}

/// A fresh, unguessable name for the temporary key file.
fn temporary_name() -> Result<String, IdentityError> {
    let mut random = [0u8; 8];
    vat_env::fill(&mut random).map_err(|e| IdentityError::Random(e.to_string()))?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(".{}.{suffix}.tmp", Identity::KEY_FILE))
}

/// Creates `path` (which must not exist) with mode 0600 and writes `bytes`
/// to it durably.
fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a new directory entry in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why a vat's identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The data folder did not exist and could not be created.
    #[error("cannot create the vat's data folder {}: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// There is no key file: the folder holds no vat identity.
    #[error("no identity key at {}: this folder holds no vat identity", path.display())]
    Missing {
        /// Where the key file was looked for.
        path: PathBuf,
    },
    /// The key file exists but could not be read.
    #[error("cannot read the identity key {}: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A new key file could not be written.
    #[error("cannot write a new identity key to {}: {source}", path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The key file's path names something other than a regular file.
    #[error("the identity key {} is not a regular file", path.display())]
    NotAFile {
        /// The key file.
        path: PathBuf,
    },
    /// The key file lets its group or other users at it, so the key may be
    /// known to others and cannot prove who this vat is.
    #[error(
        "the identity key {} is open to other users (mode {mode:04o}): it must be readable by \
         its owner only (chmod 600 {})",
        path.display(),
        path.display()
    )]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file does not hold an ed25519 private key in PKCS#8 PEM form.
    #[error(
        "the identity key {} is not an ed25519 private key in PKCS#8 PEM form: found {found}",
        path.display()
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What the file holds instead.
        found: String,
    },
    /// The operating system could not supply random bytes for a new key.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_file_parses_back_to_the_same_key() {
        let identity = Identity::generate().unwrap();
        let pem = identity.key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let key = parse_key_file(pem.as_bytes()).unwrap();
        assert_eq!(
            PublicKey(key.verifying_key().to_bytes()),
            identity.public_key()
        );
    }

    #[test]
    fn load_reads_back_what_load_or_create_made_and_never_creates_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("vat");
        match Identity::load(&dir) {
            Err(IdentityError::Missing { path }) => {
                assert_eq!(path, dir.join(Identity::KEY_FILE));
            }
            other => panic!("expected Missing, got {other:?}"),
        }
        assert!(!dir.exists(), "load must not create the folder");
        let made = Identity::load_or_create(&dir).unwrap();
        let loaded = Identity::load(&dir).unwrap();
        assert_eq!(loaded.public_key(), made.public_key());
    }

    #[test]
    fn an_empty_file_is_described_as_empty() {
        assert_eq!(parse_key_file(b"").unwrap_err(), "an empty file");
    }

    #[test]
    fn binary_data_is_described_as_such() {
        let found = parse_key_file(&[0xff; 32]).unwrap_err();
        assert_eq!(found, "32 bytes of binary data, not PEM text");
    }

    #[test]
    fn another_pem_block_is_named_by_its_first_line() {
        let found = parse_key_file(b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n").unwrap_err();
        assert!(found.contains("BEGIN OPENSSH PRIVATE KEY"), "{found}");
    }

    #[test]
    fn debug_does_not_show_the_private_key() {
        let identity = Identity::generate().unwrap();
        let shown = format!("{identity:?}");
        assert!(
            shown.starts_with("Identity { public_key: PublicKey("),
            "{shown}"
        );
        let secret: String = identity.key.to_bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!shown.contains(&secret), "{shown}");
    }
}
