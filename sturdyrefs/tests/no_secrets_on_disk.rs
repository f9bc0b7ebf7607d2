//! The database file holds hashes of swiss numbers, never the numbers.

use std::time::{Duration, SystemTime};

use data_encoding::{BASE32_NOPAD, BASE64, BASE64URL_NOPAD, HEXLOWER, HEXUPPER};
use sturdyrefs::{MintOptions, Minted, ObjectRef, RedbStore, StateBatch, Store, VatId};

/// Every spelling of `bytes` that could plausibly end up in a file.
fn spellings(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut lower32 = BASE32_NOPAD.encode(bytes);
    lower32.make_ascii_lowercase();
    vec![
        bytes.to_vec(),
        BASE64URL_NOPAD.encode(bytes).into_bytes(),
        BASE64.encode(bytes).into_bytes(),
        HEXLOWER.encode(bytes).into_bytes(),
        HEXUPPER.encode(bytes).into_bytes(),
        BASE32_NOPAD.encode(bytes).into_bytes(),
        lower32.into_bytes(),
        // Any 16-byte stretch of the secret, in case it were split.
        bytes[..16].to_vec(),
        bytes[16..].to_vec(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_swiss_number_appears_in_the_database_file_only_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vat.redb");
    let minted: Vec<Minted> = {
        let store = RedbStore::open(&path).unwrap();
        let mut minted = Vec::new();
        for i in 0..24u64 {
            let options = MintOptions {
                expires_at: (i % 3 == 0).then(|| SystemTime::now() + Duration::from_secs(60)),
                bound_to: (i % 4 == 0).then(|| VatId::from_bytes([i as u8; 32])),
                single_use: false,
            };
            let object = ObjectRef::new("counter", i % 5).unwrap();
            minted.push(store.mint(object, options).unwrap());
        }
        // Rewrite some records, and write state, so pages get copied around.
        for m in minted.iter().step_by(3) {
            store.revoke(&m.record.swiss_hash).unwrap();
        }
        store
            .revoke_object(&ObjectRef::new("counter", 1).unwrap())
            .unwrap();
        let mut batch = StateBatch::new();
        for i in 0..5 {
            batch.put(ObjectRef::new("counter", i).unwrap(), vec![i as u8; 100]);
        }
        store.commit(batch).unwrap();
        minted
    };

    let file = std::fs::read(&path).unwrap();
    assert!(!file.is_empty());
    for m in &minted {
        let hash = m.record.swiss_hash;
        assert!(
            contains(&file, hash.as_bytes()),
            "the hash should be in the file (the scan would find what is there)"
        );
        for spelling in spellings(m.swiss.as_bytes()) {
            assert!(
                !contains(&file, &spelling),
                "a swiss number is in the database file ({} bytes)",
                spelling.len()
            );
        }
    }
}
