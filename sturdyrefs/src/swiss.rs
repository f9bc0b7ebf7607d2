//! Swiss numbers, the secrets that name exported objects, and their hashes.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use crate::error::SwissError;

/// What SHA-256 reads before the swiss number's bytes, so that a
/// [`SwissHash`] can never be mistaken for a hash of anything else.
const HASH_DOMAIN: &[u8] = b"vat sturdyrefs swiss-number hash v1\0";

/// The operating system's random number generator failed.
#[derive(Debug, Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(#[source] getrandom::Error);

/// 256 random bits that name one exported object: knowing them is the
/// authority to reach it.
///
/// A fresh one comes from the operating system's CSPRNG
/// ([`SwissNumber::generate`]). Two swiss numbers are compared in constant
/// time (`==` included), their bytes are wiped from memory when dropped,
/// and `Debug` never shows them. Stores keep only the [`SwissHash`].
///
/// The text form, used inside tokens, is unpadded base64url (RFC 4648 §5):
/// 43 characters, parsed strictly (the last character's 2 unused bits must
/// be zero), so each swiss number has one spelling.
#[derive(Clone)]
pub struct SwissNumber([u8; 32]);

impl SwissNumber {
    /// How many bytes a swiss number has.
    pub const LEN: usize = 32;

    /// How many characters its text form has.
    pub const TEXT_LEN: usize = 43;

    /// A fresh swiss number from the operating system's CSPRNG.
    pub fn generate() -> Result<SwissNumber, RandomError> {
        let mut bytes = [0u8; 32];
        vat_env::fill(&mut bytes).map_err(RandomError)?;
        let swiss = SwissNumber(bytes);
        bytes.zeroize();
        Ok(swiss)
    }

    /// The swiss number whose bytes are `bytes` (restoring a saved one, or
    /// tests). Fresh ones come from [`SwissNumber::generate`].
    pub fn from_bytes(bytes: [u8; 32]) -> SwissNumber {
        SwissNumber(bytes)
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash under which stores keep it.
    pub fn hash(&self) -> SwissHash {
        let mut hasher = Sha256::new();
        hasher.update(HASH_DOMAIN);
        hasher.update(self.0);
        SwissHash(hasher.finalize().into())
    }

    /// The text form: 43 characters of unpadded base64url. The string is
    /// wiped from memory when dropped.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::BASE64URL_NOPAD.encode(&self.0))
    }

    /// Parses the text form, naming exactly what is wrong if it is not one.
    pub fn parse(text: &str) -> Result<SwissNumber, SwissError> {
        if let Some((position, ch)) = text.char_indices().find(|&(_, c)| !is_base64url(c)) {
            return Err(SwissError::BadChar { position, ch });
        }
        if text.len() != Self::TEXT_LEN {
            return Err(SwissError::Length {
                found: text.len(),
                expected: Self::TEXT_LEN,
            });
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        match data_encoding::BASE64URL_NOPAD.decode_mut(text.as_bytes(), &mut bytes[..]) {
            Ok(_) => Ok(SwissNumber(*bytes)),
            Err(_) => Err(SwissError::NonCanonical {
                position: Self::TEXT_LEN - 1,
            }),
        }
    }
}

/// Whether `c` is in the base64url alphabet.
pub(crate) fn is_base64url(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl PartialEq for SwissNumber {
    fn eq(&self, other: &SwissNumber) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SwissNumber {}

impl ConstantTimeEq for SwissNumber {
    fn ct_eq(&self, other: &SwissNumber) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl Drop for SwissNumber {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SwissNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SwissNumber(<secret>)")
    }
}

impl FromStr for SwissNumber {
    type Err = SwissError;

    fn from_str(text: &str) -> Result<SwissNumber, SwissError> {
        SwissNumber::parse(text)
    }
}

/// The SHA-256 hash of a [`SwissNumber`] (after a fixed domain-separation
/// prefix): what stores keep instead of the secret.
///
/// It is not secret: the hash does not lead back to the swiss number, so it
/// may be listed, logged and used to revoke a token. `Display` is lowercase
/// hex; `Debug` shows a short prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwissHash([u8; 32]);

impl SwissHash {
    /// How many bytes a hash has.
    pub const LEN: usize = 32;

    /// The hash whose bytes are `bytes` (as read back from a store).
    pub const fn from_bytes(bytes: [u8; 32]) -> SwissHash {
        SwissHash(bytes)
    }

    /// The hash's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SwissHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for SwissHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SwissHash({}…)",
            data_encoding::HEXLOWER.encode(&self.0[..6])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_numbers_differ() {
        let a = SwissNumber::generate().unwrap();
        let b = SwissNumber::generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.as_bytes(), &[0u8; 32]);
    }

    #[test]
    fn equality_is_by_value() {
        let a = SwissNumber::from_bytes([9; 32]);
        let b = SwissNumber::from_bytes([9; 32]);
        let mut c_bytes = [9; 32];
        c_bytes[31] = 8;
        let c = SwissNumber::from_bytes(c_bytes);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(bool::from(a.ct_eq(&b)));
        assert!(!bool::from(a.ct_eq(&c)));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let swiss = SwissNumber::from_bytes([0xab; 32]);
        let shown = format!("{swiss:?} {swiss:#?}");
        assert!(!shown.contains("ab"), "{shown}");
        assert!(!shown.contains(swiss.encode().as_str()), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn text_round_trips() {
        let swiss = SwissNumber::generate().unwrap();
        let text = swiss.encode();
        assert_eq!(text.len(), SwissNumber::TEXT_LEN);
        assert_eq!(SwissNumber::parse(&text).unwrap(), swiss);
    }

    #[test]
    fn parse_names_what_is_wrong() {
        let good = SwissNumber::from_bytes([0; 32]).encode();
        assert_eq!(good.as_str(), "A".repeat(43));
        assert_eq!(
            SwissNumber::parse(&"A".repeat(42)).unwrap_err(),
            SwissError::Length {
                found: 42,
                expected: 43
            }
        );
        assert_eq!(
            SwissNumber::parse(&format!("{}+{}", "A".repeat(10), "A".repeat(32))).unwrap_err(),
            SwissError::BadChar {
                position: 10,
                ch: '+'
            }
        );
        assert_eq!(
            SwissNumber::parse(&format!("{}B", "A".repeat(42))).unwrap_err(),
            SwissError::NonCanonical { position: 42 }
        );
        assert!(matches!(
            SwissNumber::parse(&format!("{}=", good.as_str())).unwrap_err(),
            SwissError::BadChar { position: 43, .. }
        ));
    }

    #[test]
    fn hash_is_domain_separated_sha256() {
        let swiss = SwissNumber::from_bytes([1; 32]);
        let plain: [u8; 32] = Sha256::digest([1u8; 32]).into();
        assert_ne!(swiss.hash().as_bytes(), &plain);
        assert_eq!(swiss.hash(), SwissNumber::from_bytes([1; 32]).hash());
        assert_ne!(swiss.hash(), SwissNumber::from_bytes([2; 32]).hash());
        assert_eq!(swiss.hash().to_string().len(), 64);
    }
}
