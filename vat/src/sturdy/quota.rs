//! Handoff quotas: how many unused handoff tokens may be outstanding at
//! once, per caller, per object and per vat, and the ledger that counts
//! them.
//!
//! A handoff token is outstanding from the moment it is asked for until it
//! is restored (used) or expires. Keys cost nothing to make, so a bound per
//! caller alone would not hold back a determined caller: the bounds per
//! object and per vat cap what any number of callers can pile up. Callers
//! that do not prove a key share one anonymous bucket.
//!
//! The ledger does no I/O and reads no clock: the persistence passes `now`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime};

use sturdyrefs::{ObjectRef, SwissHash, VatId};

use crate::error::{Error, ErrorKind};

/// Who asked for a handoff (or presented a token), as far as the vat can
/// tell: the key it proved on its connection, or nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A caller that proved this vat key.
    Vat(VatId),
    /// A caller that proved no key. All of them count as one.
    Anonymous,
}

impl Caller {
    /// The caller that proved `presenter`, or an anonymous one.
    pub fn from_presenter(presenter: Option<&VatId>) -> Caller {
        presenter.map_or(Caller::Anonymous, |vat| Caller::Vat(*vat))
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Vat(vat) => write!(f, "vat {vat}"),
            Caller::Anonymous => f.write_str("an anonymous caller"),
        }
    }
}

/// The most unused handoff tokens outstanding at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoffQuota {
    /// For one caller (one proven key; all anonymous callers together).
    /// Default 64.
    pub per_caller: usize,
    /// For one object, whoever asks. Default 256.
    pub per_object: usize,
    /// For the whole vat. Default 4096.
    pub per_vat: usize,
}

impl Default for HandoffQuota {
    fn default() -> HandoffQuota {
        HandoffQuota {
            per_caller: 64,
            per_object: 256,
            per_vat: 4096,
        }
    }
}

/// Which bound of a [`HandoffQuota`] a handoff would have broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    /// [`HandoffQuota::per_caller`].
    PerCaller,
    /// [`HandoffQuota::per_object`].
    PerObject,
    /// [`HandoffQuota::per_vat`].
    PerVat,
}

impl fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaKind::PerCaller => "per-caller",
            QuotaKind::PerObject => "per-object",
            QuotaKind::PerVat => "per-vat",
        })
    }
}

/// A handoff refused because a quota is reached. Retrying after
/// `retry_after` succeeds unless more handoffs were asked for meanwhile: by
/// then the oldest token counted against the quota has expired, if it was
/// not used sooner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "handoff refused: the {quota} quota of {limit} unused handoff tokens is reached; \
     retry in {} s",
    retry_seconds(*retry_after)
)]
pub struct QuotaExceeded {
    /// The bound reached.
    pub quota: QuotaKind,
    /// Its value.
    pub limit: usize,
    /// How long until a token counted against it expires.
    pub retry_after: Duration,
}

/// Whole seconds, rounded up, so that "retry in N s" is never too early.
fn retry_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl From<QuotaExceeded> for Error {
    /// An [`Overloaded`](ErrorKind::Overloaded) error, which crosses the
    /// wire as Cap'n Proto's `overloaded` exception: "retry later".
    fn from(refused: QuotaExceeded) -> Error {
        Error::new(ErrorKind::Overloaded, refused.to_string())
    }
}

/// Why [`Persistence::handoff`](super::Persistence::handoff) made no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    /// A quota is reached: retry later.
    #[error(transparent)]
    OverQuota(#[from] QuotaExceeded),
    /// Anything else: the object is not one this vat can hand off, the
    /// token it was restored from no longer stands, the store failed.
    #[error(transparent)]
    Refused(#[from] Error),
}

impl HandoffError {
    /// The kind of error a caller across the wire sees:
    /// [`Overloaded`](ErrorKind::Overloaded) for a quota.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HandoffError::OverQuota(_) => ErrorKind::Overloaded,
            HandoffError::Refused(error) => error.kind(),
        }
    }
}

impl From<HandoffError> for Error {
    fn from(error: HandoffError) -> Error {
        match error {
            HandoffError::OverQuota(refused) => refused.into(),
            HandoffError::Refused(error) => error,
        }
    }
}

impl From<HandoffError> for capnp::Error {
    fn from(error: HandoffError) -> capnp::Error {
        Error::from(error).into()
    }
}

/// A place in the ledger taken by [`HandoffLedger::reserve`], to be
/// [filled](HandoffLedger::fill) once the token is minted or
/// [cancelled](HandoffLedger::cancel) if minting failed. One that is
/// neither (the call was dropped midway) counts until its expiry, since a
/// token may have been written for it.
#[must_use = "fill or cancel the reservation"]
#[derive(Debug)]
pub(crate) struct Reservation(u64);

/// One outstanding handoff.
struct Slot<P> {
    caller: Caller,
    object: ObjectRef,
    expires_at: SystemTime,
    /// The token, once minted, and what the vat keeps with it.
    minted: Option<(SwissHash, P)>,
}

/// The outstanding handoffs, counted per caller, per object and in all,
/// each kept with a payload `P` until it is used or expires.
pub(crate) struct HandoffLedger<P> {
    quota: HandoffQuota,
    next: u64,
    slots: HashMap<u64, Slot<P>>,
    by_hash: HashMap<SwissHash, u64>,
    by_expiry: BTreeSet<(SystemTime, u64)>,
    per_caller: HashMap<Caller, usize>,
    per_object: HashMap<ObjectRef, usize>,
}

impl<P> HandoffLedger<P> {
    pub(crate) fn new(quota: HandoffQuota) -> HandoffLedger<P> {
        HandoffLedger {
            quota,
            next: 0,
            slots: HashMap::new(),
            by_hash: HashMap::new(),
            by_expiry: BTreeSet::new(),
            per_caller: HashMap::new(),
            per_object: HashMap::new(),
        }
    }

    /// How many handoffs are outstanding.
    pub(crate) fn outstanding(&self) -> usize {
        self.slots.len()
    }

    /// Takes a place for a handoff of `object` asked for by `caller`, whose
    /// token will expire at `expires_at`, unless a quota is reached at
    /// `now`. Places expired by `now` are released first.
    pub(crate) fn reserve(
        &mut self,
        caller: Caller,
        object: &ObjectRef,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<Reservation, QuotaExceeded> {
        self.expire(now);
        if count(&self.per_caller, &caller) >= self.quota.per_caller {
            return Err(self.exceeded(QuotaKind::PerCaller, now, |s| s.caller == caller));
        }
        if count(&self.per_object, object) >= self.quota.per_object {
            return Err(self.exceeded(QuotaKind::PerObject, now, |s| &s.object == object));
        }
        if self.slots.len() >= self.quota.per_vat {
            return Err(self.exceeded(QuotaKind::PerVat, now, |_| true));
        }
        let id = self.next;
        self.next += 1;
        *self.per_caller.entry(caller).or_insert(0) += 1;
        *self.per_object.entry(object.clone()).or_insert(0) += 1;
        self.by_expiry.insert((expires_at, id));
        self.slots.insert(
            id,
            Slot {
                caller,
                object: object.clone(),
                expires_at,
                minted: None,
            },
        );
        Ok(Reservation(id))
    }

    /// The refusal for `quota`, with the wait until the first of the places
    /// it counts (those `counted`) expires.
    fn exceeded(
        &self,
        quota: QuotaKind,
        now: SystemTime,
        counted: impl Fn(&Slot<P>) -> bool,
    ) -> QuotaExceeded {
        let limit = match quota {
            QuotaKind::PerCaller => self.quota.per_caller,
            QuotaKind::PerObject => self.quota.per_object,
            QuotaKind::PerVat => self.quota.per_vat,
        };
        let first = self
            .by_expiry
            .iter()
            .find(|(_, id)| self.slots.get(id).is_some_and(&counted))
            .map(|(expiry, _)| *expiry);
        let retry_after = first
            .and_then(|expiry| expiry.duration_since(now).ok())
            .unwrap_or(Duration::ZERO);
        QuotaExceeded {
            quota,
            limit,
            retry_after,
        }
    }

    /// Records the token minted for `reservation`, with `payload`. If the
    /// place expired meanwhile, the token has too: nothing is kept.
    pub(crate) fn fill(&mut self, reservation: Reservation, hash: SwissHash, payload: P) {
        if let Some(slot) = self.slots.get_mut(&reservation.0) {
            slot.minted = Some((hash, payload));
            self.by_hash.insert(hash, reservation.0);
        }
    }

    /// Gives back the place of a handoff whose token was never minted.
    pub(crate) fn cancel(&mut self, reservation: Reservation) {
        self.release(reservation.0);
    }

    /// The handoff token `hash` is being used: its place is released, and
    /// its payload returned. `None` if it is not outstanding here.
    pub(crate) fn take(&mut self, hash: &SwissHash) -> Option<P> {
        let id = self.by_hash.get(hash).copied()?;
        self.release(id)
            .and_then(|slot| slot.minted)
            .map(|(_, p)| p)
    }

    /// Releases every place whose token expired by `now`. Returns how many.
    pub(crate) fn expire(&mut self, now: SystemTime) -> usize {
        let mut released = 0;
        while let Some(&(expiry, id)) = self.by_expiry.first() {
            if expiry > now {
                break;
            }
            self.release(id);
            released += 1;
        }
        released
    }

    fn release(&mut self, id: u64) -> Option<Slot<P>> {
        let slot = self.slots.remove(&id)?;
        self.by_expiry.remove(&(slot.expires_at, id));
        if let Some((hash, _)) = &slot.minted {
            self.by_hash.remove(hash);
        }
        decrement(&mut self.per_caller, &slot.caller);
        decrement(&mut self.per_object, &slot.object);
        Some(slot)
    }
}

fn count<K: std::hash::Hash + Eq>(counts: &HashMap<K, usize>, key: &K) -> usize {
    counts.get(key).copied().unwrap_or(0)
}

/// Counts one fewer for `key`, forgetting keys that reach zero so that
/// callers who come and go leave nothing behind.
fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sturdyrefs::SwissNumber;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn object(id: u64) -> ObjectRef {
        ObjectRef::new("counter", id).unwrap()
    }

    fn vat(n: u8) -> Caller {
        Caller::Vat(VatId::from_bytes([n; 32]))
    }

    fn hash(n: u64) -> SwissHash {
        let mut bytes = [0; 32];
        bytes[..8].copy_from_slice(&n.to_be_bytes());
        SwissNumber::from_bytes(bytes).hash()
    }

    fn small() -> HandoffQuota {
        HandoffQuota {
            per_caller: 2,
            per_object: 3,
            per_vat: 4,
        }
    }

    #[test]
    fn a_caller_over_its_quota_is_refused_and_others_are_not() {
        let mut ledger = HandoffLedger::new(small());
        for n in 0..2 {
            let r = ledger.reserve(vat(1), &object(1), at(60), at(0)).unwrap();
            ledger.fill(r, hash(n), ());
        }
        let refused = ledger
            .reserve(vat(1), &object(2), at(70), at(10))
            .unwrap_err();
        assert_eq!(refused.quota, QuotaKind::PerCaller);
        assert_eq!(refused.limit, 2);
        assert_eq!(refused.retry_after, Duration::from_secs(50));
        assert!(
            refused.to_string().contains("per-caller quota of 2")
                && refused.to_string().contains("retry in 50 s"),
            "{refused}"
        );
        assert!(ledger.reserve(vat(2), &object(1), at(60), at(10)).is_ok());
        assert_eq!(Error::from(refused).kind(), ErrorKind::Overloaded);
    }

    #[test]
    fn fresh_keys_meet_the_object_and_vat_quotas() {
        let mut ledger = HandoffLedger::<()>::new(small());
        for n in 0..3 {
            let _ = ledger.reserve(vat(n), &object(1), at(60), at(0)).unwrap();
        }
        let refused = ledger
            .reserve(vat(9), &object(1), at(60), at(0))
            .unwrap_err();
        assert_eq!(refused.quota, QuotaKind::PerObject);
        let _ = ledger.reserve(vat(10), &object(2), at(60), at(0)).unwrap();
        let refused = ledger
            .reserve(vat(11), &object(3), at(60), at(0))
            .unwrap_err();
        assert_eq!((refused.quota, refused.limit), (QuotaKind::PerVat, 4));
        assert_eq!(ledger.outstanding(), 4);
    }

    #[test]
    fn anonymous_callers_share_one_bucket() {
        let mut ledger = HandoffLedger::<()>::new(small());
        let anonymous = Caller::from_presenter(None);
        for _ in 0..2 {
            let _ = ledger
                .reserve(anonymous, &object(1), at(60), at(0))
                .unwrap();
        }
        let refused = ledger
            .reserve(anonymous, &object(2), at(60), at(0))
            .unwrap_err();
        assert_eq!(refused.quota, QuotaKind::PerCaller);
    }

    #[test]
    fn used_cancelled_and_expired_places_are_released() {
        let mut ledger = HandoffLedger::new(small());
        let used = ledger.reserve(vat(1), &object(1), at(60), at(0)).unwrap();
        ledger.fill(used, hash(1), "parent");
        let failed = ledger.reserve(vat(1), &object(1), at(60), at(0)).unwrap();
        ledger.cancel(failed);
        let _abandoned = ledger.reserve(vat(1), &object(1), at(30), at(0)).unwrap();
        assert_eq!(ledger.outstanding(), 2);

        assert_eq!(ledger.take(&hash(1)), Some("parent"));
        assert_eq!(ledger.take(&hash(1)), None);
        assert_eq!(ledger.outstanding(), 1);
        // An abandoned place counts until its expiry, not after.
        assert_eq!(ledger.expire(at(29)), 0);
        assert_eq!(ledger.expire(at(30)), 1);
        assert_eq!(ledger.outstanding(), 0);
        assert!(ledger.per_caller.is_empty() && ledger.per_object.is_empty());
    }

    #[test]
    fn a_token_minted_after_its_place_expired_is_not_kept() {
        let mut ledger = HandoffLedger::new(small());
        let late = ledger.reserve(vat(1), &object(1), at(10), at(0)).unwrap();
        ledger.expire(at(10));
        ledger.fill(late, hash(1), ());
        assert_eq!(ledger.take(&hash(1)), None);
        assert_eq!(ledger.outstanding(), 0);
    }

    #[test]
    fn the_retry_hint_rounds_up() {
        assert_eq!(retry_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_seconds(Duration::from_secs(3)), 3);
        assert_eq!(retry_seconds(Duration::ZERO), 0);
    }
}
