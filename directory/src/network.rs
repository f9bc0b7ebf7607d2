//! The calling side of `RaftPeer`: openraft's network, over the capabilities
//! members restore from one another.
//!
//! [`Network`] gives openraft one [`PeerClient`] per target member. A client
//! restores the target's `RaftPeer` from a token built of the member's vat
//! id and hints and the cluster's peers swiss number, proving this vat's key
//! (so the target knows who calls), on the vat's one shared connection to
//! that vat. It does so lazily, at its first call, keeps the reference, and
//! drops it when a call through it fails, so the next call restores afresh
//! (a call that is only late keeps it).
//!
//! Each call is bounded by the `soft_ttl` openraft gives it, on the vat
//! environment's clock; appends and snapshots by at least the network's
//! patience (see [`Network::with_patience`]). Failures map to what openraft
//! expects:
//! - the member could not be restored (no address answered, its record
//!   holds no usable vat id or hints, it refused us), the connection broke,
//!   or the member's Raft has stopped: `Unreachable`, which backs off;
//! - the call outlived its bound: `Timeout`;
//! - anything else (a payload that does not decode, a call the member
//!   failed): `Network`.

use std::future::Future;
use std::time::Duration;

use capnp::capability::FromClientHook;
use captp::log::Untrusted;
use captp::{Identity, Limits};
use openraft::errors::{
    Fatal, NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{RaftNetworkFactory, RaftNetworkV2};
use schema::directory_capnp::raft_peer;
use sturdyrefs::{LocationHint, SturdyRef, SwissNumber, VatId};
use vat::sturdy::{restore, vat_id};
use vat::ErrorKind;

use crate::command::{Request, Response};
use crate::peer::{self, ForwardError, VoteCall, WireError, PEER_KIND};
use crate::types::{node_id, Config, Member, SnapshotData};

/// openraft's network for one member: how it reaches the others.
#[derive(Clone)]
pub struct Network {
    identity: Identity,
    peers: SwissNumber,
    limits: Limits,
    patience: Duration,
}

/// The least time an append or a snapshot is given before it counts as
/// failed, unless [`Network::with_patience`] says otherwise.
pub const DEFAULT_PATIENCE: Duration = Duration::from_millis(400);

impl Network {
    /// The network of the member with `identity`, reaching the others'
    /// `RaftPeer` through the cluster's `peers` swiss number, under
    /// `limits`.
    pub fn new(identity: Identity, peers: SwissNumber, limits: Limits) -> Network {
        Network {
            identity,
            peers,
            limits,
            patience: DEFAULT_PATIENCE,
        }
    }

    /// The least time appends and snapshots are given. openraft bounds an
    /// append by the heartbeat interval: a batch that takes longer to cross
    /// a slow link than one heartbeat would time out on every try, and the
    /// follower it is for would never catch up. A member sets this to its
    /// shortest election timeout: slower than that, the follower is as good
    /// as cut off anyway.
    pub fn with_patience(mut self, patience: Duration) -> Network {
        self.patience = patience;
        self
    }

    /// This member's node id.
    fn id(&self) -> u64 {
        node_id(&vat_id(self.identity.public_key()))
    }

    /// A client for `member`, which the membership names as `target`. No
    /// connection yet: its first call makes one.
    pub fn client(&self, target: u64, member: &Member) -> PeerClient {
        PeerClient {
            network: self.clone(),
            target,
            member: member.clone(),
            peer: None,
        }
    }
}

impl RaftNetworkFactory<Config> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Member) -> PeerClient {
        self.client(target, node)
    }
}

/// Why a call to a member failed, before openraft's classification.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The member's record does not make a token: a bad vat id or hints.
    #[error("member {member} cannot be dialled: {reason}")]
    BadMember {
        /// The member (escaped: it came from the membership).
        member: String,
        /// Why.
        reason: String,
    },
    /// Restoring the member's `RaftPeer` failed.
    #[error("member {vat} could not be restored: {}", Untrusted(.source))]
    Restore {
        /// Its vat id.
        vat: VatId,
        /// What went wrong.
        source: vat::sturdy::RestoreError,
    },
    /// What the member's gateway restored is not a `RaftPeer`.
    #[error("member {vat} restored a {}, not a raft peer", Untrusted(.kind))]
    WrongKind {
        /// Its vat id.
        vat: VatId,
        /// The kind it answered (escaped when shown).
        kind: String,
    },
    /// The call failed on the way or at the member.
    #[error("the call failed: {}", Untrusted(.0))]
    Call(vat::Error),
    /// A payload could not be used.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The member did not answer within the bound.
    #[error("no answer within {ttl:?}")]
    TimedOut {
        /// The bound.
        ttl: Duration,
    },
    /// The member's Raft is stopped (it answered with a fatal error).
    #[error("the member's raft is stopped: {}", Untrusted(.0))]
    Stopped(String),
}

impl CallError {
    /// Whether openraft should treat the member as unreachable (and back
    /// off) rather than as a transient failure.
    fn unreachable(&self) -> bool {
        match self {
            CallError::BadMember { .. }
            | CallError::Restore { .. }
            | CallError::WrongKind { .. }
            | CallError::Stopped(_) => true,
            CallError::Call(error) => matches!(
                error.kind(),
                ErrorKind::Disconnected | ErrorKind::VatStopped | ErrorKind::UnknownToken
            ),
            CallError::Wire(_) | CallError::TimedOut { .. } => false,
        }
    }
}

/// One member as openraft calls it.
pub struct PeerClient {
    network: Network,
    target: u64,
    member: Member,
    /// The member's `RaftPeer`, once restored.
    peer: Option<raft_peer::Client>,
}

impl PeerClient {
    /// The member's token.
    fn token(&self) -> Result<SturdyRef, CallError> {
        let bad = |reason: String| CallError::BadMember {
            member: Untrusted(&self.member).to_string(),
            reason,
        };
        let vat = VatId::parse(&self.member.vat).map_err(|e| bad(e.to_string()))?;
        let hints = self
            .member
            .hints
            .iter()
            .map(|hint| LocationHint::parse(hint))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        SturdyRef::new(vat, hints, self.network.peers.clone()).map_err(|e| bad(e.to_string()))
    }

    /// The member's `RaftPeer`: the one restored before, or a new one.
    async fn peer(&mut self) -> Result<raft_peer::Client, CallError> {
        if let Some(peer) = &self.peer {
            return Ok(peer.clone());
        }
        let token = self.token()?;
        let vat = *token.vat();
        let network = &self.network;
        let (object, kind) = restore(&token, Some(&network.identity), network.limits)
            .await
            .map_err(|source| CallError::Restore { vat, source })?;
        if kind != PEER_KIND {
            return Err(CallError::WrongKind { vat, kind });
        }
        let peer: raft_peer::Client = object.cast_to();
        self.peer = Some(peer.clone());
        Ok(peer)
    }

    /// Runs `call` on the member's `RaftPeer` within `ttl`, forgetting the
    /// reference if the call fails (not if it is only late). `action` names
    /// openraft's RPC, for its timeout error.
    async fn call<T, F, Fut>(
        &mut self,
        action: Option<RPCTypes>,
        ttl: Duration,
        call: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(raft_peer::Client) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let attempt = async {
            let peer = self.peer().await?;
            call(peer).await
        };
        let outcome = vat_env::timeout(ttl, attempt).await;
        let failure = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => {
                self.peer = None;
                Failure::Call(error)
            }
            // A slow answer is no sign of a broken reference: keeping it
            // saves the next try a restore's round trip, which on a slow
            // link could make every try late.
            Err(_elapsed) => match action {
                Some(action) => Failure::Timeout(Timeout {
                    action,
                    id: self.network.id(),
                    target: self.target,
                    timeout: ttl,
                }),
                None => Failure::Call(CallError::TimedOut { ttl }),
            },
        };
        Err(failure)
    }

    /// The member's limit on payloads, as this member applies it to what it
    /// sends.
    fn max_payload(&self) -> usize {
        peer::max_payload(&self.network.limits)
    }

    /// Runs `request` on the member, which should be the leader: a request
    /// this member was asked to make and cannot commit itself. Bounded by
    /// `ttl`; a failure to reach the member is
    /// [`ForwardError::Unavailable`].
    pub async fn forward(
        &mut self,
        request: &Request,
        ttl: Duration,
    ) -> Result<Response, ForwardError> {
        let bytes = peer::encode("forwarded request", request)
            .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        let limit = self.max_payload();
        let outcome = self
            .call(None, ttl, |peer| async move {
                peer::bounded("forwarded request", bytes.len(), limit)?;
                let mut call = peer.forward_request();
                call.get().set_request(&bytes);
                let reply = call.send().promise.await.map_err(call_error)?;
                let bytes = reply
                    .get()
                    .and_then(|r| r.get_response())
                    .map_err(call_error)?;
                Ok(peer::decode::<Result<Response, ForwardError>>(
                    "forwarded response",
                    bytes,
                )?)
            })
            .await;
        match outcome {
            Ok(answer) => answer,
            Err(failure) => Err(ForwardError::Unavailable(failure.to_string())),
        }
    }
}

/// A call error from capnp, with the vat's error kinds.
fn call_error(error: capnp::Error) -> CallError {
    CallError::Call(vat::Error::from(error))
}

/// How a call to a member failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Call(CallError),
    #[error(transparent)]
    Timeout(Timeout<Config>),
}

impl From<Failure> for RPCError<Config> {
    fn from(failure: Failure) -> RPCError<Config> {
        match failure {
            Failure::Timeout(timeout) => RPCError::Timeout(timeout),
            Failure::Call(error) if error.unreachable() => {
                RPCError::Unreachable(Unreachable::new(&error))
            }
            Failure::Call(error) => RPCError::Network(NetworkError::new(&error)),
        }
    }
}

impl From<Failure> for StreamingError<Config> {
    fn from(failure: Failure) -> StreamingError<Config> {
        match RPCError::from(failure) {
            RPCError::Timeout(e) => StreamingError::Timeout(e),
            RPCError::Unreachable(e) => StreamingError::Unreachable(e),
            RPCError::Network(e) => StreamingError::Network(e),
            RPCError::RemoteError(e) => match e.source {},
        }
    }
}

/// A remote answer: openraft's result, whose only error (with no API error
/// possible) is the member's Raft having stopped.
fn answered<T>(answer: Result<T, openraft::errors::RaftError<Config>>) -> Result<T, CallError> {
    answer.map_err(|error| CallError::Stopped(error.to_string()))
}

fn stopped<T>(answer: Result<T, Fatal<Config>>) -> Result<T, CallError> {
    answer.map_err(|error| CallError::Stopped(error.to_string()))
}

impl RaftNetworkV2<Config> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Config>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<Config>, RPCError<Config>> {
        let bytes = peer::encode("append-entries request", &rpc)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let limit = self.max_payload();
        let answer = self
            .call(
                Some(RPCTypes::AppendEntries),
                option.soft_ttl().max(self.network.patience),
                |peer| async move {
                    peer::bounded("append-entries request", bytes.len(), limit)?;
                    let mut call = peer.append_entries_request();
                    call.get().set_request(&bytes);
                    let reply = call.send().promise.await.map_err(call_error)?;
                    let bytes = reply
                        .get()
                        .and_then(|r| r.get_response())
                        .map_err(call_error)?;
                    answered(peer::decode("append-entries response", bytes)?)
                },
            )
            .await?;
        Ok(answer)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<Config>,
        option: RPCOption,
    ) -> Result<VoteResponse<Config>, RPCError<Config>> {
        self.vote_call(false, rpc, option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<Config>,
        option: RPCOption,
    ) -> Result<VoteResponse<Config>, RPCError<Config>> {
        self.vote_call(true, rpc, option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<Config>,
        snapshot: SnapshotOf<Config, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<Config>, StreamingError<Config>> {
        let vote = peer::encode("snapshot's vote", &vote)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let meta = peer::encode("snapshot's metadata", &snapshot.meta)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let data = snapshot.snapshot;
        let limit = self.max_payload();
        let send = self.call(
            Some(RPCTypes::InstallSnapshot),
            option.soft_ttl().max(self.network.patience),
            |peer| async move {
                peer::bounded("snapshot", vote.len() + meta.len() + data.len(), limit)?;
                let mut call = peer.install_snapshot_request();
                let mut params = call.get();
                params.set_vote(&vote);
                params.set_meta(&meta);
                params.set_data(&data);
                let reply = call.send().promise.await.map_err(call_error)?;
                let bytes = reply
                    .get()
                    .and_then(|r| r.get_response())
                    .map_err(call_error)?;
                stopped(peer::decode("snapshot response", bytes)?)
            },
        );
        // Biased: a closed replication wins over an answer arriving in the
        // same poll, the same way in every run.
        tokio::select! {
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = send => answer.map_err(StreamingError::from),
        }
    }
}

impl PeerClient {
    async fn vote_call(
        &mut self,
        pre_vote: bool,
        request: VoteRequest<Config>,
        option: RPCOption,
    ) -> Result<VoteResponse<Config>, RPCError<Config>> {
        let call = VoteCall { pre_vote, request };
        let bytes = peer::encode("vote request", &call)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = self
            .call(Some(RPCTypes::Vote), option.soft_ttl(), |peer| async move {
                let mut call = peer.vote_request();
                call.get().set_request(&bytes);
                let reply = call.send().promise.await.map_err(call_error)?;
                let bytes = reply
                    .get()
                    .and_then(|r| r.get_response())
                    .map_err(call_error)?;
                answered(peer::decode("vote response", bytes)?)
            })
            .await?;
        Ok(answer)
    }
}
