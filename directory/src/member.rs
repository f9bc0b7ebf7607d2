//! One directory member: its Raft node, its view of which members it
//! reaches, the leader's lease sweeps, and the path of a client's request
//! to whichever member leads.
//!
//! ```text
//! facet call ─► Member::write ─ quorum reached? ── no ──► NoQuorum at once
//!                    │ yes
//!                    ├─ leader here:   raft.client_write ─► committed on a quorum ─► answer
//!                    └─ leader there:  RaftPeer.forward ──► that member's client_write
//! ```
//!
//! A member counts a peer *reached* when a ping over their connection was
//! answered within the last [`REACH_WINDOW`]. A leader that reaches no
//! quorum stops acting as one: it refuses writes and reads with `NoQuorum`,
//! and its status names no leader. (openraft keeps it in the Leader state,
//! refusing proposals once its lease lapses, until it hears of a newer
//! term: as soon as it reaches a member of the new quorum.) A follower
//! whose connection to the leader breaks starts a pre-vote at once instead
//! of waiting for its election timeout (a killed leader's sockets close at
//! once).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use openraft::error::{ChangeMembershipError, ClientWriteError, LinearizableReadError, RaftError};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, ReadPolicy, ServerState};
use schema::directory_capnp::{directory, directory_member, raft_peer};
use serde::{Deserialize, Serialize};
use sturdyrefs::{LocationHint, SturdyRef, SwissHash, SwissNumber, VatId};
use vat::net::{Identity, Limits};
use vat::sturdy::{object_ref, Persistence};
use vat_env::Instant;

use crate::command::{ClientId, FacetId, FacetKind, MembershipChange, Op, Request, Response};
use crate::convert::{self, Done, MemberInfo, StatusInfo};
use crate::error::{DirectoryError, RefusalKind};
use crate::machine::Machine;
use crate::peer::{ForwardError, Handlers, PeerService, PEER_KIND};
use crate::store::{LogStore, Raft, StateMachineStore, Store};
use crate::types::{node_id, Config, Member};
use crate::writer::Commits;

/// How long after its last answered ping a peer still counts as reached.
pub const REACH_WINDOW: Duration = Duration::from_millis(1000);
/// How long a client's request may wait for a leader before it answers
/// `Unavailable`.
pub const LEADER_WAIT: Duration = Duration::from_secs(5);
/// The most watches one member serves at once.
pub const MAX_WATCHES: usize = 1024;
/// The kind of the member's own object in the vat's token table.
pub const MEMBER_KIND: &str = "directory-member";
/// The kind facets are restored as.
pub const FACET_KIND: &str = "directory";

/// Raft's timers. The defaults suit members on one network: a heartbeat
/// every 50 ms, elections after 200 to 400 ms of silence. A follower's
/// lease on its leader lasts the longest election timeout, and no vote is
/// granted within it, so that bound is also about how long a killed
/// leader takes to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimeouts {
    /// How often the leader sends heartbeats, and members ping each other.
    pub heartbeat: Duration,
    /// The shortest election timeout.
    pub election_min: Duration,
    /// The longest election timeout.
    pub election_max: Duration,
}

impl Default for RaftTimeouts {
    fn default() -> Self {
        RaftTimeouts {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(200),
            election_max: Duration::from_millis(400),
        }
    }
}

/// A cluster's configuration: who its first members are, its first admin
/// facet, and the secret members reach each other's Raft endpoint by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Names the cluster (16 random bytes).
    pub id: [u8; 16],
    /// The first members.
    pub members: Vec<Member>,
    /// The hash of the first admin facet's swiss number.
    pub admin: FacetId,
    /// The swiss number of every member's `RaftPeer` (only members hold it,
    /// and a caller must also prove a member's key).
    pub peers: [u8; 32],
}

impl Cluster {
    /// A new cluster of `members`; returns it with its first admin facet's
    /// swiss number (the only copy: put it in the admin token).
    pub fn generate(members: Vec<Member>) -> Result<(Cluster, SwissNumber), DirectoryError> {
        let random = |e: sturdyrefs::RandomError| DirectoryError::Unavailable {
            reason: format!("no randomness: {e}"),
        };
        let admin = SwissNumber::generate().map_err(random)?;
        let peers = SwissNumber::generate().map_err(random)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&SwissNumber::generate().map_err(random)?.as_bytes()[..16]);
        let cluster = Cluster {
            id,
            members,
            admin: *admin.hash().as_bytes(),
            peers: *peers.as_bytes(),
        };
        cluster.check()?;
        Ok((cluster, admin))
    }

    /// Checks what a peer or an operator handed in: 1 to 7 members, each a
    /// vat id with hints, no two with the same node id.
    pub fn check(&self) -> Result<(), DirectoryError> {
        let bad = |message: String| DirectoryError::Refused {
            kind: RefusalKind::BadArgument,
            limit: None,
            size: None,
            message,
        };
        if self.members.is_empty() || self.members.len() > 7 {
            return Err(bad(format!(
                "a cluster has 1 to 7 members; {} were given",
                self.members.len()
            )));
        }
        let mut ids = BTreeSet::new();
        for member in &self.members {
            let vat = parse_vat(&member.vat).map_err(|e| bad(e.to_string()))?;
            parse_hints(&member.hints).map_err(bad)?;
            if !ids.insert(node_id(&vat)) {
                return Err(bad(format!("member {} is named twice", member.vat)));
            }
        }
        Ok(())
    }

    fn voters(&self) -> BTreeMap<u64, Member> {
        self.members
            .iter()
            .filter_map(|m| Some((node_id(&parse_vat(&m.vat).ok()?), m.clone())))
            .collect()
    }
}

fn parse_vat(text: &str) -> Result<VatId, sturdyrefs::VatIdError> {
    VatId::parse(text)
}

fn parse_hints(hints: &[String]) -> Result<Vec<LocationHint>, String> {
    if hints.is_empty() {
        return Err("a member needs at least one location hint".to_owned());
    }
    hints
        .iter()
        .map(|h| LocationHint::parse(h).map_err(|e| format!("bad hint {h:?}: {e}")))
        .collect()
}

/// What a member needs from the vat it runs in.
pub struct MemberConfig {
    /// The vat's identity (the key members prove to each other).
    pub identity: Identity,
    /// The vat's persistence, serving its gateway: facets and the Raft
    /// endpoint are restored through it.
    pub persistence: Persistence,
    /// The member's own redb database (log, vote, state machine).
    pub db: redb::Database,
    /// Limits for the connections it dials to other members.
    pub limits: Limits,
    /// Raft's timers.
    pub timeouts: RaftTimeouts,
}

/// A directory member running in this vat.
#[derive(Clone)]
pub struct DirectoryMember {
    inner: Rc<Inner>,
}

struct Inner {
    vat: VatId,
    identity: Identity,
    persistence: Persistence,
    limits: Limits,
    timeouts: RaftTimeouts,
    log: LogStore,
    machine: StateMachineStore,
    running: RefCell<Option<Rc<Running>>>,
    /// The member's own client id, for the sweeps it proposes as leader.
    client: ClientId,
    serial: Cell<u64>,
    watches: Cell<usize>,
}

struct Running {
    cluster: Cluster,
    raft: Raft,
    peers: PeerService<StateMachineStore>,
    /// When each peer last answered a ping.
    reached: RefCell<BTreeMap<u64, Instant>>,
    /// The peers a pinger runs for: every member the membership has named
    /// since the start, whoever added it.
    pinging: RefCell<BTreeSet<u64>>,
    /// A `RaftPeer` per peer, restored once and dropped on failure.
    links: RefCell<BTreeMap<u64, raft_peer::Client>>,
    /// When this member last heard from a leader (followers), for the
    /// staleness of `any` reads.
    leader_contact: Cell<Option<Instant>>,
    /// When Raft started here: until a first round of pings had time to
    /// answer, a peer not heard from yet is not counted as lost.
    started: Instant,
    stopped: Cell<bool>,
}

impl std::fmt::Debug for DirectoryMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryMember")
            .field("vat", &self.inner.vat.to_string())
            .field("running", &self.inner.running.borrow().is_some())
            .finish_non_exhaustive()
    }
}

impl DirectoryMember {
    /// Starts the member in the current vat: opens its store, serves its
    /// member object, facets and Raft endpoint through `persistence`, and
    /// runs Raft if the store holds a cluster already.
    pub async fn start(config: MemberConfig) -> Result<DirectoryMember, DirectoryError> {
        let vat = vat::sturdy::vat_id(config.identity.public_key());
        let unavailable = |reason: String| DirectoryError::Unavailable { reason };
        // Grouped on a writer thread, except where the environment keeps
        // everything on one thread (a simulation, which must replay).
        let commits = if vat_env::threads_allowed() {
            Commits::Grouped
        } else {
            Commits::Inline
        };
        let (log, machine) = Store::open(config.db, [0; 32], commits)
            .map_err(|e| unavailable(format!("store: {e}")))?;
        let mut client = [0u8; 16];
        vat_env::fill(&mut client).map_err(|e| unavailable(format!("no randomness: {e}")))?;
        let inner = Rc::new(Inner {
            vat,
            identity: config.identity,
            persistence: config.persistence,
            limits: config.limits,
            timeouts: config.timeouts,
            log,
            machine,
            running: RefCell::new(None),
            client,
            serial: Cell::new(0),
            watches: Cell::new(0),
        });
        let member = DirectoryMember { inner };
        member.serve();
        let stored = member
            .inner
            .log
            .load_cluster()
            .map_err(|e| unavailable(format!("store: {e}")))?;
        if let Some(bytes) = stored {
            let cluster: Cluster = postcard::from_bytes(&bytes)
                .map_err(|e| unavailable(format!("stored cluster: {e}")))?;
            member.run(cluster, false).await?;
        }
        Ok(member)
    }

    /// This vat's id.
    pub fn vat(&self) -> VatId {
        self.inner.vat
    }

    /// The member's own object (initialize, join, status), as provided to
    /// the vat's persistence under `directory-member#1`.
    pub fn object(&self) -> directory_member::Client {
        crate::facet::member_object(self.clone())
    }

    /// The state machine, for reads.
    pub fn machine(&self) -> Rc<RefCell<Machine>> {
        self.inner.machine.machine()
    }

    /// The cluster, once initialized.
    pub fn cluster(&self) -> Option<Cluster> {
        self.running().map(|r| r.cluster.clone())
    }

    /// openraft's handle, once initialized.
    pub fn raft(&self) -> Option<Raft> {
        self.running().map(|r| r.raft.clone())
    }

    fn running(&self) -> Option<Rc<Running>> {
        self.inner.running.borrow().clone()
    }

    fn serve(&self) {
        let weak = Rc::downgrade(&self.inner);
        self.inner
            .persistence
            .set_restorer(Rc::new(move |hash, presenter| {
                let inner = weak.upgrade()?;
                DirectoryMember { inner }.restore(hash, presenter)
            }));
        if let Ok(object) = object_ref(MEMBER_KIND, 1) {
            self.inner.persistence.provide(object, self.object().client);
        }
    }

    /// What a swiss number the vat's store does not know names here: the
    /// Raft endpoint (its server admits members only) or a facet.
    fn restore(
        &self,
        hash: &SwissHash,
        presenter: Option<&VatId>,
    ) -> Option<(capnp::capability::Client, String)> {
        let running = self.running()?;
        if *hash == SwissNumber::from_bytes(running.cluster.peers).hash() {
            let client: raft_peer::Client = vat::export(running.peers.server(*presenter?));
            return Some((client.client, PEER_KIND.to_owned()));
        }
        let facet: FacetId = *hash.as_bytes();
        self.machine().borrow().facet(&facet)?;
        let client: directory::Client = crate::facet::facet_object(self.clone(), facet);
        Some((client.client, FACET_KIND.to_owned()))
    }

    /// What this member answers other members' calls beyond Raft's own
    /// with.
    fn handlers(&self) -> Handlers {
        let weak: Weak<Inner> = Rc::downgrade(&self.inner);
        let (forward, read, membership, contact) = (weak.clone(), weak.clone(), weak.clone(), weak);
        let stopped = || ForwardError::Unavailable("the member stopped".to_owned());
        Handlers {
            forward: Rc::new(move |request| {
                let weak = forward.clone();
                Box::pin(async move {
                    match weak.upgrade() {
                        Some(inner) => DirectoryMember { inner }.lead(request).await,
                        None => Err(stopped()),
                    }
                })
            }),
            read_index: Rc::new(move || {
                let weak = read.clone();
                Box::pin(async move {
                    match weak.upgrade() {
                        Some(inner) => DirectoryMember { inner }.read_index_here().await,
                        None => Err(stopped()),
                    }
                })
            }),
            change_membership: Rc::new(move |change| {
                let weak = membership.clone();
                Box::pin(async move {
                    match weak.upgrade() {
                        Some(inner) => DirectoryMember { inner }.change_here(change).await,
                        None => Err(stopped()),
                    }
                })
            }),
            leader_contact: Rc::new(move || {
                if let Some(running) = contact.upgrade().and_then(|i| i.running.borrow().clone()) {
                    running.leader_contact.set(Some(vat_env::now()));
                }
            }),
        }
    }

    /// Makes this vat a member of `cluster`: stores it and starts Raft;
    /// with `initialize`, also forms the cluster from its first members
    /// (every first member may do so: the same configuration is safe).
    pub async fn run(&self, cluster: Cluster, initialize: bool) -> Result<(), DirectoryError> {
        cluster.check()?;
        if let Some(running) = self.running() {
            return if running.cluster.id == cluster.id {
                Ok(())
            } else {
                Err(DirectoryError::Refused {
                    kind: RefusalKind::BadArgument,
                    limit: None,
                    size: None,
                    message: "this vat is a member of another cluster already".to_owned(),
                })
            };
        }
        let unavailable = |reason: String| DirectoryError::Unavailable { reason };
        let bytes = postcard::to_allocvec(&cluster).map_err(|e| unavailable(e.to_string()))?;
        self.inner
            .log
            .save_cluster(&bytes)
            .map_err(|e| unavailable(format!("store: {e}")))?;
        self.machine().borrow_mut().set_admin(cluster.admin);
        self.start_raft(cluster, initialize).await
    }

    /// Starts Raft on the member's stores for `cluster`, with the tasks
    /// that ping peers and watch the quorum.
    async fn start_raft(&self, cluster: Cluster, initialize: bool) -> Result<(), DirectoryError> {
        let unavailable = |reason: String| DirectoryError::Unavailable { reason };
        let timeouts = self.inner.timeouts;
        let config = openraft::Config {
            cluster_name: "vat-directory".to_owned(),
            heartbeat_interval: timeouts.heartbeat.as_millis() as u64,
            election_timeout_min: timeouts.election_min.as_millis() as u64,
            election_timeout_max: timeouts.election_max.as_millis() as u64,
            enable_pre_vote: Some(true),
            // Snapshots keep a restart's replay short; the logs kept
            // behind one let a follower that lags a little catch up
            // without a snapshot.
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
            max_in_snapshot_log_to_keep: 1000,
            // openraft's 200 ms is too short for a full snapshot on a slow
            // link; the network gives it at least an election timeout.
            install_snapshot_timeout: timeouts.election_max.as_millis() as u64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| unavailable(format!("raft config: {e}")))?;
        let network = crate::network::Network::new(
            self.inner.identity.clone(),
            SwissNumber::from_bytes(cluster.peers),
            self.inner.limits,
        )
        .with_patience(timeouts.election_min);
        let raft = Raft::new(
            node_id(&self.inner.vat),
            Arc::new(config),
            network,
            self.inner.log.clone(),
            self.inner.machine.clone(),
        )
        .await
        .map_err(|e| unavailable(format!("raft: {e}")))?;
        if initialize {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            if !initialized {
                match raft.initialize(cluster.voters()).await {
                    Ok(()) => {}
                    // Another first member formed it already.
                    Err(RaftError::APIError(_)) => {}
                    Err(error) => return Err(unavailable(error.to_string())),
                }
            }
        }
        let peers = PeerService::new(raft.clone(), self.handlers(), &self.inner.limits);
        peers.expect(
            cluster
                .members
                .iter()
                .filter_map(|m| parse_vat(&m.vat).ok()),
        );
        let running = Rc::new(Running {
            cluster,
            raft,
            peers,
            reached: RefCell::new(BTreeMap::new()),
            pinging: RefCell::new(BTreeSet::new()),
            links: RefCell::new(BTreeMap::new()),
            leader_contact: Cell::new(None),
            started: vat_env::now(),
            stopped: Cell::new(false),
        });
        *self.inner.running.borrow_mut() = Some(Rc::clone(&running));
        self.spawn_tasks(&running);
        tracing::info!(vat = %self.inner.vat, "directory member running");
        Ok(())
    }

    /// Stops Raft (the vat stopping does too).
    pub async fn stop(&self) {
        let running = self.inner.running.borrow_mut().take();
        if let Some(running) = running {
            running.stopped.set(true);
            let _ = running.raft.shutdown().await;
        }
    }

    fn spawn_tasks(&self, running: &Rc<Running>) {
        for id in running.cluster.voters().into_keys() {
            self.spawn_pinger(running, id);
        }
        self.ping_membership(running);
        self.spawn_watchdog(running);
    }

    /// Pingers for the members the membership names that have none yet:
    /// those added since the cluster formed, by whichever member led then,
    /// and, on a restart, those the stored first configuration lacks.
    /// Without them this member would count too few reached voters and
    /// refuse with `NoQuorum` (or, leading, step down) in a cluster that
    /// has a quorum.
    fn ping_membership(&self, running: &Rc<Running>) {
        for id in self.membership_nodes(running).into_keys() {
            self.spawn_pinger(running, id);
        }
    }

    /// Pings one peer every heartbeat; its answers are what "reached" means.
    /// One pinger per peer: does nothing for itself or a peer it pings.
    fn spawn_pinger(&self, running: &Rc<Running>, id: u64) {
        if id == node_id(&self.inner.vat) || !running.pinging.borrow_mut().insert(id) {
            return;
        }
        let weak = Rc::downgrade(&self.inner);
        let running = Rc::downgrade(running);
        let period = self.inner.timeouts.heartbeat;
        vat_env::spawn(async move {
            loop {
                vat_env::sleep(period).await;
                let (Some(inner), Some(run)) = (weak.upgrade(), running.upgrade()) else {
                    return;
                };
                if run.stopped.get() {
                    return;
                }
                let me = DirectoryMember { inner };
                // A member removed from the membership is pinged no more
                // (until it is added again, perhaps with other hints).
                let Some(member) = me.membership_nodes(&run).remove(&id) else {
                    run.reached.borrow_mut().remove(&id);
                    continue;
                };
                let answered = me.ping(&run, id, &member).await;
                if answered {
                    run.reached.borrow_mut().insert(id, vat_env::now());
                } else if run.raft.metrics().borrow_watched().current_leader == Some(id)
                    && run.raft.metrics().borrow_watched().state == ServerState::Follower
                {
                    // The leader's connection broke (a killed process's
                    // sockets close at once): ask for a pre-vote now rather
                    // than after the election timeout. A leader that is
                    // alive keeps its lease with the others, who refuse.
                    let _ = run.raft.trigger().elect(true).await;
                }
                drop(me);
            }
        });
    }

    async fn ping(&self, running: &Running, id: u64, member: &Member) -> bool {
        let Ok(link) = self.link(running, id, member).await else {
            return false;
        };
        let timeout = self.inner.timeouts.heartbeat * 5;
        match vat_env::timeout(timeout, link.ping_request().send().promise).await {
            Ok(Ok(_)) => true,
            _ => {
                running.links.borrow_mut().remove(&id);
                false
            }
        }
    }

    /// The leader sweeps lapsed leases while it reaches a quorum, and says
    /// when it stops and starts reaching one.
    fn spawn_watchdog(&self, running: &Rc<Running>) {
        let weak = Rc::downgrade(&self.inner);
        let running = Rc::downgrade(running);
        let timeouts = self.inner.timeouts;
        vat_env::spawn(async move {
            // Since when the leader reaches no quorum, and whether it said
            // so: only once that lasts an election timeout, so that a new
            // leader whose first pings are under way says nothing.
            let mut without_quorum: Option<(Instant, bool)> = None;
            let mut last_sweep = vat_env::now();
            loop {
                vat_env::sleep(timeouts.heartbeat).await;
                let (Some(inner), Some(run)) = (weak.upgrade(), running.upgrade()) else {
                    return;
                };
                if run.stopped.get() {
                    return;
                }
                let me = DirectoryMember { inner };
                // A membership change this member learnt from the log.
                me.ping_membership(&run);
                let leading = run.raft.metrics().borrow_watched().state == ServerState::Leader;
                if !leading {
                    without_quorum = None;
                    continue;
                }
                // openraft ignores an election triggered on a leader: one
                // without a quorum stays Leader until it hears of a newer
                // term. What makes it no leader to clients is
                // `acting_leader` and the quorum check of every write and
                // read.
                match me.quorum(&run) {
                    Ok(()) => {
                        if let Some((_, true)) = without_quorum.take() {
                            tracing::info!("leader reaches a quorum again");
                        }
                    }
                    Err(DirectoryError::NoQuorum { reached, members }) => {
                        let (since, said) = without_quorum.get_or_insert((vat_env::now(), false));
                        if !*said && since.elapsed() >= timeouts.election_max {
                            tracing::warn!(
                                reached,
                                members,
                                "leader reaches no quorum: refusing writes and reads until it does"
                            );
                            *said = true;
                        }
                        continue;
                    }
                    Err(_) => {}
                }
                if last_sweep.elapsed() >= Duration::from_millis(500) {
                    last_sweep = vat_env::now();
                    let now = wall_ms();
                    let lapsed = me.machine().borrow().lapsed(now);
                    if lapsed > 0 {
                        let request = me.own_request(Op::Sweep);
                        match me.lead(request).await {
                            Ok(_) => tracing::info!(lapsed, "leases lapsed: vats marked gone"),
                            Err(error) => tracing::debug!(?error, "sweep not committed"),
                        }
                    }
                }
            }
        });
    }

    fn own_request(&self, op: Op) -> Request {
        let serial = self.inner.serial.get() + 1;
        self.inner.serial.set(serial);
        let admin = self.running().map_or([0; 32], |r| r.cluster.admin);
        Request {
            facet: admin,
            client: self.inner.client,
            serial,
            answered_below: serial,
            at_ms: wall_ms(),
            op,
        }
    }

    fn membership_nodes(&self, running: &Running) -> BTreeMap<u64, Member> {
        let metrics = running.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, m)| (*id, m.clone()))
            .collect()
    }

    fn voter_ids(&self, running: &Running) -> BTreeSet<u64> {
        let metrics = running.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.membership_config.membership().voter_ids().collect()
    }

    /// The leader as far as clients may rely on it: whom openraft names,
    /// except this member itself while it reaches no quorum (it cannot
    /// commit, and refuses every write and read).
    fn acting_leader(&self, running: &Running) -> Option<u64> {
        let leader = running.raft.metrics().borrow_watched().current_leader;
        match leader {
            Some(id) if id == node_id(&self.inner.vat) && self.quorum(running).is_err() => None,
            other => other,
        }
    }

    /// Whether this member reaches a quorum of voters, itself included.
    fn quorum(&self, running: &Running) -> Result<(), DirectoryError> {
        let voters = self.voter_ids(running);
        let me = node_id(&self.inner.vat);
        let reached_map = running.reached.borrow();
        let starting = running.started.elapsed() <= REACH_WINDOW;
        let reached = voters
            .iter()
            .filter(|id| match reached_map.get(id) {
                _ if **id == me => true,
                Some(at) => at.elapsed() <= REACH_WINDOW,
                None => starting,
            })
            .count() as u32;
        let members = voters.len() as u32;
        if members == 0 || reached * 2 <= members {
            return Err(DirectoryError::NoQuorum { reached, members });
        }
        Ok(())
    }

    /// The `RaftPeer` of member `id`, restored over the vat's connection to
    /// it (dialled if there is none).
    async fn link(
        &self,
        running: &Running,
        id: u64,
        member: &Member,
    ) -> Result<raft_peer::Client, DirectoryError> {
        if let Some(link) = running.links.borrow().get(&id) {
            return Ok(link.clone());
        }
        let unavailable = |reason: String| DirectoryError::Unavailable { reason };
        let vat = parse_vat(&member.vat).map_err(|e| unavailable(e.to_string()))?;
        let hints = parse_hints(&member.hints).map_err(unavailable)?;
        let token = SturdyRef::new(vat, hints, SwissNumber::from_bytes(running.cluster.peers))
            .map_err(|e| unavailable(e.to_string()))?;
        let (object, _) =
            vat::sturdy::restore(&token, Some(&self.inner.identity), self.inner.limits)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
        let link: raft_peer::Client = object.cast_to();
        running.links.borrow_mut().insert(id, link.clone());
        Ok(link)
    }

    fn ready(&self) -> Result<Rc<Running>, DirectoryError> {
        self.running().ok_or(DirectoryError::NotInitialized)
    }

    fn served_by(&self) -> String {
        self.inner.vat.to_string()
    }

    /// Runs `here` if this member leads, or `there` at the leader, until
    /// one answers, waiting for a leader up to [`LEADER_WAIT`]; refuses at
    /// once without a quorum. Answers with the leader's vat id when it was
    /// another member. `writes`: an attempt that got no answer may have
    /// taken effect, and a later refusal must not say it did not.
    async fn at_leader<T, Here, HereFut, There, ThereFut>(
        &self,
        running: &Running,
        writes: bool,
        here: Here,
        there: There,
    ) -> Result<(T, Option<String>), DirectoryError>
    where
        Here: Fn() -> HereFut,
        HereFut: std::future::Future<Output = Result<T, ForwardError>>,
        There: Fn(u64, Member) -> ThereFut,
        ThereFut: std::future::Future<Output = Result<T, ForwardError>>,
    {
        let deadline = vat_env::now() + LEADER_WAIT;
        let mut in_doubt = false;
        let settle = |error: DirectoryError, in_doubt: bool| {
            if writes {
                error.for_write(in_doubt)
            } else {
                error
            }
        };
        loop {
            self.quorum(running).map_err(|e| settle(e, in_doubt))?;
            let leader = running.raft.metrics().borrow_watched().current_leader;
            let me = node_id(&self.inner.vat);
            let (answer, remote) = match leader {
                Some(id) if id == me => (here().await, None),
                Some(id) => match self.membership_nodes(running).get(&id).cloned() {
                    Some(member) => {
                        let vat = member.vat.clone();
                        (there(id, member).await, Some(vat))
                    }
                    None => (Err(ForwardError::NotLeader { leader: None }), None),
                },
                None => (Err(ForwardError::NotLeader { leader: None }), None),
            };
            let last = match answer {
                Ok(value) => return Ok((value, remote)),
                Err(ForwardError::NoQuorum { reached, members }) => {
                    return Err(settle(
                        DirectoryError::NoQuorum { reached, members },
                        in_doubt,
                    ))
                }
                Err(ForwardError::Refused(message)) => {
                    return Err(DirectoryError::Refused {
                        kind: RefusalKind::BadArgument,
                        limit: None,
                        size: None,
                        message,
                    })
                }
                Err(other) => {
                    in_doubt |= matches!(other, ForwardError::Unavailable(_));
                    other.to_string()
                }
            };
            if vat_env::now() >= deadline {
                return Err(DirectoryError::Unavailable { reason: last });
            }
            vat_env::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes `request` wherever the leader is, waiting for one up to
    /// [`LEADER_WAIT`]; refuses at once without a quorum.
    pub async fn write(&self, request: Request) -> Result<Done, DirectoryError> {
        let running = self.ready()?;
        let running = &running;
        let request = &request;
        let (response, leader) = self
            .at_leader(
                running,
                true,
                || self.lead(request.clone()),
                |id, member| async move { self.forward(running, id, &member, request).await },
            )
            .await?;
        match response {
            Response::Done { index } => Ok(Done {
                index,
                served_by: self.served_by(),
                leader: leader.unwrap_or_default(),
                ..Done::default()
            }),
            Response::Refused(refusal) => Err(convert::refusal(&refusal)),
        }
    }

    async fn forward(
        &self,
        running: &Running,
        id: u64,
        member: &Member,
        request: &Request,
    ) -> Result<Response, ForwardError> {
        let link = self
            .link(running, id, member)
            .await
            .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        let bytes =
            postcard::to_allocvec(request).map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        let mut call = link.forward_request();
        call.get().set_request(&bytes);
        let reply = vat_env::timeout(LEADER_WAIT, call.send().promise).await;
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                running.links.borrow_mut().remove(&id);
                return Err(ForwardError::Unavailable(
                    vat::Error::from(error).to_string(),
                ));
            }
            Err(_) => {
                return Err(ForwardError::Unavailable(
                    "the leader did not answer".to_owned(),
                ))
            }
        };
        let bytes = reply
            .get()
            .and_then(|r| r.get_response())
            .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        postcard::from_bytes::<Result<Response, ForwardError>>(bytes)
            .map_err(|e| ForwardError::Unavailable(format!("undecodable answer: {e}")))?
    }

    /// Runs `request` on this member if it leads (a follower's forward, or
    /// its own write).
    async fn lead(&self, request: Request) -> Result<Response, ForwardError> {
        let running = self
            .running()
            .ok_or_else(|| ForwardError::Unavailable("not initialized".to_owned()))?;
        if let Err(DirectoryError::NoQuorum { reached, members }) = self.quorum(&running) {
            return Err(ForwardError::NoQuorum { reached, members });
        }
        let write = running.raft.client_write(request);
        match vat_env::timeout(LEADER_WAIT, write).await {
            Ok(Ok(written)) => Ok(written.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to)))) => {
                Err(ForwardError::NotLeader {
                    leader: to.leader_id,
                })
            }
            Ok(Err(error)) => Err(ForwardError::Unavailable(error.to_string())),
            Err(_) => Err(ForwardError::Unavailable(
                "not committed in time".to_owned(),
            )),
        }
    }

    /// The index a linearizable read must see, from the leader, if this
    /// member leads.
    async fn read_index_here(&self) -> Result<u64, ForwardError> {
        let running = self
            .running()
            .ok_or_else(|| ForwardError::Unavailable("not initialized".to_owned()))?;
        if let Err(DirectoryError::NoQuorum { reached, members }) = self.quorum(&running) {
            return Err(ForwardError::NoQuorum { reached, members });
        }
        let read = running.raft.ensure_linearizable(ReadPolicy::ReadIndex);
        match vat_env::timeout(LEADER_WAIT, read).await {
            Ok(Ok(read)) => Ok(read.index()),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(to)))) => {
                Err(ForwardError::NotLeader {
                    leader: to.leader_id,
                })
            }
            Ok(Err(error)) => Err(ForwardError::Unavailable(error.to_string())),
            Err(_) => Err(ForwardError::Unavailable(
                "no quorum confirmed the read".to_owned(),
            )),
        }
    }

    /// Waits until the state machine has applied what a read must see, and
    /// says how stale what it may serve is.
    pub async fn read(&self, linearizable: bool) -> Result<Done, DirectoryError> {
        let running = self.ready()?;
        if !linearizable {
            let me = node_id(&self.inner.vat);
            let metrics = running.raft.metrics();
            let leading = metrics.borrow_watched().current_leader == Some(me);
            let staleness_ms = if leading {
                // A leader that reaches a quorum is as fresh as it gets.
                if self.quorum(&running).is_ok() {
                    0
                } else {
                    u64::MAX
                }
            } else {
                running
                    .leader_contact
                    .get()
                    .map_or(u64::MAX, |at| at.elapsed().as_millis() as u64)
            };
            return Ok(Done {
                index: self.machine().borrow().applied(),
                staleness_ms,
                served_by: self.served_by(),
                ..Done::default()
            });
        }
        let running = &running;
        let (index, _) = self
            .at_leader(
                running,
                false,
                || self.read_index_here(),
                |id, member| async move { self.remote_read_index(running, id, &member).await },
            )
            .await?;
        self.applied(index).await?;
        Ok(Done {
            index: self.machine().borrow().applied(),
            staleness_ms: 0,
            served_by: self.served_by(),
            ..Done::default()
        })
    }

    async fn remote_read_index(
        &self,
        running: &Running,
        id: u64,
        member: &Member,
    ) -> Result<u64, ForwardError> {
        let link = self
            .link(running, id, member)
            .await
            .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        let reply = vat_env::timeout(LEADER_WAIT, link.read_index_request().send().promise).await;
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                running.links.borrow_mut().remove(&id);
                return Err(ForwardError::Unavailable(
                    vat::Error::from(error).to_string(),
                ));
            }
            Err(_) => {
                return Err(ForwardError::Unavailable(
                    "the leader did not answer".to_owned(),
                ))
            }
        };
        let bytes = reply
            .get()
            .and_then(|r| r.get_response())
            .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        postcard::from_bytes::<Result<u64, ForwardError>>(bytes)
            .map_err(|e| ForwardError::Unavailable(format!("undecodable answer: {e}")))?
    }

    /// Waits until the state machine has applied `index`.
    pub async fn applied(&self, index: u64) -> Result<(), DirectoryError> {
        let deadline = vat_env::now() + LEADER_WAIT;
        let notify = self.inner.machine.applied();
        loop {
            let notified = notify.notified();
            if self.machine().borrow().applied() >= index {
                return Ok(());
            }
            if vat_env::timeout_at(deadline, notified).await.is_err() {
                return Err(DirectoryError::Unavailable {
                    reason: format!("index {index} was not applied here in time"),
                });
            }
        }
    }

    /// Adds (`true`) or removes a voter, on the leader.
    pub async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<Done, DirectoryError> {
        let running = self.ready()?;
        let running = &running;
        let change = &change;
        let (index, _) = self
            .at_leader(
                running,
                true,
                || self.change_here(change.clone()),
                |id, member| async move { self.remote_change(running, id, &member, change).await },
            )
            .await?;
        Ok(Done {
            index,
            served_by: self.served_by(),
            ..Done::default()
        })
    }

    async fn remote_change(
        &self,
        running: &Running,
        id: u64,
        member: &Member,
        change: &MembershipChange,
    ) -> Result<u64, ForwardError> {
        let link = self
            .link(running, id, member)
            .await
            .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        let bytes =
            postcard::to_allocvec(change).map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        let mut call = link.change_membership_request();
        call.get().set_change(&bytes);
        // Adding a member waits for it to catch up: longer than a write.
        let reply = vat_env::timeout(LEADER_WAIT * 12, call.send().promise).await;
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                running.links.borrow_mut().remove(&id);
                return Err(ForwardError::Unavailable(
                    vat::Error::from(error).to_string(),
                ));
            }
            Err(_) => {
                return Err(ForwardError::Unavailable(
                    "the leader did not answer".to_owned(),
                ))
            }
        };
        let bytes = reply
            .get()
            .and_then(|r| r.get_response())
            .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        postcard::from_bytes::<Result<u64, ForwardError>>(bytes)
            .map_err(|e| ForwardError::Unavailable(format!("undecodable answer: {e}")))?
    }

    /// Runs a membership change if this member leads.
    async fn change_here(&self, change: MembershipChange) -> Result<u64, ForwardError> {
        let running = self
            .running()
            .ok_or_else(|| ForwardError::Unavailable("not initialized".to_owned()))?;
        if let Err(DirectoryError::NoQuorum { reached, members }) = self.quorum(&running) {
            return Err(ForwardError::NoQuorum { reached, members });
        }
        let not_leader = |e: &ClientWriteError<Config>| match e {
            ClientWriteError::ForwardToLeader(to) => Some(ForwardError::NotLeader {
                leader: to.leader_id,
            }),
            // Another change (a new leader's first, the learner just
            // added) is not committed yet: one can try again shortly, the
            // request is not at fault.
            ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_)) => {
                Some(ForwardError::Unavailable(e.to_string()))
            }
            _ => None,
        };
        let raft = &running.raft;
        let result = match change {
            MembershipChange::Add(member) => {
                let vat =
                    parse_vat(&member.vat).map_err(|e| ForwardError::Refused(e.to_string()))?;
                parse_hints(&member.hints).map_err(ForwardError::Refused)?;
                let id = node_id(&vat);
                match raft.add_learner(id, member.clone(), true).await {
                    Ok(_) => {}
                    Err(RaftError::APIError(e)) => {
                        return Err(
                            not_leader(&e).unwrap_or_else(|| ForwardError::Refused(e.to_string()))
                        )
                    }
                    Err(e) => return Err(ForwardError::Unavailable(e.to_string())),
                }
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
            }
            MembershipChange::Remove(vat) => {
                let vat = parse_vat(&vat).map_err(|e| ForwardError::Refused(e.to_string()))?;
                let id = node_id(&vat);
                if !self.voter_ids(&running).contains(&id) {
                    return Err(ForwardError::Refused(format!("{vat} is not a voter")));
                }
                raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
            }
        };
        match result {
            Ok(written) => {
                self.ping_membership(&running);
                Ok(written.log_id.index)
            }
            Err(RaftError::APIError(e)) => {
                Err(not_leader(&e).unwrap_or_else(|| ForwardError::Refused(e.to_string())))
            }
            Err(e) => Err(ForwardError::Unavailable(e.to_string())),
        }
    }

    /// What this member knows of the cluster.
    pub fn status(&self) -> Result<StatusInfo, DirectoryError> {
        let running = self.ready()?;
        // Before the metrics are borrowed below: it borrows them too.
        let acting_leader = self.acting_leader(&running);
        let metrics = running.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let last = metrics.last_log_index.unwrap_or(0);
        let me = node_id(&self.inner.vat);
        let reached = running.reached.borrow();
        let members = membership
            .nodes()
            .map(|(id, member)| {
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|log| log.index)
                    .unwrap_or(if *id == me { last } else { 0 });
                MemberInfo {
                    vat: member.vat.clone(),
                    hints: member.hints.clone(),
                    voter: voters.contains(id),
                    matched,
                    lag: last.saturating_sub(matched),
                    reachable: *id == me
                        || reached
                            .get(id)
                            .is_some_and(|at| at.elapsed() <= REACH_WINDOW),
                }
            })
            .collect();
        let leader = acting_leader.and_then(|id| membership.get_node(&id).map(|m| m.vat.clone()));
        Ok(StatusInfo {
            leader,
            term: metrics.current_term,
            commit_index: metrics.local_committed.as_ref().map_or(0, |c| c.index),
            applied_index: self.machine().borrow().applied(),
            served_by: self.served_by(),
            role: match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                _ => "follower",
            }
            .to_owned(),
            members,
        })
    }

    /// Takes a watch slot; `None` if the member serves [`MAX_WATCHES`].
    pub(crate) fn take_watch(&self) -> Option<WatchSlot> {
        let count = self.inner.watches.get();
        if count >= MAX_WATCHES {
            return None;
        }
        self.inner.watches.set(count + 1);
        Some(WatchSlot {
            member: Rc::downgrade(&self.inner),
        })
    }

    /// Resolves when the state machine applies something new.
    pub(crate) fn applied_notify(&self) -> Rc<tokio::sync::Notify> {
        self.inner.machine.applied()
    }

    /// The cluster's facets: a new one, minted through the admin facet.
    pub(crate) fn mint_request(
        &self,
        kind: FacetKind,
    ) -> Result<(SwissNumber, Op), DirectoryError> {
        let swiss = SwissNumber::generate().map_err(|e| DirectoryError::Unavailable {
            reason: format!("no randomness: {e}"),
        })?;
        let id = *swiss.hash().as_bytes();
        Ok((swiss, Op::MintFacet { id, kind }))
    }

    /// The token for facet `swiss`, naming every member of the membership.
    pub fn token_for(&self, swiss: &SwissNumber) -> Result<crate::DirectoryToken, DirectoryError> {
        let running = self.ready()?;
        let members = self
            .membership_nodes(&running)
            .into_values()
            .map(|m| {
                let vat = parse_vat(&m.vat).map_err(|e| e.to_string())?;
                Ok((vat, parse_hints(&m.hints)?))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|reason| DirectoryError::Unavailable { reason })?;
        Ok(crate::DirectoryToken::new(&members, swiss)?)
    }
}

/// One of a member's watch slots, given back when dropped.
pub(crate) struct WatchSlot {
    member: Weak<Inner>,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        if let Some(inner) = self.member.upgrade() {
            inner.watches.set(inner.watches.get().saturating_sub(1));
        }
    }
}

/// This machine's wall clock in milliseconds since 1970: what a request's
/// `at_ms` carries.
pub fn wall_ms() -> u64 {
    vat_env::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
