//! Raft between directory members over `RaftPeer`: three members, each in a
//! vat of its own, in one process, over real TLS on loopback. A leader is
//! elected, a write commits and is applied on all three, and a vat outside
//! the membership that restores the `RaftPeer` token is refused and changes
//! nothing.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capnp::capability::FromClientHook;
use futures::{FutureExt, StreamExt};
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::type_config::alias::{
    EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf,
};
use openraft::{EntryPayload, LogState, RaftLogReader, RaftSnapshotBuilder, StoredMembership};
use schema::directory_capnp::raft_peer;
use sturdyrefs::{LocationHint, SturdyRef, SwissNumber, VatId};
use vat::net::{tls, Identity, Limits};
use vat::sturdy::{restore, vat_id, Persistence};
use vat::{ErrorKind, VatHandle};
use vat_directory::command::{FacetId, Op, Request, Response};
use vat_directory::machine::Machine;
use vat_directory::network::Network;
use vat_directory::peer::{ForwardError, Forwarder, Handlers, PeerService, PEER_KIND};
use vat_directory::record::{NameRecord, Record};
use vat_directory::types::{node_id, Config, Member, SnapshotData};

type Raft = openraft::Raft<Config, MemMachine>;

/// The admin facet of the test cluster.
const ADMIN: FacetId = [7; 32];

/// A hang guard, never a speed requirement.
const PATIENCE: Duration = Duration::from_secs(120);

// ---- an in-memory log ------------------------------------------------------

#[derive(Default)]
struct LogData {
    entries: BTreeMap<u64, EntryOf<Config>>,
    vote: Option<VoteOf<Config>>,
    committed: Option<LogIdOf<Config>>,
    purged: Option<LogIdOf<Config>>,
}

#[derive(Clone, Default)]
struct MemLog(Rc<RefCell<LogData>>);

impl RaftLogReader<Config> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<Config>>, io::Error> {
        Ok(self
            .0
            .borrow()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<Config>>, io::Error> {
        Ok(self.0.borrow().vote)
    }
}

impl RaftLogStorage<Config> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> Result<LogState<Config>, io::Error> {
        let data = self.0.borrow();
        let last = data
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(data.purged);
        Ok(LogState {
            last_purged_log_id: data.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> MemLog {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<Config>) -> Result<(), io::Error> {
        self.0.borrow_mut().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<Config>>,
    ) -> Result<(), io::Error> {
        self.0.borrow_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<Config>>, io::Error> {
        Ok(self.0.borrow().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<Config>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<Config>>,
    {
        let mut data = self.0.borrow_mut();
        for entry in entries {
            data.entries.insert(entry.log_id.index(), entry);
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogIdOf<Config>>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index() + 1);
        self.0.borrow_mut().entries.split_off(&from);
        Ok(())
    }

    async fn purge(&mut self, upto: LogIdOf<Config>) -> Result<(), io::Error> {
        let mut data = self.0.borrow_mut();
        data.purged = Some(upto);
        data.entries = data.entries.split_off(&(upto.index() + 1));
        Ok(())
    }
}

// ---- an in-memory state machine around `Machine` ---------------------------

struct MachineData {
    machine: Machine,
    applied: Option<LogIdOf<Config>>,
    membership: StoredMembershipOf<Config>,
    snapshot: Option<(SnapshotMetaOf<Config>, SnapshotData)>,
}

#[derive(Clone)]
struct MemMachine(Rc<RefCell<MachineData>>);

impl MemMachine {
    fn new() -> MemMachine {
        MemMachine(Rc::new(RefCell::new(MachineData {
            machine: Machine::new(ADMIN),
            applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
        })))
    }
}

impl RaftSnapshotBuilder<Config> for MemMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<Config, SnapshotData>, io::Error> {
        let mut data = self.0.borrow_mut();
        let bytes = data.machine.snapshot().map_err(io::Error::other)?;
        let meta = SnapshotMetaOf::<Config> {
            last_log_id: data.applied,
            last_membership: data.membership.clone(),
        };
        data.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(openraft::Snapshot {
            meta,
            snapshot: bytes,
        })
    }
}

impl RaftStateMachine<Config> for MemMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = MemMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<Config>>, StoredMembershipOf<Config>), io::Error> {
        let data = self.0.borrow();
        Ok((data.applied, data.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures::Stream<Item = Result<EntryResponder<Config>, io::Error>> + Unpin,
    {
        while let Some(next) = entries.next().await {
            let (entry, responder) = next?;
            let index = entry.log_id.index();
            let mut data = self.0.borrow_mut();
            data.applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Normal(request) => data.machine.apply(index, &request),
                EntryPayload::Membership(membership) => {
                    data.membership = StoredMembership::new(Some(entry.log_id), membership);
                    data.machine.skip(index);
                    Response::Done { index }
                }
                EntryPayload::Blank => {
                    data.machine.skip(index);
                    Response::Done { index }
                }
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> MemMachine {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<Config>,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let mut data = self.0.borrow_mut();
        data.machine.restore(&snapshot).map_err(io::Error::other)?;
        data.applied = meta.last_log_id;
        data.membership = meta.last_membership.clone();
        data.snapshot = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<Config, SnapshotData>>, io::Error> {
        Ok(self
            .0
            .borrow()
            .snapshot
            .clone()
            .map(|(meta, snapshot)| openraft::Snapshot { meta, snapshot }))
    }
}

// ---- members in vats --------------------------------------------------------

/// What a member's vat keeps between steps (a vat is one thread).
struct Local {
    raft: Raft,
    machine: MemMachine,
    _persistence: Persistence,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

fn raft() -> Raft {
    LOCAL.with(|l| l.borrow().as_ref().unwrap().raft.clone())
}

fn machine() -> MemMachine {
    LOCAL.with(|l| l.borrow().as_ref().unwrap().machine.clone())
}

/// One vat, listening with TLS on loopback.
struct Vat {
    handle: VatHandle,
    identity: Identity,
    hint: String,
    _dir: tempfile::TempDir,
}

impl Vat {
    fn start(name: &str) -> Vat {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate().unwrap();
        let handle = VatHandle::start(name).unwrap();
        Vat {
            handle,
            identity,
            hint: String::new(),
            _dir: dir,
        }
    }

    fn id(&self) -> VatId {
        vat_id(self.identity.public_key())
    }

    fn member(&self) -> Member {
        Member {
            vat: self.id().to_string(),
            hints: vec![self.hint.clone()],
        }
    }

    /// Serves the vat's gateway; the restorer joins once Raft runs.
    fn serve(&mut self) {
        let (path, identity) = (self._dir.path().to_path_buf(), self.identity.clone());
        self.hint = self
            .handle
            .run_async(move || async move {
                let persistence = Persistence::open(&path, vat_id(identity.public_key())).unwrap();
                let listener = tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &identity)
                    .await
                    .unwrap();
                let hint = listener.local_addr().to_string();
                persistence.set_hints(vec![hint.parse().unwrap()]);
                persistence.serve(listener, Limits::default());
                LOCAL.with(|l| {
                    let raft_less = l.borrow().is_none();
                    assert!(raft_less);
                });
                PERSISTENCE.with(|p| *p.borrow_mut() = Some(persistence));
                hint
            })
            .wait()
            .unwrap();
    }

    /// Starts this vat's Raft node, admitting `cluster` while it has no
    /// membership of its own.
    fn start_raft(&self, peers: &SwissNumber, cluster: Vec<VatId>) {
        let (identity, peers) = (self.identity.clone(), peers.clone());
        self.handle
            .run_async(move || async move {
                let config = openraft::Config {
                    cluster_name: "directory-network-test".to_owned(),
                    heartbeat_interval: 250,
                    election_timeout_min: 1500,
                    election_timeout_max: 3000,
                    ..Default::default()
                };
                let config = Arc::new(config.validate().unwrap());
                let id = node_id(&vat_id(identity.public_key()));
                let limits = Limits::default();
                let network = Network::new(identity, peers.clone(), limits);
                let machine = MemMachine::new();
                let raft = Raft::new(id, config, network, MemLog::default(), machine.clone())
                    .await
                    .unwrap();
                // The leader runs what followers forward; others say who leads.
                let forward: Forwarder = Rc::new(|request| {
                    async move {
                        match self::raft().client_write(request).await {
                            Ok(written) => Ok(written.data),
                            Err(error) => Err(ForwardError::NotLeader {
                                leader: error.forward_to_leader().and_then(|f| f.leader_id),
                            }),
                        }
                    }
                    .boxed_local()
                });
                let service =
                    PeerService::new(raft.clone(), Handlers::forwarding(forward), &limits);
                service.expect(cluster);
                let persistence = PERSISTENCE.with(|p| p.borrow_mut().take()).unwrap();
                persistence.set_restorer(service.restorer(&peers));
                LOCAL.with(|l| {
                    *l.borrow_mut() = Some(Local {
                        raft,
                        machine,
                        _persistence: persistence,
                    })
                });
            })
            .wait()
            .unwrap();
    }

    /// What this member's metrics say, through `read`.
    fn metrics<R: Send + 'static>(&self, read: fn(&openraft::RaftMetrics<Config>) -> R) -> R {
        self.handle
            .run(move || {
                use openraft::type_config::async_runtime::WatchReceiver;
                read(&raft().metrics().borrow_watched())
            })
            .wait()
            .unwrap()
    }

    /// How many records this member's state machine holds.
    fn records(&self) -> usize {
        self.handle
            .run(|| machine().0.borrow().machine.len())
            .wait()
            .unwrap()
    }

    /// The record under `key` in this member's state machine.
    fn record(&self, key: &'static str) -> Option<Record> {
        self.handle
            .run(move || {
                machine()
                    .0
                    .borrow()
                    .machine
                    .get(key)
                    .map(|s| s.record.clone())
            })
            .wait()
            .unwrap()
    }
}

thread_local! {
    static PERSISTENCE: RefCell<Option<Persistence>> = const { RefCell::new(None) };
}

/// Waits for `done`, checking every 50 ms, up to [`PATIENCE`].
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cluster(count: usize) -> (Vec<Vat>, SwissNumber) {
    let peers = SwissNumber::generate().unwrap();
    let mut vats: Vec<Vat> = (0..count)
        .map(|i| Vat::start(&format!("member-{i}")))
        .collect();
    for vat in &mut vats {
        vat.serve();
    }
    let ids: Vec<VatId> = vats.iter().map(Vat::id).collect();
    for vat in &vats {
        vat.start_raft(&peers, ids.clone());
    }
    // Initialized on one member only: the others learn the membership from
    // the leader, admitting it meanwhile because they expect it.
    let members: BTreeMap<u64, Member> = vats
        .iter()
        .map(|v| (node_id(&v.id()), v.member()))
        .collect();
    vats[0]
        .handle
        .run_async(move || async move { raft().initialize(members).await.unwrap() })
        .wait()
        .unwrap();
    (vats, peers)
}

/// The leader all members agree on, once they do.
fn agreed_leader(vats: &[Vat]) -> u64 {
    let mut leader = None;
    eventually("a leader every member knows", || {
        let seen: Vec<Option<u64>> = vats
            .iter()
            .map(|v| v.metrics(|m| m.current_leader))
            .collect();
        leader = seen[0];
        leader.is_some() && seen.iter().all(|s| *s == leader)
    });
    leader.unwrap()
}

fn put(key: &str, serial: u64) -> Request {
    Request {
        facet: ADMIN,
        client: [1; 16],
        serial,
        answered_below: serial,
        at_ms: 1,
        op: Op::Put {
            key: key.to_owned(),
            record: Record::Name(NameRecord {
                refs: vec!["captp://example".to_owned()],
            }),
        },
    }
}

#[test]
fn a_write_on_the_elected_leader_is_applied_on_all_three_members() {
    let (vats, _peers) = cluster(3);
    let leader = agreed_leader(&vats);
    let on_leader = vats.iter().find(|v| node_id(&v.id()) == leader).unwrap();
    let response = on_leader
        .handle
        .run_async(|| async {
            raft()
                .client_write(put("names/first", 1))
                .await
                .map(|r| r.data)
        })
        .wait()
        .unwrap()
        .unwrap();
    let Response::Done { index } = response else {
        panic!("the write was refused: {response:?}");
    };
    for vat in &vats {
        eventually("the write applied everywhere", || {
            vat.metrics(|m| m.last_applied.map(|l| l.index())) >= Some(index)
        });
        assert!(
            matches!(vat.record("names/first"), Some(Record::Name(_))),
            "member {} lacks the record",
            vat.id()
        );
    }

    // A follower's request, forwarded to the leader over RaftPeer.
    let follower = vats.iter().find(|v| node_id(&v.id()) != leader).unwrap();
    let (identity, leader_member) = (follower.identity.clone(), on_leader.member());
    let forwarded = follower
        .handle
        .run_async(move || async move {
            let network = Network::new(identity, _peers, Limits::default());
            let mut client = network.client(leader, &leader_member);
            client.forward(&put("names/second", 2), PATIENCE).await
        })
        .wait()
        .unwrap();
    let Ok(Response::Done { index }) = forwarded else {
        panic!("the forwarded write failed: {forwarded:?}");
    };
    for vat in &vats {
        eventually("the forwarded write applied everywhere", || {
            vat.metrics(|m| m.last_applied.map(|l| l.index())) >= Some(index)
        });
        assert!(
            vat.record("names/second").is_some(),
            "member {} lacks the record",
            vat.id()
        );
    }
}

#[test]
fn a_member_refuses_a_snapshot_beyond_the_vote_and_undecodable_payloads_and_keeps_running() {
    let (vats, peers) = cluster(3);
    agreed_leader(&vats);
    let vote = vats[0].metrics(|m| m.vote);
    let (identity, target) = (vats[1].identity.clone(), vats[0].member());
    let (snapshot_error, garbage_error) = vats[1]
        .handle
        .run_async(move || async move {
            let hints = target
                .hints
                .iter()
                .map(|h| LocationHint::parse(h).unwrap())
                .collect();
            let token = SturdyRef::new(VatId::parse(&target.vat).unwrap(), hints, peers).unwrap();
            let (object, _) = restore(&token, Some(&identity), Limits::default())
                .await
                .unwrap();
            let peer: raft_peer::Client = object.cast_to();
            // The member's own vote, with a snapshot from a later term than
            // it: openraft would accept the vote and then assert.
            let term = vote.leader_id.term;
            let meta = SnapshotMetaOf::<Config> {
                last_log_id: Some(openraft::LogId::new(
                    openraft::impls::leader_id_adv::LeaderId {
                        term: term + 1,
                        node_id: 1,
                    },
                    1_000,
                )),
                last_membership: StoredMembership::default(),
            };
            let mut call = peer.install_snapshot_request();
            call.get().set_vote(&postcard::to_allocvec(&vote).unwrap());
            call.get().set_meta(&postcard::to_allocvec(&meta).unwrap());
            call.get()
                .set_data(&Machine::new(ADMIN).snapshot().unwrap());
            let snapshot = call.send().promise.await.err().unwrap();
            let mut call = peer.append_entries_request();
            call.get().set_request(&[0xff; 3]);
            let garbage = call.send().promise.await.err().unwrap();
            (vat::Error::from(snapshot), vat::Error::from(garbage))
        })
        .wait()
        .unwrap();
    assert_eq!(
        snapshot_error.kind(),
        ErrorKind::InvalidArgument,
        "{snapshot_error}"
    );
    assert!(
        snapshot_error
            .message()
            .contains("snapshot is inconsistent"),
        "{snapshot_error}"
    );
    assert_eq!(
        garbage_error.kind(),
        ErrorKind::InvalidArgument,
        "{garbage_error}"
    );
    assert!(
        garbage_error
            .message()
            .contains("append-entries request does not decode"),
        "{garbage_error}"
    );
    assert!(
        vats[0].metrics(|m| m.running_state.is_ok()),
        "the member's raft stopped"
    );
    // And it still takes part: a write commits on all three.
    let leader = agreed_leader(&vats);
    let on_leader = vats.iter().find(|v| node_id(&v.id()) == leader).unwrap();
    let written = on_leader
        .handle
        .run_async(|| async {
            raft()
                .client_write(put("names/after", 1))
                .await
                .map(|r| r.data)
        })
        .wait()
        .unwrap();
    assert!(matches!(written, Ok(Response::Done { .. })), "{written:?}");
}

#[test]
fn a_member_nobody_answers_for_is_unreachable_and_one_that_stalls_times_out() {
    let vat = Vat::start("caller");
    let identity = vat.identity.clone();
    let (unanswered, stalled) = vat
        .handle
        .run_async(move || async move {
            let peers = SwissNumber::generate().unwrap();
            let network = Network::new(identity, peers, Limits::default());
            let absent = Identity::generate().unwrap();
            // A port nothing listens on.
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let closed_hint = closed.local_addr().unwrap().to_string();
            drop(closed);
            let member = Member {
                vat: vat_id(absent.public_key()).to_string(),
                hints: vec![closed_hint],
            };
            let option = openraft::network::RPCOption::new(PATIENCE);
            let request =
                openraft::raft::VoteRequest::<Config>::new(openraft::impls::Vote::new(1, 1), None);
            let mut client = network.client(2, &member);
            let unanswered =
                openraft::RaftNetworkV2::vote(&mut client, request.clone(), option).await;
            // A listener that accepts TCP and never answers the TLS handshake.
            let stalling = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let member = Member {
                hints: vec![stalling.local_addr().unwrap().to_string()],
                ..member
            };
            let option = openraft::network::RPCOption::new(Duration::from_millis(400));
            let mut client = network.client(2, &member);
            let stalled = openraft::RaftNetworkV2::vote(&mut client, request, option).await;
            drop(stalling);
            (unanswered.err().unwrap(), stalled.err().unwrap())
        })
        .wait()
        .unwrap();
    assert!(
        matches!(unanswered, openraft::errors::RPCError::Unreachable(_)),
        "{unanswered:?}"
    );
    assert!(
        matches!(stalled, openraft::errors::RPCError::Timeout(_)),
        "{stalled:?}"
    );
}

#[test]
fn a_vat_outside_the_membership_is_refused_and_changes_nothing() {
    let (vats, peers) = cluster(3);
    agreed_leader(&vats);
    let records_before: Vec<usize> = vats.iter().map(Vat::records).collect();

    let outsider = Vat::start("outsider");
    let outsider_id = node_id(&outsider.id());
    let identity = outsider.identity.clone();
    let target = vats[0].member();
    let (restored_kind, vote_error, append_error, anonymous_error) = outsider
        .handle
        .run_async(move || async move {
            let hints = target
                .hints
                .iter()
                .map(|h| LocationHint::parse(h).unwrap())
                .collect();
            let token = SturdyRef::new(VatId::parse(&target.vat).unwrap(), hints, peers).unwrap();
            let limits = Limits::default();
            // Without proving a key, the token is not even restored.
            let anonymous = restore(&token, None, limits).await.err().unwrap();
            let anonymous_error = match anonymous {
                vat::sturdy::RestoreError::Refused(error) => error.kind(),
                other => panic!("the anonymous restore failed otherwise: {other}"),
            };
            let (object, kind) = restore(&token, Some(&identity), limits).await.unwrap();
            let peer: raft_peer::Client = object.cast_to();
            // A vote of a far higher term: a member that took it would
            // change its vote and lose its leader.
            let mut vote =
                openraft::impls::Vote::new(1_000, node_id(&vat_id(identity.public_key())));
            vote.committed = false;
            let request = openraft::raft::VoteRequest::<Config>::new(vote, None);
            let bytes = postcard::to_allocvec(&(false, request)).unwrap();
            let mut call = peer.vote_request();
            call.get().set_request(&bytes);
            let vote_error = call.send().promise.await.err().unwrap();
            let mut call = peer.append_entries_request();
            call.get().set_request(&[0; 16]);
            let append_error = call.send().promise.await.err().unwrap();
            (
                kind,
                vat::Error::from(vote_error).kind(),
                vat::Error::from(append_error).kind(),
                anonymous_error,
            )
        })
        .wait()
        .unwrap();
    assert_eq!(restored_kind, PEER_KIND);
    assert_eq!(vote_error, ErrorKind::UnknownToken);
    assert_eq!(append_error, ErrorKind::UnknownToken);
    assert_eq!(anonymous_error, ErrorKind::UnknownToken);

    // Members may still elect among themselves (a busy machine can delay
    // a heartbeat), but none took the outsider's vote or its term.
    for vat in &vats {
        let vote = vat.metrics(|m| m.vote);
        assert!(
            vote.leader_id.term < 1_000,
            "{} took the outsider's term",
            vat.id()
        );
        assert_ne!(
            vote.leader_id.node_id,
            outsider_id,
            "{} voted for the outsider",
            vat.id()
        );
    }
    let records_after: Vec<usize> = vats.iter().map(Vat::records).collect();
    assert_eq!(records_before, records_after);
}
