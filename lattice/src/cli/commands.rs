//! The operator's commands: each runs in a vat of its own, through the
//! directory's admin facet and the hosts' own capabilities.

use schema::lattice_capnp::{host, Role as WireRole};
use vat::VatHandle;
use vat_directory::client::Consistency;
use vat_directory::record::{InstanceKey, Record, HOSTS};
use vat_directory::token::DirectoryTokenError;
use vat_directory::{DirectoryClient, DirectoryError, DirectoryToken};

use super::{Command, RoleArg};
use crate::{BindingId, Config, Lattice, LatticeError};

/// What a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A token does not parse.
    #[error("bad directory token: {0}")]
    Token(#[from] DirectoryTokenError),
    /// The lattice refused or failed.
    #[error(transparent)]
    Lattice(#[from] LatticeError),
    /// The directory refused or failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// A call failed.
    #[error(transparent)]
    Vat(#[from] vat::Error),
    /// A host could not be reached.
    #[error("host {host}: {reason}")]
    Host {
        /// Its vat id.
        host: String,
        /// Why.
        reason: String,
    },
}

/// Runs an operator's command and prints what it answers.
pub(super) fn run(command: Command) -> Result<(), CliError> {
    let vat = VatHandle::start("lattice-cli")?;
    let outcome = vat.run_async(move || execute(command)).wait();
    let stopped = vat.stop();
    let lines = outcome??;
    stopped?;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

fn admin(text: &str) -> Result<DirectoryClient, CliError> {
    let token: DirectoryToken = text.trim().parse()?;
    Ok(DirectoryClient::new(token, None))
}

fn wire(role: RoleArg) -> WireRole {
    match role {
        RoleArg::Actor => WireRole::Actor,
        RoleArg::Provider => WireRole::Provider,
    }
}

fn role_name(role: Result<WireRole, capnp::NotInSchema>) -> &'static str {
    match role {
        Ok(WireRole::Actor) => "actor",
        Ok(WireRole::Provider) => "provider",
        Err(_) => "?",
    }
}

/// The host `vat`'s own capability, from its `hosts/` record.
async fn host_cap(directory: &DirectoryClient, vat: &str) -> Result<host::Client, CliError> {
    let unreachable = |reason: String| CliError::Host {
        host: vat.to_owned(),
        reason,
    };
    let entry = directory
        .get(&format!("{HOSTS}{vat}"), Consistency::Linearizable)
        .await?
        .value;
    let Some(Record::Host(record)) = entry.map(|e| e.record) else {
        return Err(unreachable("no such host in the lattice".to_owned()));
    };
    crate::service::restore(&record.token)
        .await
        .map_err(unreachable)
}

/// One running instance as `host::inventory` lists it.
struct Listed {
    role: &'static str,
    kind: String,
    version: String,
    number: u64,
}

async fn inventory(host: &host::Client) -> Result<(Vec<Listed>, Vec<Listed>), CliError> {
    let reply = host
        .inventory_request()
        .send()
        .promise
        .await
        .map_err(vat::Error::from)?;
    let reply = reply.get().map_err(vat::Error::from)?;
    let read = |list: capnp::struct_list::Reader<'_, schema::lattice_capnp::instance::Owned>| {
        list.iter()
            .map(|i| {
                Ok(Listed {
                    role: role_name(i.get_role()),
                    kind: i.get_kind()?.to_string()?,
                    version: i.get_version()?.to_string()?,
                    number: i.get_number(),
                })
            })
            .collect::<Result<Vec<_>, capnp::Error>>()
    };
    let running =
        read(reply.get_instances().map_err(vat::Error::from)?).map_err(vat::Error::from)?;
    let factories =
        read(reply.get_factories().map_err(vat::Error::from)?).map_err(vat::Error::from)?;
    Ok((running, factories))
}

/// Reads `NAME` or `NAME@VERSION`.
pub(super) fn kind_arg(text: &str) -> Result<(String, Option<String>), CliError> {
    crate::kind::check_selector("kind", text)?;
    let selector = vat_directory::record::Selector::parse(text);
    Ok((
        selector.name.to_owned(),
        selector.version.map(str::to_owned),
    ))
}

fn route_line(status: &crate::RouteStatus) -> String {
    format!(
        "{} route {} (index {}): followed by {} hosts in {} ms",
        status.kind,
        captp::log::Untrusted(&status.route),
        status.index,
        status.followed_by.len(),
        status.waited.as_millis()
    )
}

fn config(items: &[String]) -> Result<Config, CliError> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| CliError::Usage(format!("a setting is KEY=VALUE, not {item:?}")))
        })
        .collect()
}

async fn execute(command: Command) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    match command {
        Command::Host { .. } => unreachable!("run by cli::host"),
        Command::Hosts { admin: token } => {
            let lattice = Lattice::new(admin(&token)?);
            let instances = lattice.instances().await?;
            for (vat, record) in lattice.hosts().await? {
                let count = instances
                    .iter()
                    .filter(|key| InstanceKey::parse(key).is_ok_and(|i| i.vat == vat))
                    .count();
                out.push(format!(
                    "{vat} {} hints={} instances={count}",
                    if record.gone { "gone" } else { "alive" },
                    record.hints.join(","),
                ));
            }
        }
        Command::Inventory { admin: token, host } => {
            let directory = admin(&token)?;
            let hosts = match host {
                Some(host) => vec![host],
                None => Lattice::new(directory.clone())
                    .hosts()
                    .await?
                    .into_iter()
                    .filter(|(_, record)| !record.gone)
                    .map(|(vat, _)| vat)
                    .collect(),
            };
            for vat in hosts {
                let listed = match host_cap(&directory, &vat).await {
                    Ok(cap) => inventory(&cap).await,
                    Err(error) => Err(error),
                };
                match listed {
                    Ok((running, factories)) => {
                        out.push(format!("host {vat}"));
                        for i in running {
                            out.push(format!(
                                "  {} {} {}@{}",
                                i.number, i.role, i.kind, i.version
                            ));
                        }
                        let offered: Vec<String> = factories
                            .iter()
                            .map(|f| format!("{} {}@{}", f.role, f.kind, f.version))
                            .collect();
                        out.push(format!("  can run: {}", offered.join(", ")));
                    }
                    Err(error) => out.push(format!("host {vat}: not reached: {error}")),
                }
            }
        }
        Command::Start {
            admin: token,
            role,
            name,
            host,
            version,
        } => {
            let (name, named) = kind_arg(&name)?;
            let version = match (named, version) {
                (Some(a), Some(b)) if a != b => {
                    return Err(CliError::Usage(format!(
                        "{name}@{a} and --version {b} disagree"
                    )))
                }
                (named, version) => named.or(version),
            };
            let cap = host_cap(&admin(&token)?, &host).await?;
            let mut call = cap.start_request();
            call.get().set_role(wire(role));
            call.get().set_kind(name.as_str());
            call.get().set_version(version.as_deref().unwrap_or(""));
            let reply = call.send().promise.await.map_err(vat::Error::from)?;
            let instance = reply
                .get()
                .and_then(|r| r.get_instance())
                .map_err(vat::Error::from)?;
            out.push(format!(
                "started {} {}@{} number {} on {host}",
                role_name(instance.get_role()),
                instance
                    .get_kind()
                    .and_then(|t| Ok(t.to_string()?))
                    .map_err(vat::Error::from)?,
                instance
                    .get_version()
                    .and_then(|t| Ok(t.to_string()?))
                    .map_err(vat::Error::from)?,
                instance.get_number()
            ));
        }
        Command::Stop {
            admin: token,
            role,
            name,
            host,
            number,
        } => {
            let (name, version) = kind_arg(&name)?;
            let cap = host_cap(&admin(&token)?, &host).await?;
            let (running, _) = inventory(&cap).await?;
            let wanted = match role {
                RoleArg::Actor => "actor",
                RoleArg::Provider => "provider",
            };
            let matching: Vec<&Listed> = running
                .iter()
                .filter(|i| i.role == wanted && i.kind == name)
                .filter(|i| version.as_ref().is_none_or(|v| *v == i.version))
                .filter(|i| number.is_none_or(|n| n == i.number))
                .collect();
            if matching.is_empty() {
                return Err(CliError::Usage(format!(
                    "no {wanted} {name}{}{} runs on {host}",
                    version
                        .as_ref()
                        .map(|v| format!("@{v}"))
                        .unwrap_or_default(),
                    number.map(|n| format!(" number {n}")).unwrap_or_default()
                )));
            }
            let stopped: Vec<u64> = match number {
                Some(number) => {
                    let mut call = cap.stop_request();
                    call.get().set_number(number);
                    call.send().promise.await.map_err(vat::Error::from)?;
                    vec![number]
                }
                None => {
                    let mut call = cap.stop_kind_request();
                    call.get().set_kind(name.as_str());
                    call.get().set_version(version.as_deref().unwrap_or(""));
                    let reply = call.send().promise.await.map_err(vat::Error::from)?;
                    let list = reply
                        .get()
                        .and_then(|r| r.get_stopped())
                        .map_err(vat::Error::from)?;
                    list.iter().collect()
                }
            };
            let numbers: Vec<String> = stopped.iter().map(u64::to_string).collect();
            out.push(format!(
                "stopped {wanted} {name} number {} on {host}",
                numbers.join(", ")
            ));
        }
        Command::Scale {
            admin: token,
            name,
            count,
            host,
        } => {
            let (name, version) = kind_arg(&name)?;
            let cap = host_cap(&admin(&token)?, &host).await?;
            let mut call = cap.scale_request();
            call.get().set_kind(name.as_str());
            call.get().set_version(version.as_deref().unwrap_or(""));
            call.get().set_count(count);
            let reply = call.send().promise.await.map_err(vat::Error::from)?;
            let list = reply
                .get()
                .and_then(|r| r.get_instances())
                .map_err(vat::Error::from)?;
            let mut numbers = Vec::new();
            let mut kind = name.clone();
            for instance in list.iter() {
                numbers.push(instance.get_number().to_string());
                let version = instance
                    .get_version()
                    .and_then(|t| Ok(t.to_string()?))
                    .map_err(vat::Error::from)?;
                kind = format!("{name}@{version}");
            }
            out.push(format!(
                "{kind} runs {} instances on {host}: {}",
                numbers.len(),
                numbers.join(", ")
            ));
        }
        Command::Versions { admin: token, name } => {
            let lattice = Lattice::new(admin(&token)?);
            let (versions, route) = lattice.versions(&name).await?;
            for version in versions {
                out.push(format!(
                    "{name}@{} instances={} {}",
                    version.version,
                    version.instances.len(),
                    version.instances.join(" ")
                ));
            }
            out.push(match route {
                Some(route) => format!("route {}", captp::log::Untrusted(&route)),
                None => "route none (calls spread over every instance)".to_owned(),
            });
        }
        Command::Route {
            admin: token,
            name,
            weights,
            sticky,
            live,
            rules,
            clear,
        } => {
            let lattice = Lattice::new(admin(&token)?);
            if clear {
                let existed = lattice.remove_route(&name).await?;
                out.push(if existed {
                    format!("removed the route of {name}")
                } else {
                    format!("{name} had no route")
                });
                return Ok(out);
            }
            let rules = rules
                .iter()
                .map(|rule| crate::route::parse_rule(rule))
                .collect::<Result<Vec<_>, _>>()?;
            let pick = match (weights, live) {
                (Some(weights), None) => crate::route::RoutePick::Weights {
                    weights: crate::route::parse_weights(&weights)?,
                    sticky,
                },
                (None, Some(version)) => crate::route::RoutePick::Live {
                    version,
                    previous: None,
                },
                (None, None) if rules.is_empty() => {
                    out.push(match lattice.route(&name).await? {
                        Some(route) => format!("route {}", captp::log::Untrusted(&route)),
                        None => "route none (calls spread over every instance)".to_owned(),
                    });
                    return Ok(out);
                }
                _ => {
                    return Err(CliError::Usage(
                        "a route needs --weights or --live (what calls no rule matches get)"
                            .to_owned(),
                    ))
                }
            };
            eprintln!("routing {name}: waiting for every host's routers to follow");
            let status = lattice
                .set_route(&name, crate::route::Route { rules, pick })
                .await?;
            out.push(route_line(&status));
        }
        Command::Swap {
            admin: token,
            name,
            to,
        } => {
            let lattice = Lattice::new(admin(&token)?);
            eprintln!("swapping {name}: waiting for every host's routers to follow");
            let status = lattice.swap(&name, to.as_deref()).await?;
            out.push(route_line(&status));
        }
        Command::Bind {
            admin: token,
            actor,
            provider,
            link,
            config: settings,
            wait_ms,
        } => {
            let id = BindingId::new(actor, provider, link)?;
            let lattice = Lattice::new(admin(&token)?);
            eprintln!("binding {id}: waiting for every provider instance to take it");
            let status = lattice
                .set_binding_within(
                    &id,
                    config(&settings)?,
                    std::time::Duration::from_millis(wait_ms),
                )
                .await?;
            out.push(format!(
                "bound {id}: {} of {} provider instances took it; {} actor instances",
                status
                    .grants
                    .iter()
                    .filter(|g| g.current && g.failed.is_none())
                    .count(),
                status.provider_instances,
                status.actor_instances
            ));
        }
        Command::Unbind {
            admin: token,
            actor,
            provider,
            link,
        } => {
            let id = BindingId::new(actor, provider, link)?;
            if !Lattice::new(admin(&token)?).remove_binding(&id).await? {
                return Err(CliError::Usage(format!("there is no binding {id}")));
            }
            out.push(format!("removed {id}"));
        }
        Command::Bindings { admin: token } => {
            for status in Lattice::new(admin(&token)?).bindings().await? {
                let settings: Vec<String> = status
                    .config
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                out.push(format!(
                    "{} config={} actors={} providers={}",
                    status.id,
                    settings.join(","),
                    status.actor_instances,
                    status.provider_instances
                ));
                for grant in &status.grants {
                    let state = match (&grant.failed, grant.current) {
                        (Some(why), _) => format!("failed: {}", captp::log::Untrusted(why)),
                        (None, true) => "provisioned".to_owned(),
                        (None, false) => "provisioned (an earlier config)".to_owned(),
                    };
                    out.push(format!("  {} {state}", grant.instance));
                }
            }
        }
    }
    Ok(out)
}
