//! The lattice's vocabulary: actors and providers are kinds, named and
//! versioned; their instances run on hosts, numbered per host.

use std::fmt;

use crate::error::LatticeError;

/// Whether a kind is an actor (objects bound to providers) or a provider
/// (capabilities granted to actors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A named kind of object whose instances run on hosts.
    Actor,
    /// A named kind of capability provider whose instances run on hosts.
    Provider,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Actor => "actor",
            Role::Provider => "provider",
        })
    }
}

/// A kind at a version: `http@1.0.0`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind {
    /// Its name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Its version (semver text, `1.0.0`).
    pub version: String,
}

impl Kind {
    /// The kind `name` at `version`, checked.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Result<Kind, LatticeError> {
        let (name, version) = (name.into(), version.into());
        check_name("kind", &name)?;
        check_name("version", &version)?;
        Ok(Kind { name, version })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// The link name a binding has unless the operator names another.
pub const DEFAULT_LINK: &str = "default";

/// The longest name of a kind, version or link, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Checks a kind's name, a version or a link name: 1 to
/// [`MAX_NAME_BYTES`] of `A-Z a-z 0-9 . _ - +`, so that it fits a
/// directory key's segment.
pub fn check_name(what: &'static str, name: &str) -> Result<(), LatticeError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-+".contains(c);
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || !name.chars().all(allowed)
        || name == "."
        || name == ".."
    {
        return Err(LatticeError::BadName {
            what,
            name: captp::log::Untrusted(name).to_string(),
        });
    }
    Ok(())
}

/// Checks a kind as a binding names it: `name` (every version, through
/// the kind's router) or `name@version` (that version only).
pub fn check_selector(what: &'static str, selector: &str) -> Result<(), LatticeError> {
    let selector = vat_directory::record::Selector::parse(selector);
    check_name(what, selector.name)?;
    selector
        .version
        .map_or(Ok(()), |version| check_name("version", version))
}

/// One binding: the provider's instances grant the actor's instances a
/// capability under the link name. Each side is a kind (`shop`: every
/// version; the provider side reached through its router) or one version
/// of it (`shop@1.1.0`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BindingId {
    /// The actor kind, or `kind@version`.
    pub actor: String,
    /// The provider kind, or `kind@version`.
    pub provider: String,
    /// The link name ([`DEFAULT_LINK`] unless named).
    pub link: String,
}

impl BindingId {
    /// The binding of `actor` to `provider` under `link`, checked.
    pub fn new(
        actor: impl Into<String>,
        provider: impl Into<String>,
        link: impl Into<String>,
    ) -> Result<BindingId, LatticeError> {
        let id = BindingId {
            actor: actor.into(),
            provider: provider.into(),
            link: link.into(),
        };
        check_selector("actor", &id.actor)?;
        check_selector("provider", &id.provider)?;
        check_name("link", &id.link)?;
        Ok(id)
    }

    /// The actor side: its kind's name, and the version if one is named.
    pub fn actor_kind(&self) -> vat_directory::record::Selector<'_> {
        vat_directory::record::Selector::parse(&self.actor)
    }

    /// The provider side: its kind's name, and the version if one is named.
    pub fn provider_kind(&self) -> vat_directory::record::Selector<'_> {
        vat_directory::record::Selector::parse(&self.provider)
    }

    /// Its directory key: `bindings/<actor>/<provider>/<link>`.
    pub fn key(&self) -> String {
        format!(
            "{}{}/{}/{}",
            vat_directory::record::BINDINGS,
            self.actor,
            self.provider,
            self.link
        )
    }

    /// The prefix of its grants: `grants/<actor>/<provider>/<link>/`.
    pub fn grants(&self) -> String {
        format!(
            "{}{}/{}/{}/",
            vat_directory::record::GRANTS,
            self.actor,
            self.provider,
            self.link
        )
    }

    /// The key of provider instance `n` of vat `vat`'s grant:
    /// `grants/<actor>/<provider>/<link>/<vat>/<n>`.
    pub fn grant_key(&self, vat: &str, n: u64) -> String {
        format!("{}{vat}/{n}", self.grants())
    }

    /// Reads a binding's key.
    pub fn from_key(key: &str) -> Option<BindingId> {
        let parsed = vat_directory::record::BindingKey::parse(key).ok()?;
        Some(BindingId::from(&parsed))
    }
}

impl From<&vat_directory::record::BindingKey<'_>> for BindingId {
    fn from(key: &vat_directory::record::BindingKey<'_>) -> BindingId {
        BindingId {
            actor: key.actor.to_owned(),
            provider: key.provider.to_owned(),
            link: key.link.to_owned(),
        }
    }
}

impl fmt::Display for BindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} ({})", self.actor, self.provider, self.link)
    }
}

/// A binding's settings, in key order.
pub type Config = std::collections::BTreeMap<String, String>;

/// The digest of a config that grants record (hex SHA-256 of its settings
/// in key order, each length-prefixed), so that any host computes the same.
pub fn config_digest(config: &Config) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (key, value) in config {
        for part in [key, value] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    data_encoding::HEXLOWER.encode(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests

    use super::*;

    #[test]
    fn names_fit_a_key_segment() {
        assert!(Kind::new("http", "1.0.0").is_ok());
        for bad in ["", "a/b", "a@b", "..", "ü", &"x".repeat(65)] {
            assert!(Kind::new(bad, "1").is_err(), "{bad:?}");
            assert!(BindingId::new("a", "b", bad).is_err(), "{bad:?}");
        }
        assert!(BindingId::new("shop@1.1.0", "http@2", "testers").is_ok());
        for bad in ["shop@", "@1", "shop@1@2"] {
            assert!(
                BindingId::new(bad, "http", DEFAULT_LINK).is_err(),
                "{bad:?}"
            );
        }
        let id = BindingId::new("shop", "http", DEFAULT_LINK).unwrap();
        assert_eq!(id.key(), "bindings/shop/http/default");
        assert_eq!(BindingId::from_key(&id.key()), Some(id));
    }

    #[test]
    fn a_config_digest_depends_on_every_setting_and_nothing_else() {
        let a: Config = [("port".into(), "80".into())].into();
        let b: Config = [("port".into(), "81".into())].into();
        let c: Config = [("por".into(), "t80".into())].into();
        assert_eq!(config_digest(&a), config_digest(&a.clone()));
        assert_ne!(config_digest(&a), config_digest(&b));
        assert_ne!(config_digest(&a), config_digest(&c));
    }
}
