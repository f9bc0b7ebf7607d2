//! What an operator does with versions: sees which run where, writes a
//! kind's route (weights, content rules, a live version) and swaps blue
//! for green, waiting until every host's routers follow.

use std::collections::BTreeMap;
use std::time::Duration;

use vat_directory::record::{InstanceKey, Record, HOSTS, INSTANCES, ROUTES};

use crate::error::LatticeError;
use crate::operator::Lattice;
use crate::route::{check_route, Route, RoutePick};

/// How long [`Lattice::set_route`] waits for every host's routers to
/// follow a route.
pub const ROUTE_WAIT: Duration = Duration::from_secs(10);

/// A route as written, and who follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStatus {
    /// The kind.
    pub kind: String,
    /// The route.
    pub route: Route,
    /// The directory's log index of its write.
    pub index: u64,
    /// The hosts whose routers of the kind follow it (hosts that route no
    /// call to the kind are not listed).
    pub followed_by: Vec<String>,
    /// From the write's commit to the last host following it.
    pub waited: Duration,
}

/// One version of a kind and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    /// The version.
    pub version: String,
    /// Its instances: `<vat>/<n>`.
    pub instances: Vec<String>,
}

impl Lattice {
    /// The versions of kind `name` that run, with their instances, and
    /// its route if it has one.
    pub async fn versions(
        &self,
        name: &str,
    ) -> Result<(Vec<VersionStatus>, Option<Route>), LatticeError> {
        crate::kind::check_name("kind", name)?;
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, _) in self.list(&format!("{INSTANCES}{name}@")).await? {
            if let Ok(instance) = InstanceKey::parse(&key) {
                if instance.kind == name {
                    versions
                        .entry(instance.version.to_owned())
                        .or_default()
                        .push(format!("{}/{}", instance.vat, instance.n));
                }
            }
        }
        let versions = versions
            .into_iter()
            .map(|(version, instances)| VersionStatus { version, instances })
            .collect();
        Ok((versions, self.route(name).await?))
    }

    /// The route of kind `name`, if it has one.
    pub async fn route(&self, name: &str) -> Result<Option<Route>, LatticeError> {
        crate::kind::check_name("kind", name)?;
        Ok(self.directory.route(name).await?.map(|(route, _)| route))
    }

    /// Writes the route of kind `name` (checked: [`check_route`]) and
    /// waits up to [`ROUTE_WAIT`] for every host's routers of it, and this
    /// lattice handle's references, to follow it: calls made after it
    /// answers go by it. Fails with
    /// [`RouteNotYetFollowed`](LatticeError::RouteNotYetFollowed) naming
    /// the hosts that lag (the route is written; they follow when they can).
    pub async fn set_route(&self, name: &str, route: Route) -> Result<RouteStatus, LatticeError> {
        crate::kind::check_name("kind", name)?;
        check_route(&route)?;
        let index = self
            .directory
            .put(&format!("{ROUTES}{name}"), Record::Route(route.clone()))
            .await?;
        let started = vat_env::now();
        for reference in self.references.of(name) {
            reference.refresh().await?;
        }
        let followed_by = self.wait_followed(name, index, ROUTE_WAIT).await?;
        Ok(RouteStatus {
            kind: name.to_owned(),
            route,
            index,
            followed_by,
            waited: vat_env::now().duration_since(started),
        })
    }

    /// Removes the route of kind `name`: calls spread over every instance
    /// of every version again. Answers whether it had one. Hosts follow
    /// within the bound [`set_route`](Lattice::set_route) measures; this
    /// lattice handle's references at once.
    pub async fn remove_route(&self, name: &str) -> Result<bool, LatticeError> {
        crate::kind::check_name("kind", name)?;
        let key = format!("{ROUTES}{name}");
        let existed = self.directory.get(&key).await?.is_some();
        self.directory.delete(&key).await?;
        for reference in self.references.of(name) {
            reference.refresh().await?;
        }
        Ok(existed)
    }

    /// Blue/green: makes `to` the live version of kind `name` (every call
    /// on the unversioned reference goes to it), remembering the version
    /// live before, and waits as [`set_route`](Lattice::set_route) does.
    /// Without `to`, the route must have a live version, and the swap goes
    /// to the version live before it or, if there was none, to the only
    /// other version running. Refused, changing nothing, if no instance of
    /// that version runs. Content rules stay. Calls in flight finish where
    /// they are; none fails because of the swap.
    pub async fn swap(&self, name: &str, to: Option<&str>) -> Result<RouteStatus, LatticeError> {
        let current = self.route(name).await?;
        let (rules, live, previous) = match current {
            Some(Route {
                rules,
                pick: RoutePick::Live { version, previous },
            }) => (rules, Some(version), previous),
            Some(Route { rules, .. }) => (rules, None, None),
            None => (Vec::new(), None, None),
        };
        let target = match to {
            Some(to) => to.to_owned(),
            None => {
                let Some(live) = &live else {
                    return Err(LatticeError::BadRoute {
                        why: format!(
                            "{name} has no live version to swap from: name the version to swap to"
                        ),
                    });
                };
                match previous {
                    Some(previous) if previous != *live => previous,
                    _ => {
                        let (versions, _) = self.versions(name).await?;
                        let others: Vec<String> = versions
                            .into_iter()
                            .map(|v| v.version)
                            .filter(|v| v != live)
                            .collect();
                        match others.as_slice() {
                            [only] => only.clone(),
                            _ => {
                                return Err(LatticeError::BadRoute {
                                    why: format!(
                                        "{name} runs {} besides the live {live}: name the version to swap to",
                                        if others.is_empty() { "no other version".to_owned() } else { others.join(", ") }
                                    ),
                                })
                            }
                        }
                    }
                }
            }
        };
        // A swap to a version with no instance would fail every call.
        let (versions, _) = self.versions(name).await?;
        if !versions
            .iter()
            .any(|v| v.version == target && !v.instances.is_empty())
        {
            return Err(LatticeError::BadRoute {
                why: format!(
                    "no instance of {name}@{} runs: start one before swapping to it",
                    captp::log::Untrusted(&target)
                ),
            });
        }
        let route = Route {
            rules,
            pick: RoutePick::Live {
                previous: live.filter(|live| *live != target),
                version: target,
            },
        };
        self.set_route(name, route).await
    }

    /// Waits until every host that routes calls to `kind` follows its route
    /// at log index `index` or later; answers those hosts.
    async fn wait_followed(
        &self,
        kind: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Vec<String>, LatticeError> {
        let gone: Vec<String> = self
            .hosts()
            .await?
            .into_iter()
            .filter(|(_, vat)| vat.gone)
            .map(|(vat, _)| vat)
            .collect();
        let hosts: Vec<(String, String)> = self
            .list(HOSTS)
            .await?
            .into_iter()
            .filter_map(|(key, record)| match record {
                Record::Host(host) => Some((key[HOSTS.len()..].to_owned(), host.token)),
                _ => None,
            })
            .filter(|(vat, _)| !gone.contains(vat))
            .collect();
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        let asks = hosts.into_iter().map(|(vat, token)| async move {
            let answer = ask_followed(&token, kind, index, wait_ms).await;
            (vat, answer)
        });
        let mut followed_by = Vec::new();
        let mut lagging = Vec::new();
        for (vat, answer) in futures::future::join_all(asks).await {
            match answer {
                Ok(None) => {}
                Ok(Some(at)) if at >= index => followed_by.push(vat),
                Ok(Some(at)) => lagging.push(format!("{vat} (follows index {at})")),
                Err(why) => lagging.push(format!("{vat} ({why})")),
            }
        }
        if lagging.is_empty() {
            Ok(followed_by)
        } else {
            Err(LatticeError::RouteNotYetFollowed {
                kind: kind.to_owned(),
                index,
                lagging,
            })
        }
    }
}

/// Asks the host whose capability `token` names which route of `kind` its
/// routers follow, waiting up to `wait_ms` for `index`: `None` if it
/// routes no call to `kind`.
async fn ask_followed(
    token: &str,
    kind: &str,
    index: u64,
    wait_ms: u32,
) -> Result<Option<u64>, String> {
    let host = crate::service::restore(token).await?;
    let mut request = host.followed_request();
    request.get().set_kind(kind);
    request.get().set_at_least(index);
    request.get().set_wait_ms(wait_ms);
    let reply = request.send().promise.await.map_err(|e| e.to_string())?;
    let reply = reply.get().map_err(|e| e.to_string())?;
    Ok(reply.get_routes().then_some(reply.get_index()))
}
