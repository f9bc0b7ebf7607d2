//! Where token records and persistent object state are kept.
//!
//! [`Store`] is the seam between the rules of sturdyrefs and a storage
//! backend. A backend implements a handful of plain operations on records
//! and state; minting and lookup, which carry the rules (fresh secrets,
//! only hashes stored, binding, revocation, expiry), are provided by the
//! trait itself so every backend applies them the same way. [`RedbStore`],
//! an embedded ACID database in one file, is the default backend.

mod encoding;
mod error;
mod redb;

use std::time::SystemTime;

pub use self::error::StoreError;
pub use self::redb::RedbStore;

use crate::record::{Lookup, MintOptions, Minted, ObjectRef, TokenRecord};
use crate::swiss::{SwissHash, SwissNumber};
use crate::vat_id::VatId;

/// Token records and persistent object state, kept durably.
///
/// Every method is one atomic transaction: when it returns `Ok`, what it
/// changed is durable (it survives the process being killed); when it
/// returns an error, nothing changed. Several state changes that must land
/// together go in one [`StateBatch`] and one [`Store::commit`].
///
/// Backends store what they are given: [`TokenRecord`]s carry only the hash
/// of a swiss number, and no method takes a swiss number except the
/// provided [`Store::lookup`], which hashes it first.
pub trait Store: Send + Sync {
    /// Stores a new token record. Fails with [`StoreError::AlreadyExists`],
    /// changing nothing, if a record with the same hash exists.
    fn insert_token(&self, record: &TokenRecord) -> Result<(), StoreError>;

    /// The record stored under `hash`, whatever its state.
    fn token(&self, hash: &SwissHash) -> Result<Option<TokenRecord>, StoreError>;

    /// Revokes the token stored under `hash`, for good. Returns whether
    /// such a token exists (revoking a revoked token again is not an
    /// error).
    fn revoke(&self, hash: &SwissHash) -> Result<bool, StoreError>;

    /// Revokes every token that reaches `object`, in one transaction.
    /// Returns how many were live until now.
    fn revoke_object(&self, object: &ObjectRef) -> Result<usize, StoreError>;

    /// Every token record, in the order of their hashes. Records hold no
    /// secrets.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// The records of the tokens that reach `object`.
    fn tokens_for(&self, object: &ObjectRef) -> Result<Vec<TokenRecord>, StoreError>;

    /// The state last committed for `object`, if any.
    fn get_state(&self, object: &ObjectRef) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies every change in `batch`, in order, in one transaction: after
    /// `Ok` all are durable, after an error none is.
    fn commit(&self, batch: StateBatch) -> Result<(), StoreError>;

    /// Deletes the token records that are due for purging at `now`, in one
    /// transaction that looks at no more than `limit` of them, so that its
    /// cost is bounded however many are due: call it again while
    /// [`Purged::more`] says some remain.
    ///
    /// Due are expired records (whatever else their state) and single-use
    /// records once revoked (used, or revoked by the operator). Revoked
    /// records of ordinary tokens without an expiry stay, for the operator
    /// to list. Once deleted a record is gone: its token looks up as
    /// [`Lookup::Unknown`].
    fn purge_due(&self, now: SystemTime, limit: usize) -> Result<Purged, StoreError>;

    /// Sets the state of `object` to `bytes`, durably.
    fn put_state(&self, object: &ObjectRef, bytes: &[u8]) -> Result<(), StoreError> {
        let mut batch = StateBatch::new();
        batch.put(object.clone(), bytes.to_vec());
        self.commit(batch)
    }

    /// Forgets the state of `object`, durably.
    fn delete_state(&self, object: &ObjectRef) -> Result<(), StoreError> {
        let mut batch = StateBatch::new();
        batch.delete(object.clone());
        self.commit(batch)
    }

    /// Mints a token for `object`: a fresh swiss number from the operating
    /// system's CSPRNG, whose hash is stored with the record. The swiss
    /// number itself is returned to the caller and kept nowhere.
    fn mint(&self, object: ObjectRef, options: MintOptions) -> Result<Minted, StoreError> {
        self.mint_at(object, options, vat_env::wall())
    }

    /// [`Store::mint`], with `now` as the creation time.
    fn mint_at(
        &self,
        object: ObjectRef,
        options: MintOptions,
        now: SystemTime,
    ) -> Result<Minted, StoreError> {
        let swiss = SwissNumber::generate()?;
        let record = TokenRecord {
            swiss_hash: swiss.hash(),
            object,
            created_at: now,
            expires_at: options.expires_at,
            bound_to: options.bound_to,
            revoked: false,
            single_use: options.single_use,
        };
        self.insert_token(&record)?;
        Ok(Minted { swiss, record })
    }

    /// Looks up the token whose swiss number was presented, by
    /// `presenter` (the vat that proved its key on the connection; `None`
    /// when it is anonymous or local).
    ///
    /// The checks, in order: a token bound to another vat than `presenter`
    /// is [`Lookup::Unknown`], exactly as if it did not exist, so a thief
    /// learns nothing; then [`Lookup::Revoked`]; then [`Lookup::Expired`];
    /// else [`Lookup::Found`].
    fn lookup(&self, swiss: &SwissNumber, presenter: Option<&VatId>) -> Result<Lookup, StoreError> {
        self.lookup_at(swiss, presenter, vat_env::wall())
    }

    /// [`Store::lookup`], at time `now`.
    fn lookup_at(
        &self,
        swiss: &SwissNumber,
        presenter: Option<&VatId>,
        now: SystemTime,
    ) -> Result<Lookup, StoreError> {
        let Some(record) = self.token(&swiss.hash())? else {
            return Ok(Lookup::Unknown);
        };
        Ok(if !record.accepts(presenter) {
            Lookup::Unknown
        } else if record.revoked {
            Lookup::Revoked
        } else if record.is_expired_at(now) {
            Lookup::Expired
        } else {
            Lookup::Found(record)
        })
    }
}

/// What one [`Store::purge_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// The hashes of the records deleted.
    pub removed: Vec<SwissHash>,
    /// Whether more records were due than this pass looked at.
    pub more: bool,
}

/// Several changes to persistent object state, committed together by
/// [`Store::commit`]. Changes apply in the order added, so a later change
/// to the same object wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateBatch {
    changes: Vec<StateChange>,
}

/// One change in a [`StateBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// Set the object's state to these bytes.
    Put(ObjectRef, Vec<u8>),
    /// Forget the object's state.
    Delete(ObjectRef),
}

impl StateBatch {
    /// An empty batch.
    pub fn new() -> StateBatch {
        StateBatch::default()
    }

    /// Adds: set `object`'s state to `bytes`.
    pub fn put(&mut self, object: ObjectRef, bytes: Vec<u8>) -> &mut StateBatch {
        self.changes.push(StateChange::Put(object, bytes));
        self
    }

    /// Adds: forget `object`'s state.
    pub fn delete(&mut self, object: ObjectRef) -> &mut StateBatch {
        self.changes.push(StateChange::Delete(object));
        self
    }

    /// How many changes the batch holds.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes, in order.
    pub fn changes(&self) -> &[StateChange] {
        &self.changes
    }

    /// The changes, in order, by value.
    pub fn into_changes(self) -> Vec<StateChange> {
        self.changes
    }
}
