//! The client commands: each runs in a vat of its own for a moment.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use crate::client::{Consistency, Read, WatchEvent};
use crate::command::FacetKind;
use crate::convert::StatusInfo;
use crate::record::{GrantOutcome, NameRecord, Record, VatRecord};
use crate::{DirectoryClient, DirectoryError, DirectoryToken};
use sturdyrefs::SturdyRef;
use vat::net::Identity;
use vat::VatHandle;

use super::{As, Command, ReadArgs};

/// What a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The directory answered with an error.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The vat or a call failed.
    #[error(transparent)]
    Vat(#[from] vat::Error),
    /// A token is malformed.
    #[error("bad token: {0}")]
    Token(#[from] crate::token::DirectoryTokenError),
    /// A member token is malformed.
    #[error("bad member token: {0}")]
    MemberToken(#[from] sturdyrefs::ParseError),
    /// The member could not start.
    #[error(transparent)]
    Serve(#[from] Box<crate::operator::ServeError>),
    /// A restore failed.
    #[error(transparent)]
    Restore(#[from] vat::sturdy::RestoreError),
    /// The command line does not make sense.
    #[error("{0}")]
    Usage(String),
    /// The identity could not be read or made.
    #[error("identity in {}: {source}", dir.display())]
    Identity {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: vat::net::IdentityError,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

impl From<capnp::Error> for CliError {
    fn from(error: capnp::Error) -> CliError {
        CliError::Vat(error.into())
    }
}

/// Runs `work` in a fresh vat, then stops it.
fn oneshot<R, F, Fut>(work: F) -> Result<R, CliError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<R, CliError>> + 'static,
    R: Send + 'static,
{
    let vat = VatHandle::start("vat-directory")?;
    let outcome = vat.run_async(work).wait();
    let stopped = vat.stop();
    let result = outcome??;
    stopped?;
    Ok(result)
}

fn identity(who: &As) -> Result<Option<Identity>, CliError> {
    who.as_dir
        .as_ref()
        .map(|dir| {
            Identity::load(dir).map_err(|source| CliError::Identity {
                dir: dir.clone(),
                source,
            })
        })
        .transpose()
}

/// What a client is made of, checked before a vat starts (a client itself
/// lives in one vat).
struct Spec {
    token: DirectoryToken,
    identity: Option<Identity>,
    member: Option<usize>,
}

impl Spec {
    fn connect(self) -> DirectoryClient {
        match self.member {
            Some(member) => DirectoryClient::pinned(self.token, self.identity, member),
            None => DirectoryClient::new(self.token, self.identity),
        }
    }
}

fn client(token: &str, who: &As, read: Option<ReadArgs>) -> Result<Spec, CliError> {
    let token = DirectoryToken::parse(token.trim())?;
    let identity = identity(who)?;
    let member = read.and_then(|r| r.member);
    if let Some(member) = member.filter(|m| *m >= token.members().len()) {
        return Err(CliError::Usage(format!(
            "the token names {} members; --member {member} is not one (they count from 0)",
            token.members().len()
        )));
    }
    Ok(Spec {
        token,
        identity,
        member,
    })
}

fn consistency(read: ReadArgs) -> Consistency {
    if read.any {
        Consistency::Any
    } else {
        Consistency::Linearizable
    }
}

/// Runs a client command.
pub fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve { .. } => Err(CliError::Usage("serve runs on its own".to_owned())),
        Command::Init { members, who } => init(members, who),
        Command::Status { token, read, who } => {
            let client = client(&token, &who, Some(read))?;
            let status = oneshot(move || async move {
                let client = client.connect();
                Ok(client.status().await?)
            })?;
            print_status(&status);
            Ok(())
        }
        Command::Put {
            token,
            key,
            refs,
            config,
            vat_hints,
            labels,
            lease_ms,
            read,
            who,
        } => {
            let record = record(&key, refs, config, vat_hints, labels, lease_ms)?;
            let client = client(&token, &who, Some(read))?;
            let index = oneshot(move || async move {
                let client = client.connect();
                Ok(client.put(&key, record).await?)
            })?;
            println!("committed at index {index}");
            Ok(())
        }
        Command::Get {
            token,
            key,
            read,
            who,
        } => {
            let client = client(&token, &who, Some(read))?;
            let how = consistency(read);
            let got = oneshot(move || async move {
                let client = client.connect();
                Ok(client.get(&key, how).await?)
            })?;
            match &got.value {
                Some(entry) => println!("{}\t{}\t{}", entry.key, entry.index, show(&entry.record)),
                None => println!("(no record)"),
            }
            staleness(&got, how);
            Ok(())
        }
        Command::List {
            token,
            prefix,
            limit,
            read,
            who,
        } => {
            let client = client(&token, &who, Some(read))?;
            let how = consistency(read);
            let got = oneshot(move || async move {
                let client = client.connect();
                Ok(client.list(&prefix, how, limit).await?)
            })?;
            for entry in &got.value.0 {
                println!("{}\t{}\t{}", entry.key, entry.index, show(&entry.record));
            }
            if got.value.1 {
                println!("(more: raise --limit or narrow the prefix)");
            }
            staleness(&got, how);
            Ok(())
        }
        Command::Watch {
            token,
            prefix,
            from,
            count,
            who,
        } => {
            let client = client(&token, &who, None)?;
            oneshot(move || async move {
                let client = client.connect();
                let mut watching = client.watch(&prefix, from);
                let mut seen = 0usize;
                while let Some(event) = watching.next().await {
                    match event? {
                        WatchEvent::Reset { index, entries } => {
                            println!("state at index {index}: {} records", entries.len());
                            for entry in entries {
                                println!(
                                    "  {}\t{}\t{}",
                                    entry.key,
                                    entry.index,
                                    show(&entry.record)
                                );
                            }
                        }
                        WatchEvent::Changed(changes) => {
                            for change in changes {
                                match &change.record {
                                    Some(record) => println!(
                                        "{}\tput\t{}\t{}",
                                        change.index,
                                        change.key,
                                        show(record)
                                    ),
                                    None => println!("{}\tdelete\t{}", change.index, change.key),
                                }
                                seen += 1;
                                if count.is_some_and(|c| seen >= c) {
                                    return Ok(());
                                }
                            }
                        }
                    }
                }
                Ok(())
            })
        }
        Command::Rm {
            token,
            key,
            read,
            who,
        } => {
            let client = client(&token, &who, Some(read))?;
            let index = oneshot(move || async move {
                let client = client.connect();
                Ok(client.delete(&key).await?)
            })?;
            println!("committed at index {index}");
            Ok(())
        }
        Command::Mint {
            token,
            admin,
            host,
            reader,
            writer,
            who,
        } => {
            let kind = match (admin, host, reader, writer) {
                (true, None, None, None) => FacetKind::Admin,
                (false, Some(vat), None, None) => FacetKind::Host { vat },
                (false, None, Some(prefix), None) => FacetKind::Reader { prefix },
                (false, None, None, Some(prefix)) => FacetKind::Writer { prefix },
                _ => {
                    return Err(CliError::Usage(
                        "give one of --admin, --host VAT, --reader PREFIX, --writer PREFIX"
                            .to_owned(),
                    ))
                }
            };
            let client = client(&token, &who, None)?;
            let minted = oneshot(move || async move {
                let client = client.connect();
                Ok(client.mint_facet(kind).await?)
            })?;
            println!("{minted}");
            Ok(())
        }
        Command::Revoke { token, facet, who } => {
            let facet = DirectoryToken::parse(facet.trim())?;
            let client = client(&token, &who, None)?;
            let index = oneshot(move || async move {
                let client = client.connect();
                Ok(client.revoke_facet(&facet).await?)
            })?;
            println!("revoked at index {index}");
            Ok(())
        }
        Command::AddMember { token, member, who } => {
            let member = SturdyRef::parse(member.trim())?;
            let client = client(&token, &who, None)?;
            let identity = identity(&who)?;
            let index = oneshot(move || async move {
                let client = client.connect();
                eprintln!("[1/3] reading the cluster's configuration");
                let cluster = client.cluster().await?;
                eprintln!("[2/3] {} joins the cluster", member.vat());
                crate::operator::hand_cluster(&member, identity.as_ref(), &cluster, false).await?;
                eprintln!("[3/3] adding it: it catches up as a learner, then votes");
                let hints: Vec<String> = member.hints().iter().map(|h| h.to_string()).collect();
                Ok(client.add_member(&member.vat().to_string(), &hints).await?)
            })?;
            println!("member added at index {index}");
            Ok(())
        }
        Command::RemoveMember { token, vat, who } => {
            let client = client(&token, &who, None)?;
            let index = oneshot(move || async move {
                let client = client.connect();
                Ok(client.remove_member(&vat).await?)
            })?;
            println!("member removed at index {index}");
            Ok(())
        }
    }
}

fn init(members: Vec<String>, who: As) -> Result<(), CliError> {
    let tokens = members
        .iter()
        .map(|t| SturdyRef::parse(t.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let identity = identity(&who)?;
    let admin = oneshot(move || async move {
        let progress =
            |i, n, vat: &sturdyrefs::VatId| eprintln!("[{i}/{n}] initializing member {vat}");
        Ok(crate::operator::form_cluster(&tokens, identity.as_ref(), progress).await?)
    })?;
    println!("{admin}");
    Ok(())
}

fn record(
    key: &str,
    refs: Vec<String>,
    config: Vec<String>,
    hints: Vec<String>,
    labels: Vec<String>,
    lease_ms: u64,
) -> Result<Record, CliError> {
    use crate::record::{BindingRecord, InstanceRecord, BINDINGS, INSTANCES, VATS};
    if key.starts_with(VATS) {
        return Ok(Record::Vat(VatRecord {
            hints,
            labels: pairs("a label", &labels)?,
            lease_ms,
            expires_at_ms: 0,
            gone: false,
        }));
    }
    if key.starts_with(BINDINGS) {
        return Ok(Record::Binding(BindingRecord {
            config: pairs("a config setting", &config)?,
        }));
    }
    let what = if key.starts_with(INSTANCES) {
        "an instance's"
    } else {
        "a name's"
    };
    if refs.is_empty() {
        return Err(CliError::Usage(format!(
            "{what} record needs at least one --ref TOKEN"
        )));
    }
    Ok(if key.starts_with(INSTANCES) {
        Record::Instance(InstanceRecord { refs })
    } else {
        Record::Name(NameRecord { refs })
    })
}

/// Reads `KEY=VALUE` arguments.
fn pairs(what: &str, items: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| CliError::Usage(format!("{what} is KEY=VALUE, not {item:?}")))
        })
        .collect()
}

fn show(record: &Record) -> String {
    match record {
        Record::Name(name) => format!("name {}", name.refs.join(" ")),
        Record::Instance(instance) => format!("instance {}", instance.refs.join(" ")),
        Record::Binding(binding) => {
            let config: Vec<String> = binding
                .config
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("binding config={}", config.join(","))
        }
        Record::Route(route) => format!("route {}", captp::log::Untrusted(route)),
        // The token is authority over the host: never printed.
        Record::Host(_) => "host (its capability's token is kept)".to_owned(),
        Record::Grant(grant) => match &grant.outcome {
            // The token is the actor's authority: shown as granted, never printed.
            GrantOutcome::Granted(_) => format!("grant granted config={}", grant.config_digest),
            GrantOutcome::Failed(why) => format!(
                "grant failed config={}: {}",
                grant.config_digest,
                captp::log::Untrusted(why)
            ),
        },
        Record::Vat(vat) => {
            let labels: Vec<String> = vat.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "vat hints={} labels={} lease={}ms expires_at={} {}",
                vat.hints.join(","),
                labels.join(","),
                vat.lease_ms,
                vat.expires_at_ms,
                if vat.gone { "GONE" } else { "alive" }
            )
        }
    }
}

/// An `--any` read says who served it and how stale it may be, even when
/// that is 0 ms: the reader asked for a possibly stale answer and should
/// see what it got.
fn staleness<T>(read: &Read<T>, how: Consistency) {
    if how == Consistency::Any {
        let age = if read.staleness_ms == u64::MAX {
            "unknown (no leader heard from)".to_owned()
        } else {
            format!("{} ms", read.staleness_ms)
        };
        eprintln!(
            "(served by {} at index {}; may be stale by {age})",
            read.served_by, read.index
        );
    }
}

fn print_status(status: &StatusInfo) {
    println!(
        "leader   {}",
        status.leader.as_deref().unwrap_or("(none known)")
    );
    println!("term     {}", status.term);
    println!("commit   {}", status.commit_index);
    println!("applied  {}", status.applied_index);
    println!("answered {} ({})", status.served_by, status.role);
    println!("members:");
    for member in &status.members {
        println!(
            "  {}  {}  {}  matched={} lag={} {}",
            member.vat,
            member.hints.join(","),
            if member.voter { "voter" } else { "learner" },
            member.matched,
            member.lag,
            if member.reachable {
                "reachable"
            } else {
                "UNREACHABLE"
            },
        );
    }
}
