//! The rules of the store: minting, lookup, revocation, expiry, binding,
//! listing, object state, and what survives closing the database.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sturdyrefs::{
    Lookup, MintOptions, ObjectRef, Purged, RedbStore, StateBatch, Store, StoreError, SwissHash,
    SwissNumber, TokenRecord, VatId,
};
use tempfile::TempDir;

#[allow(clippy::unwrap_used)]
fn open() -> (TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("vat.redb")).unwrap();
    (dir, store)
}

#[allow(clippy::unwrap_used)]
fn object(kind: &str, id: u64) -> ObjectRef {
    ObjectRef::new(kind, id).unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn alice() -> VatId {
    VatId::from_bytes([0xa1; 32])
}

fn mallory() -> VatId {
    VatId::from_bytes([0x66; 32])
}

#[test]
fn a_minted_token_is_found_with_its_record() {
    let (_dir, store) = open();
    let counter = object("counter", 1);
    let minted = store
        .mint_at(counter.clone(), MintOptions::default(), at(0))
        .unwrap();
    assert_eq!(minted.record.swiss_hash, minted.swiss.hash());
    assert_eq!(minted.record.object, counter);
    assert_eq!(minted.record.created_at, at(0));
    assert!(!minted.record.revoked);
    assert_eq!(
        store.lookup_at(&minted.swiss, None, at(1)).unwrap(),
        Lookup::Found(minted.record.clone())
    );
    assert_eq!(
        store.lookup(&minted.swiss, Some(&alice())).unwrap(),
        Lookup::Found(minted.record)
    );
}

#[test]
fn a_guessed_swiss_number_is_unknown() {
    let (_dir, store) = open();
    store
        .mint(object("counter", 1), MintOptions::default())
        .unwrap();
    for _ in 0..100 {
        let guess = SwissNumber::generate().unwrap();
        assert_eq!(store.lookup(&guess, None).unwrap(), Lookup::Unknown);
    }
    assert_eq!(
        store
            .lookup(&SwissNumber::from_bytes([0; 32]), None)
            .unwrap(),
        Lookup::Unknown
    );
}

#[test]
fn every_mint_makes_a_fresh_secret() {
    let (_dir, store) = open();
    let counter = object("counter", 1);
    let a = store.mint(counter.clone(), MintOptions::default()).unwrap();
    let b = store.mint(counter.clone(), MintOptions::default()).unwrap();
    assert_ne!(a.swiss, b.swiss);
    assert_eq!(store.tokens_for(&counter).unwrap().len(), 2);
}

#[test]
fn a_revoked_token_stays_revoked() {
    let (_dir, store) = open();
    let minted = store
        .mint(object("counter", 1), MintOptions::default())
        .unwrap();
    let hash = minted.record.swiss_hash;
    assert!(store.revoke(&hash).unwrap());
    assert_eq!(store.lookup(&minted.swiss, None).unwrap(), Lookup::Revoked);
    assert!(store.revoke(&hash).unwrap(), "revoking twice is fine");
    assert_eq!(store.lookup(&minted.swiss, None).unwrap(), Lookup::Revoked);
    assert!(store.token(&hash).unwrap().unwrap().revoked);
    let unknown = SwissNumber::from_bytes([5; 32]).hash();
    assert!(!store.revoke(&unknown).unwrap());
}

#[test]
fn revoking_an_object_revokes_all_its_tokens_and_no_other() {
    let (_dir, store) = open();
    let a = object("counter", 1);
    let b = object("counter", 2);
    let a_tokens: Vec<_> = (0..3)
        .map(|_| store.mint(a.clone(), MintOptions::default()).unwrap())
        .collect();
    let b_token = store.mint(b.clone(), MintOptions::default()).unwrap();
    store.revoke(&a_tokens[0].record.swiss_hash).unwrap();

    assert_eq!(
        store.revoke_object(&a).unwrap(),
        2,
        "one was already revoked"
    );
    for minted in &a_tokens {
        assert_eq!(store.lookup(&minted.swiss, None).unwrap(), Lookup::Revoked);
    }
    assert!(matches!(
        store.lookup(&b_token.swiss, None).unwrap(),
        Lookup::Found(_)
    ));
    assert!(store.tokens_for(&a).unwrap().iter().all(|r| r.revoked));
    assert_eq!(store.revoke_object(&a).unwrap(), 0);
    assert_eq!(store.revoke_object(&object("nothing", 9)).unwrap(), 0);
}

#[test]
fn an_expiring_token_works_strictly_before_its_expiry() {
    let (_dir, store) = open();
    let options = MintOptions {
        expires_at: Some(at(10)),
        ..MintOptions::default()
    };
    let minted = store.mint_at(object("counter", 1), options, at(0)).unwrap();
    assert!(matches!(
        store.lookup_at(&minted.swiss, None, at(9)).unwrap(),
        Lookup::Found(_)
    ));
    assert_eq!(
        store.lookup_at(&minted.swiss, None, at(10)).unwrap(),
        Lookup::Expired
    );
    assert_eq!(
        store.lookup_at(&minted.swiss, None, at(1000)).unwrap(),
        Lookup::Expired
    );
    // Revocation is reported before expiry.
    store.revoke(&minted.record.swiss_hash).unwrap();
    assert_eq!(
        store.lookup_at(&minted.swiss, None, at(1000)).unwrap(),
        Lookup::Revoked
    );
}

#[test]
fn an_expiry_in_the_past_is_expired_at_once() {
    let (_dir, store) = open();
    let options = MintOptions {
        expires_at: Some(SystemTime::now() - Duration::from_secs(1)),
        ..MintOptions::default()
    };
    let minted = store.mint(object("counter", 1), options).unwrap();
    assert_eq!(store.lookup(&minted.swiss, None).unwrap(), Lookup::Expired);
}

#[test]
fn a_bound_token_is_unknown_to_every_other_presenter_whatever_its_state() {
    let (_dir, store) = open();
    let options = MintOptions {
        expires_at: Some(at(10)),
        bound_to: Some(alice()),
        single_use: false,
    };
    let minted = store.mint_at(object("counter", 1), options, at(0)).unwrap();
    let swiss = &minted.swiss;

    assert!(matches!(
        store.lookup_at(swiss, Some(&alice()), at(1)).unwrap(),
        Lookup::Found(_)
    ));
    // A thief, and an anonymous presenter, learn nothing.
    assert_eq!(
        store.lookup_at(swiss, Some(&mallory()), at(1)).unwrap(),
        Lookup::Unknown
    );
    assert_eq!(
        store.lookup_at(swiss, None, at(1)).unwrap(),
        Lookup::Unknown
    );
    // Not even that it has expired...
    assert_eq!(
        store.lookup_at(swiss, Some(&alice()), at(20)).unwrap(),
        Lookup::Expired
    );
    assert_eq!(
        store.lookup_at(swiss, Some(&mallory()), at(20)).unwrap(),
        Lookup::Unknown
    );
    // ...or was revoked.
    store.revoke(&minted.record.swiss_hash).unwrap();
    assert_eq!(
        store.lookup_at(swiss, Some(&alice()), at(1)).unwrap(),
        Lookup::Revoked
    );
    assert_eq!(
        store.lookup_at(swiss, Some(&mallory()), at(1)).unwrap(),
        Lookup::Unknown
    );
}

#[test]
fn listing_shows_records_and_no_secrets() {
    let (_dir, store) = open();
    let mut minted: Vec<_> = (0..5)
        .map(|i| {
            store
                .mint(object("counter", i), MintOptions::default())
                .unwrap()
        })
        .collect();
    let mut listed = store.tokens().unwrap();
    let key = |r: &TokenRecord| r.swiss_hash;
    listed.sort_by_key(key);
    minted.sort_by_key(|m| key(&m.record));
    let expected: Vec<TokenRecord> = minted.iter().map(|m| m.record.clone()).collect();
    assert_eq!(listed, expected);
    let shown = format!("{listed:?} {minted:?}");
    for m in &minted {
        assert!(!shown.contains(m.swiss.encode().as_str()));
        assert!(!shown.contains(&data_encoding::HEXLOWER.encode(m.swiss.as_bytes())));
    }
}

#[test]
fn the_same_hash_cannot_be_stored_twice() {
    let (_dir, store) = open();
    let minted = store
        .mint(object("counter", 1), MintOptions::default())
        .unwrap();
    let mut again = minted.record.clone();
    again.object = object("other", 2);
    assert!(matches!(
        store.insert_token(&again),
        Err(StoreError::AlreadyExists(hash)) if hash == minted.record.swiss_hash
    ));
    assert_eq!(
        store.token(&minted.record.swiss_hash).unwrap(),
        Some(minted.record)
    );
    assert!(store.tokens_for(&object("other", 2)).unwrap().is_empty());
}

#[test]
fn object_state_is_put_read_and_deleted() {
    let (_dir, store) = open();
    let a = object("counter", 1);
    let b = object("counter", 2);
    assert_eq!(store.get_state(&a).unwrap(), None);
    store.put_state(&a, b"one").unwrap();
    assert_eq!(store.get_state(&a).unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(store.get_state(&b).unwrap(), None);
    store.put_state(&a, b"").unwrap();
    assert_eq!(store.get_state(&a).unwrap().as_deref(), Some(&b""[..]));
    store.delete_state(&a).unwrap();
    assert_eq!(store.get_state(&a).unwrap(), None);
    store.delete_state(&a).unwrap();
}

#[test]
fn a_batch_applies_in_order_in_one_commit() {
    let (_dir, store) = open();
    let objects: Vec<_> = (0..10).map(|i| object("cell", i)).collect();
    let mut batch = StateBatch::new();
    for (i, o) in objects.iter().enumerate() {
        batch.put(o.clone(), vec![i as u8]);
    }
    batch.put(objects[0].clone(), b"later wins".to_vec());
    batch.delete(objects[9].clone());
    assert_eq!(batch.len(), 12);
    store.commit(batch).unwrap();
    assert_eq!(
        store.get_state(&objects[0]).unwrap().as_deref(),
        Some(&b"later wins"[..])
    );
    assert_eq!(store.get_state(&objects[5]).unwrap(), Some(vec![5]));
    assert_eq!(store.get_state(&objects[9]).unwrap(), None);
    store.commit(StateBatch::new()).unwrap();
}

#[test]
fn same_id_different_kind_is_a_different_object() {
    let (_dir, store) = open();
    store.put_state(&object("a", 1), b"a").unwrap();
    store.put_state(&object("b", 1), b"b").unwrap();
    assert_eq!(
        store.get_state(&object("a", 1)).unwrap(),
        Some(b"a".to_vec())
    );
    assert_eq!(
        store.get_state(&object("b", 1)).unwrap(),
        Some(b"b".to_vec())
    );
}

#[test]
fn everything_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vat.redb");
    let counter = object("counter", 1);
    let (live, revoked, bound) = {
        let store = RedbStore::open(&path).unwrap();
        let live = store.mint(counter.clone(), MintOptions::default()).unwrap();
        let revoked = store.mint(counter.clone(), MintOptions::default()).unwrap();
        let bound = store
            .mint(
                object("counter", 2),
                MintOptions {
                    expires_at: Some(SystemTime::now() + Duration::from_secs(3600)),
                    bound_to: Some(alice()),
                    single_use: false,
                },
            )
            .unwrap();
        store.revoke(&revoked.record.swiss_hash).unwrap();
        store.put_state(&counter, b"41").unwrap();
        store.put_state(&counter, b"42").unwrap();
        (live, revoked, bound)
    };
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.lookup(&live.swiss, None).unwrap(),
        Lookup::Found(live.record.clone())
    );
    assert_eq!(store.lookup(&revoked.swiss, None).unwrap(), Lookup::Revoked);
    assert_eq!(
        store.lookup(&bound.swiss, Some(&alice())).unwrap(),
        Lookup::Found(bound.record.clone())
    );
    assert_eq!(
        store.lookup(&bound.swiss, Some(&mallory())).unwrap(),
        Lookup::Unknown
    );
    assert_eq!(store.get_state(&counter).unwrap(), Some(b"42".to_vec()));
    assert_eq!(store.tokens().unwrap().len(), 3);
    assert_eq!(store.tokens_for(&counter).unwrap().len(), 2);
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let (dir, store) = open();
    let path = dir.path().join("vat.redb");
    match RedbStore::open(&path) {
        Err(StoreError::InUse { path: p }) => assert_eq!(p, path),
        other => panic!("expected InUse, got {other:?}"),
    }
    drop(store);
    RedbStore::open(&path).unwrap();
}

#[test]
fn a_newer_format_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vat.redb");
    drop(RedbStore::open(&path).unwrap());
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u32>::new("meta"))
                .unwrap();
            meta.insert("format", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::UnsupportedFormat {
            found: 99,
            supported: 2,
            ..
        })
    ));
}

#[test]
fn a_file_that_is_not_a_database_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vat.redb");
    std::fs::write(&path, b"this is not a redb file, just some text").unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
}

#[test]
fn one_store_serves_many_threads() {
    let (_dir, store) = open();
    let store: Arc<dyn Store> = Arc::new(store);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..20u64 {
                    let o = object("cell", t * 100 + i);
                    let minted = store.mint(o.clone(), MintOptions::default()).unwrap();
                    store.put_state(&o, &i.to_be_bytes()).unwrap();
                    assert!(matches!(
                        store.lookup(&minted.swiss, None).unwrap(),
                        Lookup::Found(_)
                    ));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(store.tokens().unwrap().len(), 80);
    assert_eq!(
        store.get_state(&object("cell", 319)).unwrap(),
        Some(19u64.to_be_bytes().to_vec())
    );
}

#[test]
fn a_single_use_token_keeps_its_mark_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vat.redb");
    let minted = {
        let store = RedbStore::open(&path).unwrap();
        let options = MintOptions {
            single_use: true,
            ..MintOptions::default()
        };
        store.mint(object("counter", 1), options).unwrap()
    };
    assert!(minted.record.single_use);
    let store = RedbStore::open(&path).unwrap();
    match store.lookup(&minted.swiss, None).unwrap() {
        Lookup::Found(record) => assert!(record.single_use),
        other => panic!("expected the token, got {other:?}"),
    }
    let reusable = store
        .mint(object("counter", 1), MintOptions::default())
        .unwrap();
    assert!(!reusable.record.single_use);
}

fn expiring(at: SystemTime) -> MintOptions {
    MintOptions {
        expires_at: Some(at),
        ..MintOptions::default()
    }
}

fn single_use() -> MintOptions {
    MintOptions {
        single_use: true,
        ..MintOptions::default()
    }
}

#[test]
fn a_purge_deletes_expired_and_used_single_use_records_and_nothing_else() {
    let (_dir, store) = open();
    let counter = object("counter", 1);
    let now = SystemTime::now();
    let mint = |options| store.mint_at(counter.clone(), options, now).unwrap();
    let expired = mint(expiring(now + Duration::from_secs(10)));
    let revoked_expired = mint(expiring(now + Duration::from_secs(10)));
    store.revoke(&revoked_expired.record.swiss_hash).unwrap();
    let used = mint(single_use());
    store.revoke(&used.record.swiss_hash).unwrap();
    let unused = mint(single_use());
    let revoked = mint(MintOptions::default());
    store.revoke(&revoked.record.swiss_hash).unwrap();
    let forever = mint(MintOptions::default());
    let later = mint(expiring(now + Duration::from_secs(1000)));

    let when = now + Duration::from_secs(20);
    let purged = store.purge_due(when, 100).unwrap();
    assert!(!purged.more);
    let mut removed = purged.removed.clone();
    removed.sort();
    let mut wanted: Vec<SwissHash> = [&expired, &revoked_expired, &used]
        .iter()
        .map(|m| m.record.swiss_hash)
        .collect();
    wanted.sort();
    assert_eq!(removed, wanted);

    // A purged token is gone: unknown, unlisted, out of the object's index.
    for gone in [&expired, &revoked_expired, &used] {
        assert_eq!(
            store.lookup_at(&gone.swiss, None, when).unwrap(),
            Lookup::Unknown
        );
        assert_eq!(store.token(&gone.record.swiss_hash).unwrap(), None);
    }
    assert!(matches!(
        store.lookup_at(&unused.swiss, None, when).unwrap(),
        Lookup::Found(_)
    ));
    assert_eq!(
        store.lookup_at(&revoked.swiss, None, when).unwrap(),
        Lookup::Revoked
    );
    assert!(matches!(
        store.lookup_at(&forever.swiss, None, when).unwrap(),
        Lookup::Found(_)
    ));
    assert!(matches!(
        store.lookup_at(&later.swiss, None, when).unwrap(),
        Lookup::Found(_)
    ));
    assert_eq!(store.tokens().unwrap().len(), 4);
    assert_eq!(store.tokens_for(&counter).unwrap().len(), 4);

    // Nothing more is due until `later` expires.
    assert_eq!(store.purge_due(when, 100).unwrap(), Purged::default());
    let end = now + Duration::from_secs(1000);
    assert_eq!(
        store.purge_due(end, 100).unwrap().removed,
        vec![later.record.swiss_hash]
    );
    assert_eq!(store.tokens().unwrap().len(), 3);
}

#[test]
fn a_token_is_purged_at_its_expiry_not_before() {
    let (_dir, store) = open();
    let expiry = at(100);
    let minted = store
        .mint_at(object("counter", 1), expiring(expiry), at(0))
        .unwrap();
    let just_before = expiry - Duration::from_nanos(1);
    assert!(store.purge_due(just_before, 10).unwrap().removed.is_empty());
    assert!(matches!(
        store.lookup_at(&minted.swiss, None, just_before).unwrap(),
        Lookup::Found(_)
    ));
    assert_eq!(
        store.purge_due(expiry, 10).unwrap().removed,
        vec![minted.record.swiss_hash]
    );
}

#[test]
fn revoking_an_object_queues_its_single_use_tokens_for_purging() {
    let (_dir, store) = open();
    let counter = object("counter", 1);
    let used = store.mint(counter.clone(), single_use()).unwrap();
    let ordinary = store.mint(counter.clone(), MintOptions::default()).unwrap();
    assert_eq!(store.revoke_object(&counter).unwrap(), 2);
    let purged = store
        .purge_due(SystemTime::now() + Duration::from_secs(1), 10)
        .unwrap();
    assert_eq!(purged.removed, vec![used.record.swiss_hash]);
    assert_eq!(
        store.lookup(&ordinary.swiss, None).unwrap(),
        Lookup::Revoked
    );
}

#[test]
fn one_purge_pass_deletes_at_most_its_limit_and_later_passes_the_rest() {
    const RECORDS: usize = 5_000;
    const LIMIT: usize = 512;
    let (_dir, store) = open();
    let counter = object("counter", 1);
    for _ in 0..RECORDS {
        store
            .mint_at(counter.clone(), expiring(at(10)), at(0))
            .unwrap();
    }
    let keeper = store
        .mint_at(counter.clone(), MintOptions::default(), at(0))
        .unwrap();
    let mut passes = Vec::new();
    loop {
        let purged = store.purge_due(at(20), LIMIT).unwrap();
        assert!(purged.removed.len() <= LIMIT, "{}", purged.removed.len());
        passes.push(purged.removed.len());
        if !purged.more {
            break;
        }
        // A pass that says more remain did its full share.
        assert_eq!(purged.removed.len(), LIMIT);
    }
    assert_eq!(passes.iter().sum::<usize>(), RECORDS, "{passes:?}");
    assert_eq!(passes.len(), RECORDS.div_ceil(LIMIT), "{passes:?}");
    assert_eq!(store.tokens().unwrap(), vec![keeper.record.clone()]);
    assert_eq!(store.tokens_for(&counter).unwrap(), vec![keeper.record]);
}

#[test]
fn the_purge_queue_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vat.redb");
    let minted = {
        let store = RedbStore::open(&path).unwrap();
        store
            .mint_at(object("counter", 1), expiring(at(10)), at(0))
            .unwrap()
    };
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.purge_due(at(10), 10).unwrap().removed,
        vec![minted.record.swiss_hash]
    );
}

#[test]
fn a_file_of_format_1_is_brought_up_to_date_and_its_due_records_purged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vat.redb");
    let (expiring_token, used, kept) = {
        let store = RedbStore::open(&path).unwrap();
        let counter = object("counter", 1);
        let expiring_token = store
            .mint_at(counter.clone(), expiring(at(10)), at(0))
            .unwrap();
        let used = store.mint_at(counter.clone(), single_use(), at(0)).unwrap();
        store.revoke(&used.record.swiss_hash).unwrap();
        let kept = store
            .mint_at(counter, MintOptions::default(), at(0))
            .unwrap();
        (expiring_token, used, kept)
    };
    // The file as a version 1 build left it: no purge queue.
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u32>::new("meta"))
                .unwrap();
            meta.insert("format", 1).unwrap();
        }
        assert!(txn
            .delete_table(redb::TableDefinition::<[u8; 44], ()>::new("purge_queue"))
            .unwrap());
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let mut removed = store.purge_due(at(20), 10).unwrap().removed;
    removed.sort();
    let mut wanted = vec![expiring_token.record.swiss_hash, used.record.swiss_hash];
    wanted.sort();
    assert_eq!(removed, wanted);
    assert_eq!(store.tokens().unwrap(), vec![kept.record]);
    drop(store);
    // And it is a version 2 file now.
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = txn
        .open_table(redb::TableDefinition::<&str, u32>::new("meta"))
        .unwrap();
    assert_eq!(meta.get("format").unwrap().unwrap().value(), 2);
}
