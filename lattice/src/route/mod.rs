//! Routes: how calls on a kind's unversioned reference pick a version.
//!
//! Each version of a kind is reached through its own group of instances
//! (the *versioned* reference, `name@1.2.0`); the *unversioned* reference
//! (`name`) is a router in front of them, a [`Switch`](vat::switch::Switch)
//! whose picker reads the kind's route (`routes/<kind>`, written by the
//! operator) and follows it live:
//!
//! 1. content rules, in order: the first whose pattern matches the call's
//!    routing key (the key its reference carries) or a text field of its
//!    params picks the version;
//! 2. otherwise weights (smooth weighted round-robin: `N` calls at weights
//!    90/10 give exactly 90 % and 10 %, ±1 call), or, when the route is
//!    sticky and the call carries a key, the version the key hashes to by
//!    those weights (weighted rendezvous hashing: a change of weights
//!    moves only the keys it must);
//! 3. or `live`: every call to one version (blue/green), the others
//!    reachable only through their versioned references.
//!
//! Without a route, calls spread over every instance of every version (one
//! version: exactly as without versions). A version given weight that has
//! no instance running is skipped; a rule or `live` naming one fails the
//! call, undelivered.

mod fields;
mod pick;
mod router;

pub use fields::Fields;
pub use router::Router;
pub use vat_directory::record::{RouteOn, RoutePick, RouteRecord as Route, RouteRule};

use std::collections::BTreeMap;

use crate::error::LatticeError;
use crate::kind::check_name;

/// The most rules a route holds.
pub const MAX_RULES: usize = 32;

/// Checks a route before it is written: versions are names, weights are
/// not all zero, at most [`MAX_RULES`] rules, patterns at most 64 bytes.
pub fn check_route(route: &Route) -> Result<(), LatticeError> {
    let bad = |why: String| LatticeError::BadRoute { why };
    if route.rules.len() > MAX_RULES {
        return Err(bad(format!(
            "a route has at most {MAX_RULES} rules, not {}",
            route.rules.len()
        )));
    }
    for rule in &route.rules {
        check_name("version", &rule.version)?;
        if rule.pattern.is_empty() || rule.pattern.len() > 64 {
            return Err(bad("a rule's pattern is 1 to 64 bytes".to_owned()));
        }
        if let RouteOn::Field(path) = &rule.on {
            if path
                .split('.')
                .any(|segment| check_name("field", segment).is_err())
            {
                return Err(bad(format!(
                    "a rule's field is names joined by '.', not {:?}",
                    captp::log::Untrusted(path).to_string()
                )));
            }
        }
    }
    match &route.pick {
        RoutePick::Weights { weights, .. } => {
            for version in weights.keys() {
                check_name("version", version)?;
            }
            if weights.values().all(|w| *w == 0) {
                return Err(bad(
                    "a route needs a version of weight above 0 (or a live version)".to_owned(),
                ));
            }
        }
        RoutePick::Live { version, previous } => {
            check_name("version", version)?;
            if let Some(previous) = previous {
                check_name("version", previous)?;
            }
        }
    }
    Ok(())
}

/// Reads weights as the CLI takes them: `1.0.0=90,1.1.0=10`.
pub fn parse_weights(text: &str) -> Result<BTreeMap<String, u32>, LatticeError> {
    let mut weights = BTreeMap::new();
    for item in text.split(',').filter(|item| !item.is_empty()) {
        let parsed = item
            .split_once('=')
            .and_then(|(version, weight)| Some((version, weight.parse::<u32>().ok()?)));
        let Some((version, weight)) = parsed else {
            return Err(LatticeError::BadRoute {
                why: format!(
                    "weights are VERSION=WEIGHT,..., not {:?}",
                    captp::log::Untrusted(item).to_string()
                ),
            });
        };
        check_name("version", version)?;
        weights.insert(version.to_owned(), weight);
    }
    Ok(weights)
}

/// Reads a rule as the CLI takes it: `key:PATTERN=VERSION` (the caller's
/// routing key) or `field.NAME:PATTERN=VERSION` (a text field of the call,
/// `field.request.path` for one nested).
pub fn parse_rule(text: &str) -> Result<RouteRule, LatticeError> {
    let bad = || LatticeError::BadRoute {
        why: format!(
            "a rule is key:PATTERN=VERSION or field.NAME:PATTERN=VERSION, not {:?}",
            captp::log::Untrusted(text).to_string()
        ),
    };
    let (on, rest) = text.split_once(':').ok_or_else(bad)?;
    let (pattern, version) = rest.rsplit_once('=').ok_or_else(bad)?;
    let on = match on {
        "key" => RouteOn::Key,
        _ => RouteOn::Field(on.strip_prefix("field.").ok_or_else(bad)?.to_owned()),
    };
    let rule = RouteRule {
        on,
        pattern: pattern.to_owned(),
        version: version.to_owned(),
    };
    check_route(&Route {
        rules: vec![rule.clone()],
        pick: RoutePick::Live {
            version: rule.version.clone(),
            previous: None,
        },
    })?;
    Ok(rule)
}

/// Whether `text` matches the glob `pattern`: `*` matches any run of
/// characters (none too), every other character itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests

    use super::*;

    #[test]
    fn globs_match_runs() {
        for (pattern, text, matched) in [
            ("beta-*", "beta-42", true),
            ("beta-*", "beta-", true),
            ("beta-*", "alpha-1", false),
            ("*", "", true),
            ("exact", "exact", true),
            ("exact", "exact!", false),
            ("*-eu-*", "shop-eu-1", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("*ab", "ab", true),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob(pattern, text), matched, "{pattern:?} {text:?}");
        }
    }

    #[test]
    fn cli_texts_read_as_routes_and_bad_ones_are_refused() {
        let weights = parse_weights("1.0.0=90,1.1.0=10").unwrap();
        assert_eq!(weights.get("1.1.0"), Some(&10));
        assert!(parse_weights("1.0.0=ninety").is_err());
        assert!(parse_weights("1.0.0").is_err());
        let rule = parse_rule("key:beta-*=1.1.0").unwrap();
        assert_eq!((rule.on, rule.pattern.as_str()), (RouteOn::Key, "beta-*"));
        let rule = parse_rule("field.request.path:/new/*=2.0.0").unwrap();
        assert_eq!(rule.on, RouteOn::Field("request.path".into()));
        assert_eq!(rule.version, "2.0.0");
        for bad in [
            "beta-*=1.1.0",
            "key:beta-*",
            "name:x=1",
            "field.a/b:x=1",
            "key:=1",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad:?}");
        }
        let zero = Route {
            rules: Vec::new(),
            pick: RoutePick::Weights {
                weights: [("1".into(), 0)].into(),
                sticky: false,
            },
        };
        assert!(matches!(
            check_route(&zero),
            Err(LatticeError::BadRoute { .. })
        ));
    }
}
