//! What a store keeps about each token, and what looking one up tells.

use std::fmt;
use std::time::SystemTime;

use thiserror::Error;

use crate::swiss::{SwissHash, SwissNumber};
use crate::vat_id::VatId;

/// The longest object kind name, in bytes.
pub const MAX_KIND_LEN: usize = 255;

/// An object kind name that is empty or longer than [`MAX_KIND_LEN`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("an object kind is 1 to {MAX_KIND_LEN} bytes long, found {len}")]
pub struct KindError {
    /// The length of the name given.
    pub len: usize,
}

/// Which object a token reaches, or whose state is kept: a kind name (what
/// sort of object it is, so the vat knows how to revive it) and an id that
/// is opaque to this crate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    kind: String,
    id: u64,
}

impl ObjectRef {
    /// The object `id` of kind `kind`; the kind must be 1 to
    /// [`MAX_KIND_LEN`] bytes.
    pub fn new(kind: impl Into<String>, id: u64) -> Result<ObjectRef, KindError> {
        let kind = kind.into();
        if kind.is_empty() || kind.len() > MAX_KIND_LEN {
            return Err(KindError { len: kind.len() });
        }
        Ok(ObjectRef { kind, id })
    }

    /// The kind name.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectRef({}#{})", self.kind, self.id)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.kind, self.id)
    }
}

/// What a store keeps about one token. It holds the hash of the swiss
/// number, never the number itself, so records can be listed and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The hash of the token's swiss number: the record's key.
    pub swiss_hash: SwissHash,
    /// The object the token reaches.
    pub object: ObjectRef,
    /// When the token was minted.
    pub created_at: SystemTime,
    /// When the token stops working, if ever. It works strictly before
    /// this instant.
    pub expires_at: Option<SystemTime>,
    /// The only vat that may present the token, if it is bound to one.
    pub bound_to: Option<VatId>,
    /// Whether the token was revoked. Revocation is for good.
    pub revoked: bool,
    /// Whether the token works only once: the vat that serves it revokes it
    /// as it restores it (a handoff from one vat to another).
    pub single_use: bool,
}

impl TokenRecord {
    /// Whether the token has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|expiry| now >= expiry)
    }

    /// Whether `presenter` may present the token: always for an unbound
    /// token, and only the vat it is bound to for a bound one.
    pub fn accepts(&self, presenter: Option<&VatId>) -> bool {
        match &self.bound_to {
            None => true,
            Some(bound) => presenter == Some(bound),
        }
    }
}

/// The choices made when minting a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MintOptions {
    /// When the token stops working; `None` for never.
    pub expires_at: Option<SystemTime>,
    /// Bind the token to one vat: presented by any other, it is unknown.
    pub bound_to: Option<VatId>,
    /// The token works once (see [`TokenRecord::single_use`]).
    pub single_use: bool,
}

/// A freshly minted token: its secret, which only the caller now holds
/// (put it in a [`SturdyRef`](crate::SturdyRef) and hand it on), and the
/// record the store kept.
#[derive(Debug)]
pub struct Minted {
    /// The secret. The store kept only its hash.
    pub swiss: SwissNumber,
    /// What the store kept.
    pub record: TokenRecord,
}

/// What looking up a presented swiss number found.
///
/// A token bound to another vat than the one presenting it comes back as
/// [`Lookup::Unknown`], whatever its state: whoever holds a stolen bound
/// token learns nothing from presenting it, not even that it exists, was
/// revoked or has expired. (The answer is the same; the time taken is not
/// made equal: decoding a stored record takes a little longer than finding
/// none, so a thief able to time lookups closely could tell that a token
/// exists, though still not use it.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A live token the presenter may use, and what it reaches.
    Found(TokenRecord),
    /// No such token (or one bound to another vat).
    Unknown,
    /// The token was revoked.
    Revoked,
    /// The token has expired.
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record() -> TokenRecord {
        TokenRecord {
            swiss_hash: SwissNumber::from_bytes([1; 32]).hash(),
            object: ObjectRef::new("counter", 7).unwrap(),
            created_at: SystemTime::UNIX_EPOCH,
            expires_at: None,
            bound_to: None,
            revoked: false,
            single_use: false,
        }
    }

    #[test]
    fn object_kinds_are_bounded() {
        assert_eq!(ObjectRef::new("", 1), Err(KindError { len: 0 }));
        assert!(ObjectRef::new("k".repeat(255), 1).is_ok());
        assert_eq!(
            ObjectRef::new("k".repeat(256), 1),
            Err(KindError { len: 256 })
        );
        assert_eq!(
            ObjectRef::new("counter", 7).unwrap().to_string(),
            "counter#7"
        );
    }

    #[test]
    fn expiry_is_exclusive() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let r = TokenRecord {
            expires_at: Some(at),
            ..record()
        };
        assert!(!r.is_expired_at(at - Duration::from_nanos(1)));
        assert!(r.is_expired_at(at));
        assert!(!record().is_expired_at(at));
    }

    #[test]
    fn binding_accepts_only_its_vat() {
        let a = VatId::from_bytes([1; 32]);
        let b = VatId::from_bytes([2; 32]);
        let bound = TokenRecord {
            bound_to: Some(a),
            ..record()
        };
        assert!(bound.accepts(Some(&a)));
        assert!(!bound.accepts(Some(&b)));
        assert!(!bound.accepts(None));
        assert!(record().accepts(None));
        assert!(record().accepts(Some(&b)));
    }
}
