//! The name of a vat, and its one text form.

use std::fmt;
use std::str::FromStr;

use crate::error::VatIdError;

/// The name of a vat: the 32 bytes of its ed25519 public key.
///
/// Its text form, the one used everywhere in the project, is the key in
/// lowercase RFC 4648 base32 without padding: 52 characters of `a-z2-7`.
/// Parsing is strict: uppercase letters, padding, and a last character
/// whose unused low bits are not zero are all refused. Every vat id thus
/// has exactly one spelling, so two tokens name the same vat exactly when
/// their vat id texts are equal byte for byte, and text can be compared,
/// indexed and deduplicated without being decoded first.
///
/// ```
/// use sturdyrefs::VatId;
///
/// let id = VatId::from_bytes([0; 32]);
/// let text = id.to_string();
/// assert_eq!(text, "a".repeat(52));
/// assert_eq!(text.parse::<VatId>(), Ok(id));
/// assert!(text.to_uppercase().parse::<VatId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VatId([u8; 32]);

impl VatId {
    /// How many bytes a vat id has.
    pub const LEN: usize = 32;

    /// How many characters its text form has.
    pub const TEXT_LEN: usize = 52;

    /// The vat id whose key bytes are `bytes`.
    pub const fn from_bytes(bytes: [u8; 32]) -> VatId {
        VatId(bytes)
    }

    /// The 32 bytes of the key.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 32 bytes of the key, by value.
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// Parses the text form, naming exactly what is wrong if it is not one.
    pub fn parse(text: &str) -> Result<VatId, VatIdError> {
        for (position, ch) in text.char_indices() {
            if ch.is_ascii_uppercase() {
                return Err(VatIdError::Uppercase { position, ch });
            }
            if !matches!(ch, 'a'..='z' | '2'..='7') {
                return Err(VatIdError::BadChar { position, ch });
            }
        }
        if text.len() != Self::TEXT_LEN {
            return Err(VatIdError::Length {
                found: text.len(),
                expected: Self::TEXT_LEN,
            });
        }
        // The alphabet is checked; only the unused trailing bits can fail now.
        let upper = text.to_ascii_uppercase();
        let mut bytes = [0u8; 32];
        match data_encoding::BASE32_NOPAD.decode_mut(upper.as_bytes(), &mut bytes) {
            Ok(_) => Ok(VatId(bytes)),
            Err(_) => Err(VatIdError::NonCanonical {
                position: Self::TEXT_LEN - 1,
            }),
        }
    }
}

impl fmt::Display for VatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = data_encoding::BASE32_NOPAD.encode(&self.0);
        text.make_ascii_lowercase();
        f.write_str(&text)
    }
}

impl fmt::Debug for VatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VatId({self})")
    }
}

impl FromStr for VatId {
    type Err = VatIdError;

    fn from_str(text: &str) -> Result<VatId, VatIdError> {
        VatId::parse(text)
    }
}

impl From<[u8; 32]> for VatId {
    fn from(bytes: [u8; 32]) -> VatId {
        VatId(bytes)
    }
}

impl From<VatId> for [u8; 32] {
    fn from(id: VatId) -> [u8; 32] {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VatId {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        VatId::from_bytes(bytes)
    }

    #[test]
    fn text_is_52_lowercase_base32_characters_and_round_trips() {
        let id = sample();
        let text = id.to_string();
        assert_eq!(text.len(), VatId::TEXT_LEN);
        assert!(text.chars().all(|c| matches!(c, 'a'..='z' | '2'..='7')));
        assert_eq!(VatId::parse(&text), Ok(id));
    }

    #[test]
    fn all_ones_encodes_with_zero_trailing_bits() {
        let id = VatId::from_bytes([0xff; 32]);
        let text = id.to_string();
        assert_eq!(&text[..51], "7".repeat(51));
        assert_eq!(&text[51..], "q");
        assert_eq!(VatId::parse(&text), Ok(id));
    }

    #[test]
    fn uppercase_is_refused_with_its_position() {
        let text = sample().to_string();
        let (position, letter) = text
            .char_indices()
            .find(|(_, c)| c.is_ascii_lowercase())
            .unwrap();
        let mut upper = text.clone();
        upper.replace_range(
            position..position + 1,
            &letter.to_ascii_uppercase().to_string(),
        );
        assert_eq!(
            VatId::parse(&upper),
            Err(VatIdError::Uppercase {
                position,
                ch: letter.to_ascii_uppercase()
            })
        );
        assert!(matches!(
            VatId::parse(&"A".repeat(52)),
            Err(VatIdError::Uppercase {
                position: 0,
                ch: 'A'
            })
        ));
    }

    #[test]
    fn bad_characters_are_named_with_their_position() {
        let mut text = "a".repeat(52);
        text.replace_range(17..18, "1");
        assert_eq!(
            VatId::parse(&text),
            Err(VatIdError::BadChar {
                position: 17,
                ch: '1'
            })
        );
        text.replace_range(17..18, "=");
        assert_eq!(
            VatId::parse(&text),
            Err(VatIdError::BadChar {
                position: 17,
                ch: '='
            })
        );
        assert_eq!(
            VatId::parse("aé"),
            Err(VatIdError::BadChar {
                position: 1,
                ch: 'é'
            })
        );
    }

    #[test]
    fn wrong_lengths_are_refused() {
        for len in [0, 1, 51, 53, 56] {
            assert_eq!(
                VatId::parse(&"a".repeat(len)),
                Err(VatIdError::Length {
                    found: len,
                    expected: 52
                })
            );
        }
    }

    #[test]
    fn padding_is_refused() {
        let text = format!("{}====", sample());
        assert!(matches!(
            VatId::parse(&text),
            Err(VatIdError::BadChar {
                position: 52,
                ch: '='
            })
        ));
    }

    #[test]
    fn nonzero_trailing_bits_are_refused() {
        // 52 characters hold 260 bits; the last character's low 4 are unused.
        let mut text = "a".repeat(51);
        text.push('b');
        assert_eq!(
            VatId::parse(&text),
            Err(VatIdError::NonCanonical { position: 51 })
        );
    }

    #[test]
    fn debug_shows_the_text_form() {
        let id = VatId::from_bytes([0; 32]);
        assert_eq!(format!("{id:?}"), format!("VatId({})", "a".repeat(52)));
    }
}
