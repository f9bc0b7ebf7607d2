//! A vat's persistence: its token table, its persistent objects, and the
//! gateway through which holders of tokens get in.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::SystemTime;

use captp::tls::TlsListener;
use captp::Limits;
use schema::gateway_capnp::{admin, gateway};
use sturdyrefs::{
    LocationHint, Lookup, MintOptions, ObjectRef, Purged, RedbStore, Store, SturdyRef, SwissHash,
    SwissNumber, TokenRecord, VatId,
};

use super::admin::Admin;
use super::committer::{store_error, Committer};
use super::config::{PersistenceConfig, MIN_INTERVAL};
use super::quota::{Caller, HandoffError, HandoffLedger};
use super::refusals::{Refusal, RefusalSummary, RefusalTally};
use super::restore::vat_id;
use super::revocable::{revocable, Standing};
use super::state::{decode, Durable, StateCell};
use super::stats::PersistenceStats;
use super::sweep::SweepReport;
use crate::error::{Error, ErrorKind};

/// The name of the store file inside a vat's data folder.
pub const STORE_FILE: &str = "vat.redb";

type Reviver = Rc<dyn Fn(&Persistence, &ObjectRef) -> Result<capnp::capability::Client, Error>>;

/// A vat's persistence: the token table and the state of its persistent
/// objects, kept in an embedded store, and the [`gateway`](Persistence::gateway)
/// that restores tokens into live references.
///
/// It lives inside one vat (it is `!Send`); clones share it. Writes go to
/// a commit thread beside the vat, so the vat's loop never waits on a disk
/// flush.
///
/// What callers can make it keep is bounded ([`PersistenceConfig`]): unused
/// handoff tokens by quotas, expired and used single-use token records by a
/// periodic [`sweep`](Persistence::sweep) that deletes them from the store
/// and forgets them in memory. Refused restores are counted
/// ([`stats`](Persistence::stats)) and summarised in the log once per
/// interval.
///
/// ```no_run
/// # async fn f(identity: vat::net::Identity) -> Result<(), Box<dyn std::error::Error>> {
/// use vat::sturdy::Persistence;
/// // Inside a vat: open the data folder, serve tokens on a TLS listener.
/// let persistence = Persistence::open("/var/lib/my-vat", vat::sturdy::vat_id(identity.public_key()))?;
/// let listener = vat::net::tls::TlsListener::bind("127.0.0.1:4000".parse()?, &identity).await?;
/// persistence.set_hints(vec!["127.0.0.1:4000".parse()?]);
/// persistence.serve(listener, vat::net::Limits::default());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Persistence {
    inner: Rc<Inner>,
}

struct Inner {
    vat: VatId,
    config: PersistenceConfig,
    /// `None` once the vat stopped (see `close`).
    store: RefCell<Option<Arc<dyn Store>>>,
    committer: Rc<Committer>,
    hints: RefCell<Vec<LocationHint>>,
    revivers: RefCell<HashMap<String, Reviver>>,
    /// Asked for swiss numbers the store does not know (see
    /// `Persistence::set_restorer`).
    restorer: RefCell<Option<Restorer>>,
    /// Objects alive in this vat that tokens may name: provided ones for as
    /// long as the vat runs, persistent ones once revived. One live object
    /// per `ObjectRef`, so every restore reaches the same state.
    live: RefCell<HashMap<ObjectRef, capnp::capability::Client>>,
    /// Whether each restored token still stands, shared by the references
    /// restored from it.
    standings: RefCell<HashMap<SwissHash, Rc<Standing>>>,
    /// What each restored reference reaches, by its identity (the pointer
    /// capnp-rpc sees when the reference comes back to this vat).
    restored: RefCell<HashMap<usize, ObjectRef>>,
    /// Handoff tokens neither used nor expired, counted against the
    /// quotas, each with the standing of the reference it was made from
    /// (if any): the recipient's reference lives no longer.
    handoffs: RefCell<HandoffLedger<Option<Rc<Standing>>>>,
    /// Single-use tokens used already, whose revocation is not committed
    /// yet.
    used: RefCell<HashSet<SwissHash>>,
    refusals: RefCell<RefusalTally>,
    /// Handoffs refused over quota: in all, and since the last summary.
    over_quota: Cell<u64>,
    over_quota_since_summary: Cell<u64>,
    purged: Cell<u64>,
    sweep_passes: Cell<u64>,
}

impl Inner {
    /// Finishes the queued commits and lets go of the store.
    fn close(&self) {
        self.committer.close();
        drop(self.store.borrow_mut().take());
        // Live objects may hold the committer or each other; let them go.
        drop(std::mem::take(&mut *self.live.borrow_mut()));
    }
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("vat", &self.inner.vat)
            .field("hints", &self.inner.hints.borrow())
            .finish_non_exhaustive()
    }
}

/// A [`Persistence`] that does not keep it alive, for its own tasks.
#[derive(Clone)]
pub(super) struct WeakPersistence(Weak<Inner>);

impl WeakPersistence {
    pub(super) fn upgrade(&self) -> Option<Persistence> {
        self.0.upgrade().map(|inner| Persistence { inner })
    }
}

impl Persistence {
    /// Opens (or creates) the store in the data folder `dir` for the vat
    /// named `vat`, with the default [`PersistenceConfig`]. Must be called
    /// inside a vat.
    pub fn open(dir: impl AsRef<Path>, vat: VatId) -> Result<Persistence, Error> {
        Persistence::open_with(dir, vat, PersistenceConfig::default())
    }

    /// [`open`](Persistence::open), with `config`.
    pub fn open_with(
        dir: impl AsRef<Path>,
        vat: VatId,
        config: PersistenceConfig,
    ) -> Result<Persistence, Error> {
        let path = dir.as_ref().join(STORE_FILE);
        let store = RedbStore::open(&path).map_err(store_error)?;
        Persistence::with_store_config(Arc::new(store), vat, config)
    }

    /// Persistence on any [`Store`], with the default [`PersistenceConfig`].
    pub fn with_store(store: Arc<dyn Store>, vat: VatId) -> Result<Persistence, Error> {
        Persistence::with_store_config(store, vat, PersistenceConfig::default())
    }

    /// Persistence on any [`Store`], with `config`. Inside a vat it starts
    /// the sweep and the refusal summary, tasks of the vat that end when it
    /// stops or the persistence is dropped.
    pub fn with_store_config(
        store: Arc<dyn Store>,
        vat: VatId,
        mut config: PersistenceConfig,
    ) -> Result<Persistence, Error> {
        config.sweep_interval = config.sweep_interval.max(MIN_INTERVAL);
        config.refusal_summary_interval = config.refusal_summary_interval.max(MIN_INTERVAL);
        config.sweep_batch = config.sweep_batch.max(1);
        let name = crate::try_current()
            .map(|v| v.name().to_owned())
            .unwrap_or_default();
        let committer = Committer::start(Arc::clone(&store), &name)?;
        let persistence = Persistence {
            inner: Rc::new(Inner {
                vat,
                config,
                store: RefCell::new(Some(store)),
                committer: Rc::new(committer),
                hints: RefCell::new(Vec::new()),
                revivers: RefCell::default(),
                restorer: RefCell::default(),
                live: RefCell::default(),
                standings: RefCell::default(),
                restored: RefCell::default(),
                handoffs: RefCell::new(HandoffLedger::new(config.handoff_quota)),
                used: RefCell::default(),
                refusals: RefCell::default(),
                over_quota: Cell::new(0),
                over_quota_since_summary: Cell::new(0),
                purged: Cell::new(0),
                sweep_passes: Cell::new(0),
            }),
        };
        // Objects of a stopped vat may outlive it in reference cycles (of
        // capnp-rpc's connection state, say): close the store when the vat
        // stops regardless, so its file is free to open again.
        if let Some(vat) = crate::try_current() {
            let inner = Rc::downgrade(&persistence.inner);
            vat.on_stop(move || {
                if let Some(inner) = inner.upgrade() {
                    inner.close();
                }
            });
            super::sweep::start(&persistence);
        }
        Ok(persistence)
    }

    pub(super) fn downgrade(&self) -> WeakPersistence {
        WeakPersistence(Rc::downgrade(&self.inner))
    }

    /// The settings it runs with (intervals below [`MIN_INTERVAL`] raised
    /// to it).
    pub fn config(&self) -> &PersistenceConfig {
        &self.inner.config
    }

    /// The store, unless the vat stopped.
    fn store(&self) -> Result<Arc<dyn Store>, Error> {
        self.inner.store.borrow().clone().ok_or_else(|| {
            Error::new(
                ErrorKind::VatStopped,
                "the vat's store is closed: the vat stopped",
            )
        })
    }

    /// Whether the store is open (it closes when the vat stops).
    pub(super) fn is_open(&self) -> bool {
        self.inner.store.borrow().is_some()
    }

    /// The vat whose tokens these are.
    pub fn vat(&self) -> VatId {
        self.inner.vat
    }

    /// Where the vat can be reached: the location hints written into the
    /// tokens minted from now on, in order of preference.
    pub fn set_hints(&self, hints: Vec<LocationHint>) {
        *self.inner.hints.borrow_mut() = hints;
    }

    /// The location hints tokens are minted with.
    pub fn hints(&self) -> Vec<LocationHint> {
        self.inner.hints.borrow().clone()
    }

    /// Lets tokens name objects of kind `K`: restoring one revives the
    /// object from its stored state.
    pub fn register<K: Durable>(&self) {
        let reviver: Reviver = Rc::new(|persistence, object| {
            let state = match persistence.store()?.get_state(object) {
                Ok(Some(bytes)) => decode::<K::State>(object, &bytes)?,
                Ok(None) => K::State::default(),
                Err(error) => return Err(store_error(error)),
            };
            let cell = StateCell::new(
                object.clone(),
                state,
                Rc::clone(&persistence.inner.committer),
            );
            Ok(K::revive(cell))
        });
        self.inner
            .revivers
            .borrow_mut()
            .insert(K::KIND.to_owned(), reviver);
    }

    /// The persistent object `id` of kind `K`, live: revived from its stored
    /// state (or made from `Default`) the first time, the same object after.
    pub fn durable<K: Durable>(&self, id: u64) -> Result<capnp::capability::Client, Error> {
        self.register::<K>();
        let object = object_ref(K::KIND, id)?;
        self.live(&object)
    }

    /// Forgets the live object `object`, so that the next restore of a
    /// token for it (or the next [`durable`](Persistence::durable) call)
    /// revives a fresh one from its last committed state. References handed
    /// out earlier keep the old object. Returns whether it was live.
    ///
    /// A supervisor restarting a persistent child calls this first: the new
    /// incarnation must not be the crashed one.
    pub fn forget(&self, object: &ObjectRef) -> bool {
        let gone = self.inner.live.borrow_mut().remove(object);
        gone.is_some()
    }

    /// Offers the swiss numbers this vat's store does not know to
    /// `restorer`, with the caller's proven key: what it returns is the
    /// restored object and its kind; `None` refuses the restore exactly as
    /// an unknown token. For capabilities whose records live elsewhere
    /// than this vat's store (a replicated directory's facets).
    pub fn set_restorer(&self, restorer: Restorer) {
        *self.inner.restorer.borrow_mut() = Some(restorer);
    }

    /// Makes `client` restorable as `object` for as long as this vat runs.
    /// For objects without persistent state, which the program provides
    /// again at each start (so tokens minted for them keep working).
    pub fn provide(&self, object: ObjectRef, client: capnp::capability::Client) {
        self.inner.live.borrow_mut().insert(object, client);
    }

    /// Mints a token for `object`, which must be provided or of a
    /// registered kind. Resolves once the token is durable.
    pub async fn mint(&self, object: &ObjectRef, options: MintOptions) -> Result<SturdyRef, Error> {
        let known = self.inner.live.borrow().contains_key(object)
            || self.inner.revivers.borrow().contains_key(object.kind());
        if !known {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{object} is neither provided nor of a registered kind"),
            ));
        }
        let hints = self.inner.hints.borrow().clone();
        if hints.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the vat has no location hints to write into tokens; call set_hints first",
            ));
        }
        let minted = self.inner.committer.mint(object.clone(), options).await?;
        SturdyRef::new(self.inner.vat, hints, minted.swiss)
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, e.to_string()))
    }

    /// Revokes the token whose swiss number hashes to `hash`, for good:
    /// references restored from it break on their next call. Resolves once
    /// the revocation is durable, with whether such a token exists.
    pub async fn revoke(&self, hash: &SwissHash) -> Result<bool, Error> {
        if let Some(standing) = self.inner.standings.borrow().get(hash) {
            standing.revoke();
        }
        let found = self.inner.committer.revoke(*hash).await?;
        tracing::info!(token = %hash, found, "token revoked");
        Ok(found)
    }

    /// Every token record (they hold hashes, never secrets).
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        self.store()?.tokens().map_err(store_error)
    }

    /// Restores the object `swiss` names, for `presenter` (the vat that
    /// proved its key on the connection, `None` if anonymous). Returns a
    /// reference that dies with the token, and the object's kind.
    pub fn restore(
        &self,
        swiss: &SwissNumber,
        presenter: Option<&VatId>,
    ) -> Result<(capnp::capability::Client, String), Error> {
        let hash = swiss.hash();
        let lookup = self
            .store()?
            .lookup(swiss, presenter)
            .map_err(store_error)?;
        let caller = Caller::from_presenter(presenter);
        let refused = |refusal, kind, message: &str| {
            self.inner.refusals.borrow_mut().record(refusal, caller);
            // Per attempt only at debug: the summary says it at WARN, once
            // per interval. The hash, never the number presented.
            tracing::debug!(token = %hash, %caller, %kind, "restore refused");
            Err(Error::new(kind, message))
        };
        let record = match lookup {
            Lookup::Found(record) => record,
            Lookup::Unknown => {
                let restorer = self.inner.restorer.borrow().clone();
                if let Some(found) = restorer.and_then(|restorer| restorer(&hash, presenter)) {
                    return Ok(found);
                }
                return refused(
                    Refusal::Unknown,
                    ErrorKind::UnknownToken,
                    "no such token: this vat never minted it for this caller",
                );
            }
            Lookup::Revoked => {
                // A single-use token is revoked as it is used: say which.
                let single_use = self
                    .store()?
                    .token(&hash)
                    .map_err(store_error)?
                    .is_some_and(|record| record.single_use);
                return if single_use {
                    refused(
                        Refusal::Used,
                        ErrorKind::Revoked,
                        "this single-use token was used already",
                    )
                } else {
                    refused(
                        Refusal::Revoked,
                        ErrorKind::Revoked,
                        "the token was revoked",
                    )
                };
            }
            Lookup::Expired => {
                return refused(
                    Refusal::Expired,
                    ErrorKind::Expired,
                    "the token has expired",
                )
            }
        };
        if record.single_use && !self.use_up(hash) {
            return refused(
                Refusal::Used,
                ErrorKind::Revoked,
                "this single-use token was used already",
            );
        }
        let object = self.live(&record.object)?;
        let parent = self.inner.handoffs.borrow_mut().take(&hash).flatten();
        let standing = match parent {
            Some(parent) => parent,
            None => Rc::clone(
                self.inner
                    .standings
                    .borrow_mut()
                    .entry(hash)
                    .or_insert_with(|| Standing::new(record.expires_at)),
            ),
        };
        self.inner
            .restored
            .borrow_mut()
            .insert(Rc::as_ptr(&standing) as usize, record.object.clone());
        tracing::debug!(token = %hash, object = %record.object, "restored");
        Ok((revocable(object, standing), record.object.kind().to_owned()))
    }

    /// Marks a single-use token used, and revokes it in the store in the
    /// background (then the store answers for it); `false` if it was used
    /// already.
    fn use_up(&self, hash: SwissHash) -> bool {
        if !self.inner.used.borrow_mut().insert(hash) {
            return false;
        }
        let committer = Rc::clone(&self.inner.committer);
        let weak = self.downgrade();
        vat_env::spawn(async move {
            match committer.revoke(hash).await {
                Ok(_) => {
                    if let Some(persistence) = weak.upgrade() {
                        persistence.inner.used.borrow_mut().remove(&hash);
                    }
                }
                Err(error) => {
                    tracing::error!(token = %hash, %error, "a used single-use token could not be revoked");
                }
            }
        });
        true
    }

    /// Mints a handoff token for `object`, which must be a reference this
    /// vat restored (or provided), asked for by `caller` (the key it proved,
    /// `None` if anonymous) for the vat `recipient`: bound to it,
    /// single-use, working for [`PersistenceConfig::handoff_lifetime`] (see
    /// `Gateway.handoff` in `schema/capnp/gateway.capnp`).
    ///
    /// Fails with [`HandoffError::OverQuota`] when `caller`, the object or
    /// the vat has as many unused handoff tokens outstanding as
    /// [`PersistenceConfig::handoff_quota`] allows; with
    /// [`HandoffError::Refused`] if `object` is not one this vat can hand
    /// off, its token no longer stands, or the store failed.
    pub async fn handoff(
        &self,
        caller: Option<&VatId>,
        object: &capnp::capability::Client,
        recipient: VatId,
    ) -> Result<SturdyRef, HandoffError> {
        let (target, parent) = self.handoff_target(object)?;
        if let Some(parent) = &parent {
            // A dead reference hands off nothing that would work.
            parent.check()?;
        }
        let caller = Caller::from_presenter(caller);
        let now = vat_env::wall();
        let expires_at = now + self.inner.config.handoff_lifetime;
        let reserved = self
            .inner
            .handoffs
            .borrow_mut()
            .reserve(caller, &target, expires_at, now);
        let reservation = match reserved {
            Ok(reservation) => reservation,
            Err(refused) => {
                self.inner.over_quota.set(self.inner.over_quota.get() + 1);
                let since = &self.inner.over_quota_since_summary;
                since.set(since.get() + 1);
                tracing::debug!(%caller, object = %target, quota = %refused.quota, "handoff over quota");
                return Err(refused.into());
            }
        };
        let options = MintOptions {
            expires_at: Some(expires_at),
            bound_to: Some(recipient),
            single_use: true,
        };
        match self.mint(&target, options).await {
            Ok(token) => {
                let hash = token.swiss().hash();
                self.inner
                    .handoffs
                    .borrow_mut()
                    .fill(reservation, hash, parent);
                tracing::debug!(object = %target, %recipient, %caller, "handoff token minted");
                Ok(token)
            }
            Err(error) => {
                self.inner.handoffs.borrow_mut().cancel(reservation);
                Err(error.into())
            }
        }
    }

    /// What `object` reaches, if it is an object of this vat reached
    /// through its gateway, and the standing of the token it was restored
    /// from (none for a provided object).
    fn handoff_target(
        &self,
        object: &capnp::capability::Client,
    ) -> Result<(ObjectRef, Option<Rc<Standing>>), Error> {
        let pointer = object.hook.get_ptr();
        let restored = self.inner.restored.borrow().get(&pointer).cloned();
        if let Some(target) = restored {
            let parent = self
                .inner
                .standings
                .borrow()
                .values()
                .find(|s| Rc::as_ptr(s) as usize == pointer)
                .cloned();
            return Ok((target, parent));
        }
        let provided = self
            .inner
            .live
            .borrow()
            .iter()
            .find(|(_, client)| client.hook.get_ptr() == pointer)
            .map(|(target, _)| target.clone());
        let target = provided.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "the object to hand off is not an object of this vat reached \
                 through this connection",
            )
        })?;
        Ok((target, None))
    }

    /// Runs one sweep pass now (the vat runs them every
    /// [`PersistenceConfig::sweep_interval`] by itself): deletes at most
    /// [`PersistenceConfig::sweep_batch`] token records due for purging
    /// (expired ones, and single-use ones used) in one transaction, and
    /// forgets in memory the handoffs that expired, the standings of tokens
    /// no reference restored from is alive any more, and the used marks of
    /// purged tokens. [`SweepReport::more`] says whether more records are
    /// due; the periodic sweep then runs another pass at once.
    ///
    /// The pass is queued at the call; the future holds no strong
    /// reference to the persistence.
    pub fn sweep(&self) -> impl Future<Output = Result<SweepReport, Error>> + 'static {
        let now = vat_env::wall();
        let purge = self
            .inner
            .committer
            .purge(now, self.inner.config.sweep_batch);
        let weak = self.downgrade();
        async move {
            let purged = purge.await?;
            let Some(persistence) = weak.upgrade() else {
                return Err(Error::vat_stopped("the sweep"));
            };
            Ok(persistence.forget_swept(now, &purged))
        }
    }

    /// Drops what memory keeps for the records `purged` deleted, and what
    /// is dead or unreferenced by `now`.
    fn forget_swept(&self, now: SystemTime, purged: &Purged) -> SweepReport {
        let inner = &self.inner;
        let mut released = 0;
        {
            let mut handoffs = inner.handoffs.borrow_mut();
            let mut used = inner.used.borrow_mut();
            for hash in &purged.removed {
                released += usize::from(handoffs.take(hash).is_some());
                released += usize::from(used.remove(hash));
            }
            released += handoffs.expire(now);
        }
        // A standing held by nothing but this map has no reference alive
        // (each holds it, as does a pending handoff made from one): the
        // next restore of its token starts a new one.
        let mut restored = inner.restored.borrow_mut();
        inner.standings.borrow_mut().retain(|_, standing| {
            let referenced = Rc::strong_count(standing) > 1;
            if !referenced {
                restored.remove(&(Rc::as_ptr(standing) as usize));
                released += 1;
            }
            referenced
        });
        let count = u64::try_from(purged.removed.len()).unwrap_or(u64::MAX);
        inner.purged.set(inner.purged.get().saturating_add(count));
        inner.sweep_passes.set(inner.sweep_passes.get() + 1);
        SweepReport {
            purged: purged.removed.len(),
            released,
            more: purged.more,
        }
    }

    /// What was refused since the last call: restores, and handoffs over
    /// quota.
    pub(super) fn take_refusal_summary(&self) -> (Option<RefusalSummary>, u64) {
        let interval = self.inner.config.refusal_summary_interval;
        let restores = self.inner.refusals.borrow_mut().take_summary(interval);
        (restores, self.inner.over_quota_since_summary.replace(0))
    }

    /// Its counters, and the sizes of what it keeps in memory.
    pub fn stats(&self) -> PersistenceStats {
        let inner = &self.inner;
        PersistenceStats {
            refused: inner.refusals.borrow().totals(),
            handoffs_over_quota: inner.over_quota.get(),
            handoffs_outstanding: inner.handoffs.borrow().outstanding(),
            standings: inner.standings.borrow().len(),
            restored: inner.restored.borrow().len(),
            used_pending: inner.used.borrow().len(),
            purged: inner.purged.get(),
            sweep_passes: inner.sweep_passes.get(),
        }
    }

    /// The gateway a caller who proved `caller` (or nobody) gets as its
    /// bootstrap capability.
    pub fn gateway(&self, caller: Option<VatId>) -> gateway::Client {
        crate::export(Gateway {
            persistence: self.clone(),
            caller,
        })
    }

    /// Offers this gateway, from now on, on every connection the vat dials
    /// proving `ours`: a vat that serves must do so before it first dials,
    /// or the vats it dials keep a connection on which it offers nothing
    /// for their restores of its tokens ([`serve`](Persistence::serve) and
    /// [`serve_authenticated`](Persistence::serve_authenticated) call it).
    pub fn offer_gateway(&self, ours: captp::PublicKey) {
        let weak = Rc::downgrade(&self.inner);
        super::sessions::offer_gateway(ours, move |peer| {
            let inner = weak.upgrade()?;
            Some(Persistence { inner }.gateway(Some(peer)).client)
        });
    }

    /// Serves the gateway to every caller of `listener`, each with the key
    /// it proved.
    ///
    /// The vat's connection manager then shares connections with other vats
    /// both ways: a vat that proved its key and offers a gateway of its own
    /// becomes reachable over the connection it dialled (this vat's restores
    /// of its tokens use it), and the connections this vat dials proving the
    /// listener's key offer this gateway to the vat dialled.
    pub fn serve(&self, listener: TlsListener, limits: Limits) {
        let ours = listener.public_key();
        self.offer_gateway(ours);
        let persistence = self.clone();
        listener.serve_with(
            move |caller| Some(persistence.gateway(caller.map(vat_id)).client),
            move |connection| super::sessions::accepted(ours, connection, limits),
            limits,
        );
    }

    /// Serves the gateway on one stream whose transport authenticated the
    /// caller as `caller` itself (a simulator's network: see
    /// [`Connection::open_authenticated`](captp::Connection::open_authenticated)),
    /// this vat proving `ours`; the connection joins the vat's connection
    /// manager as one accepted by [`serve`](Persistence::serve) does.
    pub fn serve_authenticated<S>(
        &self,
        ours: captp::PublicKey,
        stream: S,
        caller: Option<captp::PublicKey>,
        label: impl Into<String>,
        limits: Limits,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + 'static,
    {
        self.offer_gateway(ours);
        let bootstrap = self.gateway(caller.map(vat_id)).client;
        let connection = captp::Connection::open_authenticated(
            stream,
            captp::Side::Acceptor,
            Some(bootstrap),
            limits,
            label,
            caller,
        );
        super::sessions::accepted(ours, connection, limits);
    }

    /// What tokens may name: `kind#id` for each object provided or revived,
    /// and `kind#*` for each kind that can be revived, sorted.
    pub fn objects(&self) -> Vec<String> {
        let mut objects: Vec<String> = self
            .inner
            .live
            .borrow()
            .keys()
            .map(ToString::to_string)
            .chain(
                self.inner
                    .revivers
                    .borrow()
                    .keys()
                    .map(|kind| format!("{kind}#*")),
            )
            .collect();
        objects.sort();
        objects
    }

    /// The live object `object`, revived if it is not live yet.
    fn live(&self, object: &ObjectRef) -> Result<capnp::capability::Client, Error> {
        if let Some(client) = self.inner.live.borrow().get(object) {
            return Ok(client.clone());
        }
        let reviver = self.inner.revivers.borrow().get(object.kind()).cloned();
        let Some(reviver) = reviver else {
            tracing::warn!(%object, "a token names an object of a kind this vat does not serve");
            return Err(Error::new(
                ErrorKind::Failed,
                format!(
                    "{object} is of kind {:?}, which this vat does not serve now",
                    object.kind()
                ),
            ));
        };
        let client = reviver(self, object)?;
        self.inner
            .live
            .borrow_mut()
            .insert(object.clone(), client.clone());
        Ok(client)
    }
}

/// What [`Persistence::set_restorer`] takes: the hash of the swiss number
/// presented and the caller's proven key, to the object and its kind.
pub type Restorer =
    Rc<dyn Fn(&SwissHash, Option<&VatId>) -> Option<(capnp::capability::Client, String)>>;

/// An `ObjectRef`, with a kind name refusal as a typed error.
pub fn object_ref(kind: &str, id: u64) -> Result<ObjectRef, Error> {
    ObjectRef::new(kind, id).map_err(|e| Error::new(ErrorKind::InvalidArgument, e.to_string()))
}

/// The bootstrap object of a vat that serves sturdyrefs.
struct Gateway {
    persistence: Persistence,
    caller: Option<VatId>,
}

impl gateway::Server for Gateway {
    async fn handoff(
        self: Rc<Self>,
        params: gateway::HandoffParams,
        mut results: gateway::HandoffResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let object = params.get_object().get_as_capability()?;
        let recipient = params.get_recipient()?;
        let recipient: [u8; 32] = recipient.try_into().map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "a recipient is a 32-byte vat key; {} bytes were given",
                    recipient.len()
                ),
            )
        })?;
        let token = self
            .persistence
            .handoff(self.caller.as_ref(), &object, VatId::from_bytes(recipient))
            .await?;
        results.get().set_token(token.to_string());
        Ok(())
    }

    async fn admin(
        self: Rc<Self>,
        _: gateway::AdminParams,
        mut results: gateway::AdminResults,
    ) -> Result<(), capnp::Error> {
        if self.caller != Some(self.persistence.vat()) {
            tracing::warn!(caller = ?self.caller.map(|v| v.to_string()), "admin refused");
            return Err(Error::new(
                ErrorKind::UnknownToken,
                "the admin capability is only for a caller that proves this vat's own key",
            )
            .into());
        }
        let admin: admin::Client = crate::export(Admin {
            persistence: self.persistence.clone(),
        });
        results.get().set_admin(admin);
        Ok(())
    }

    async fn restore(
        self: Rc<Self>,
        params: gateway::RestoreParams,
        mut results: gateway::RestoreResults,
    ) -> Result<(), capnp::Error> {
        let presented = params.get()?.get_swiss_number()?;
        let bytes: [u8; 32] = presented.try_into().map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "a swiss number is 32 bytes; {} were presented",
                    presented.len()
                ),
            )
        })?;
        let (object, kind) = self
            .persistence
            .restore(&SwissNumber::from_bytes(bytes), self.caller.as_ref())?;
        let mut out = results.get();
        out.set_kind(kind);
        out.init_object().set_as_capability(object.hook);
        Ok(())
    }
}
