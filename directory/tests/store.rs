//! The directory's redb store: what it keeps survives a reopen, snapshots
//! carry the machine from one store to another, a newer format is refused,
//! and a Raft node on it keeps its writes across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::stream;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    EntryPayload, RaftLogReader, RaftNetworkFactory, RaftNetworkV2, RaftSnapshotBuilder,
    ReadPolicy, ServerState,
};
use redb::{Database, TableDefinition};
use vat_directory::command::{FacetId, Op, Request};
use vat_directory::record::{NameRecord, Record};
use vat_directory::store::{
    Entry, LogId, LogStore, Raft, Snapshot, StateMachineStore, Store, StoreError, Vote,
    FORMAT_VERSION,
};
use vat_directory::types::{Config, Member};
use vat_directory::writer::Commits;

const ADMIN: FacetId = [1; 32];
const NODE: u64 = 1;
/// A hang guard only: nothing here is expected to take long.
const PATIENCE: Duration = Duration::from_secs(120);

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(
        LeaderId {
            term,
            node_id: NODE,
        },
        index,
    )
}

fn put(serial: u64, key: &str) -> Request {
    Request {
        facet: ADMIN,
        client: [7; 16],
        serial,
        answered_below: serial,
        at_ms: 1000 + serial,
        op: Op::Put {
            key: key.to_owned(),
            record: Record::Name(NameRecord {
                refs: vec![format!("captp://{key}")],
            }),
        },
    }
}

fn normal(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(put(index, &format!("names/n{index}"))),
    }
}

fn open(path: &Path) -> (LogStore, StateMachineStore) {
    Store::open(Database::create(path).unwrap(), ADMIN, Commits::Grouped).unwrap()
}

/// Applies `entries` as followers do (no one waiting for an answer).
async fn apply(state: &mut StateMachineStore, entries: Vec<Entry>) {
    let items = entries.into_iter().map(|entry| Ok((entry, None)));
    state.apply(stream::iter(items)).await.unwrap();
}

/// Runs `test` on a current-thread runtime's `LocalSet`, where a vat runs
/// openraft (`single-threaded`: its tasks are `spawn_local`).
fn run_local<F: Future<Output = ()>>(test: F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        tokio::time::timeout(PATIENCE, test)
            .await
            .expect("the test hung");
    });
}

#[test]
fn everything_stored_comes_back_after_a_reopen() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.redb");
        let written: Vec<Entry> = (1..=12).map(|index| normal(2, index)).collect();
        let vote = Vote::new_committed(2, NODE);
        let snapshot = {
            let (mut log, mut state) = open(&path);
            log.save_vote(&vote).await.unwrap();
            log.blocking_append(written.clone()).await.unwrap();
            log.truncate_after(Some(log_id(2, 10))).await.unwrap();
            log.save_committed(Some(log_id(2, 8))).await.unwrap();
            log.purge(log_id(2, 3)).await.unwrap();
            log.save_cluster(b"three members").unwrap();
            apply(&mut state, written[..8].to_vec()).await;
            state
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap()
        };

        let (mut log, mut state) = open(&path);
        let mut reader = log.get_log_reader().await;
        assert_eq!(reader.read_vote().await.unwrap(), Some(vote));
        let log_state = log.get_log_state().await.unwrap();
        assert_eq!(log_state.last_purged_log_id, Some(log_id(2, 3)));
        assert_eq!(log_state.last_log_id, Some(log_id(2, 10)));
        assert_eq!(
            reader.try_get_log_entries(0..100).await.unwrap(),
            written[3..10].to_vec()
        );
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 8)));
        assert_eq!(
            log.load_cluster().unwrap().as_deref(),
            Some(&b"three members"[..])
        );
        let stored: Snapshot = state.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(stored.meta, snapshot.meta);
        assert_eq!(stored.snapshot, snapshot.snapshot);
        // The machine is loaded from the snapshot on open.
        assert_eq!(state.last_applied(), Some(log_id(2, 8)));
        assert_eq!(state.applied_state().await.unwrap().0, Some(log_id(2, 8)));
        assert_eq!(state.machine().borrow().len(), 8);
    });
}

#[test]
fn a_snapshot_installed_in_a_fresh_store_gives_the_same_records() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut source) = open(&dir.path().join("source.redb"));
        apply(
            &mut source,
            (1..=200).map(|index| normal(1, index)).collect(),
        )
        .await;
        let snapshot = source
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 200)));

        let fresh_path = dir.path().join("fresh.redb");
        {
            let (_, mut fresh) = open(&fresh_path);
            assert!(fresh.get_current_snapshot().await.unwrap().is_none());
            fresh
                .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
                .await
                .unwrap();
            assert_eq!(
                fresh.machine().borrow().records(),
                source.machine().borrow().records()
            );
            assert_eq!(fresh.last_applied(), Some(log_id(1, 200)));
        }
        // Installed means kept: a reopen loads it.
        let (_, reopened) = open(&fresh_path);
        assert_eq!(
            reopened.machine().borrow().records(),
            source.machine().borrow().records()
        );
        assert_eq!(reopened.machine().borrow().len(), 200);
        assert_eq!(reopened.last_applied(), Some(log_id(1, 200)));
    });
}

#[test]
fn a_database_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.redb");
    drop(open(&path));
    {
        // What a later version of the directory would leave behind.
        let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let newer = postcard::to_allocvec(&(FORMAT_VERSION + 1)).unwrap();
        txn.open_table(meta)
            .unwrap()
            .insert("format", newer.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let refused =
        Store::open(Database::create(&path).unwrap(), ADMIN, Commits::Grouped).unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::UnsupportedFormat { found, supported }
                if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION
        ),
        "{refused:?}"
    );
}

/// A network for a one-member cluster: there is no one to reach.
struct Nobody;

impl RaftNetworkFactory<Config> for Nobody {
    type Network = Nobody;

    async fn new_client(&mut self, _target: u64, _node: &Member) -> Nobody {
        Nobody
    }
}

fn nobody() -> Unreachable<Config> {
    Unreachable::from_string("a one-member cluster has no peers")
}

impl RaftNetworkV2<Config> for Nobody {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<Config>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<Config>, RPCError<Config>> {
        Err(RPCError::Unreachable(nobody()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<Config>,
        _option: RPCOption,
    ) -> Result<VoteResponse<Config>, RPCError<Config>> {
        Err(RPCError::Unreachable(nobody()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<Config>, StreamingError<Config>> {
        Err(StreamingError::Network(NetworkError::from_string(
            "a one-member cluster has no peers",
        )))
    }
}

async fn start(path: &Path) -> (Raft, StateMachineStore) {
    let (log, state) = open(path);
    let config = openraft::Config {
        cluster_name: "directory-test".into(),
        ..Default::default()
    };
    let config = Arc::new(config.validate().unwrap());
    let raft = Raft::new(NODE, config, Nobody, log, state.clone())
        .await
        .unwrap();
    (raft, state)
}

async fn lead(raft: &Raft) {
    raft.wait(Some(PATIENCE))
        .state(ServerState::Leader, "the only member leads")
        .await
        .unwrap();
}

#[test]
fn a_raft_node_keeps_its_writes_across_a_restart() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.redb");
        let member = Member {
            vat: "vat-1".into(),
            hints: vec!["127.0.0.1:1".into()],
        };
        let (applied, records) = {
            let (raft, state) = start(&path).await;
            raft.initialize(BTreeMap::from([(NODE, member.clone())]))
                .await
                .unwrap();
            lead(&raft).await;
            for serial in 1..=3 {
                raft.client_write(put(serial, &format!("names/a{serial}")))
                    .await
                    .unwrap();
            }
            // A snapshot in the middle: the restart loads it, then
            // re-applies the committed entries after it.
            raft.trigger().snapshot().await.unwrap();
            let snapshotted = state.last_applied();
            raft.wait(Some(PATIENCE))
                .snapshot(snapshotted.unwrap(), "the snapshot is built")
                .await
                .unwrap();
            for serial in 4..=5 {
                raft.client_write(put(serial, &format!("names/a{serial}")))
                    .await
                    .unwrap();
            }
            raft.ensure_linearizable(ReadPolicy::ReadIndex)
                .await
                .unwrap();
            let records = state.machine().borrow().records().clone();
            assert_eq!(records.len(), 5);
            let applied = state.last_applied();
            raft.shutdown().await.unwrap();
            (applied, records)
        };

        let (raft, state) = start(&path).await;
        // Recovery happens inside `Raft::new`: the snapshot, then the
        // committed entries after it.
        assert_eq!(state.machine().borrow().records(), &records);
        assert_eq!(state.last_applied(), applied);
        let members: BTreeSet<u64> = state.membership().membership().voter_ids().collect();
        assert_eq!(members, BTreeSet::from([NODE]));
        lead(&raft).await;
        raft.client_write(put(6, "names/a6")).await.unwrap();
        raft.ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .unwrap();
        assert_eq!(state.machine().borrow().len(), 6);
        raft.shutdown().await.unwrap();
    });
}
