//! `vat tokens list|revoke|mint`: the token table of one vat.
//!
//! While the vat runs it holds its store locked, so these commands ask it
//! through its admin capability ([`AdminSession`]); while it is stopped they
//! open the store themselves. Minting needs the running vat either way: a
//! token carries the addresses the vat listens on, which only it knows.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use sturdyrefs::{RedbStore, Store, SturdyRef, SwissHash, VatId};

use crate::admin_client::AdminSession;
use crate::data::{DataDir, StoreAccess, LOCK_PATIENCE};
use crate::error::CliError;
use crate::oneshot;
use crate::table::{render, seconds, Row, State};

/// The fewest hex digits of a hash `revoke` accepts: fewer would too easily
/// name a token other than the one meant.
pub const MIN_PREFIX_DIGITS: usize = 8;

/// `vat tokens list`: prints the table.
pub fn list(dir: PathBuf) -> Result<(), CliError> {
    let dir = DataDir::new(dir);
    let identity = dir.identity()?;
    let id = DataDir::vat_id(&identity);
    let rows = match dir.store()? {
        StoreAccess::Closed(store) => {
            println!(
                "vat {id} is not running; tokens in {}:",
                dir.store_path().display()
            );
            offline_rows(&dir, store.as_ref())?
        }
        StoreAccess::Running(addr) => {
            let reached = oneshot::run("tokens", move || async move {
                let admin = match AdminSession::open(addr, &identity).await {
                    Ok(admin) => admin,
                    Err(unreached) => return Ok(Err(unreached)),
                };
                let rows = admin.tokens().await;
                admin.close().await;
                match rows {
                    // The vat stopped between answering the dial and the
                    // list: a read, so reading its store instead is safe.
                    Err(CliError::Vat(error))
                        if matches!(
                            error.kind(),
                            vat::ErrorKind::Disconnected | vat::ErrorKind::VatStopped
                        ) =>
                    {
                        Ok(Err(CliError::Vat(error)))
                    }
                    rows => rows.map(Ok),
                }
            })?;
            match reached {
                Ok(rows) => {
                    println!("vat {id} is running at {addr}; its tokens:");
                    rows
                }
                Err(unreached) => {
                    let store = stopped_meanwhile(&dir, unreached)?;
                    println!(
                        "vat {id} is not running (it stopped just now); tokens in {}:",
                        dir.store_path().display()
                    );
                    offline_rows(&dir, store.as_ref())?
                }
            }
        }
    };
    if rows.is_empty() {
        println!("no tokens");
    } else {
        print!("{}", render(&rows));
    }
    Ok(())
}

/// After a running vat could not be reached: waits (up to
/// [`LOCK_PATIENCE`]) for it to finish stopping, which is what a vat that
/// holds its store but takes no connections is doing, and returns its
/// store; fails with `unreached` if it is still running after that.
fn stopped_meanwhile(dir: &DataDir, unreached: CliError) -> Result<Option<RedbStore>, CliError> {
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        if let StoreAccess::Closed(store) = dir.store()? {
            return Ok(store);
        }
        if Instant::now() >= deadline {
            return Err(unreached);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vat tokens revoke`: revokes the token `target` names, a hash prefix or
/// a whole token.
pub fn revoke(dir: PathBuf, target: &str) -> Result<(), CliError> {
    let dir = DataDir::new(dir);
    let identity = dir.identity()?;
    let target = Target::parse(target, DataDir::vat_id(&identity))?;
    let (row, found) = match dir.store()? {
        StoreAccess::Closed(store) => {
            let row = target.pick(&offline_rows(&dir, store.as_ref())?)?;
            let found = match &store {
                Some(store) if row.state != State::Revoked => {
                    store.revoke(&row.hash).map_err(|source| CliError::Store {
                        path: dir.store_path(),
                        source,
                    })?
                }
                _ => true,
            };
            (row, found)
        }
        StoreAccess::Running(addr) => oneshot::run("tokens", move || async move {
            let admin = AdminSession::open(addr, &identity).await?;
            let revoked = revoke_online(&admin, &target).await;
            admin.close().await;
            revoked
        })?,
    };
    if !found {
        // Listed a moment ago, gone now: only a store rewritten underneath us.
        return Err(CliError::NoSuchToken(row.hex()));
    }
    if row.state == State::Revoked {
        println!("{} ({}) was already revoked", row.short_hash(), row.object);
    } else {
        println!("revoked {} ({})", row.short_hash(), row.object);
    }
    Ok(())
}

/// What to mint: `vat tokens mint`'s arguments.
#[derive(Debug)]
pub struct MintRequest {
    /// The object, `kind#id`.
    pub object: String,
    /// How long the token works.
    pub expires_in: Option<Duration>,
    /// The only vat that may present it.
    pub bound_to: Option<VatId>,
}

/// `vat tokens mint`: asks the running vat for a new token and prints it,
/// alone on standard output so that a script can take it.
pub fn mint(dir: PathBuf, request: MintRequest) -> Result<(), CliError> {
    // Refuse a malformed object before dialling anything.
    vat::sturdy::parse_object(&request.object)?;
    let dir = DataDir::new(dir);
    let identity = dir.identity()?;
    let addr = match dir.store()? {
        StoreAccess::Running(addr) => addr,
        StoreAccess::Closed(_) => {
            return Err(CliError::NotRunning {
                dir: dir.path().to_path_buf(),
                why: "a token carries the addresses the vat listens on, which only the running \
                      vat knows",
            })
        }
    };
    let expires_at = request
        .expires_in
        .map(|lifetime| seconds(SystemTime::now() + lifetime));
    let MintRequest {
        object, bound_to, ..
    } = request;
    let token = oneshot::run("tokens", move || async move {
        let admin = AdminSession::open(addr, &identity).await?;
        let token = admin.mint(&object, expires_at, bound_to).await;
        admin.close().await;
        token
    })?;
    println!("{token}");
    Ok(())
}

/// Revokes `target` through a running vat's admin capability; returns its
/// row as it was, and whether the vat still knew it.
async fn revoke_online(admin: &AdminSession, target: &Target) -> Result<(Row, bool), CliError> {
    let row = target.pick(&admin.tokens().await?)?;
    let found = if row.state == State::Revoked {
        true
    } else {
        admin.revoke(&row.hash).await?
    };
    Ok((row, found))
}

/// The rows of a store opened directly (none if there is no store yet).
fn offline_rows(dir: &DataDir, store: Option<&RedbStore>) -> Result<Vec<Row>, CliError> {
    let Some(store) = store else {
        return Ok(Vec::new());
    };
    let mut records = store.tokens().map_err(|source| CliError::Store {
        path: dir.store_path(),
        source,
    })?;
    records.sort_by_key(|r| r.created_at);
    let now = SystemTime::now();
    Ok(records.iter().map(|r| Row::from_record(r, now)).collect())
}

/// Which token `revoke` was asked for.
#[derive(Debug)]
enum Target {
    /// A whole token: its swiss number's hash.
    Hash(SwissHash),
    /// The first hex digits of a hash, lowercase.
    Prefix(String),
}

impl Target {
    /// Reads a token (anything starting with the scheme) or a hash prefix.
    /// A token must name `vat`, the vat whose store this is.
    fn parse(text: &str, vat: VatId) -> Result<Target, CliError> {
        if text.starts_with(sturdyrefs::SCHEME) {
            let token = SturdyRef::parse(text)?;
            if *token.vat() != vat {
                return Err(CliError::WrongVat {
                    token_vat: *token.vat(),
                    this_vat: vat,
                });
            }
            return Ok(Target::Hash(token.swiss().hash()));
        }
        let prefix = text.to_ascii_lowercase();
        if !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            // Not quoted back: a mangled token or a bare secret may sit here.
            return Err(CliError::BadPrefix(
                "the argument is neither a token (captp://...) nor a hash prefix (hex digits)"
                    .to_owned(),
            ));
        }
        if prefix.len() < MIN_PREFIX_DIGITS || prefix.len() > 64 {
            return Err(CliError::BadPrefix(format!(
                "a hash prefix has {MIN_PREFIX_DIGITS} to 64 hex digits; {prefix} has {}",
                prefix.len()
            )));
        }
        Ok(Target::Prefix(prefix))
    }

    /// The one row this target names.
    fn pick(&self, rows: &[Row]) -> Result<Row, CliError> {
        let (shown, matches): (String, Vec<&Row>) = match self {
            Target::Hash(hash) => (
                hash.to_string(),
                rows.iter().filter(|r| r.hash == *hash).collect(),
            ),
            Target::Prefix(prefix) => (
                prefix.clone(),
                rows.iter()
                    .filter(|r| r.hex().starts_with(prefix))
                    .collect(),
            ),
        };
        match matches.as_slice() {
            [] => Err(CliError::NoSuchToken(shown)),
            [row] => Ok((*row).clone()),
            many => Err(CliError::Ambiguous {
                prefix: shown,
                count: many.len(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(first: u8, second: u8) -> Row {
        let mut hash = [0u8; 32];
        hash[0] = first;
        hash[1] = second;
        Row {
            hash: SwissHash::from_bytes(hash),
            object: "counter#1".to_owned(),
            created: 0,
            expires: None,
            bound_to: None,
            state: State::Live,
        }
    }

    fn vat() -> VatId {
        VatId::from_bytes([9; 32])
    }

    #[test]
    fn a_prefix_names_one_token_or_says_why_not() {
        let rows = [row(0xab, 0x01), row(0xab, 0x02), row(0xcd, 0x00)];
        let pick = |text: &str| Target::parse(text, vat()).and_then(|t| t.pick(&rows));
        assert_eq!(pick("ab0100000000").unwrap().hash, rows[0].hash);
        assert_eq!(pick("AB020000").unwrap().hash, rows[1].hash);
        assert!(matches!(
            pick("ab000000"),
            Err(CliError::NoSuchToken(prefix)) if prefix == "ab000000"
        ));
        let both = [row(0xab, 0x01), row(0xab, 0x01)];
        assert!(matches!(
            Target::parse("ab010000", vat()).and_then(|t| t.pick(&both)),
            Err(CliError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(pick("ab01"), Err(CliError::BadPrefix(_))));
        assert!(matches!(pick("zz010000"), Err(CliError::BadPrefix(_))));
        assert!(matches!(pick(&"a".repeat(65)), Err(CliError::BadPrefix(_))));
    }

    #[test]
    fn a_token_names_its_hash_and_must_be_this_vats() {
        let swiss = sturdyrefs::SwissNumber::from_bytes([3; 32]);
        let hints = vec!["127.0.0.1:4000".parse().unwrap()];
        let token = SturdyRef::new(vat(), hints.clone(), swiss.clone()).unwrap();
        match Target::parse(&token.to_string(), vat()).unwrap() {
            Target::Hash(hash) => assert_eq!(hash, swiss.hash()),
            other => panic!("expected a hash, got {other:?}"),
        }
        let elsewhere = SturdyRef::new(VatId::from_bytes([8; 32]), hints, swiss).unwrap();
        assert!(matches!(
            Target::parse(&elsewhere.to_string(), vat()),
            Err(CliError::WrongVat { .. })
        ));
    }
}
