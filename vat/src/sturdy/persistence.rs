//! A vat's persistence: its token table, its persistent objects, and the
//! gateway through which holders of tokens get in.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use captp::tls::TlsListener;
use captp::Limits;
use schema::gateway_capnp::{admin, gateway};
use sturdyrefs::{
    LocationHint, Lookup, MintOptions, ObjectRef, RedbStore, Store, SturdyRef, SwissHash,
    SwissNumber, TokenRecord, VatId,
};

use super::admin::Admin;
use super::committer::{store_error, Committer};
use super::restore::vat_id;
use super::revocable::{revocable, Standing};
use super::state::{decode, Durable, StateCell};
use crate::error::{Error, ErrorKind};

/// How long a handoff token works: long enough for the introducer to pass
/// it on and the recipient to dial, short enough that a lost one soon dies.
pub const HANDOFF_LIFETIME: Duration = Duration::from_secs(60);

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
    /// `None` once the vat stopped (see `close`).
    store: RefCell<Option<Arc<dyn Store>>>,
    committer: Rc<Committer>,
    hints: RefCell<Vec<LocationHint>>,
    revivers: RefCell<HashMap<String, Reviver>>,
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
    /// Handoff tokens not used yet, with the standing of the reference they
    /// were made from: the recipient's reference lives no longer.
    handoffs: RefCell<HashMap<SwissHash, Rc<Standing>>>,
    /// Single-use tokens used already, whose revocation may not have been
    /// committed yet.
    used: RefCell<HashSet<SwissHash>>,
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

impl Persistence {
    /// Opens (or creates) the store in the data folder `dir` for the vat
    /// named `vat`. Must be called inside a vat.
    pub fn open(dir: impl AsRef<Path>, vat: VatId) -> Result<Persistence, Error> {
        let path = dir.as_ref().join(STORE_FILE);
        let store = RedbStore::open(&path).map_err(store_error)?;
        Persistence::with_store(Arc::new(store), vat)
    }

    /// Persistence on any [`Store`].
    pub fn with_store(store: Arc<dyn Store>, vat: VatId) -> Result<Persistence, Error> {
        let name = crate::try_current()
            .map(|v| v.name().to_owned())
            .unwrap_or_default();
        let committer = Committer::start(Arc::clone(&store), &name)?;
        let persistence = Persistence {
            inner: Rc::new(Inner {
                vat,
                store: RefCell::new(Some(store)),
                committer: Rc::new(committer),
                hints: RefCell::new(Vec::new()),
                revivers: RefCell::default(),
                live: RefCell::default(),
                standings: RefCell::default(),
                restored: RefCell::default(),
                handoffs: RefCell::default(),
                used: RefCell::default(),
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
        }
        Ok(persistence)
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

    /// The vat whose tokens these are.
    pub fn vat(&self) -> VatId {
        self.inner.vat
    }

    /// Where the vat can be reached: the location hints written into the
    /// tokens minted from now on, in order of preference.
    pub fn set_hints(&self, hints: Vec<LocationHint>) {
        *self.inner.hints.borrow_mut() = hints;
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
        let refused = |kind, message: &str| {
            tracing::info!(token = %hash, caller = ?presenter.map(|v| v.to_string()), %kind, "restore refused");
            Err(Error::new(kind, message))
        };
        let record = match lookup {
            Lookup::Found(record) => record,
            Lookup::Unknown => {
                return refused(
                    ErrorKind::UnknownToken,
                    "no such token: this vat never minted it for this caller",
                )
            }
            Lookup::Revoked => return refused(ErrorKind::Revoked, "the token was revoked"),
            Lookup::Expired => return refused(ErrorKind::Expired, "the token has expired"),
        };
        if record.single_use && !self.use_up(hash) {
            return refused(ErrorKind::Revoked, "this single-use token was used already");
        }
        let object = self.live(&record.object)?;
        let parent = self.inner.handoffs.borrow_mut().remove(&hash);
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
    /// background; `false` if it was used already.
    fn use_up(&self, hash: SwissHash) -> bool {
        if !self.inner.used.borrow_mut().insert(hash) {
            return false;
        }
        let committer = Rc::clone(&self.inner.committer);
        tokio::task::spawn_local(async move {
            if let Err(error) = committer.revoke(hash).await {
                tracing::error!(token = %hash, %error, "a used single-use token could not be revoked");
            }
        });
        true
    }

    /// Mints a handoff token for `object`, which must be a reference this
    /// vat restored (or provided), for the vat `recipient`: bound to it,
    /// single-use, short-lived (see `Gateway.handoff` in
    /// `schema/capnp/gateway.capnp`).
    pub async fn handoff(
        &self,
        object: &capnp::capability::Client,
        recipient: VatId,
    ) -> Result<SturdyRef, Error> {
        let pointer = object.hook.get_ptr();
        let restored = self.inner.restored.borrow().get(&pointer).cloned();
        let (target, parent) = match restored {
            Some(target) => {
                let parent = self
                    .inner
                    .standings
                    .borrow()
                    .values()
                    .find(|s| Rc::as_ptr(s) as usize == pointer)
                    .cloned();
                (target, parent)
            }
            None => {
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
                (target, None)
            }
        };
        let options = MintOptions {
            expires_at: Some(SystemTime::now() + HANDOFF_LIFETIME),
            bound_to: Some(recipient),
            single_use: true,
        };
        let token = self.mint(&target, options).await?;
        if let Some(parent) = parent {
            self.inner
                .handoffs
                .borrow_mut()
                .insert(token.swiss().hash(), parent);
        }
        tracing::info!(object = %target, recipient = %recipient, "handoff token minted");
        Ok(token)
    }

    /// The gateway a caller who proved `caller` (or nobody) gets as its
    /// bootstrap capability.
    pub fn gateway(&self, caller: Option<VatId>) -> gateway::Client {
        crate::export(Gateway {
            persistence: self.clone(),
            caller,
        })
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
        let weak = Rc::downgrade(&self.inner);
        super::sessions::offer_gateway(ours, move |peer| {
            let inner = weak.upgrade()?;
            Some(Persistence { inner }.gateway(Some(peer)).client)
        });
        let persistence = self.clone();
        listener.serve_with(
            move |caller| Some(persistence.gateway(caller.map(vat_id)).client),
            move |connection| super::sessions::accepted(ours, connection, limits),
            limits,
        );
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
            .handoff(&object, VatId::from_bytes(recipient))
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
