use std::fmt;

/// The ed25519 public key of a vat: the name under which a peer proved who it
/// is.
///
/// Every vat holds an [`Identity`](crate::Identity), an ed25519 key pair;
/// its public half names it. A [`Connection`](crate::Connection) opened
/// through [`tls`](crate::tls) knows the key its peer proved, through
/// [`Connection::peer_key`](crate::Connection::peer_key).
///
/// These are just the 32 bytes of the key (RFC 8032). `Display` writes the
/// vat id's text form (the sturdyref format's, docs/PROTOCOL.md): the bytes
/// in lowercase base32 without padding, 52 characters. `Debug` shows a
/// short hex prefix, enough to tell keys apart in logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// How many bytes an ed25519 public key has.
    pub const LEN: usize = 32;

    /// The key whose bytes are `bytes`.
    ///
    /// Any 32 bytes make a `PublicKey`; bytes that are not a valid ed25519
    /// point simply never match a key a peer can prove.
    pub const fn from_bytes(bytes: [u8; 32]) -> PublicKey {
        PublicKey(bytes)
    }

    /// The 32 bytes of the key.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 32 bytes of the key, by value.
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }
}

impl From<[u8; 32]> for PublicKey {
    fn from(bytes: [u8; 32]) -> PublicKey {
        PublicKey(bytes)
    }
}

impl From<PublicKey> for [u8; 32] {
    fn from(key: PublicKey) -> [u8; 32] {
        key.0
    }
}

impl AsRef<[u8]> for PublicKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// How many leading bytes `Debug` shows, in hex.
const DEBUG_PREFIX_BYTES: usize = 6;

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = data_encoding::BASE32_NOPAD.encode(&self.0);
        text.make_ascii_lowercase();
        f.write_str(&text)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(")?;
        for byte in &self.0[..DEBUG_PREFIX_BYTES] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…)")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // unit tests: a panic is a failed test

    use super::PublicKey;

    #[test]
    fn debug_shows_a_short_hex_prefix_only() {
        let mut bytes = [0u8; 32];
        bytes[..6].copy_from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab]);
        bytes[31] = 0xff;
        assert_eq!(
            format!("{:?}", PublicKey(bytes)),
            "PublicKey(0123456789ab…)"
        );
    }

    #[test]
    fn display_is_the_vat_id_text_form() {
        // The worked example of docs/PROTOCOL.md.
        let mut bytes = [0u8; 32];
        let hex = "d0361e9eff21decb3ed81ad94501617e770a3995c624a7425a0b14641072384a";
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
        }
        assert_eq!(
            PublicKey(bytes).to_string(),
            "2a3b5hx7ehpmwpwydlmukalbpz3quomvyyskoqs2bmkgiedshbfa"
        );
    }

    #[test]
    fn bytes_round_trip() {
        let bytes = [7u8; 32];
        let key = PublicKey::from(bytes);
        assert_eq!(key.to_bytes(), bytes);
        assert_eq!(<[u8; 32]>::from(key), bytes);
        assert_eq!(key.as_ref(), &bytes[..]);
    }
}
