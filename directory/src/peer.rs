//! The serving side of `RaftPeer`: what one member answers another's Raft
//! messages and forwarded requests with, and the wire encoding both sides
//! share.
//!
//! A member restores another's `RaftPeer` with the cluster's peers swiss
//! number, proving its own key; the restorer ([`PeerService::restorer`])
//! builds one [`RaftPeerServer`] per proven caller. Every call first checks
//! that the caller is in the Raft membership at that moment (a voter or a
//! learner, by node id *and* full vat id): anyone else is refused with
//! `UnknownToken`, the same answer as a token that does not exist, and
//! learns nothing more. A member that has no membership yet (it was never
//! initialized and has not received its first entries) admits the vats it
//! was told to expect ([`PeerService::expect`]) instead.
//!
//! Payloads are postcard: openraft's own messages (openraft
//! =0.10.0-alpha.37, the same build on every member), except `vote`, whose
//! request is a [`VoteCall`] so that a pre-vote, which must not change the
//! receiver's vote, travels the same method.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use captp::log::{Untrusted, Verdict, WarnLimiter, DEFAULT_WARN_BURST, DEFAULT_WARN_INTERVAL};
use captp::Limits;
use futures::future::LocalBoxFuture;
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::vote::RaftLeaderId;
use openraft::RaftTypeConfig;
use schema::directory_capnp::raft_peer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sturdyrefs::{SwissHash, SwissNumber, VatId};
use vat::sturdy::Restorer;
use vat::{Error, ErrorKind};

use crate::command::{MembershipChange, Request, Response};
use crate::types::{node_id, Config, SnapshotData};

/// The kind a `RaftPeer` restored from a member is reported as.
pub const PEER_KIND: &str = "directory-raft-peer";

/// What a member's own request, forwarded to the leader, can fail with
/// short of the state machine's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The member asked is not the leader; `leader` is the one it knows of.
    #[error("not the leader (the leader is {leader:?})")]
    NotLeader {
        /// The leader's node id, if one is known.
        leader: Option<u64>,
    },
    /// The leader cannot reach a quorum.
    #[error("no quorum: {reached} of {members} voters reached")]
    NoQuorum {
        /// Voters reached, the leader itself included.
        reached: u32,
        /// Voters in the membership.
        members: u32,
    },
    /// The request could not be run, for the reason given (text from the
    /// member that answered: escape it before logging).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The leader refused a membership change (text from the member that
    /// answered: escape it before logging).
    #[error("refused: {0}")]
    Refused(String),
}

/// What a member does with a request another member forwards to it.
pub type Forwarder = Rc<dyn Fn(Request) -> LocalBoxFuture<'static, Result<Response, ForwardError>>>;

/// What a member does with the calls of other members beyond Raft's own.
#[derive(Clone)]
pub struct Handlers {
    /// A follower's client request, for the leader to run.
    pub forward: Forwarder,
    /// A follower's linearizable read: the index it must wait for.
    pub read_index: Rc<dyn Fn() -> LocalBoxFuture<'static, Result<u64, ForwardError>>>,
    /// An admin's membership change, for the leader to run.
    pub change_membership:
        Rc<dyn Fn(MembershipChange) -> LocalBoxFuture<'static, Result<u64, ForwardError>>>,
    /// Called when a leader's entries (or heartbeat) arrive: how stale a
    /// follower's `any` read may be.
    pub leader_contact: Rc<dyn Fn()>,
}

impl Handlers {
    /// Handlers that forward requests to `forward` and refuse reads and
    /// membership changes as unavailable (a member that only relays).
    pub fn forwarding(forward: Forwarder) -> Handlers {
        Handlers {
            forward,
            read_index: Rc::new(|| {
                Box::pin(async { Err(ForwardError::Unavailable("no reads here".to_owned())) })
            }),
            change_membership: Rc::new(|_| {
                Box::pin(async {
                    Err(ForwardError::Unavailable(
                        "no membership changes here".to_owned(),
                    ))
                })
            }),
            leader_contact: Rc::new(|| {}),
        }
    }
}

/// A `vote` call's request: a vote proper, or a pre-vote (answered without
/// changing the receiver's vote).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct VoteCall<C: RaftTypeConfig> {
    /// Whether this is a pre-vote.
    pub pre_vote: bool,
    /// openraft's request.
    pub request: openraft::raft::VoteRequest<C>,
}

/// Why a payload between members could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The bytes do not decode as what they should be.
    #[error("the {what} does not decode: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's reason.
        reason: postcard::Error,
    },
    /// A value could not be encoded.
    #[error("the {what} does not encode: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's reason.
        reason: postcard::Error,
    },
    /// A payload larger than the bound.
    #[error("the {what} is {size} bytes; at most {limit} are allowed")]
    TooLarge {
        /// What it is.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// A snapshot whose metadata no protocol-following leader sends.
    #[error("the snapshot is inconsistent: {reason}")]
    BadSnapshot {
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl From<WireError> for capnp::Error {
    fn from(error: WireError) -> capnp::Error {
        Error::new(ErrorKind::InvalidArgument, error.to_string()).into()
    }
}

/// Room left in a message for everything around a payload (the call's
/// header, its other fields).
const MESSAGE_HEADROOM: usize = 64 * 1024;

/// The largest payload (all of one call's `Data` fields together) a member
/// sends or accepts under `limits`: a message larger than
/// `max_message_bytes` would end the connection itself, every other call on
/// it included, so the sender refuses it first.
pub fn max_payload(limits: &Limits) -> usize {
    limits.max_message_bytes.saturating_sub(MESSAGE_HEADROOM)
}

/// Checks a payload's size against `limit`.
pub(crate) fn bounded(what: &'static str, size: usize, limit: usize) -> Result<(), WireError> {
    if size > limit {
        return Err(WireError::TooLarge { what, size, limit });
    }
    Ok(())
}

pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, WireError> {
    postcard::to_allocvec(value).map_err(|reason| WireError::Encode { what, reason })
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, WireError> {
    postcard::from_bytes(bytes).map_err(|reason| WireError::Decode { what, reason })
}

/// Refuses a snapshot that `install_full_snapshot` would panic on (it
/// asserts, in release builds too, what a protocol-following leader always
/// satisfies), or whose membership is not covered by it. `committed` is the
/// receiver's committed log id.
pub(crate) fn check_snapshot(
    vote: &VoteOf<Config>,
    meta: &SnapshotMetaOf<Config>,
    committed: Option<&LogIdOf<Config>>,
) -> Result<(), WireError> {
    let Some(last) = &meta.last_log_id else {
        // openraft ignores a snapshot of nothing; so may we.
        return if meta.last_membership.log_id().is_some() {
            Err(WireError::BadSnapshot {
                reason: "an empty snapshot names a membership entry",
            })
        } else {
            Ok(())
        };
    };
    if last.committed_leader_id() > &vote.leader_id().to_committed() {
        return Err(WireError::BadSnapshot {
            reason: "its last log id is beyond the sender's vote",
        });
    }
    if let Some(committed) = committed {
        if Some(last) > Some(committed) && last.index() <= committed.index() {
            return Err(WireError::BadSnapshot {
                reason: "it contradicts entries committed here",
            });
        }
    }
    if meta.last_membership.log_id().as_ref() > Some(last) {
        return Err(WireError::BadSnapshot {
            reason: "its membership entry is beyond its last log id",
        });
    }
    Ok(())
}

/// What every member's `RaftPeer` servers share: the Raft node, what to do
/// with forwarded requests, the payload bound, and the warnings about
/// refused callers.
pub struct PeerService<SM>
where
    SM: openraft::storage::RaftStateMachine<Config, SnapshotData = SnapshotData>,
{
    inner: Rc<Shared<SM>>,
}

impl<SM> Clone for PeerService<SM>
where
    SM: openraft::storage::RaftStateMachine<Config, SnapshotData = SnapshotData>,
{
    fn clone(&self) -> Self {
        PeerService {
            inner: Rc::clone(&self.inner),
        }
    }
}

struct Shared<SM>
where
    SM: openraft::storage::RaftStateMachine<Config, SnapshotData = SnapshotData>,
{
    raft: openraft::Raft<Config, SM>,
    handlers: Handlers,
    max_payload: usize,
    /// Vats admitted while this member has no membership at all.
    expected: RefCell<BTreeSet<VatId>>,
    refusals: RefCell<WarnLimiter>,
}

impl<SM> PeerService<SM>
where
    SM: openraft::storage::RaftStateMachine<Config, SnapshotData = SnapshotData>,
{
    /// The service of `raft`, handing what is not Raft's to `handlers`,
    /// with payloads bounded by [`max_payload`] of `limits`.
    pub fn new(raft: openraft::Raft<Config, SM>, handlers: Handlers, limits: &Limits) -> Self {
        PeerService {
            inner: Rc::new(Shared {
                raft,
                handlers,
                max_payload: max_payload(limits),
                expected: RefCell::new(BTreeSet::new()),
                refusals: RefCell::new(WarnLimiter::new(DEFAULT_WARN_BURST, DEFAULT_WARN_INTERVAL)),
            }),
        }
    }

    /// Admits `vats` while this member's membership is empty (before its
    /// first membership entry arrives, e.g. when it joins a cluster another
    /// member initialized). Once a membership is known only it counts.
    pub fn expect(&self, vats: impl IntoIterator<Item = VatId>) {
        self.inner.expected.borrow_mut().extend(vats);
    }

    /// The server for a caller that proved `caller`.
    pub fn server(&self, caller: VatId) -> RaftPeerServer<SM> {
        RaftPeerServer {
            service: self.clone(),
            caller,
        }
    }

    /// A restorer for [`Persistence::set_restorer`](vat::sturdy::Persistence::set_restorer):
    /// the swiss number `peers` restores a [`RaftPeerServer`] for the
    /// caller that proved its key; an anonymous caller, or another number,
    /// is not answered here.
    pub fn restorer(&self, peers: &SwissNumber) -> Restorer
    where
        SM: 'static,
    {
        let service = self.clone();
        let peers: SwissHash = peers.hash();
        Rc::new(move |presented, caller| {
            if *presented != peers {
                return None;
            }
            let caller = caller?;
            let client: raft_peer::Client = vat::export(service.server(*caller));
            Some((client.client, PEER_KIND.to_owned()))
        })
    }
}

/// One member's `RaftPeer` as one caller (a proven vat) reaches it.
pub struct RaftPeerServer<SM>
where
    SM: openraft::storage::RaftStateMachine<Config, SnapshotData = SnapshotData>,
{
    service: PeerService<SM>,
    caller: VatId,
}

impl<SM> RaftPeerServer<SM>
where
    SM: openraft::storage::RaftStateMachine<Config, SnapshotData = SnapshotData>,
{
    fn raft(&self) -> &openraft::Raft<Config, SM> {
        &self.service.inner.raft
    }

    /// Whether the caller is a member right now: named by the membership
    /// (voter or learner) under its node id with its full vat id, or, while
    /// this member has no membership, expected.
    fn is_member(&self) -> bool {
        let metrics = self.raft().metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        if membership.nodes().next().is_none() {
            return self.service.inner.expected.borrow().contains(&self.caller);
        }
        membership
            .get_node(&node_id(&self.caller))
            .is_some_and(|member| VatId::parse(&member.vat).is_ok_and(|vat| vat == self.caller))
    }

    /// Refuses a caller that is not a member, as a token that does not
    /// exist is refused.
    fn admit(&self, method: &'static str) -> Result<(), capnp::Error> {
        if self.is_member() {
            return Ok(());
        }
        let verdict = self
            .service
            .inner
            .refusals
            .borrow_mut()
            .note(vat_env::now(), || format!("from {}: {method}", self.caller));
        if let Verdict::Log { suppressed } = verdict {
            if let Some(suppressed) = suppressed {
                tracing::warn!(
                    count = suppressed.count,
                    interval = ?suppressed.interval,
                    most_recent = %suppressed.most_recent,
                    "raft peer calls refused from non-members were not logged"
                );
            }
            // The vat id is base32 text of a proven key: safe as it is.
            tracing::warn!(caller = %self.caller, method, "raft peer call refused: the caller is not a member");
        }
        Err(Error::new(
            ErrorKind::UnknownToken,
            "no such token: this vat never minted it for this caller",
        )
        .into())
    }

    fn payload(&self, what: &'static str, size: usize) -> Result<(), WireError> {
        bounded(what, size, self.service.inner.max_payload)
    }
}

impl<SM> raft_peer::Server for RaftPeerServer<SM>
where
    SM: openraft::storage::RaftStateMachine<Config, SnapshotData = SnapshotData>,
{
    async fn append_entries(
        self: Rc<Self>,
        params: raft_peer::AppendEntriesParams,
        mut results: raft_peer::AppendEntriesResults,
    ) -> Result<(), capnp::Error> {
        self.admit("appendEntries")?;
        let bytes = params.get()?.get_request()?;
        self.payload("append-entries request", bytes.len())?;
        let request: openraft::raft::AppendEntriesRequest<Config> =
            decode("append-entries request", bytes)?;
        let answer = self.raft().append_entries(request).await;
        if answer.is_ok() {
            (self.service.inner.handlers.leader_contact)();
        }
        results
            .get()
            .set_response(&encode("append-entries response", &answer)?);
        Ok(())
    }

    async fn vote(
        self: Rc<Self>,
        params: raft_peer::VoteParams,
        mut results: raft_peer::VoteResults,
    ) -> Result<(), capnp::Error> {
        self.admit("vote")?;
        let bytes = params.get()?.get_request()?;
        self.payload("vote request", bytes.len())?;
        let call: VoteCall<Config> = decode("vote request", bytes)?;
        let answer = if call.pre_vote {
            self.raft().pre_vote(call.request).await
        } else {
            self.raft().vote(call.request).await
        };
        results
            .get()
            .set_response(&encode("vote response", &answer)?);
        Ok(())
    }

    async fn install_snapshot(
        self: Rc<Self>,
        params: raft_peer::InstallSnapshotParams,
        mut results: raft_peer::InstallSnapshotResults,
    ) -> Result<(), capnp::Error> {
        self.admit("installSnapshot")?;
        let params = params.get()?;
        let (vote, meta, data) = (params.get_vote()?, params.get_meta()?, params.get_data()?);
        self.payload("snapshot", vote.len() + meta.len() + data.len())?;
        let vote: VoteOf<Config> = decode("snapshot's vote", vote)?;
        let meta: SnapshotMetaOf<Config> = decode("snapshot's metadata", meta)?;
        let committed = self.raft().metrics().borrow_watched().local_committed;
        check_snapshot(&vote, &meta, committed.as_ref())?;
        let snapshot: SnapshotOf<Config, SnapshotData> = openraft::Snapshot {
            meta,
            snapshot: data.to_vec(),
        };
        let answer = self.raft().install_full_snapshot(vote, snapshot).await;
        results
            .get()
            .set_response(&encode("snapshot response", &answer)?);
        Ok(())
    }

    async fn forward(
        self: Rc<Self>,
        params: raft_peer::ForwardParams,
        mut results: raft_peer::ForwardResults,
    ) -> Result<(), capnp::Error> {
        self.admit("forward")?;
        let bytes = params.get()?.get_request()?;
        self.payload("forwarded request", bytes.len())?;
        let request: Request = decode("forwarded request", bytes)?;
        tracing::debug!(caller = %self.caller, request = %Untrusted(&request), "forwarded request");
        let answer = (self.service.inner.handlers.forward)(request).await;
        results
            .get()
            .set_response(&encode("forwarded response", &answer)?);
        Ok(())
    }

    async fn ping(
        self: Rc<Self>,
        _: raft_peer::PingParams,
        _: raft_peer::PingResults,
    ) -> Result<(), capnp::Error> {
        self.admit("ping")
    }

    async fn read_index(
        self: Rc<Self>,
        _: raft_peer::ReadIndexParams,
        mut results: raft_peer::ReadIndexResults,
    ) -> Result<(), capnp::Error> {
        self.admit("readIndex")?;
        let answer = (self.service.inner.handlers.read_index)().await;
        results.get().set_response(&encode("read index", &answer)?);
        Ok(())
    }

    async fn change_membership(
        self: Rc<Self>,
        params: raft_peer::ChangeMembershipParams,
        mut results: raft_peer::ChangeMembershipResults,
    ) -> Result<(), capnp::Error> {
        self.admit("changeMembership")?;
        let bytes = params.get()?.get_change()?;
        self.payload("membership change", bytes.len())?;
        let change: MembershipChange = decode("membership change", bytes)?;
        tracing::info!(caller = %self.caller, change = %Untrusted(&format!("{change:?}")), "forwarded membership change");
        let answer = (self.service.inner.handlers.change_membership)(change).await;
        results
            .get()
            .set_response(&encode("membership change's answer", &answer)?);
        Ok(())
    }
}
