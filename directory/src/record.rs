//! What the directory holds: typed records under checked keys, and the
//! bounds that keep a writer from making it hold more.
//!
//! Records are versioned by their enum: new kinds of record (routes) are
//! new variants appended at the end, so every record written before them
//! still decodes.

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
/// The prefix of running instances:
/// `instances/<kind>@<version>/<vat-id>/<n>`, written by the host running
/// the instance.
pub const INSTANCES: &str = "instances/";
/// The prefix of bindings: `bindings/<actor>/<provider>/<link>`, written
/// by the operator.
pub const BINDINGS: &str = "bindings/";

/// The prefix of grants: `grants/<actor>/<provider>/<link>/<vat-id>/<n>`,
/// written by the host running provider instance `n`: how that instance
/// took the binding.
pub const GRANTS: &str = "grants/";

/// The prefix of hosts' own capabilities: `hosts/<vat-id>`, written by the
/// host, read only through the admin facet.
pub const HOSTS: &str = "hosts/";

/// One record of the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A vat of the federation (`vats/<vat-id>`).
    Vat(VatRecord),
    /// Sturdyrefs registered under a name (`names/...`).
    Name(NameRecord),
    /// One running instance of an actor or provider kind (`instances/...`).
    Instance(InstanceRecord),
    /// A binding of an actor kind to a provider kind (`bindings/...`).
    Binding(BindingRecord),
    /// How one provider instance took a binding (`grants/...`).
    Grant(GrantRecord),
    /// A host's own capability (`hosts/<vat-id>`).
    Host(HostRecord),
}

/// A host's own capability, for its operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The token (`captp://...`) of the host's `Host` capability.
    pub token: String,
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

/// One running instance of a kind, registered by its host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// One or more tokens (`captp://...`) reaching the instance.
    pub refs: Vec<String>,
}

/// A binding: the provider's instances are to grant the actor's instances
/// a capability under the link name, configured by `config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    /// The provider's settings for this binding (`port=8080`, ...).
    pub config: BTreeMap<String, String>,
}

/// How one provider instance took a binding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The digest of the binding's config the instance applied (hex
    /// SHA-256 of its settings in key order), so a reader tells a grant of
    /// the current config from one of an earlier.
    pub config_digest: String,
    /// What came of it.
    pub outcome: GrantOutcome,
}

/// What came of a provider instance's binding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantOutcome {
    /// Provisioned: the token of the capability the instance grants the
    /// actor's instances under this binding.
    Granted(String),
    /// Not provisioned: why, in the provider's words.
    Failed(String),
}

/// Where an instance record lives: `instances/<kind>@<version>/<vat>/<n>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceKey<'k> {
    /// The kind's name.
    pub kind: &'k str,
    /// The kind's version.
    pub version: &'k str,
    /// The host's vat id.
    pub vat: &'k str,
    /// The instance's number on that host.
    pub n: &'k str,
}

impl<'k> InstanceKey<'k> {
    /// Reads a key of that shape (its characters are checked by
    /// [`check_key`]).
    pub fn parse(key: &'k str) -> Result<InstanceKey<'k>, KeyError> {
        let shape = || KeyError::Shape {
            expected: "instances/<kind>@<version>/<vat-id>/<n>".to_owned(),
        };
        let [kind_at, vat, n] = three_segments(key, INSTANCES).ok_or_else(shape)?;
        let (kind, version) = kind_at.split_once('@').ok_or_else(shape)?;
        if kind.is_empty() || version.is_empty() || version.contains('@') {
            return Err(shape());
        }
        Ok(InstanceKey {
            kind,
            version,
            vat,
            n,
        })
    }
}

/// Where a binding lives: `bindings/<actor>/<provider>/<link>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingKey<'k> {
    /// The actor kind.
    pub actor: &'k str,
    /// The provider kind.
    pub provider: &'k str,
    /// The link name (`default` unless the operator names another).
    pub link: &'k str,
}

impl<'k> BindingKey<'k> {
    /// Reads a key of that shape (its characters are checked by
    /// [`check_key`]).
    pub fn parse(key: &'k str) -> Result<BindingKey<'k>, KeyError> {
        let shape = || KeyError::Shape {
            expected: "bindings/<actor>/<provider>/<link>".to_owned(),
        };
        let [actor, provider, link] = three_segments(key, BINDINGS).ok_or_else(shape)?;
        Ok(BindingKey {
            actor,
            provider,
            link,
        })
    }
}

/// Where a grant lives: `grants/<actor>/<provider>/<link>/<vat>/<n>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantKey<'k> {
    /// The binding it answers.
    pub binding: BindingKey<'k>,
    /// The vat of the provider instance.
    pub vat: &'k str,
    /// The provider instance's number on that vat.
    pub n: &'k str,
}

impl<'k> GrantKey<'k> {
    /// Reads a key of that shape (its characters are checked by
    /// [`check_key`]).
    pub fn parse(key: &'k str) -> Result<GrantKey<'k>, KeyError> {
        let shape = || KeyError::Shape {
            expected: "grants/<actor>/<provider>/<link>/<vat-id>/<n>".to_owned(),
        };
        let [actor, provider, link, vat, n] = segments(key, GRANTS).ok_or_else(shape)?;
        Ok(GrantKey {
            binding: BindingKey {
                actor,
                provider,
                link,
            },
            vat,
            n,
        })
    }
}

/// The three segments of `key` after `prefix`, if it has exactly three.
fn three_segments<'k>(key: &'k str, prefix: &str) -> Option<[&'k str; 3]> {
    segments(key, prefix)
}

/// The `N` segments of `key` after `prefix`, if it has exactly `N`.
fn segments<'k, const N: usize>(key: &'k str, prefix: &str) -> Option<[&'k str; N]> {
    let mut parts = key.strip_prefix(prefix)?.split('/');
    let mut out = [""; N];
    for slot in &mut out {
        *slot = parts.next()?;
    }
    parts.next().is_none().then_some(out)
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
    /// A key under a prefix whose keys have a fixed shape, not of it.
    #[error("a key here is {expected}")]
    Shape {
        /// The shape.
        expected: String,
    },
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

    #[test]
    fn lattice_keys_have_their_shape() {
        let key = InstanceKey::parse("instances/shop@1.2.0/vat1/0").unwrap();
        assert_eq!(
            (key.kind, key.version, key.vat, key.n),
            ("shop", "1.2.0", "vat1", "0")
        );
        for bad in [
            "instances/shop/vat1/0",
            "instances/shop@/vat1/0",
            "instances/@1/vat1/0",
            "instances/shop@1@2/vat1/0",
            "instances/shop@1/vat1",
            "instances/shop@1/vat1/0/x",
            "names/shop@1/vat1/0",
        ] {
            assert!(
                matches!(InstanceKey::parse(bad), Err(KeyError::Shape { .. })),
                "{bad:?}"
            );
        }
        let key = BindingKey::parse("bindings/shop/http/default").unwrap();
        assert_eq!(
            (key.actor, key.provider, key.link),
            ("shop", "http", "default")
        );
        for bad in ["bindings/shop/http", "bindings/shop/http/default/x"] {
            assert!(BindingKey::parse(bad).is_err(), "{bad:?}");
        }
        let key = GrantKey::parse("grants/shop/http/default/vat1/0").unwrap();
        assert_eq!(
            (key.binding.actor, key.binding.provider, key.binding.link),
            ("shop", "http", "default")
        );
        assert_eq!((key.vat, key.n), ("vat1", "0"));
        for bad in ["grants/shop/http/default/vat1", "grants/a/b/c/d/e/f"] {
            assert!(GrantKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
