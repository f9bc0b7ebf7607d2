//! Brands: recognising your own objects when they are handed back.
//!
//! ```
//! use schema::demo_capnp::counter;
//! use std::{cell::Cell, rc::Rc};
//!
//! struct Counter(Cell<i64>);
//! impl counter::Server for Counter {}
//!
//! let vat = vat::VatHandle::start("doc").unwrap();
//! let (ours, stranger) = vat.run_async(|| async {
//!     let counters = vat::Brand::new();
//!     let mine: counter::Client = counters.export(Counter(Cell::new(7)));
//!     let other: counter::Client = vat::export(Counter(Cell::new(7)));
//!     // Handed a capability, the brand's holder reaches the object behind
//!     // it only if it is one of the brand's own exports.
//!     let ours: Option<Rc<Counter>> = counters.recognise(&mine).await;
//!     let stranger = counters.recognise(&other).await;
//!     (ours.map(|c| c.0.get()), stranger.is_some())
//! }).wait().unwrap();
//! assert_eq!(ours, Some(7));
//! assert!(!stranger);
//! vat.stop().unwrap();
//! ```
//!
//! # The model
//!
//! A [`Brand<S>`] is E's sealer and unsealer in one object, held by the code
//! that made it. [`Brand::export`] exports a server exactly as
//! [`export`](crate::export) does (same heap record, every call a counted,
//! panic-catching turn) and remembers it. [`Brand::recognise`] takes any
//! capability, waits for it to resolve (one that came over the network may
//! be a promise for one of ours), and gives back the object itself if the
//! capability is one of this brand's own live exports in this vat, else
//! `None`: another brand's export of the same type, a plain export, an
//! object of another vat, a proxy forwarding to ours, a broken reference, a
//! crashed object.
//!
//! The brand is the only way to the object: the capability confers no power
//! to unseal, only to call. A member is keyed by the capability's identity
//! (capnp-rpc's `get_ptr`, the address of the object's `Rc`) and held
//! weakly, so the brand keeps no object alive and forgets each one when the
//! vat lets go of it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::{Rc, Weak};

use capnp::capability::{FromClientHook, FromServer};
use capnp::private::capability::ClientHook;

use crate::far::export_rc;
use crate::heap::Header;
use crate::object::Far;
use crate::reference::{Ref, WeakRef};

/// A set of exports of one server type that recognises its own members
/// among the capabilities it is handed. Cloning shares the set.
pub struct Brand<S: 'static> {
    members: Rc<RefCell<Members<S>>>,
}

/// The members by identity (the address of the object's `Rc`).
type Members<S> = HashMap<usize, Member<S>>;

/// What the brand holds of a member, weakly: a server it exported, or an
/// object of the one object model whose capability it made.
enum Member<S: 'static> {
    Server {
        object: Weak<S>,
        /// Its heap record, to refuse an object that crashed.
        header: Weak<Header>,
    },
    Object(WeakRef<S>),
}

impl<S: 'static> Clone for Member<S> {
    fn clone(&self) -> Self {
        match self {
            Member::Server { object, header } => Member::Server {
                object: Weak::clone(object),
                header: Weak::clone(header),
            },
            Member::Object(object) => Member::Object(object.clone()),
        }
    }
}

impl<S: 'static> Member<S> {
    /// The server, if it is one, alive and not crashed.
    fn server(&self) -> Option<Rc<S>> {
        match self {
            Member::Server { object, header } => {
                if header.upgrade()?.is_crashed() {
                    return None;
                }
                object.upgrade()
            }
            Member::Object(_) => None,
        }
    }

    /// The object, if it is one, alive and not crashed.
    fn object(&self) -> Option<Ref<S>> {
        match self {
            Member::Object(object) => object.upgrade().filter(|o| !o.is_crashed()),
            Member::Server { .. } => None,
        }
    }
}

/// Takes a member out of its brand when the vat drops the export.
struct Leave<S: 'static> {
    members: Weak<RefCell<Members<S>>>,
    identity: usize,
}

/// [`Leave`] for a member whose identity is known only once its capability
/// exists.
struct LeaveLater<S: 'static> {
    members: Weak<RefCell<Members<S>>>,
    identity: Rc<std::cell::Cell<usize>>,
}

impl<S: 'static> Drop for LeaveLater<S> {
    fn drop(&mut self) {
        if let Some(members) = self.members.upgrade() {
            members.borrow_mut().remove(&self.identity.get());
        }
    }
}

impl<S: 'static> Drop for Leave<S> {
    fn drop(&mut self) {
        if let Some(members) = self.members.upgrade() {
            members.borrow_mut().remove(&self.identity);
        }
    }
}

impl<S: 'static> Brand<S> {
    /// A brand with no members.
    pub fn new() -> Brand<S> {
        Brand {
            members: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// Exports `server` from the current vat as a capability of type `C`,
    /// like [`export`](crate::export), and makes it a member of this brand.
    ///
    /// # Panics
    /// Outside a vat (see [`current`](crate::current)).
    pub fn export<C: FromServer<S>>(&self, server: S) -> C {
        let object = Rc::new(server);
        let identity = identity_of(&object);
        let weak = Rc::downgrade(&object);
        let leave = Leave {
            members: Rc::downgrade(&self.members),
            identity,
        };
        let (capability, header) = export_rc::<C, S>(object, Some(Box::new(leave)));
        debug_assert_eq!(capability.as_client_hook().get_ptr(), identity);
        let member = Member::Server {
            object: weak,
            header: Rc::downgrade(&header),
        };
        // The key cannot be taken: the entry's `Weak` keeps the address
        // allocated until the entry leaves.
        self.members.borrow_mut().insert(identity, member);
        capability
    }

    /// The object behind `capability` if it is one of this brand's live
    /// exports, once the capability has resolved; `None` otherwise.
    ///
    /// A promise is followed until it resolves; one that breaks is not
    /// recognised. A promise that never resolves keeps this waiting (only
    /// that caller: the vat goes on), so bound the wait with a timeout where
    /// that matters. Among those: a connection's bootstrap capability, and a
    /// pipelined capability whose call's answer was dropped, which capnp-rpc
    /// never resolves (calls on them still go through).
    pub async fn recognise<C: FromClientHook>(&self, capability: &C) -> Option<Rc<S>> {
        let resolved = resolve(capability.as_client_hook().add_ref()).await?;
        self.recognise_resolved(&capnp::capability::Client::new(resolved))
    }

    /// [`recognise`](Brand::recognise) without waiting: `None` also for a
    /// promise not yet resolved, even one that will resolve to a member.
    pub fn recognise_resolved<C: FromClientHook>(&self, capability: &C) -> Option<Rc<S>> {
        self.member(capability)?.server()
    }

    /// The brand's member for `capability`'s identity, if any. Cloned out so
    /// that no object is touched (or dropped) while the set is borrowed.
    fn member<C: FromClientHook>(&self, capability: &C) -> Option<Member<S>> {
        let identity = capability.as_client_hook().get_ptr();
        self.members.borrow().get(&identity).cloned()
    }

    /// Makes `object`'s capability, speaking `C` (as [`Ref::export`] does:
    /// calls through it are turns of that same object), and makes it a
    /// member of this brand: the brand for objects written with
    /// [`#[vat::object]`](macro@crate::object).
    ///
    /// ```
    /// use schema::demo_capnp::counter;
    ///
    /// struct Account { balance: i64 }
    /// #[vat::object(counter)]
    /// impl Account {}
    ///
    /// let vat = vat::VatHandle::start("doc").unwrap();
    /// let (ours, stranger) = vat.run_async(|| async {
    ///     let accounts = vat::Brand::new();
    ///     let mine: counter::Client = accounts.export_object(&vat::spawn(Account { balance: 7 }));
    ///     let other: counter::Client = vat::spawn(Account { balance: 7 }).export();
    ///     let ours = accounts.recognise_object(&mine).await.map(|a| a.call(|a| a.balance));
    ///     (ours, accounts.recognise_object(&other).await.is_some())
    /// }).wait().unwrap();
    /// assert_eq!(ours, Some(Ok(7)));
    /// assert!(!stranger);
    /// vat.stop().unwrap();
    /// ```
    pub fn export_object<C>(&self, object: &Ref<S>) -> C
    where
        S: Far<C>,
        C: FromServer<S::Server> + FromClientHook,
    {
        // The identity is the capability's own (its server's `Rc`), known
        // only once it exists: the member goes in right after, before
        // anything else can run.
        let slot = Rc::new(std::cell::Cell::new(0usize));
        let leave = LeaveLater {
            members: Rc::downgrade(&self.members),
            identity: Rc::clone(&slot),
        };
        let capability: C = object.export_releasing(Some(Box::new(leave)));
        let identity = capability.as_client_hook().get_ptr();
        slot.set(identity);
        self.members
            .borrow_mut()
            .insert(identity, Member::Object(object.downgrade()));
        capability
    }

    /// The object behind `capability` if it is one of this brand's live
    /// [`export_object`](Brand::export_object)s, once the capability has
    /// resolved (as [`recognise`](Brand::recognise) does); `None` otherwise.
    pub async fn recognise_object<C: FromClientHook>(&self, capability: &C) -> Option<Ref<S>> {
        let resolved = resolve(capability.as_client_hook().add_ref()).await?;
        self.member(&capnp::capability::Client::new(resolved))?
            .object()
    }

    /// The brand's live objects ([`export_object`](Brand::export_object)),
    /// in no particular order.
    pub fn objects(&self) -> Vec<Ref<S>> {
        let members: Vec<Member<S>> = self.members.borrow().values().cloned().collect();
        members.iter().filter_map(Member::object).collect()
    }

    /// How many live exports the brand holds.
    pub fn len(&self) -> usize {
        self.members.borrow().len()
    }

    /// Whether the brand holds no live export.
    pub fn is_empty(&self) -> bool {
        self.members.borrow().is_empty()
    }

    /// The brand's live exported servers ([`export`](Brand::export)), in no
    /// particular order (an audit: a mint sums its purses this way).
    pub fn members(&self) -> Vec<Rc<S>> {
        let members: Vec<Member<S>> = self.members.borrow().values().cloned().collect();
        members.iter().filter_map(Member::server).collect()
    }
}

impl<S: 'static> Default for Brand<S> {
    fn default() -> Self {
        Brand::new()
    }
}

impl<S: 'static> Clone for Brand<S> {
    fn clone(&self) -> Self {
        Brand {
            members: Rc::clone(&self.members),
        }
    }
}

impl<S: 'static> fmt::Debug for Brand<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Brand")
            .field("type", &std::any::type_name::<S>())
            .field("members", &self.members.borrow().len())
            .finish()
    }
}

/// Follows `hook` to what it finally resolves to; `None` if it breaks.
///
/// Not `capnp::capability::get_resolved_cap`: that asks every hook
/// `when_resolved`, and an RPC promise that has already resolved answers
/// with a waiter nobody wakes. A hook is asked for more only once
/// `get_resolved` has nothing further.
async fn resolve(mut hook: Box<dyn ClientHook>) -> Option<Box<dyn ClientHook>> {
    loop {
        while let Some(next) = hook.get_resolved() {
            hook = next;
        }
        match hook.when_more_resolved() {
            None => return Some(hook),
            Some(more) => hook = more.await.ok()?,
        }
    }
}

/// The identity capnp-rpc gives a local server: the address of its `Rc`.
fn identity_of<S>(object: &Rc<S>) -> usize {
    Rc::as_ptr(object).cast::<()>() as usize
}
