//! The log's entries (a facet's request) and what applying one answers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::{KeyError, Record};

/// A facet's identity: the SHA-256 of its swiss number (the number itself is
/// only ever in the holder's token).
pub type FacetId = [u8; 32];

/// Who a write comes from, for at-most-once: a random id per client.
pub type ClientId = [u8; 16];

/// What a facet lets its holder do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FacetKind {
    /// Everything: any key, facets, membership. The operator's.
    Admin,
    /// One host's records: write `vats/<vat>` and its own instances
    /// (`instances/<kind>@<version>/<vat>/<n>`), renew its lease; read and
    /// watch `vats/`, its own instances, the bindings of the kinds it runs
    /// an instance of, and the instances and routes of the kinds bound to
    /// those, and no others (see `Machine::visible`).
    Host {
        /// The vat id (text form).
        vat: String,
    },
    /// Read and watch keys under a prefix.
    Reader {
        /// The prefix.
        prefix: String,
    },
    /// Read, watch, write and delete keys under a prefix.
    Writer {
        /// The prefix.
        prefix: String,
    },
}

impl FacetKind {
    /// Whether the holder may read (and watch) `key` (or a prefix). A host
    /// passes for all of `instances/`, `bindings/`, `grants/` and `routes/`; which of
    /// those it is shown depends on the instances it runs, which
    /// `Machine::visible` checks per key.
    pub fn may_read(&self, key: &str) -> bool {
        use crate::record::{BINDINGS, GRANTS, INSTANCES, ROUTES, VATS};
        match self {
            FacetKind::Admin => true,
            FacetKind::Host { .. } => {
                // A prefix shorter than one of these (`""`, `inst`) would
                // ask for more than a host may see.
                [VATS, INSTANCES, BINDINGS, GRANTS, ROUTES]
                    .iter()
                    .any(|prefix| key.starts_with(prefix))
            }
            FacetKind::Reader { prefix } | FacetKind::Writer { prefix } => {
                key.starts_with(prefix.as_str())
            }
        }
    }

    /// Whether the holder may put or delete `key`.
    pub fn may_write(&self, key: &str) -> bool {
        match self {
            FacetKind::Admin => true,
            FacetKind::Host { vat } => {
                key.strip_prefix(crate::record::VATS) == Some(vat.as_str())
                    || key.strip_prefix(crate::record::HOSTS) == Some(vat.as_str())
                    || crate::record::InstanceKey::parse(key).is_ok_and(|k| k.vat == vat)
                    || crate::record::GrantKey::parse(key).is_ok_and(|k| k.vat == vat)
            }
            FacetKind::Reader { .. } => false,
            FacetKind::Writer { prefix } => key.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for FacetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FacetKind::Admin => f.write_str("admin"),
            FacetKind::Host { vat } => write!(f, "host of {vat}"),
            FacetKind::Reader { prefix } => write!(f, "reader of {prefix:?}"),
            FacetKind::Writer { prefix } => write!(f, "writer of {prefix:?}"),
        }
    }
}

/// One entry of the log: a request made through a facet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The facet it was made through; checked again when applied, so a
    /// facet revoked before the entry commits writes nothing.
    pub facet: FacetId,
    /// The client and its serial number: a request applied once answers
    /// every retry of it from the session table.
    pub client: ClientId,
    /// This request's serial, from 1, increasing per client.
    pub serial: u64,
    /// Every serial below this one has been answered to the client, so the
    /// directory may forget their answers.
    pub answered_below: u64,
    /// The proposing member's wall clock, in milliseconds since 1970: the
    /// state machine's only clock (never going back: see `Machine`).
    pub at_ms: u64,
    /// What to do.
    pub op: Op,
}

/// What a request does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Writes `record` under `key`, replacing what was there.
    Put {
        /// The key.
        key: String,
        /// The record.
        record: Record,
    },
    /// Deletes `key` (absent: a no-op that still answers).
    Delete {
        /// The key.
        key: String,
    },
    /// Renews a vat's lease (`vats/<vat>` must exist).
    Renew {
        /// The vat id.
        vat: String,
    },
    /// Marks every vat whose lease lapsed by `at_ms` as gone. Proposed by
    /// the leader.
    Sweep,
    /// Makes a new facet (admin only).
    MintFacet {
        /// Its id (the hash of the swiss number the proposer drew).
        id: FacetId,
        /// What it grants.
        kind: FacetKind,
    },
    /// Revokes a facet (admin only; the cluster's first admin facet cannot
    /// be revoked).
    RevokeFacet {
        /// Its id.
        id: FacetId,
    },
}

impl Op {
    /// The key a write names, for permission checks.
    pub fn key(&self) -> Option<&str> {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => Some(key),
            _ => None,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match &self.op {
            Op::Put { key, .. } => format!("put {key:?}"),
            Op::Delete { key } => format!("delete {key:?}"),
            Op::Renew { vat } => format!("renew {vat}"),
            Op::Sweep => "sweep".to_owned(),
            Op::MintFacet { kind, .. } => format!("mint facet ({kind})"),
            Op::RevokeFacet { .. } => "revoke facet".to_owned(),
        };
        write!(f, "{op} (serial {})", self.serial)
    }
}

/// What applying a request answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied (or answered before, for a retry) at log index `index`.
    Done {
        /// The log index of the entry that applied it.
        index: u64,
    },
    /// Refused: nothing was applied.
    Refused(Refusal),
}

/// Why the state machine refused a request. Nothing was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    /// The facet does not exist (any more) or does not allow this.
    #[error("this facet does not allow that")]
    NotPermitted,
    /// The key is malformed or too long.
    #[error("bad key: {0}")]
    Key(KeyError),
    /// The record is larger than the bound.
    #[error("the record is {size} bytes encoded; at most {limit} are allowed")]
    RecordTooLarge {
        /// Its size.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// The record's kind does not belong under that prefix.
    #[error("a {kind} record does not belong under {key:?}")]
    WrongKind {
        /// The key.
        key: String,
        /// The record's kind.
        kind: String,
    },
    /// The facet has written as many records as it may.
    #[error("this facet holds {limit} records, the most it may")]
    TooManyRecords {
        /// The bound.
        limit: usize,
    },
    /// The vat named has no record to renew.
    #[error("no vat {vat} is registered")]
    NoSuchVat {
        /// The vat id.
        vat: String,
    },
    /// A retry older than what the directory remembers of its client:
    /// it was answered already and applied at most once.
    #[error("serial {serial} was answered already (its answer is forgotten)")]
    Forgotten {
        /// The serial.
        serial: u64,
    },
}

/// Facets as kept in the state machine.
pub type Facets = BTreeMap<FacetId, FacetRecord>;

/// A facet's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetRecord {
    /// What it grants.
    pub kind: FacetKind,
    /// Revoked: every call through it is refused.
    pub revoked: bool,
    /// How many records it wrote and has not deleted.
    pub records: usize,
}

/// A membership change an admin asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add this vat as a voter (a learner first, until it caught up).
    Add(crate::types::Member),
    /// Remove this vat (its id) from the voters.
    Remove(String),
}
