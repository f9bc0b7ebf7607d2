//! A kind's router: one group per version, following the instances (or
//! grants) the directory lists, and a switch in front of them, following
//! the kind's route.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use vat::net::Identity;
use vat::switch::Switch;

use super::pick::{Picker, Table, Target};
use super::{Fields, Route};
use crate::members::Members;

/// A kind's versions and its router, in one vat: one group per version
/// (the versioned references) and a switch in front of them following the
/// kind's [`Route`] (the unversioned reference). Hosts and
/// [`Reference`](crate::Reference)s keep theirs following the directory;
/// a program can also run one of its own over members it joins.
///
/// ```
/// use schema::demo_capnp::counter;
/// use vat_lattice::route::{parse_rule, Fields, Route, RoutePick, Router};
///
/// let vat = vat::VatHandle::start("doc").unwrap();
/// vat.run_async(|| async {
///     let mut router = Router::new("counter", Fields::new());
///     let blue: counter::Client = vat::export(vat::demo::Counter::default());
///     let green: counter::Client = vat::export(vat::demo::Counter::default());
///     let _memberships = [router.join("1.0.0", blue.clone()), router.join("2.0.0", green)];
///     let mut route = Route { rules: vec![], pick: RoutePick::Live { version: "2.0.0".into(), previous: None } };
///     route.rules.push(parse_rule("key:blue-*=1.0.0").unwrap());
///     router.route(Some(route));
///     let tester: counter::Client = router.with_key("blue-7");
///     let mut add = tester.add_request();
///     add.get().set_by(1);
///     add.send().promise.await.unwrap();
///     let get = blue.get_request().send().promise.await.unwrap();
///     assert_eq!(get.get().unwrap().get_value(), 1); // the rule sent it to 1.0.0
/// }).wait().unwrap();
/// vat.stop().unwrap();
/// ```
pub struct Router {
    what: String,
    /// Each version's members, and the route: what the picker reads.
    table: Rc<RefCell<Table>>,
    switch: Switch,
    /// The log index of the route it follows (0: none).
    route_index: u64,
}

impl Router {
    /// A router of the kind `kind` with no version and no route yet; rules
    /// read fields of the methods `fields` knows.
    pub fn new(kind: &str, fields: Fields) -> Router {
        Router::named(kind, format!("router of {kind}"), fields)
    }

    /// A router of `kind`; `what` names its groups in logs.
    pub(crate) fn named(kind: &str, what: String, fields: Fields) -> Router {
        let table = Rc::new(RefCell::new(Table {
            kind: kind.to_owned(),
            versions: BTreeMap::new(),
            route: None,
            fields,
        }));
        Router {
            what,
            switch: Switch::new(Picker(Rc::clone(&table))),
            table,
            route_index: 0,
        }
    }

    /// Adds `member` to `version`'s group: it serves that version's calls
    /// until the membership is dropped.
    pub fn join<C: capnp::capability::FromClientHook>(
        &mut self,
        version: &str,
        member: C,
    ) -> vat::group::Membership {
        self.with_version(version, |target| target.members.group.join(member))
    }

    /// Follows `route` from the next call on (none: every instance alike).
    pub fn route(&mut self, route: Option<Route>) {
        let mut table = self.table.borrow_mut();
        table.route = route;
        table.restart();
    }

    /// The unversioned reference: the router.
    pub fn client<C: capnp::capability::FromClientHook>(&self) -> C {
        self.switch.client()
    }

    /// The router bound to a routing key.
    pub fn with_key<C: capnp::capability::FromClientHook>(&self, key: impl AsRef<[u8]>) -> C {
        self.switch.with_key(key)
    }

    /// The versioned reference: the group of `version`'s members (empty
    /// until one joins; calls on it then fail, undelivered).
    pub fn version<C: capnp::capability::FromClientHook>(&mut self, version: &str) -> C {
        self.with_version(version, |target| target.members.group.client())
    }

    /// Runs `f` on `version`'s entry, made (with an empty group) if new.
    fn with_version<T>(&self, version: &str, f: impl FnOnce(&mut Target) -> T) -> T {
        let mut table = self.table.borrow_mut();
        let what = &self.what;
        let target = table
            .versions
            .entry(version.to_owned())
            .or_insert_with(|| Target::new(Members::new(format!("{what}@{version}"))));
        f(target)
    }

    /// Makes each version's members exactly `wanted` (version, then key to
    /// token); a version not in it keeps its group, empty.
    pub(crate) fn follow(
        &mut self,
        identity: Option<&Identity>,
        wanted: &BTreeMap<String, BTreeMap<String, String>>,
        local: &dyn Fn(&str) -> Option<capnp::capability::Client>,
    ) {
        for version in wanted.keys() {
            self.with_version(version, |_| ());
        }
        let none = BTreeMap::new();
        for (version, target) in &mut self.table.borrow_mut().versions {
            let members = wanted.get(version).unwrap_or(&none);
            target.members.follow(identity, members, local);
        }
    }

    /// Follows `route` (with the log index of its last write), or none.
    pub(crate) fn set_route(&mut self, route: Option<(Route, u64)>) {
        let index = route.as_ref().map_or(0, |(_, index)| *index);
        if index == self.route_index {
            return;
        }
        match &route {
            Some((route, _)) => {
                tracing::info!(router = %self.what, index, route = %captp::log::Untrusted(route), "following a new route");
            }
            None => tracing::info!(router = %self.what, "no route: every instance alike"),
        }
        self.route(route.map(|(route, _)| route));
        self.route_index = index;
    }

    /// The log index of the route it follows (0: none).
    pub(crate) fn route_index(&self) -> u64 {
        self.route_index
    }

    /// Each version with its member count.
    pub fn versions(&self) -> Vec<(String, usize)> {
        self.table
            .borrow()
            .versions
            .iter()
            .map(|(version, target)| (version.clone(), target.len()))
            .collect()
    }
}
