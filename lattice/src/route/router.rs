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

/// A kind's versions and its router, in one vat.
pub(crate) struct Router {
    what: String,
    versions: BTreeMap<String, Members>,
    table: Rc<RefCell<Table>>,
    switch: Switch,
    /// The log index of the route it follows (0: none).
    route_index: u64,
}

impl Router {
    /// A router of the kind `kind` with no version yet; `what` names its
    /// groups in logs. Rules read fields of the methods `fields` knows.
    pub(crate) fn new(kind: &str, what: String, fields: Fields) -> Router {
        let table = Rc::new(RefCell::new(Table {
            kind: kind.to_owned(),
            versions: BTreeMap::new(),
            route: None,
            fields,
        }));
        Router {
            what,
            versions: BTreeMap::new(),
            switch: Switch::new(Picker(Rc::clone(&table))),
            table,
            route_index: 0,
        }
    }

    /// The unversioned reference: the router.
    pub(crate) fn client(&self) -> capnp::capability::Client {
        self.switch.client()
    }

    /// The router bound to a routing key.
    pub(crate) fn with_key(&self, key: &[u8]) -> capnp::capability::Client {
        self.switch.with_key(key)
    }

    /// The versioned reference: the group of `version`'s instances (empty
    /// until one runs; calls on it then fail, undelivered).
    pub(crate) fn version(&mut self, version: &str) -> capnp::capability::Client {
        self.members(version).client()
    }

    fn members(&mut self, version: &str) -> &mut Members {
        let what = &self.what;
        self.versions
            .entry(version.to_owned())
            .or_insert_with(|| Members::new(format!("{what}@{version}")))
    }

    /// Makes each version's members exactly `wanted` (version, then key to
    /// token); a version not in it keeps its group, empty.
    pub(crate) fn follow(
        &mut self,
        identity: Option<&Identity>,
        wanted: &BTreeMap<String, BTreeMap<String, String>>,
        local: &dyn Fn(&str) -> Option<capnp::capability::Client>,
    ) {
        let none = BTreeMap::new();
        for version in wanted.keys() {
            self.members(version);
        }
        for (version, members) in &mut self.versions {
            members.follow(identity, wanted.get(version).unwrap_or(&none), local);
        }
        let mut table = self.table.borrow_mut();
        let mut changed = false;
        for (version, members) in &self.versions {
            let target = table
                .versions
                .entry(version.clone())
                .or_insert_with(|| Target::new(members.group.clone()));
            changed |= target.members != members.len();
            target.members = members.len();
        }
        if changed {
            table.restart();
        }
    }

    /// Follows `route` (with the log index of its last write), or none.
    pub(crate) fn set_route(&mut self, route: Option<(Route, u64)>) {
        let index = route.as_ref().map_or(0, |(_, index)| *index);
        if index == self.route_index {
            return;
        }
        let mut table = self.table.borrow_mut();
        table.route = route.map(|(route, _)| route);
        table.restart();
        self.route_index = index;
    }

    /// The log index of the route it follows (0: none).
    pub(crate) fn route_index(&self) -> u64 {
        self.route_index
    }

    /// Each version with its instance count.
    pub(crate) fn versions(&self) -> Vec<(String, usize)> {
        self.versions
            .iter()
            .map(|(version, members)| (version.clone(), members.len()))
            .collect()
    }
}
