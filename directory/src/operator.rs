//! What an operator does: run a member in a data folder, and form a
//! cluster of members (or add one) from their tokens. The `vat-directory`
//! tool, the benchmarks and the tests all start members this way.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use capnp::capability::FromClientHook;
use schema::directory_capnp::directory_member;
use sturdyrefs::{Host, LocationHint, MintOptions, SturdyRef, VatId};
use vat::net::tls::TlsListener;
use vat::net::{Identity, Limits};
use vat::sturdy::{object_ref, vat_id, Persistence};

use crate::convert::read_outcome;
use crate::error::DirectoryError;
use crate::member::{RaftTimeouts, MEMBER_KIND};
use crate::types::Member;
use crate::{Cluster, DirectoryMember, DirectoryToken, MemberConfig};

/// Where the member's token is kept (mode 0600): the store keeps only its
/// hash.
pub const MEMBER_TOKEN_FILE: &str = "directory-member.token";
/// The member's own database (log, vote, state machine).
pub const DIRECTORY_FILE: &str = "directory.redb";

/// A member serving in this vat.
#[derive(Debug)]
pub struct Served {
    /// The member's token (its operator's capability: `initialize`, `join`).
    pub token: SturdyRef,
    /// The address its listener bound.
    pub addr: SocketAddr,
    /// The member.
    pub member: DirectoryMember,
}

/// Why a member could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The vat's runtime, persistence or listener failed.
    #[error(transparent)]
    Vat(#[from] vat::Error),
    /// The listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: Box<vat::net::NetError>,
    },
    /// The directory's database could not be opened.
    #[error("opening {}: {reason}", path.display())]
    Database {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The member could not start.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The member's token file could not be written.
    #[error("writing {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The address bound cannot be written into tokens.
    #[error("{addr} cannot be a location hint: {reason}")]
    Hint {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: sturdyrefs::HintError,
    },
}

/// Inside a vat: opens the data folder `dir`'s persistence and directory
/// database, serves the vat's gateway on `listen` (with `hints` in tokens,
/// or the address bound), starts the member, and mints its token on the
/// first start (kept in `dir/directory-member.token`).
pub async fn serve(
    dir: &Path,
    identity: Identity,
    listen: SocketAddr,
    hints: Vec<LocationHint>,
    timeouts: RaftTimeouts,
) -> Result<Served, ServeError> {
    let id = vat_id(identity.public_key());
    let persistence = Persistence::open(dir, id)?;
    let listener = TlsListener::bind(listen, &identity)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source: Box::new(source),
        })?;
    let addr = listener.local_addr();
    let hints = if hints.is_empty() {
        vec![hint_for(addr)?]
    } else {
        hints
    };
    persistence.set_hints(hints);
    let limits = Limits::default();
    persistence.serve(listener, limits);
    let path = dir.join(DIRECTORY_FILE);
    let db = redb::Database::create(&path).map_err(|e| ServeError::Database {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let member = DirectoryMember::start(MemberConfig {
        identity,
        persistence: persistence.clone(),
        db,
        limits,
        timeouts,
    })
    .await?;
    let token = member_token(dir, &persistence).await?;
    Ok(Served {
        token,
        addr,
        member,
    })
}

/// The member's token: kept in the data folder from its first start.
async fn member_token(dir: &Path, persistence: &Persistence) -> Result<SturdyRef, ServeError> {
    let path = dir.join(MEMBER_TOKEN_FILE);
    if let Some(token) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| SturdyRef::parse(text.trim()).ok())
    {
        return Ok(token);
    }
    let token = persistence
        .mint(&object_ref(MEMBER_KIND, 1)?, MintOptions::default())
        .await?;
    write_private(&path, &token.to_string())
        .map_err(|source| ServeError::TokenFile { path, source })?;
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{text}")?;
    file.sync_all()
}

fn hint_for(addr: SocketAddr) -> Result<LocationHint, ServeError> {
    let host = match addr.ip() {
        IpAddr::V4(ip) => Host::Ipv4(ip),
        IpAddr::V6(ip) => Host::Ipv6(ip),
    };
    LocationHint::new(host, addr.port()).map_err(|reason| ServeError::Hint { addr, reason })
}

/// Forms a cluster of the members `tokens` name (each a member's token):
/// hands each the new cluster's configuration to initialize, calling
/// `progress(i, n, vat)` before each, and answers the admin token.
pub async fn form_cluster(
    tokens: &[SturdyRef],
    identity: Option<&Identity>,
    mut progress: impl FnMut(usize, usize, &VatId),
) -> Result<DirectoryToken, DirectoryError> {
    let listed: Vec<Member> = tokens
        .iter()
        .map(|t| Member {
            vat: t.vat().to_string(),
            hints: t.hints().iter().map(|h| h.to_string()).collect(),
        })
        .collect();
    let (cluster, admin) = Cluster::generate(listed)?;
    for (i, token) in tokens.iter().enumerate() {
        progress(i + 1, tokens.len(), token.vat());
        hand_cluster(token, identity, &cluster, true).await?;
    }
    let members: Vec<_> = tokens
        .iter()
        .map(|t| (*t.vat(), t.hints().to_vec()))
        .collect();
    Ok(DirectoryToken::new(&members, &admin)?)
}

/// Hands `cluster` to the member `token` names: to form it (`initialize`)
/// or to be added to it later (`join`, before `add_member`).
pub async fn hand_cluster(
    token: &SturdyRef,
    identity: Option<&Identity>,
    cluster: &Cluster,
    initialize: bool,
) -> Result<(), DirectoryError> {
    let (object, _) = vat::sturdy::restore(token, identity, Limits::default())
        .await
        .map_err(|e| DirectoryError::Unavailable {
            reason: format!("member {}: {e}", token.vat()),
        })?;
    let member: directory_member::Client = object.cast_to();
    let call_error = |e: capnp::Error| DirectoryError::Call(vat::Error::from(e));
    let outcome = if initialize {
        let mut call = member.initialize_request();
        crate::facet::write_cluster(call.get().init_cluster(), cluster);
        let reply = call.send().promise.await.map_err(call_error)?;
        read_outcome(
            reply
                .get()
                .map_err(call_error)?
                .get_outcome()
                .map_err(call_error)?,
        )
    } else {
        let mut call = member.join_request();
        crate::facet::write_cluster(call.get().init_cluster(), cluster);
        let reply = call.send().promise.await.map_err(call_error)?;
        read_outcome(
            reply
                .get()
                .map_err(call_error)?
                .get_outcome()
                .map_err(call_error)?,
        )
    };
    outcome.map(|_| ())
}

/// Members running in this process, each a vat of its own serving TLS on
/// loopback with its data folder under one root: a directory for
/// development, tests and benchmarks. Dropping it stops them.
#[derive(Debug)]
pub struct LocalMembers {
    /// The members' vats.
    pub vats: Vec<vat::VatHandle>,
    /// Their member tokens, in the same order.
    pub tokens: Vec<SturdyRef>,
}

impl LocalMembers {
    /// Starts `count` members in `root/m0`, `root/m1`, …, on loopback ports
    /// the system chooses, with the default timers.
    pub fn start(root: &Path, count: usize) -> Result<LocalMembers, ServeError> {
        let mut members = LocalMembers {
            vats: Vec::new(),
            tokens: Vec::new(),
        };
        for i in 0..count {
            let vat = vat::VatHandle::start(format!("member-{i}"))?;
            let dir = root.join(format!("m{i}"));
            // Pushed first, so that a member failing to start stops the
            // ones before it (and itself) on drop.
            members.vats.push(vat.clone());
            let token = vat.block_on(move || async move {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
                let identity = Identity::load_or_create(&dir).map_err(vat::Error::from)?;
                let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                let served =
                    serve(&dir, identity, loopback, vec![], RaftTimeouts::default()).await?;
                Ok::<_, ServeError>(served.token)
            })?;
            members.tokens.push(token);
        }
        Ok(members)
    }

    /// Makes the members one cluster ([`form_cluster`], run in the vat
    /// `on`, calling anonymously) and answers its admin token.
    pub fn form_cluster(&self, on: &vat::VatHandle) -> Result<DirectoryToken, DirectoryError> {
        let tokens = self.tokens.clone();
        on.block_on(move || async move { form_cluster(&tokens, None, |_, _, _| {}).await })
    }
}

impl Drop for LocalMembers {
    fn drop(&mut self) {
        for vat in self.vats.drain(..) {
            // A member that does not stop cleanly is gone all the same.
            let _ = vat.stop();
        }
    }
}
