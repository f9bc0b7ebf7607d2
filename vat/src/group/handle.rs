//! [`Group`]: the handle a group's vat holds, which makes its capabilities.

use std::fmt;
use std::rc::Rc;

use capnp::capability::FromClientHook;

use super::builder::GroupBuilder;
use super::forward::GroupHook;
use super::member::{MemberInfo, Membership};
use super::state::Shared;
use super::strategy::{hash_key, Strategy};
use crate::hook::front_hook;

/// A group of members of one Cap'n Proto interface, held in the vat that
/// made it. Clones share the group.
///
/// Its faces are capabilities:
/// - [`client`](Group::client): the **call-one face**, a capability of the
///   members' own interface; each call on it goes to one member, picked by
///   the [`Strategy`]. Holding it is the authority to have calls served;
///   it can be passed to other vats, or named by a sturdyref like any
///   capability (provide it to a [`Persistence`](crate::sturdy::Persistence)).
/// - [`with_key`](Group::with_key): a call-one face bound to a key: all
///   its calls go to the member the key hashes to (consistent hashing).
/// - [`service`](Group::service): the management capability
///   (`schema/capnp/group.capnp`): join, list, call every member.
/// - [`call_all`](Group::call_all), [`tell_one`](Group::tell_one),
///   [`tell_all`](Group::tell_all): the same from Rust, typed.
///
/// Members may be any capability of the interface: local objects, objects
/// of other vats, restored or healing references, supervised stable
/// references. A member whose calls fail as if its vat were gone is
/// skipped until it answers a probe; a call it refused before delivery goes
/// to another member, and a call it may have received never does (see
/// [`delivery`](super#which-failures-count-as-refused-before-delivery)).
///
/// ```
/// use schema::demo_capnp::counter;
/// use vat::group::{Group, Strategy};
///
/// let vat = vat::VatHandle::start("doc").unwrap();
/// let values = vat.run_async(|| async {
///     let group = Group::new("counters", Strategy::RoundRobin);
///     for _ in 0..2 {
///         let worker: counter::Client = vat::export(vat::demo::Counter::default());
///         group.join(worker).keep();
///     }
///     let counters: counter::Client = group.client();
///     let mut values = Vec::new();
///     for _ in 0..4 {
///         let mut add = counters.add_request();
///         add.get().set_by(1);
///         values.push(add.send().promise.await.unwrap().get().unwrap().get_value());
///     }
///     values
/// }).wait().unwrap();
/// assert_eq!(values, [1, 1, 2, 2]); // one call each, in turn
/// vat.stop().unwrap();
/// ```
#[derive(Clone)]
pub struct Group {
    pub(crate) shared: Rc<Shared>,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.shared.name)
            .field("strategy", &self.shared.strategy)
            .field("members", &self.shared.len())
            .finish()
    }
}

impl Group {
    /// An empty group named `name` (for logs and errors), picking members
    /// by `strategy`, with default probing ([`GroupBuilder`] for more).
    /// Must be called inside a vat.
    pub fn new(name: impl Into<String>, strategy: Strategy) -> Group {
        GroupBuilder::new(name).strategy(strategy).build()
    }

    pub(crate) fn from_shared(shared: Rc<Shared>) -> Group {
        Group { shared }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How the call-one face picks members.
    pub fn strategy(&self) -> Strategy {
        self.shared.strategy
    }

    /// Adds `member`, a capability of the members' interface (typed, or a
    /// plain `capnp::capability::Client`). It serves calls from now on,
    /// until the returned [`Membership`] is dropped or left.
    pub fn join<C: FromClientHook>(&self, member: C) -> Membership {
        let id = self.shared.add(member.into_client_hook(), false);
        Membership::new(&self.shared, id)
    }

    /// Adds `member`, a reference of this vat that forwards to an object of
    /// another vat (a healing reference, or a caretaker over one), as
    /// [`join`](Group::join) does. While it is connected, a call made in
    /// this vat on the call-one face is built in the member's own request,
    /// as for a connection's capability (the fast path, no copy); while it
    /// is not, the call is lent to it and waits as the member's own calls
    /// do.
    pub fn join_forwarding<C: FromClientHook>(&self, member: C) -> Membership {
        let id = self.shared.add(member.into_client_hook(), true);
        Membership::new(&self.shared, id)
    }

    /// How many members the group has.
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether the group has no members: calls on it fail with
    /// [`Disconnected`](crate::ErrorKind::Disconnected), undelivered.
    pub fn is_empty(&self) -> bool {
        self.shared.len() == 0
    }

    /// Every member, in the order they joined.
    ///
    /// ```
    /// # let vat = vat::VatHandle::start("doc").unwrap();
    /// # vat.run_async(|| async {
    /// use schema::demo_capnp::counter;
    /// let group = vat::group::Group::new("counters", vat::group::Strategy::RoundRobin);
    /// let worker: counter::Client = vat::export(vat::demo::Counter::default());
    /// group.join(worker).keep();
    /// let counters: counter::Client = group.client();
    /// counters.get_request().send().promise.await.unwrap();
    /// let members = group.members();
    /// assert_eq!((members[0].calls, members[0].in_flight, members[0].reachable), (1, 0, true));
    /// # }).wait().unwrap();
    /// # vat.stop().unwrap();
    /// ```
    pub fn members(&self) -> Vec<MemberInfo> {
        self.shared.infos()
    }

    /// The call-one face, typed as the members' interface `C`.
    pub fn client<C: FromClientHook>(&self) -> C {
        C::new(front_hook(Rc::new(GroupHook {
            shared: self.shared.clone(),
            key: None,
        })))
    }

    /// A call-one face bound to `key`: each call on it goes to the member
    /// that `key` hashes to (rendezvous hashing over member ids), so calls
    /// for one key meet one member while the membership stays the same.
    /// When that member is unreachable, calls go to the next one by the
    /// same hash; when a member joins or leaves, only about `1 / k` of the
    /// keys move. The strategy does not apply to keyed calls.
    ///
    /// A capability bound to a key is how the key travels with the call
    /// without touching the members' interface; another vat gets one from
    /// the management capability's `caller(key)`.
    ///
    /// ```
    /// # let vat = vat::VatHandle::start("doc").unwrap();
    /// # vat.run_async(|| async {
    /// use schema::demo_capnp::counter;
    /// let group = vat::group::Group::new("shards", vat::group::Strategy::Random);
    /// for _ in 0..3 {
    ///     let shard: counter::Client = vat::export(vat::demo::Counter::default());
    ///     group.join(shard).keep();
    /// }
    /// let alice: counter::Client = group.with_key("alice");
    /// for expected in 1..=3 {
    ///     let mut add = alice.add_request();
    ///     add.get().set_by(1);
    ///     // Always the same shard: its count grows.
    ///     assert_eq!(add.send().promise.await.unwrap().get().unwrap().get_value(), expected);
    /// }
    /// # }).wait().unwrap();
    /// # vat.stop().unwrap();
    /// ```
    pub fn with_key<C: FromClientHook>(&self, key: impl AsRef<[u8]>) -> C {
        C::new(front_hook(Rc::new(GroupHook {
            shared: self.shared.clone(),
            key: Some(Rc::new(hash_key(key.as_ref()))),
        })))
    }
}
