//! What the directory holds: typed records under checked keys, and the
//! bounds that keep a writer from making it hold more.
//!
//! Records are versioned by their enum: new kinds of record (bindings,
//! routes) are new variants appended at the end, so every record written
//! before them still decodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The largest record, encoded, in bytes.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
/// The most records one facet may have written and not deleted.
pub const MAX_RECORDS_PER_FACET: usize = 10_000;

/// The prefix of vats' records: `vats/<vat-id>`.
pub const VATS: &str = "vats/";
/// The prefix of names: `names/<name>` or `names/<name>@<version>`.
pub const NAMES: &str = "names/";

/// One record of the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A vat of the federation (`vats/<vat-id>`).
    Vat(VatRecord),
    /// Sturdyrefs registered under a name (`names/...`).
    Name(NameRecord),
}

impl Record {
    /// The record's encoded size, the one its bound applies to.
    pub fn encoded_len(&self) -> usize {
        postcard::to_allocvec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    }
}

/// A vat: where to reach it, what it says of itself, and whether its lease
/// still holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VatRecord {
    /// Location hints (`host:port`), in the order to try them.
    pub hints: Vec<String>,
    /// Free labels (`zone=eu`, ...).
    pub labels: BTreeMap<String, String>,
    /// How long a renewal keeps the vat alive, in milliseconds.
    pub lease_ms: u64,
    /// When the lease lapses, in milliseconds of the directory's clock
    /// (the leaders' wall clocks, never going back).
    pub expires_at_ms: u64,
    /// Set once the lease lapsed without renewal; a renewal clears it.
    pub gone: bool,
}

/// Sturdyrefs under a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    /// One or more tokens (`captp://...`), any of which reaches the object.
    pub refs: Vec<String>,
}

/// Why a key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KeyError {
    /// Empty, or longer than [`MAX_KEY_BYTES`].
    #[error("a key is 1 to {limit} bytes; this one is {len}")]
    Length {
        /// Its length.
        len: usize,
        /// The bound.
        limit: usize,
    },
    /// A character outside `A-Z a-z 0-9 . _ - ~ @ : + /`, an empty segment
    /// (`a//b`, a leading or trailing `/`), or `.`/`..` as a segment.
    #[error("a key is segments of A-Z a-z 0-9 . _ - ~ @ : + separated by single '/'")]
    Malformed,
}

/// Checks a key's form.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KeyError::Length {
            len: key.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-~@:+".contains(c);
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || !segment.chars().all(allowed)
        {
            return Err(KeyError::Malformed);
        }
    }
    Ok(())
}

/// Checks a prefix: empty (everything), or a key's form with a trailing
/// `/` allowed.
pub fn check_prefix(prefix: &str) -> Result<(), KeyError> {
    match prefix.strip_suffix('/') {
        _ if prefix.is_empty() => Ok(()),
        Some(stem) => check_key(stem),
        None => check_key(prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(check_key("vats/abc").is_ok());
        assert!(check_key("names/shop@1.2.0").is_ok());
        assert_eq!(check_key(""), Err(KeyError::Length { len: 0, limit: 256 }));
        assert!(check_key(&"a".repeat(257)).is_err());
        for bad in ["a//b", "/a", "a/", "a/../b", "a b", "ü", "a\nb"] {
            assert_eq!(check_key(bad), Err(KeyError::Malformed), "{bad:?}");
        }
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("names/").is_ok());
        assert!(check_prefix("names//").is_err());
    }
}
