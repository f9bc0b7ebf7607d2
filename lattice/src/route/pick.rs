//! The router's picker: a kind's route, compiled against the versions
//! that run, asked once per call (twice when a rule reads a field).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use vat::switch::{CallInfo, Pick, Picked};

use super::{glob, Fields, Route, RouteOn, RoutePick};
use crate::members::Members;

/// One version: its group's members, and what the picker keeps of it.
pub(crate) struct Target {
    pub(crate) members: Members,
    /// The group's call-one face, made once.
    client: capnp::capability::Client,
    /// Smooth weighted round-robin's running score.
    current: Cell<i64>,
}

impl Target {
    pub(crate) fn new(members: Members) -> Target {
        Target {
            client: members.group.client(),
            members,
            current: Cell::new(0),
        }
    }

    /// How many members its group has now.
    pub(crate) fn len(&self) -> usize {
        self.members.group.len()
    }
}

/// What the picker reads: the versions that run, and the route.
pub(crate) struct Table {
    pub(crate) kind: String,
    pub(crate) versions: BTreeMap<String, Target>,
    pub(crate) route: Option<Route>,
    pub(crate) fields: Fields,
}

impl Table {
    /// Forgets the weighted round-robin's scores (a new route starts it
    /// afresh).
    pub(crate) fn restart(&self) {
        for target in self.versions.values() {
            target.current.set(0);
        }
    }

    fn pick(&self, call: &CallInfo<'_>) -> Picked {
        let Some(route) = &self.route else {
            // No route: every instance alike, so each version by its count.
            if self.versions.len() == 1 {
                if let Some(only) = self.versions.values().next() {
                    return self.to_target(only, call.key);
                }
            }
            let weights = self
                .versions
                .iter()
                .map(|(v, t)| (v.as_str(), u32::try_from(t.len()).unwrap_or(u32::MAX)));
            return self.weighted(weights, None, call.key);
        };
        for rule in &route.rules {
            let value = match &rule.on {
                RouteOn::Key => call.key.map(String::from_utf8_lossy),
                RouteOn::Field(path) => {
                    if !self.fields.knows(call.interface_id, call.method_id) {
                        continue;
                    }
                    let Some(params) = call.params else {
                        return Picked::NeedParams;
                    };
                    self.fields
                        .text(call.interface_id, call.method_id, params, path)
                        .map(Cow::Borrowed)
                }
            };
            if value.is_some_and(|value| glob(&rule.pattern, &value)) {
                return self.to(&rule.version, call.key);
            }
        }
        match &route.pick {
            RoutePick::Live { version, .. } => self.to(version, call.key),
            RoutePick::Weights { weights, sticky } => {
                let weights = weights.iter().map(|(v, w)| (v.as_str(), *w));
                let key = call.key.filter(|_| *sticky);
                self.weighted(weights, key, call.key)
            }
        }
    }

    /// Picks among `weights` the versions with instances: by the sticky
    /// `sticky_key` if there is one, else by smooth weighted round-robin.
    fn weighted<'w>(
        &self,
        weights: impl Iterator<Item = (&'w str, u32)> + Clone,
        sticky_key: Option<&[u8]>,
        key: Option<&[u8]>,
    ) -> Picked {
        let running = weights.filter_map(|(version, weight)| {
            let target = self.versions.get(version)?;
            (weight > 0 && target.len() > 0).then_some((version, weight, target))
        });
        let chosen = match sticky_key {
            Some(sticky) => {
                let key_hash = fnv(sticky);
                running
                    .map(|(version, weight, target)| {
                        (rendezvous_score(key_hash, version, weight), target)
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, target)| target)
            }
            None => {
                // nginx's smooth weighted round-robin: exact shares, spread.
                let mut total = 0i64;
                let mut best: Option<&Target> = None;
                for (_, weight, target) in running {
                    let weight = i64::from(weight);
                    total += weight;
                    target.current.set(target.current.get() + weight);
                    if best.is_none_or(|b| target.current.get() > b.current.get()) {
                        best = Some(target);
                    }
                }
                if let Some(best) = best {
                    best.current.set(best.current.get() - total);
                }
                best
            }
        };
        match chosen {
            Some(target) => self.to_target(target, key),
            None => Picked::Refuse(capnp::Error::disconnected(format!(
                "no instance of {} runs at a version its route sends calls to",
                self.kind
            ))),
        }
    }

    fn to(&self, version: &str, key: Option<&[u8]>) -> Picked {
        match self.versions.get(version) {
            Some(target) => self.to_target(target, key),
            None => Picked::Refuse(capnp::Error::disconnected(format!(
                "no instance of {}@{version} runs",
                self.kind
            ))),
        }
    }

    fn to_target(&self, target: &Target, key: Option<&[u8]>) -> Picked {
        match key {
            // The key goes on to the version's group: a caller's calls meet
            // one instance there too.
            Some(key) => Picked::To(target.members.group.with_key(key)),
            None => Picked::To(target.client.clone()),
        }
    }
}

/// FNV-1a: the same in every process and release.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, byte| {
        (h ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Weighted rendezvous hashing: the key goes to the version of highest
/// `weight / -ln(u)`, `u` uniform in (0, 1) from the key and the version,
/// so each version gets its weight's share of keys, and a weight change
/// moves keys only to or from the version whose weight changed.
fn rendezvous_score(key: u64, version: &str, weight: u32) -> f64 {
    let mut z = key ^ fnv(version.as_bytes()).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // 53 random bits, then off zero so that ln is finite.
    let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}

/// The picker of a router's switch.
pub(crate) struct Picker(pub(crate) Rc<RefCell<Table>>);

impl Pick for Picker {
    fn pick(&self, call: &CallInfo<'_>) -> Picked {
        self.0.borrow().pick(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_keys_move_only_as_the_weights_must() {
        fn owner(weights: &[(&'static str, u32)], key: u64) -> Option<&'static str> {
            weights
                .iter()
                .map(|(v, w)| (rendezvous_score(key, v, *w), *v))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, v)| v)
        }
        let even = [("1.0.0", 50), ("1.1.0", 50)];
        let tilted = [("1.0.0", 90), ("1.1.0", 10)];
        let three = [("1.0.0", 90), ("1.1.0", 10), ("2.0.0", 0)];
        let (mut old_even, mut old_tilted) = (0, 0);
        for k in 0..10_000u64 {
            let key = fnv(&k.to_le_bytes());
            let a = owner(&even, key);
            let b = owner(&tilted, key);
            if a == Some("1.0.0") {
                old_even += 1;
                assert_eq!(
                    b,
                    Some("1.0.0"),
                    "a key moved away from the version that grew"
                );
            }
            if b == Some("1.0.0") {
                old_tilted += 1;
            }
            assert_eq!(owner(&three, key), b, "a version of weight 0 took a key");
        }
        assert!((4_800..5_200).contains(&old_even), "{old_even}");
        assert!((8_800..9_200).contains(&old_tilted), "{old_tilted}");
    }
}
