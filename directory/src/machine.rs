//! The state machine: a plain deterministic function of the log. Every
//! member applies the same entries in the same order and ends in the same
//! state; nothing here reads a clock, a random source or the network.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::{
    ClientId, FacetId, FacetKind, FacetRecord, Facets, Op, Refusal, Request, Response,
};
use crate::record::{
    check_key, BindingKey, GrantKey, InstanceKey, Record, Selector, BINDINGS, GRANTS, HOSTS,
    INSTANCES, MAX_RECORDS_PER_FACET, MAX_RECORD_BYTES, NAMES, ROUTES, VATS,
};

/// How many answers per client the session table keeps at most (a client
/// with more requests in flight than this loses at-most-once for the
/// oldest: they answer `Forgotten`).
pub const MAX_ANSWERS_PER_CLIENT: usize = 1024;
/// How many clients the session table keeps; beyond, the one idle longest
/// is forgotten.
pub const MAX_SESSIONS: usize = 65_536;
/// A client idle this long (by the directory's clock) is forgotten.
pub const SESSION_IDLE_MS: u64 = 60 * 60 * 1000;
/// How many changes the machine keeps in memory for watches to resume
/// from; a watch resuming from before them gets the prefix's state first.
pub const HISTORY: usize = 4096;

/// A record with the log index that last wrote it and the facet that did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The record.
    pub record: Record,
    /// The log index of its last write.
    pub index: u64,
    /// The facet that wrote it (charged for it).
    pub writer: FacetId,
}

/// One change, as watches see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The log index that made it.
    pub index: u64,
    /// The key.
    pub key: String,
    /// The record now, `None` if deleted.
    pub record: Option<Record>,
}

/// What one client's session remembers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// Answers of serials at or above `floor`.
    answers: BTreeMap<u64, Response>,
    /// Serials below this were answered and forgotten.
    floor: u64,
    /// The directory's clock at the client's last request.
    last_ms: u64,
}

/// The replicated part of the state: what a snapshot carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    records: BTreeMap<String, Stored>,
    facets: Facets,
    sessions: BTreeMap<ClientId, Session>,
    /// The latest `at_ms` applied: the directory's clock, which never goes
    /// back even when a new leader's wall clock is behind the old one's.
    clock_ms: u64,
    /// The highest log index applied.
    applied: u64,
}

/// The state machine.
#[derive(Debug)]
pub struct Machine {
    /// The cluster's first admin facet, from the cluster's configuration.
    admin: FacetId,
    data: Data,
    history: VecDeque<Change>,
}

impl Machine {
    /// An empty machine for a cluster whose first admin facet is `admin`.
    pub fn new(admin: FacetId) -> Machine {
        Machine {
            admin,
            data: Data::default(),
            history: VecDeque::new(),
        }
    }

    /// Sets the cluster's first admin facet (known once the member joins
    /// a cluster; the store opens the machine before).
    pub fn set_admin(&mut self, admin: FacetId) {
        self.admin = admin;
    }

    /// The highest log index applied.
    pub fn applied(&self) -> u64 {
        self.data.applied
    }

    /// The directory's clock.
    pub fn clock_ms(&self) -> u64 {
        self.data.clock_ms
    }

    /// What the facet `id` grants, if it exists and stands.
    pub fn facet(&self, id: &FacetId) -> Option<FacetKind> {
        if *id == self.admin {
            return Some(FacetKind::Admin);
        }
        self.data
            .facets
            .get(id)
            .filter(|facet| !facet.revoked)
            .map(|facet| facet.kind.clone())
    }

    /// The record under `key`.
    pub fn get(&self, key: &str) -> Option<&Stored> {
        self.data.records.get(key)
    }

    /// Every record under `prefix`, in key order.
    pub fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Stored)> + 'a {
        self.data
            .records
            .range(prefix.to_owned()..)
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    /// Whether a holder of `kind` may see the record under `key` now: the
    /// facet's prefix rule, and for a host, only its own instances (their
    /// tokens are authority to them), the bindings of kinds it runs an
    /// instance of, and the instances and routes of the kinds those
    /// bindings bind its kinds to (least knowledge: a host learns the
    /// bindings and configs it needs, not the lattice's).
    pub fn visible(&self, kind: &FacetKind, key: &str) -> bool {
        if !kind.may_read(key) {
            return false;
        }
        match kind {
            FacetKind::Host { vat } if key.starts_with(INSTANCES) => {
                self.host_sees_instance(vat, key)
            }
            FacetKind::Host { vat } if key.starts_with(BINDINGS) => BindingKey::parse(key)
                .is_ok_and(|binding| {
                    self.runs_selected(vat, binding.actor())
                        || self.runs_selected(vat, binding.provider())
                }),
            // A grant's token is the actor's authority to the provider: only
            // hosts of the actor, and the provider instance's own host.
            FacetKind::Host { vat } if key.starts_with(GRANTS) => {
                GrantKey::parse(key).is_ok_and(|grant| {
                    grant.vat == vat || self.runs_selected(vat, grant.binding.actor())
                })
            }
            FacetKind::Host { vat } if key.starts_with(ROUTES) => {
                let kind = &key[ROUTES.len()..];
                self.runs(vat, kind) || self.bound_to(vat, |s| s.name == kind)
            }
            _ => true,
        }
    }

    /// Whether a host may see the instances of `kind` at `key`: its own,
    /// and those of a kind a binding binds to one it runs (a provider's
    /// instances call the actor's; an actor's reach the provider's grants,
    /// whose versions the provider's instance records tell).
    fn host_sees_instance(&self, vat: &str, key: &str) -> bool {
        let Ok(instance) = InstanceKey::parse(key) else {
            return false;
        };
        instance.vat == vat || self.bound_to(vat, |s| s.selects(instance.kind, instance.version))
    }

    /// Whether a binding binds a kind `other` selects to a kind the host
    /// `vat` runs (either way round).
    fn bound_to(&self, vat: &str, other: impl Fn(&Selector<'_>) -> bool) -> bool {
        let found = self.list(BINDINGS).any(|(key, _)| {
            BindingKey::parse(key).is_ok_and(|b| {
                (other(&b.actor()) && self.runs_selected(vat, b.provider()))
                    || (other(&b.provider()) && self.runs_selected(vat, b.actor()))
            })
        });
        found
    }

    /// A host writes the grant of a binding only for a provider instance
    /// it registered, of a version the binding selects, and only while the
    /// binding exists: a host cannot offer itself to an actor as a provider
    /// it does not run.
    fn check_grant(&self, vat: &str, key: &str) -> Result<(), Refusal> {
        let Ok(grant) = GrantKey::parse(key) else {
            return Ok(());
        };
        let bound = self.data.records.contains_key(&format!(
            "{BINDINGS}{}/{}/{}",
            grant.binding.actor, grant.binding.provider, grant.binding.link
        ));
        let provider = grant.binding.provider();
        let prefix = format!("{INSTANCES}{}@", provider.name);
        let runs_it = self.list(&prefix).any(|(key, _)| {
            InstanceKey::parse(key).is_ok_and(|i| {
                provider.selects(i.kind, i.version) && i.vat == vat && i.n == grant.n
            })
        });
        if bound && runs_it {
            Ok(())
        } else {
            Err(Refusal::NotPermitted)
        }
    }

    /// Whether the host `vat` has registered an instance of `kind`, at any
    /// version.
    pub fn runs(&self, vat: &str, kind: &str) -> bool {
        self.runs_selected(
            vat,
            Selector {
                name: kind,
                version: None,
            },
        )
    }

    /// Whether the host `vat` has registered an instance of a kind
    /// `selector` selects.
    pub fn runs_selected(&self, vat: &str, selector: Selector<'_>) -> bool {
        let prefix = format!("{INSTANCES}{}@", selector.name);
        let found = self.list(&prefix).any(|(key, _)| {
            InstanceKey::parse(key).is_ok_and(|instance| {
                selector.selects(instance.kind, instance.version) && instance.vat == vat
            })
        });
        found
    }

    /// How many records the machine holds.
    pub fn len(&self) -> usize {
        self.data.records.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.data.records.is_empty()
    }

    /// Changes after `index` under `prefix`, oldest first, or `None` if the
    /// history no longer reaches back to `index` (the caller then starts
    /// from the prefix's current state).
    pub fn changes_after(&self, index: u64, prefix: &str) -> Option<Vec<Change>> {
        let oldest = self
            .history
            .front()
            .map_or(self.data.applied + 1, |c| c.index);
        if index + 1 < oldest && index < self.data.applied {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|change| change.index > index && change.key.starts_with(prefix))
                .cloned()
                .collect(),
        )
    }

    /// Vats whose lease lapsed by `now_ms` and are not marked gone yet.
    pub fn lapsed(&self, now_ms: u64) -> usize {
        self.list(VATS)
            .filter(|(_, s)| matches!(&s.record, Record::Vat(v) if !v.gone && v.expires_at_ms <= now_ms))
            .count()
    }

    /// Marks `index` applied without a request (blank and membership
    /// entries).
    pub fn skip(&mut self, index: u64) {
        self.data.applied = self.data.applied.max(index);
    }

    /// Applies the request at log `index`.
    pub fn apply(&mut self, index: u64, request: &Request) -> Response {
        self.data.applied = self.data.applied.max(index);
        self.data.clock_ms = self.data.clock_ms.max(request.at_ms);
        self.forget_idle_sessions();
        let now = self.data.clock_ms;
        let session = self.data.sessions.entry(request.client).or_default();
        session.last_ms = now;
        if request.serial < session.floor {
            return Response::Refused(Refusal::Forgotten {
                serial: request.serial,
            });
        }
        if let Some(answer) = session.answers.get(&request.serial) {
            return answer.clone();
        }
        let answer = match self.execute(index, request) {
            Ok(()) => Response::Done { index },
            Err(refusal) => Response::Refused(refusal),
        };
        let session = self.data.sessions.entry(request.client).or_default();
        let keep_from = request.answered_below.max(session.floor);
        session.answers = session.answers.split_off(&keep_from);
        session.floor = keep_from;
        session.answers.insert(request.serial, answer.clone());
        while session.answers.len() > MAX_ANSWERS_PER_CLIENT {
            if let Some((&oldest, _)) = session.answers.iter().next() {
                session.answers.remove(&oldest);
                session.floor = oldest + 1;
            }
        }
        self.bound_sessions();
        answer
    }

    fn execute(&mut self, index: u64, request: &Request) -> Result<(), Refusal> {
        let kind = self.facet(&request.facet).ok_or(Refusal::NotPermitted)?;
        match &request.op {
            Op::Put { key, record } => {
                check_key(key).map_err(Refusal::Key)?;
                if !kind.may_write(key) {
                    return Err(Refusal::NotPermitted);
                }
                let size = record.encoded_len();
                if size > MAX_RECORD_BYTES {
                    return Err(Refusal::RecordTooLarge {
                        size,
                        limit: MAX_RECORD_BYTES,
                    });
                }
                check_kind(key, record)?;
                if let FacetKind::Host { vat } = &kind {
                    self.check_grant(vat, key)?;
                }
                let mut record = record.clone();
                if let Record::Vat(vat) = &mut record {
                    vat.expires_at_ms = self.data.clock_ms.saturating_add(vat.lease_ms);
                    vat.gone = false;
                }
                self.put(index, key, record, request.facet)
            }
            Op::Delete { key } => {
                check_key(key).map_err(Refusal::Key)?;
                if !kind.may_write(key) {
                    return Err(Refusal::NotPermitted);
                }
                self.remove(index, key);
                // A binding's grants go with it: they answer nothing else.
                if let Ok(binding) = BindingKey::parse(key) {
                    let prefix = format!(
                        "{GRANTS}{}/{}/{}/",
                        binding.actor, binding.provider, binding.link
                    );
                    let grants: Vec<String> = self.list(&prefix).map(|(k, _)| k.clone()).collect();
                    for grant in grants {
                        self.remove(index, &grant);
                    }
                }
                Ok(())
            }
            Op::Renew { vat } => {
                let key = format!("{VATS}{vat}");
                if !kind.may_write(&key) {
                    return Err(Refusal::NotPermitted);
                }
                let clock = self.data.clock_ms;
                let Some(stored) = self.data.records.get_mut(&key) else {
                    return Err(Refusal::NoSuchVat { vat: vat.clone() });
                };
                let Record::Vat(record) = &mut stored.record else {
                    return Err(Refusal::NoSuchVat { vat: vat.clone() });
                };
                let was_gone = record.gone;
                record.expires_at_ms = clock.saturating_add(record.lease_ms);
                record.gone = false;
                // A renewal is not a change a watcher needs, unless it
                // brings a gone vat back.
                if was_gone {
                    stored.index = index;
                    let record = stored.record.clone();
                    self.changed(index, &key, Some(record));
                }
                Ok(())
            }
            Op::Sweep => {
                let clock = self.data.clock_ms;
                let lapsed: Vec<String> = self
                    .list(VATS)
                    .filter(|(_, s)| matches!(&s.record, Record::Vat(v) if !v.gone && v.expires_at_ms <= clock))
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in lapsed {
                    if let Some(stored) = self.data.records.get_mut(&key) {
                        if let Record::Vat(vat) = &mut stored.record {
                            vat.gone = true;
                        }
                        stored.index = index;
                        let record = stored.record.clone();
                        self.changed(index, &key, Some(record));
                    }
                }
                Ok(())
            }
            Op::MintFacet { id, kind: granted } => {
                if kind != FacetKind::Admin {
                    return Err(Refusal::NotPermitted);
                }
                self.data.facets.entry(*id).or_insert(FacetRecord {
                    kind: granted.clone(),
                    revoked: false,
                    records: 0,
                });
                Ok(())
            }
            Op::RevokeFacet { id } => {
                if kind != FacetKind::Admin || *id == self.admin {
                    return Err(Refusal::NotPermitted);
                }
                if let Some(facet) = self.data.facets.get_mut(id) {
                    facet.revoked = true;
                }
                Ok(())
            }
        }
    }

    fn remove(&mut self, index: u64, key: &str) {
        if let Some(old) = self.data.records.remove(key) {
            self.charge(&old.writer, -1);
            self.changed(index, key, None);
        }
    }

    fn put(
        &mut self,
        index: u64,
        key: &str,
        record: Record,
        writer: FacetId,
    ) -> Result<(), Refusal> {
        let previous = self.data.records.get(key).map(|s| s.writer);
        if previous != Some(writer) {
            let held = self.data.facets.get(&writer).map_or(0, |f| f.records);
            if writer != self.admin && held >= MAX_RECORDS_PER_FACET {
                return Err(Refusal::TooManyRecords {
                    limit: MAX_RECORDS_PER_FACET,
                });
            }
            if let Some(previous) = previous {
                self.charge(&previous, -1);
            }
            self.charge(&writer, 1);
        }
        self.data.records.insert(
            key.to_owned(),
            Stored {
                record: record.clone(),
                index,
                writer,
            },
        );
        self.changed(index, key, Some(record));
        Ok(())
    }

    fn charge(&mut self, facet: &FacetId, delta: isize) {
        if let Some(facet) = self.data.facets.get_mut(facet) {
            facet.records = facet.records.saturating_add_signed(delta);
        }
    }

    fn changed(&mut self, index: u64, key: &str, record: Option<Record>) {
        self.history.push_back(Change {
            index,
            key: key.to_owned(),
            record,
        });
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    fn forget_idle_sessions(&mut self) {
        let now = self.data.clock_ms;
        self.data
            .sessions
            .retain(|_, session| now.saturating_sub(session.last_ms) < SESSION_IDLE_MS);
    }

    fn bound_sessions(&mut self) {
        while self.data.sessions.len() > MAX_SESSIONS {
            let idlest = self
                .data
                .sessions
                .iter()
                .min_by_key(|(id, s)| (s.last_ms, **id))
                .map(|(id, _)| *id);
            match idlest {
                Some(id) => self.data.sessions.remove(&id),
                None => break,
            };
        }
    }

    /// The replicated state, for a snapshot.
    pub fn snapshot(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(&self.data)
    }

    /// Replaces the state with a snapshot's. The history restarts empty:
    /// watches resuming from before it get the prefix's state.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), postcard::Error> {
        self.data = postcard::from_bytes(snapshot)?;
        self.history.clear();
        Ok(())
    }

    /// Every record with its key, for comparing members' states.
    pub fn records(&self) -> &BTreeMap<String, Stored> {
        &self.data.records
    }
}

/// Each kind of record lives under its own prefix (`vats/`, `names/`,
/// `instances/`, `bindings/`); instances' and bindings' keys have a fixed
/// shape.
fn check_kind(key: &str, record: &Record) -> Result<(), Refusal> {
    let (home, kind) = match record {
        Record::Vat(_) => (VATS, "vat"),
        Record::Name(_) => (NAMES, "name"),
        Record::Instance(_) => (INSTANCES, "instance"),
        Record::Binding(_) => (BINDINGS, "binding"),
        Record::Grant(_) => (GRANTS, "grant"),
        Record::Host(_) => (HOSTS, "host"),
        Record::Route(_) => (ROUTES, "route"),
    };
    if !key.starts_with(home) {
        return Err(Refusal::WrongKind {
            key: key.to_owned(),
            kind: kind.to_owned(),
        });
    }
    match record {
        Record::Instance(_) => InstanceKey::parse(key).map(drop),
        Record::Binding(_) => BindingKey::parse(key).map(drop),
        Record::Grant(_) => GrantKey::parse(key).map(drop),
        Record::Host(_) if key[HOSTS.len()..].contains('/') => {
            Err(crate::record::KeyError::Shape {
                expected: "hosts/<vat-id>".to_owned(),
            })
        }
        Record::Route(_) if !crate::record::is_kind_name(&key[ROUTES.len()..]) => {
            Err(crate::record::KeyError::Shape {
                expected: "routes/<kind>".to_owned(),
            })
        }
        Record::Host(_) | Record::Vat(_) | Record::Name(_) | Record::Route(_) => Ok(()),
    }
    .map_err(Refusal::Key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests

    use super::*;
    use crate::record::NameRecord;

    const ADMIN: FacetId = [1; 32];

    fn put(serial: u64, key: &str) -> Request {
        Request {
            facet: ADMIN,
            client: [7; 16],
            serial,
            answered_below: 0,
            at_ms: 1000,
            op: Op::Put {
                key: key.to_owned(),
                record: Record::Name(NameRecord {
                    refs: vec!["x".into()],
                }),
            },
        }
    }

    #[test]
    fn a_retried_request_is_applied_once() {
        let mut m = Machine::new(ADMIN);
        assert_eq!(m.apply(1, &put(1, "names/a")), Response::Done { index: 1 });
        // The same request again (a retry after a leader change) answers
        // the first answer and changes nothing.
        assert_eq!(m.apply(2, &put(1, "names/a")), Response::Done { index: 1 });
        assert_eq!(m.get("names/a").unwrap().index, 1);
        assert_eq!(m.changes_after(0, "").unwrap().len(), 1);
    }

    #[test]
    fn a_facet_writes_only_what_it_may() {
        let mut m = Machine::new(ADMIN);
        let reader = [2; 32];
        let mut mint = put(1, "x");
        mint.op = Op::MintFacet {
            id: reader,
            kind: FacetKind::Reader {
                prefix: "names/".into(),
            },
        };
        assert_eq!(m.apply(1, &mint), Response::Done { index: 1 });
        let mut write = put(1, "names/a");
        write.facet = reader;
        write.client = [8; 16];
        assert_eq!(m.apply(2, &write), Response::Refused(Refusal::NotPermitted));
        assert!(m.get("names/a").is_none());
        let mut unknown = put(1, "names/a");
        unknown.facet = [9; 32];
        unknown.client = [9; 16];
        assert_eq!(
            m.apply(3, &unknown),
            Response::Refused(Refusal::NotPermitted)
        );
    }

    fn as_host(facet: FacetId, serial: u64, op: Op) -> Request {
        Request {
            facet,
            client: [facet[0]; 16],
            serial,
            answered_below: 0,
            at_ms: 1000,
            op,
        }
    }

    fn instance(key: &str) -> Op {
        Op::Put {
            key: key.to_owned(),
            record: Record::Instance(crate::record::InstanceRecord {
                refs: vec!["captp://x".into()],
            }),
        }
    }

    fn binding(key: &str) -> Op {
        Op::Put {
            key: key.to_owned(),
            record: Record::Binding(crate::record::BindingRecord {
                config: [("port".to_owned(), "8080".to_owned())].into(),
            }),
        }
    }

    #[test]
    fn a_host_registers_its_own_instances_and_sees_only_its_kinds_bindings() {
        let mut m = Machine::new(ADMIN);
        let host = [3; 32];
        let kind = FacetKind::Host { vat: "v1".into() };
        let mint = Op::MintFacet {
            id: host,
            kind: kind.clone(),
        };
        assert_eq!(
            m.apply(1, &as_host(ADMIN, 1, mint)),
            Response::Done { index: 1 }
        );
        for (n, key) in ["bindings/shop/http/default", "bindings/cart/kv/default"]
            .into_iter()
            .enumerate()
        {
            let n = n as u64 + 2;
            assert_eq!(
                m.apply(n, &as_host(ADMIN, n, binding(key))),
                Response::Done { index: n }
            );
        }
        // Running nothing, the host sees no binding.
        assert!(!m.visible(&kind, "bindings/shop/http/default"));
        assert!(!m.visible(&kind, "bindings/cart/kv/default"));
        // Its own instance it may register; another host's it may not.
        assert_eq!(
            m.apply(4, &as_host(host, 1, instance("instances/http@1.0.0/v1/0"))),
            Response::Done { index: 4 }
        );
        assert_eq!(
            m.apply(5, &as_host(host, 2, instance("instances/http@1.0.0/v2/0"))),
            Response::Refused(Refusal::NotPermitted)
        );
        assert!(m.runs("v1", "http"));
        assert!(!m.runs("v1", "htt"), "a kind's name is matched whole");
        // Now it sees the bindings of http, and only those.
        assert!(m.visible(&kind, "bindings/shop/http/default"));
        assert!(!m.visible(&kind, "bindings/cart/kv/default"));
        assert!(m.visible(&kind, "instances/http@1.0.0/v1/0"));
        assert!(
            !m.visible(&kind, "instances/http@1.0.0/v2/0"),
            "another host's instance tokens are not its to see"
        );
        assert!(!m.visible(&kind, "names/anything"));
        // Its instance gone, so is its view of the binding.
        let delete = Op::Delete {
            key: "instances/http@1.0.0/v1/0".into(),
        };
        assert_eq!(
            m.apply(6, &as_host(host, 3, delete)),
            Response::Done { index: 6 }
        );
        assert!(!m.visible(&kind, "bindings/shop/http/default"));
    }

    fn grant(key: &str) -> Op {
        Op::Put {
            key: key.to_owned(),
            record: Record::Grant(crate::record::GrantRecord {
                config_digest: "d".into(),
                outcome: crate::record::GrantOutcome::Granted("captp://g".into()),
            }),
        }
    }

    /// Mints each host facet of `kinds` through the admin facet.
    fn mint_hosts(
        apply: &mut impl FnMut(&mut Machine, FacetId, Op) -> Response,
        m: &mut Machine,
        kinds: &[(FacetKind, FacetId)],
    ) {
        for (kind, id) in kinds {
            let mint = Op::MintFacet {
                id: *id,
                kind: kind.clone(),
            };
            assert!(matches!(apply(m, ADMIN, mint), Response::Done { .. }));
        }
    }

    #[test]
    fn grants_come_from_the_providers_hosts_and_reach_the_actors_hosts_only() {
        let mut m = Machine::new(ADMIN);
        let (provider_host, actor_host, other_host) = ([3; 32], [4; 32], [5; 32]);
        let kinds = [("p", provider_host), ("a", actor_host), ("o", other_host)]
            .map(|(vat, id)| (FacetKind::Host { vat: vat.into() }, id));
        let mut n = 0;
        let mut apply = |m: &mut Machine, facet: FacetId, op: Op| {
            n += 1;
            m.apply(n, &as_host(facet, n, op))
        };
        mint_hosts(&mut apply, &mut m, &kinds);
        let key = "grants/shop/http/default/p/0";
        // No binding yet, no instance yet: refused.
        assert_eq!(
            apply(&mut m, provider_host, grant(key)),
            Response::Refused(Refusal::NotPermitted)
        );
        apply(&mut m, ADMIN, binding("bindings/shop/http/default"));
        assert_eq!(
            apply(&mut m, provider_host, grant(key)),
            Response::Refused(Refusal::NotPermitted),
            "a host that runs no such provider instance cannot grant"
        );
        apply(&mut m, provider_host, instance("instances/http@1/p/0"));
        apply(&mut m, actor_host, instance("instances/shop@1/a/0"));
        assert!(matches!(
            apply(&mut m, provider_host, grant(key)),
            Response::Done { .. }
        ));
        // Another host cannot write a grant in the provider host's name.
        assert_eq!(
            apply(&mut m, other_host, grant(key)),
            Response::Refused(Refusal::NotPermitted)
        );
        let [(provider, _), (actor, _), (other, _)] = &kinds;
        assert!(m.visible(provider, key) && m.visible(actor, key));
        assert!(!m.visible(other, key));
        // The provider's host sees the bound actor's instances, and the
        // actor's host the provider's (records without tokens, telling the
        // grants' versions); no one else sees either.
        assert!(m.visible(provider, "instances/shop@1/a/0"));
        assert!(m.visible(actor, "instances/http@1/p/0"));
        assert!(!m.visible(other, "instances/shop@1/a/0"));
        assert!(!m.visible(other, "instances/http@1/p/0"));
        // Removing the binding removes its grants.
        let delete = Op::Delete {
            key: "bindings/shop/http/default".into(),
        };
        assert!(matches!(
            apply(&mut m, ADMIN, delete),
            Response::Done { .. }
        ));
        assert!(m.get(key).is_none());
        assert!(!m.visible(provider, "instances/shop@1/a/0"));
    }

    fn route(key: &str) -> Op {
        Op::Put {
            key: key.to_owned(),
            record: Record::Route(crate::record::RouteRecord {
                rules: Vec::new(),
                pick: crate::record::RoutePick::Live {
                    version: "1".into(),
                    previous: None,
                },
            }),
        }
    }

    #[test]
    fn a_binding_of_one_version_reaches_that_versions_hosts_and_routes_reach_the_kinds() {
        let mut m = Machine::new(ADMIN);
        let (provider_host, blue_host, green_host, other_host) =
            ([3; 32], [4; 32], [5; 32], [6; 32]);
        let kinds = [
            ("p", provider_host),
            ("b", blue_host),
            ("g", green_host),
            ("o", other_host),
        ]
        .map(|(vat, id)| (FacetKind::Host { vat: vat.into() }, id));
        let mut n = 0;
        let mut apply = |m: &mut Machine, facet: FacetId, op: Op| {
            n += 1;
            m.apply(n, &as_host(facet, n, op))
        };
        mint_hosts(&mut apply, &mut m, &kinds);
        apply(&mut m, provider_host, instance("instances/http@1/p/0"));
        apply(&mut m, blue_host, instance("instances/shop@1.0.0/b/0"));
        apply(&mut m, green_host, instance("instances/shop@1.1.0/g/0"));
        let green = "bindings/shop@1.1.0/http/testers";
        apply(&mut m, ADMIN, binding(green));
        let [(provider, _), (blue, _), (green_view, _), (other, _)] = &kinds;
        assert!(m.visible(provider, green) && m.visible(green_view, green));
        assert!(!m.visible(blue, green), "blue runs no version it binds");
        assert!(m.visible(provider, "instances/shop@1.1.0/g/0"));
        assert!(!m.visible(provider, "instances/shop@1.0.0/b/0"));
        // A grant of it comes only from a provider instance it selects.
        let key = "grants/shop@1.1.0/http/testers/p/0";
        assert!(matches!(
            apply(&mut m, provider_host, grant(key)),
            Response::Done { .. }
        ));
        assert!(m.visible(green_view, key) && !m.visible(blue, key));
        let pinned = "bindings/shop/http@2/default";
        apply(&mut m, ADMIN, binding(pinned));
        assert_eq!(
            apply(
                &mut m,
                provider_host,
                grant("grants/shop/http@2/default/p/0")
            ),
            Response::Refused(Refusal::NotPermitted),
            "http@1 does not provide a binding of http@2"
        );
        // Routes: written by the operator only, seen by the kind's hosts
        // and the hosts bound to it.
        assert_eq!(
            apply(&mut m, blue_host, route("routes/shop")),
            Response::Refused(Refusal::NotPermitted)
        );
        assert!(matches!(
            apply(&mut m, ADMIN, route("routes/shop")),
            Response::Done { .. }
        ));
        assert!(matches!(
            apply(&mut m, ADMIN, route("routes/shop@1")),
            Response::Refused(Refusal::Key(_))
        ));
        for view in [provider, blue, green_view] {
            assert!(m.visible(view, "routes/shop"), "{view:?}");
        }
        assert!(!m.visible(other, "routes/shop"));
        assert!(m.visible(provider, "routes/http") && m.visible(blue, "routes/http"));
        assert!(!m.visible(other, "routes/http"));
    }

    #[test]
    fn a_host_writes_its_own_capability_record_and_only_the_admin_reads_it() {
        let mut m = Machine::new(ADMIN);
        let host = [3; 32];
        let kind = FacetKind::Host { vat: "v1".into() };
        let mint = Op::MintFacet {
            id: host,
            kind: kind.clone(),
        };
        assert!(matches!(
            m.apply(1, &as_host(ADMIN, 1, mint)),
            Response::Done { .. }
        ));
        let record = |key: &str| Op::Put {
            key: key.to_owned(),
            record: Record::Host(crate::record::HostRecord {
                token: "captp://h".into(),
            }),
        };
        assert!(matches!(
            m.apply(2, &as_host(host, 1, record("hosts/v1"))),
            Response::Done { .. }
        ));
        assert_eq!(
            m.apply(3, &as_host(host, 2, record("hosts/v2"))),
            Response::Refused(Refusal::NotPermitted)
        );
        assert!(matches!(
            m.apply(4, &as_host(ADMIN, 4, record("hosts/v1/x"))),
            Response::Refused(Refusal::Key(_))
        ));
        assert!(
            !kind.may_read("hosts/v1"),
            "a host reads no host's capability"
        );
        assert!(FacetKind::Admin.may_read("hosts/v1"));
    }

    #[test]
    fn lattice_records_keep_to_their_prefixes_and_shapes() {
        let mut m = Machine::new(ADMIN);
        let refused = |m: &mut Machine, n: u64, op: Op| match m.apply(n, &as_host(ADMIN, n, op)) {
            Response::Refused(refusal) => refusal,
            done => panic!("applied: {done:?}"),
        };
        assert!(matches!(
            refused(&mut m, 1, instance("names/shop")),
            Refusal::WrongKind { .. }
        ));
        assert!(matches!(
            refused(&mut m, 2, binding("instances/shop@1/v/0")),
            Refusal::WrongKind { .. }
        ));
        assert!(matches!(
            refused(&mut m, 3, instance("instances/shop/v/0")),
            Refusal::Key(crate::record::KeyError::Shape { .. })
        ));
        assert!(matches!(
            refused(&mut m, 4, binding("bindings/shop/http")),
            Refusal::Key(crate::record::KeyError::Shape { .. })
        ));
        assert!(m.is_empty());
    }

    #[test]
    fn snapshots_restore_the_same_state() {
        let mut m = Machine::new(ADMIN);
        m.apply(1, &put(1, "names/a"));
        m.apply(2, &put(2, "names/b"));
        let bytes = m.snapshot().unwrap();
        let mut n = Machine::new(ADMIN);
        n.restore(&bytes).unwrap();
        assert_eq!(n.records(), m.records());
        assert_eq!(n.apply(3, &put(2, "names/b")), Response::Done { index: 2 });
        // History is gone after a restore: a watch from 0 must start over.
        assert!(n.changes_after(0, "").is_none());
    }
}
