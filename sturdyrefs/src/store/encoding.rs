//! How records and object references are laid out as bytes in a store.
//!
//! A token record is a format byte followed by the postcard encoding of
//! [`StoredRecord`] (format 2; format 1, without `single_use`, is still
//! read). An object reference, used as a key, is the length of
//! its kind (one byte), the kind's UTF-8 bytes, and the id as 8 big-endian
//! bytes, so keys of one kind sort by id. A key of the purge queue is a
//! time (seconds as 8 and nanoseconds as 4 big-endian bytes) followed by a
//! swiss hash, so the queue sorts by the time its records fall due.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::record::{ObjectRef, TokenRecord};
use crate::store::StoreError;
use crate::swiss::SwissHash;
use crate::vat_id::VatId;

/// The first byte of every token record written now.
const RECORD_FORMAT: u8 = 2;

/// The format of records written before tokens could be single-use.
const RECORD_FORMAT_1: u8 = 1;

/// A token record as stored; the hash is the key, so it is not repeated.
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    kind: String,
    id: u64,
    created_at: StoredTime,
    expires_at: Option<StoredTime>,
    bound_to: Option<[u8; 32]>,
    revoked: bool,
    single_use: bool,
}

/// A record of format 1: the same fields but `single_use`.
#[derive(Serialize, Deserialize)]
struct StoredRecord1 {
    kind: String,
    id: u64,
    created_at: StoredTime,
    expires_at: Option<StoredTime>,
    bound_to: Option<[u8; 32]>,
    revoked: bool,
}

impl From<StoredRecord1> for StoredRecord {
    fn from(old: StoredRecord1) -> StoredRecord {
        StoredRecord {
            kind: old.kind,
            id: old.id,
            created_at: old.created_at,
            expires_at: old.expires_at,
            bound_to: old.bound_to,
            revoked: old.revoked,
            single_use: false,
        }
    }
}

/// A point in time as seconds and nanoseconds since 1970.
#[derive(Serialize, Deserialize)]
struct StoredTime {
    secs: u64,
    nanos: u32,
}

fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

fn time_to_stored(time: SystemTime) -> Result<StoredTime, StoreError> {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| StoreError::TimeBeforeEpoch)?;
    Ok(StoredTime {
        secs: since.as_secs(),
        nanos: since.subsec_nanos(),
    })
}

fn time_from_stored(time: &StoredTime) -> Result<SystemTime, StoreError> {
    if time.nanos >= 1_000_000_000 {
        return Err(corrupt("token record", "nanoseconds out of range"));
    }
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(time.secs, time.nanos))
        .ok_or_else(|| corrupt("token record", "time out of range"))
}

/// Encodes a record (all but its hash, which is the key).
pub(crate) fn encode_record(record: &TokenRecord) -> Result<Vec<u8>, StoreError> {
    let stored = StoredRecord {
        kind: record.object.kind().to_owned(),
        id: record.object.id(),
        created_at: time_to_stored(record.created_at)?,
        expires_at: record.expires_at.map(time_to_stored).transpose()?,
        bound_to: record.bound_to.map(VatId::to_bytes),
        revoked: record.revoked,
        single_use: record.single_use,
    };
    let bytes = vec![RECORD_FORMAT];
    postcard::to_extend(&stored, bytes).map_err(|e| corrupt("token record", e))
}

/// Decodes the record stored under `hash`.
pub(crate) fn decode_record(hash: SwissHash, bytes: &[u8]) -> Result<TokenRecord, StoreError> {
    let Some((&format, body)) = bytes.split_first() else {
        return Err(corrupt("token record", "empty value"));
    };
    let (stored, rest): (StoredRecord, &[u8]) = match format {
        RECORD_FORMAT => postcard::take_from_bytes(body),
        RECORD_FORMAT_1 => postcard::take_from_bytes::<StoredRecord1>(body)
            .map(|(old, rest)| (StoredRecord::from(old), rest)),
        other => {
            return Err(corrupt(
                "token record",
                format!("unknown record format {other}"),
            ))
        }
    }
    .map_err(|e| corrupt("token record", e))?;
    if !rest.is_empty() {
        return Err(corrupt("token record", "bytes after the record"));
    }
    let object = ObjectRef::new(stored.kind, stored.id).map_err(|e| corrupt("token record", e))?;
    Ok(TokenRecord {
        swiss_hash: hash,
        object,
        created_at: time_from_stored(&stored.created_at)?,
        expires_at: stored
            .expires_at
            .as_ref()
            .map(time_from_stored)
            .transpose()?,
        bound_to: stored.bound_to.map(VatId::from_bytes),
        revoked: stored.revoked,
        single_use: stored.single_use,
    })
}

/// The length of a purge queue key: a time and a swiss hash.
pub(crate) const PURGE_KEY_LEN: usize = 12 + 32;

/// The purge queue's key for the record under `hash`, due at `due`.
pub(crate) fn purge_key(
    due: SystemTime,
    hash: &SwissHash,
) -> Result<[u8; PURGE_KEY_LEN], StoreError> {
    let due = time_to_stored(due)?;
    let mut key = [0; PURGE_KEY_LEN];
    key[..8].copy_from_slice(&due.secs.to_be_bytes());
    key[8..12].copy_from_slice(&due.nanos.to_be_bytes());
    key[12..].copy_from_slice(hash.as_bytes());
    Ok(key)
}

/// The greatest purge queue key due at `now`: every key up to it is due.
/// `None` before 1970, when nothing can be due.
pub(crate) fn purge_bound(now: SystemTime) -> Option<[u8; PURGE_KEY_LEN]> {
    let mut bound = purge_key(now, &SwissHash::from_bytes([0xff; 32])).ok()?;
    bound[12..].fill(0xff);
    Some(bound)
}

/// The swiss hash in a purge queue key.
pub(crate) fn purge_key_hash(key: &[u8; PURGE_KEY_LEN]) -> SwissHash {
    let mut hash = [0; 32];
    hash.copy_from_slice(&key[12..]);
    SwissHash::from_bytes(hash)
}

/// The key under which `object`'s state and token index entries are kept.
pub(crate) fn object_key(object: &ObjectRef) -> Vec<u8> {
    let kind = object.kind().as_bytes();
    let mut key = Vec::with_capacity(1 + kind.len() + 8);
    // ObjectRef guarantees 1..=255 bytes; saturate rather than wrap if not.
    key.push(u8::try_from(kind.len()).unwrap_or(u8::MAX));
    key.extend_from_slice(kind);
    key.extend_from_slice(&object.id().to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swiss::SwissNumber;

    #[test]
    fn records_round_trip() {
        let record = TokenRecord {
            swiss_hash: SwissNumber::from_bytes([3; 32]).hash(),
            object: ObjectRef::new("counter", u64::MAX).unwrap(),
            created_at: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123),
            expires_at: Some(SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 999_999_999)),
            bound_to: Some(VatId::from_bytes([4; 32])),
            revoked: true,
            single_use: true,
        };
        let bytes = encode_record(&record).unwrap();
        assert_eq!(bytes[0], RECORD_FORMAT);
        assert_eq!(decode_record(record.swiss_hash, &bytes).unwrap(), record);
    }

    #[test]
    fn records_of_format_1_are_read_as_reusable() {
        let old = StoredRecord1 {
            kind: "counter".to_owned(),
            id: 7,
            created_at: StoredTime { secs: 5, nanos: 0 },
            expires_at: None,
            bound_to: None,
            revoked: false,
        };
        let bytes = postcard::to_extend(&old, vec![RECORD_FORMAT_1]).unwrap();
        let hash = SwissNumber::from_bytes([3; 32]).hash();
        let record = decode_record(hash, &bytes).unwrap();
        assert_eq!(record.object, ObjectRef::new("counter", 7).unwrap());
        assert!(!record.single_use);
        assert!(!record.revoked);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let hash = SwissNumber::from_bytes([3; 32]).hash();
        let record = TokenRecord {
            swiss_hash: hash,
            object: ObjectRef::new("k", 1).unwrap(),
            created_at: SystemTime::UNIX_EPOCH,
            expires_at: None,
            bound_to: None,
            revoked: false,
            single_use: false,
        };
        let bytes = encode_record(&record).unwrap();
        assert!(decode_record(hash, &[]).is_err());
        assert!(decode_record(hash, &[2]).is_err());
        for len in 1..bytes.len() {
            assert!(decode_record(hash, &bytes[..len]).is_err(), "{len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_record(hash, &longer).is_err());
    }

    #[test]
    fn times_before_1970_are_refused() {
        let record = TokenRecord {
            swiss_hash: SwissNumber::from_bytes([3; 32]).hash(),
            object: ObjectRef::new("k", 1).unwrap(),
            created_at: SystemTime::UNIX_EPOCH - Duration::from_secs(1),
            expires_at: None,
            bound_to: None,
            revoked: false,
            single_use: false,
        };
        assert!(matches!(
            encode_record(&record),
            Err(StoreError::TimeBeforeEpoch)
        ));
    }

    #[test]
    fn purge_keys_sort_by_time_and_the_bound_takes_all_due() {
        let hash = SwissNumber::from_bytes([3; 32]).hash();
        let t = |secs, nanos| SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        let early = purge_key(t(5, 999_999_999), &hash).unwrap();
        let late = purge_key(t(6, 0), &hash).unwrap();
        assert!(early < late);
        assert_eq!(purge_key_hash(&late), hash);
        let bound = purge_bound(t(6, 0)).unwrap();
        assert!(late <= bound && early <= bound);
        assert!(purge_key(t(6, 1), &hash).unwrap() > bound);
        assert!(purge_bound(SystemTime::UNIX_EPOCH - Duration::from_secs(1)).is_none());
    }

    #[test]
    fn object_keys_sort_by_kind_then_id() {
        let a1 = object_key(&ObjectRef::new("a", 1).unwrap());
        let a2 = object_key(&ObjectRef::new("a", 2).unwrap());
        let a256 = object_key(&ObjectRef::new("a", 256).unwrap());
        let b1 = object_key(&ObjectRef::new("b", 1).unwrap());
        assert!(a1 < a2 && a2 < a256 && a256 < b1);
        assert_eq!(a1, [1, b'a', 0, 0, 0, 0, 0, 0, 0, 1]);
    }
}
