//! The directory's Raft types: what openraft replicates (requests), what it
//! answers (responses), and how members are named.

use std::fmt;

use serde::{Deserialize, Serialize};
use sturdyrefs::VatId;

use crate::command::{Request, Response};
use crate::runtime::VatRuntime;

openraft::declare_raft_types!(
    /// The directory's openraft type configuration.
    pub Config:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = Member,
        AsyncRuntime = VatRuntime,
);

/// A member as the membership names it: its vat id (the key it must prove)
/// and where to dial it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The vat id, text form.
    pub vat: String,
    /// Location hints (`host:port`).
    pub hints: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.vat, self.hints.join(","))
    }
}

/// A member's Raft node id: the first 8 bytes of its vat key, so every
/// member computes the same id for the same vat.
pub fn node_id(vat: &VatId) -> u64 {
    let bytes = vat.to_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(id)
}

/// What a snapshot carries: the state machine's encoding
/// ([`Machine::snapshot`](crate::machine::Machine::snapshot)).
pub type SnapshotData = Vec<u8>;
