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

/// The prefix of routes: `routes/<kind>`, written by the operator: how calls
/// on the kind's unversioned reference pick a version.
pub const ROUTES: &str = "routes/";

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
    /// How a kind's unversioned reference picks a version (`routes/<kind>`).
    Route(RouteRecord),
}

/// How calls on a kind's unversioned reference (its router) pick a
/// version: the first rule that matches, else `pick`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    /// Content rules, tried in order.
    pub rules: Vec<RouteRule>,
    /// What picks for a call no rule matched.
    pub pick: RoutePick,
}

/// One content rule: calls whose value matches `pattern` go to `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRule {
    /// Which value of the call.
    pub on: RouteOn,
    /// A glob: `*` matches any run of characters, anything else itself.
    pub pattern: String,
    /// The version it picks.
    pub version: String,
}

/// The value of a call a rule reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteOn {
    /// The routing key the caller's reference carries (a keyed view).
    Key,
    /// A text field of the call's params, by name (`a.b` for a field of a
    /// struct field).
    Field(String),
}

impl std::fmt::Display for RouteRecord {
    /// As the CLI takes it: `weights 1.0.0=90,1.1.0=10 sticky`,
    /// `live 1.1.0 (was 1.0.0)`, then `rule key:beta-*=1.1.0` for each rule.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pick {
            RoutePick::Weights { weights, sticky } => {
                let shares: Vec<String> = weights.iter().map(|(v, w)| format!("{v}={w}")).collect();
                write!(f, "weights {}", shares.join(","))?;
                if *sticky {
                    f.write_str(" sticky")?;
                }
            }
            RoutePick::Live { version, previous } => {
                write!(f, "live {version}")?;
                if let Some(previous) = previous {
                    write!(f, " (was {previous})")?;
                }
            }
        }
        for rule in &self.rules {
            write!(f, "; rule {rule}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for RouteRule {
    /// `key:PATTERN=VERSION` or `field.NAME:PATTERN=VERSION`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.on {
            RouteOn::Key => f.write_str("key")?,
            RouteOn::Field(field) => write!(f, "field.{field}")?,
        }
        write!(f, ":{}={}", self.pattern, self.version)
    }
}

/// How calls no rule matched pick a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutePick {
    /// Shares by weight (any integers: a version gets `w / sum` of the
    /// calls; 0 none). With `sticky`, a call on a keyed view goes to the
    /// version its key hashes to by those weights, so a key keeps its
    /// version while the weights do not move it.
    Weights {
        /// Version to weight, in version order.
        weights: BTreeMap<String, u32>,
        /// Whether keyed calls stick to a version.
        sticky: bool,
    },
    /// Every call to one version (blue/green); the others are reached only
    /// through their versioned references.
    Live {
        /// The version that is live.
        version: String,
        /// The version that was live before the last swap, if any: where a
        /// swap without a target goes back to.
        previous: Option<String>,
    },
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
        let Some(Selector {
            name: kind,
            version: Some(version),
        }) = Selector::read(kind_at)
        else {
            return Err(shape());
        };
        Ok(InstanceKey {
            kind,
            version,
            vat,
            n,
        })
    }
}

/// A kind as a binding names it: `name` (every version, through the
/// kind's router) or `name@version` (that version only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selector<'k> {
    /// The kind's name.
    pub name: &'k str,
    /// The version, if one is named.
    pub version: Option<&'k str>,
}

impl<'k> Selector<'k> {
    /// Reads `name` or `name@version`.
    pub fn parse(text: &'k str) -> Selector<'k> {
        match text.split_once('@') {
            Some((name, version)) => Selector {
                name,
                version: Some(version),
            },
            None => Selector {
                name: text,
                version: None,
            },
        }
    }

    /// Reads `name` or `name@version`, if well formed: a name, and a
    /// version if any, both non-empty, and one `@` at most.
    pub fn read(text: &'k str) -> Option<Selector<'k>> {
        let selector = Selector::parse(text);
        let well_formed = !selector.name.is_empty()
            && selector
                .version
                .is_none_or(|v| !v.is_empty() && !v.contains('@'));
        well_formed.then_some(selector)
    }

    /// Whether an instance of `kind` at `version` is one this selects.
    pub fn selects(&self, kind: &str, version: &str) -> bool {
        self.name == kind && self.version.is_none_or(|v| v == version)
    }
}

/// Where a binding lives: `bindings/<actor>/<provider>/<link>`, each kind
/// as `name` or `name@version` (a [`Selector`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingKey<'k> {
    /// The actor kind (a selector).
    pub actor: &'k str,
    /// The provider kind (a selector).
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
        BindingKey::of(actor, provider, link).ok_or_else(shape)
    }

    /// The binding of these segments, if each kind is `name` or
    /// `name@version` and the link has no `@`.
    fn of(actor: &'k str, provider: &'k str, link: &'k str) -> Option<BindingKey<'k>> {
        let well_formed = |text| Selector::read(text).is_some();
        (well_formed(actor) && well_formed(provider) && !link.contains('@')).then_some(BindingKey {
            actor,
            provider,
            link,
        })
    }
}

impl BindingKey<'_> {
    /// The actor selector.
    pub fn actor(&self) -> Selector<'_> {
        Selector::parse(self.actor)
    }

    /// The provider selector.
    pub fn provider(&self) -> Selector<'_> {
        Selector::parse(self.provider)
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
        let binding = BindingKey::of(actor, provider, link).ok_or_else(shape)?;
        Ok(GrantKey { binding, vat, n })
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

/// Whether `segment` is a kind's name alone: one segment, no `@`.
pub fn is_kind_name(segment: &str) -> bool {
    !segment.is_empty() && !segment.contains(['/', '@'])
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
        for bad in [
            "bindings/shop/http",
            "bindings/shop/http/default/x",
            "bindings/shop@/http/default",
            "bindings/shop@1@2/http/default",
            "bindings/@1/http/default",
            "bindings/shop/http/de@fault",
        ] {
            assert!(BindingKey::parse(bad).is_err(), "{bad:?}");
        }
        let key = BindingKey::parse("bindings/shop@1.1.0/http/default").unwrap();
        assert_eq!(key.actor().name, "shop");
        assert_eq!(key.actor().version, Some("1.1.0"));
        assert_eq!(key.provider().version, None);
        assert!(key.actor().selects("shop", "1.1.0"));
        assert!(!key.actor().selects("shop", "1.0.0"));
        assert!(key.provider().selects("http", "9"));
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
