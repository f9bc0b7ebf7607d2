//! Groups whose members follow directory entries: instance or grant keys
//! to tokens, each joined as a local capability when it runs here, else as
//! a healing reference to its token.

use std::collections::BTreeMap;

use sturdyrefs::SturdyRef;
use vat::group::{Group, Membership, Strategy};
use vat::net::Identity;

/// A group whose members follow directory entries (instance or grant keys
/// to tokens).
pub(crate) struct Members {
    pub(crate) group: Group,
    members: BTreeMap<String, (String, Membership)>,
}

impl Members {
    pub(crate) fn new(name: String) -> Members {
        Members {
            group: Group::new(name, Strategy::RoundRobin),
            members: BTreeMap::new(),
        }
    }

    /// Makes the members exactly `wanted` (key to token text), joining a
    /// local capability where `local` has one for the key, else a healing
    /// reference to the token.
    pub(crate) fn follow(
        &mut self,
        identity: Option<&Identity>,
        wanted: &BTreeMap<String, String>,
        local: &dyn Fn(&str) -> Option<capnp::capability::Client>,
    ) {
        self.members
            .retain(|key, (token, _)| wanted.get(key) == Some(token));
        for (key, token) in wanted {
            if self.members.contains_key(key) {
                continue;
            }
            let membership = match local(key) {
                Some(client) => self.group.join(client),
                None => match token.parse::<SturdyRef>() {
                    // Another vat's: a healing reference, asked for its
                    // own request while connected (no copy per call).
                    Ok(token) => self.group.join_forwarding(vat::sturdy::healing(
                        token,
                        identity.cloned(),
                        vat::sturdy::HealOptions::default(),
                    )),
                    Err(error) => {
                        tracing::warn!(key = %key, %error, "a registered token does not parse; skipped");
                        continue;
                    }
                },
            };
            self.members
                .insert(key.clone(), (token.clone(), membership));
        }
    }
}
