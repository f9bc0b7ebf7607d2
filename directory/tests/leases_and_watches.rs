//! Leases and watches on a three-member cluster in this process (one vat
//! per member, real TLS on loopback, redb on disk): a vat that stops
//! renewing is marked gone after its lease and a watcher of `vats/` is
//! told; a renewal brings it back; a watch resumed from an index misses
//! nothing and repeats nothing; a client that wrote through a follower
//! moves to the leader; a host is shown the bindings of the kinds it runs
//! and no others.

// Test setup failing is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use vat::VatHandle;
use vat_directory::client::{Consistency, WatchEvent};
use vat_directory::command::FacetKind;
use vat_directory::machine::Change;
use vat_directory::operator::LocalMembers;
use vat_directory::record::{BindingRecord, InstanceRecord, NameRecord, Record, VatRecord};
use vat_directory::{DirectoryClient, DirectoryToken};

/// Generous: the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(60);

fn cluster(root: &Path) -> (LocalMembers, VatHandle, DirectoryToken) {
    let members = LocalMembers::start(root, 3).unwrap();
    let client = VatHandle::start("client").unwrap();
    let admin = members.form_cluster(&client).unwrap();
    (members, client, admin)
}

fn vat_record(lease_ms: u64) -> Record {
    Record::Vat(VatRecord {
        hints: vec!["127.0.0.1:9".into()],
        labels: [("zone".to_owned(), "test".to_owned())].into(),
        lease_ms,
        expires_at_ms: 0,
        gone: false,
    })
}

/// A client holding the host facet of `vat`.
async fn host_facet(
    directory: &DirectoryClient,
    vat: &str,
) -> Result<DirectoryClient, vat_directory::DirectoryError> {
    let token = directory
        .mint_facet(FacetKind::Host {
            vat: vat.to_owned(),
        })
        .await?;
    Ok(DirectoryClient::new(token, None))
}

/// Whether the directory refused a call as beyond the facet.
fn not_permitted<T>(outcome: &Result<T, vat_directory::DirectoryError>) -> bool {
    matches!(
        outcome,
        Err(vat_directory::DirectoryError::Refused {
            kind: vat_directory::error::RefusalKind::NotPermitted,
            ..
        })
    )
}

fn gone(change: &Change) -> Option<bool> {
    match &change.record {
        Some(Record::Vat(vat)) => Some(vat.gone),
        _ => None,
    }
}

#[test]
fn a_vat_that_stops_renewing_is_marked_gone_and_watchers_are_told() {
    let root = tempfile::tempdir().unwrap();
    let (members, client, admin) = cluster(root.path());
    client
        .block_on(move || async move {
            let directory = DirectoryClient::new(admin.clone(), None);
            let vat = "a".repeat(52);
            let host = host_facet(&directory, &vat).await?;
            let key = format!("vats/{vat}");
            let mut watching = directory.watch("vats/", 0);
            // The watch starts with the prefix's state (empty).
            let first = vat_env::timeout(PATIENCE, watching.next()).await.unwrap();
            assert!(
                matches!(first, Some(Ok(WatchEvent::Reset { .. }))),
                "{first:?}"
            );
            // Registered with a 3 s lease, renewed for a while: alive.
            host.put(&key, vat_record(3_000)).await?;
            for _ in 0..10 {
                host.renew(&vat).await?;
                vat_env::sleep(Duration::from_millis(100)).await;
            }
            // A host facet writes only its own record.
            let other = format!("vats/{}", "b".repeat(52));
            let refused = host.put(&other, vat_record(3_000)).await;
            assert!(not_permitted(&refused), "{refused:?}");
            // Stops renewing: within its lease and a sweep, it is gone, and
            // the watcher hears of it after the registration.
            let mut seen = Vec::new();
            let deadline = vat_env::now() + PATIENCE;
            while !seen.iter().any(|c: &Change| gone(c) == Some(true)) {
                let event = vat_env::timeout_at(deadline, watching.next())
                    .await
                    .expect("no change in time");
                if let Some(Ok(WatchEvent::Changed(changes))) = event {
                    seen.extend(changes);
                }
            }
            assert_eq!(
                gone(&seen[0]),
                Some(false),
                "the registration comes first: {seen:?}"
            );
            let read = directory.get(&key, Consistency::Linearizable).await?;
            assert!(matches!(read.value.map(|e| e.record), Some(Record::Vat(v)) if v.gone));
            // A renewal brings it back, and the watcher hears that too.
            host.renew(&vat).await?;
            loop {
                let event = vat_env::timeout_at(deadline, watching.next())
                    .await
                    .expect("no change in time");
                if let Some(Ok(WatchEvent::Changed(changes))) = event {
                    if changes.iter().any(|c| gone(c) == Some(false)) {
                        break;
                    }
                }
            }
            Ok::<_, vat_directory::DirectoryError>(())
        })
        .unwrap();
    let _ = client.stop();
    drop(members);
}

#[test]
fn a_watch_resumed_from_an_index_misses_nothing_and_repeats_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (members, client, admin) = cluster(root.path());
    client
        .block_on(move || async move {
            let directory = DirectoryClient::new(admin.clone(), None);
            let name = |n: usize| {
                Record::Name(NameRecord {
                    refs: vec![format!("captp://example/{n}")],
                })
            };
            let mut written = Vec::new();
            for n in 0..5 {
                written.push(directory.put(&format!("names/w/{n}"), name(n)).await?);
            }
            // From the third write's index: the fourth and fifth, in order.
            let mut watching = directory.watch("names/w/", written[2]);
            let mut indexes = Vec::new();
            for n in 5..8 {
                written.push(directory.put(&format!("names/w/{n}"), name(n)).await?);
            }
            directory.delete("names/w/0").await?;
            let deadline = vat_env::now() + PATIENCE;
            while indexes.len() < 6 {
                match vat_env::timeout_at(deadline, watching.next())
                    .await
                    .expect("changes in time")
                {
                    Some(Ok(WatchEvent::Changed(changes))) => {
                        indexes.extend(changes.iter().map(|c| c.index))
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            let mut expected: Vec<u64> = written[3..].to_vec();
            let deleted = directory
                .get("names/w/0", Consistency::Linearizable)
                .await?;
            assert!(deleted.value.is_none());
            expected.push(indexes[5]);
            assert_eq!(
                indexes, expected,
                "every change after the index, once, in log order"
            );
            assert!(indexes.windows(2).all(|w| w[0] < w[1]));
            Ok::<_, vat_directory::DirectoryError>(())
        })
        .unwrap();
    let _ = client.stop();
    drop(members);
}

#[test]
fn a_client_that_wrote_through_a_follower_sends_its_next_writes_to_the_leader() {
    let root = tempfile::tempdir().unwrap();
    let (members, client, admin) = cluster(root.path());
    client
        .block_on(move || async move {
            let any = DirectoryClient::new(admin.clone(), None);
            let deadline = vat_env::now() + PATIENCE;
            let leader = loop {
                if let Some(leader) = any.status().await?.leader {
                    break leader;
                }
                assert!(vat_env::now() < deadline, "no leader in time");
                vat_env::sleep(Duration::from_millis(50)).await;
            };
            // The same facet with a follower first in the token.
            let mut order: Vec<_> = admin
                .members()
                .iter()
                .map(|m| (*m.vat(), m.hints().to_vec()))
                .collect();
            order.sort_by_key(|(vat, _)| vat.to_string() == leader);
            let follower_first = admin.with_members(&order).unwrap();
            let directory = DirectoryClient::new(follower_first, None);
            let first = directory.status().await?;
            assert_ne!(
                first.served_by, leader,
                "the first member in use is a follower"
            );
            directory
                .put(
                    "names/through-a-follower",
                    Record::Name(NameRecord {
                        refs: vec!["captp://example/1".into()],
                    }),
                )
                .await?;
            let after = directory.status().await?;
            assert_eq!(after.served_by, leader, "calls moved to the leader");
            Ok::<_, vat_directory::DirectoryError>(())
        })
        .unwrap();
    let _ = client.stop();
    drop(members);
}

#[test]
fn a_host_sees_the_bindings_of_the_kinds_it_runs_and_no_others() {
    let root = tempfile::tempdir().unwrap();
    let (members, client, admin) = cluster(root.path());
    client
        .block_on(move || async move {
            let directory = DirectoryClient::new(admin.clone(), None);
            let vat = "a".repeat(52);
            let host = host_facet(&directory, &vat).await?;
            let binding = |port: &str| {
                Record::Binding(BindingRecord {
                    config: [("port".to_owned(), port.to_owned())].into(),
                })
            };
            let mine = "bindings/echo/http/default";
            let theirs = "bindings/ledger/kv/default";
            directory.put(mine, binding("8080")).await?;
            directory.put(theirs, binding("9090")).await?;
            // Before it runs an echo, the host is shown neither binding.
            let listed = host.list("bindings/", Consistency::Linearizable, 0).await?;
            assert!(listed.value.0.is_empty(), "{:?}", listed.value.0);
            // A host registers its own instances, and no other host's.
            let instance = Record::Instance(InstanceRecord {
                refs: vec!["captp://example/echo".into()],
            });
            host.put(&format!("instances/echo@1.0.0/{vat}/0"), instance.clone())
                .await?;
            let other = format!("instances/echo@1.0.0/{}a/0", "b".repeat(51));
            let refused = host.put(&other, instance.clone()).await;
            assert!(not_permitted(&refused), "{refused:?}");
            // Another host's instance, registered by the operator, is not
            // shown to this one: its tokens are authority to it.
            directory.put(&other, instance).await?;
            let listed = host
                .list("instances/", Consistency::Linearizable, 0)
                .await?;
            let keys: Vec<_> = listed.value.0.iter().map(|e| e.key.clone()).collect();
            assert_eq!(keys, [format!("instances/echo@1.0.0/{vat}/0")]);
            // Running an echo, it is shown echo's binding only.
            let listed = host.list("bindings/", Consistency::Linearizable, 0).await?;
            let keys: Vec<_> = listed.value.0.iter().map(|e| e.key.as_str()).collect();
            assert_eq!(keys, [mine]);
            let read = host.get(theirs, Consistency::Linearizable).await;
            assert!(not_permitted(&read), "{read:?}");
            // A watch of `bindings/` carries echo's changes, never ledger's.
            let mut watching = host.watch("bindings/", listed.index);
            directory.put(theirs, binding("9091")).await?;
            let changed = directory.put(mine, binding("8081")).await?;
            let deadline = vat_env::now() + PATIENCE;
            let mut seen = Vec::new();
            while !seen.iter().any(|c: &Change| c.index == changed) {
                match vat_env::timeout_at(deadline, watching.next())
                    .await
                    .expect("changes in time")
                {
                    Some(Ok(WatchEvent::Changed(changes))) => seen.extend(changes),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(seen.iter().all(|c| c.key == mine), "{seen:?}");
            Ok::<_, vat_directory::DirectoryError>(())
        })
        .unwrap();
    let _ = client.stop();
    drop(members);
}
