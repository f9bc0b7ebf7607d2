//! Between the schema's structs and the crate's types. Text read from the
//! wire is checked here; nothing here panics on what a peer sends.

use std::collections::BTreeMap;

use capnp::text_list;
use schema::directory_capnp::{
    change, entry, grant_record, outcome, record, refused, route_record, route_rule, status,
};

use crate::command::Refusal;
use crate::error::{DirectoryError, RefusalKind};
use crate::machine::Change;
use crate::record::{
    BindingRecord, GrantOutcome, GrantRecord, HostRecord, InstanceRecord, NameRecord, Record,
    RouteOn, RoutePick, RouteRecord, RouteRule, VatRecord,
};

/// The most entries a `list` answers at once.
pub const MAX_LIST: u32 = 1000;
/// The most texts (hints, refs, labels) a record may carry.
const MAX_ITEMS: u32 = 64;

/// What a successful call reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Done {
    /// The write's log index, or the index a read saw.
    pub index: u64,
    /// For an `any` read: how old its state may be, in milliseconds.
    pub staleness_ms: u64,
    /// The vat id of the member that answered.
    pub served_by: String,
    /// For a write a follower forwarded: the vat id of the leader that
    /// committed it (empty otherwise).
    pub leader: String,
}

fn owned(text: capnp::text::Reader<'_>) -> capnp::Result<String> {
    Ok(text.to_string()?)
}

fn texts(list: text_list::Reader<'_>) -> capnp::Result<Vec<String>> {
    if list.len() > MAX_ITEMS {
        return Err(capnp::Error::failed(format!(
            "at most {MAX_ITEMS} items are allowed; {} were given",
            list.len()
        )));
    }
    list.iter()
        .map(|t| Ok(t?.to_string()?))
        .collect::<capnp::Result<Vec<_>>>()
}

fn set_texts(mut list: text_list::Builder<'_>, items: &[String]) {
    for (i, item) in items.iter().enumerate() {
        list.set(i as u32, item.as_str());
    }
}

/// Reads a record.
pub fn read_record(reader: record::Reader<'_>) -> capnp::Result<Record> {
    Ok(match reader.which()? {
        record::Vat(vat) => {
            let vat = vat?;
            Record::Vat(VatRecord {
                hints: texts(vat.get_hints()?)?,
                labels: labels("labels", vat.get_labels()?)?,
                lease_ms: vat.get_lease_ms(),
                expires_at_ms: vat.get_expires_at_ms(),
                gone: vat.get_gone(),
            })
        }
        record::Name(name) => Record::Name(NameRecord {
            refs: texts(name?.get_refs()?)?,
        }),
        record::Instance(instance) => Record::Instance(InstanceRecord {
            refs: texts(instance?.get_refs()?)?,
        }),
        record::Binding(binding) => Record::Binding(BindingRecord {
            config: labels("config settings", binding?.get_config()?)?,
        }),
        record::Grant(grant) => {
            let grant = grant?;
            let outcome = match grant.which()? {
                grant_record::Token(token) => GrantOutcome::Granted(owned(token?)?),
                grant_record::Failed(why) => GrantOutcome::Failed(owned(why?)?),
            };
            Record::Grant(GrantRecord {
                config_digest: owned(grant.get_config_digest()?)?,
                outcome,
            })
        }
        record::Host(host) => Record::Host(HostRecord {
            token: owned(host?.get_token()?)?,
        }),
        record::Route(route) => Record::Route(read_route(route?)?),
    })
}

fn read_route(route: route_record::Reader<'_>) -> capnp::Result<RouteRecord> {
    let list = route.get_rules()?;
    if list.len() > MAX_ITEMS {
        return Err(capnp::Error::failed(format!(
            "at most {MAX_ITEMS} route rules are allowed"
        )));
    }
    let mut rules = Vec::with_capacity(list.len() as usize);
    for rule in list.iter() {
        rules.push(RouteRule {
            on: match rule.which()? {
                route_rule::Key(()) => RouteOn::Key,
                route_rule::Field(field) => RouteOn::Field(owned(field?)?),
            },
            pattern: owned(rule.get_pattern()?)?,
            version: owned(rule.get_version()?)?,
        });
    }
    let pick = match route.which()? {
        route_record::Weights(list) => {
            let list = list?;
            if list.len() > MAX_ITEMS {
                return Err(capnp::Error::failed(format!(
                    "at most {MAX_ITEMS} weighted versions are allowed"
                )));
            }
            let mut weights = BTreeMap::new();
            for weight in list.iter() {
                weights.insert(owned(weight.get_version()?)?, weight.get_weight());
            }
            RoutePick::Weights {
                weights,
                sticky: route.get_sticky(),
            }
        }
        route_record::Live(version) => {
            let previous = owned(route.get_previous()?)?;
            RoutePick::Live {
                version: owned(version?)?,
                previous: (!previous.is_empty()).then_some(previous),
            }
        }
    };
    Ok(RouteRecord { rules, pick })
}

fn write_route(mut out: route_record::Builder<'_>, route: &RouteRecord) {
    let mut rules = out.reborrow().init_rules(route.rules.len() as u32);
    for (i, rule) in route.rules.iter().enumerate() {
        let mut item = rules.reborrow().get(i as u32);
        match &rule.on {
            RouteOn::Key => item.set_key(()),
            RouteOn::Field(field) => item.set_field(field.as_str()),
        }
        item.set_pattern(rule.pattern.as_str());
        item.set_version(rule.version.as_str());
    }
    match &route.pick {
        RoutePick::Weights { weights, sticky } => {
            out.set_sticky(*sticky);
            let mut list = out.init_weights(weights.len() as u32);
            for (i, (version, weight)) in weights.iter().enumerate() {
                let mut item = list.reborrow().get(i as u32);
                item.set_version(version.as_str());
                item.set_weight(*weight);
            }
        }
        RoutePick::Live { version, previous } => {
            out.set_previous(previous.as_deref().unwrap_or(""));
            out.set_live(version.as_str());
        }
    }
}

/// Reads key/value pairs (`what` names them in the error for too many).
fn labels(
    what: &str,
    list: capnp::struct_list::Reader<'_, schema::directory_capnp::label::Owned>,
) -> capnp::Result<BTreeMap<String, String>> {
    if list.len() > MAX_ITEMS {
        return Err(capnp::Error::failed(format!(
            "at most {MAX_ITEMS} {what} are allowed"
        )));
    }
    let mut map = BTreeMap::new();
    for label in list.iter() {
        map.insert(
            label.get_key()?.to_string()?,
            label.get_value()?.to_string()?,
        );
    }
    Ok(map)
}

/// Writes key/value pairs.
fn set_labels(
    mut list: capnp::struct_list::Builder<'_, schema::directory_capnp::label::Owned>,
    labels: &BTreeMap<String, String>,
) {
    for (i, (key, value)) in labels.iter().enumerate() {
        let mut label = list.reborrow().get(i as u32);
        label.set_key(key.as_str());
        label.set_value(value.as_str());
    }
}

/// Writes a record.
pub fn write_record(builder: record::Builder<'_>, record: &Record) {
    match record {
        Record::Vat(vat) => {
            let mut out = builder.init_vat();
            set_texts(
                out.reborrow().init_hints(vat.hints.len() as u32),
                &vat.hints,
            );
            set_labels(
                out.reborrow().init_labels(vat.labels.len() as u32),
                &vat.labels,
            );
            out.set_lease_ms(vat.lease_ms);
            out.set_expires_at_ms(vat.expires_at_ms);
            out.set_gone(vat.gone);
        }
        Record::Name(name) => {
            let out = builder.init_name();
            set_texts(out.init_refs(name.refs.len() as u32), &name.refs);
        }
        Record::Instance(instance) => {
            let out = builder.init_instance();
            set_texts(out.init_refs(instance.refs.len() as u32), &instance.refs);
        }
        Record::Binding(binding) => {
            let out = builder.init_binding();
            set_labels(
                out.init_config(binding.config.len() as u32),
                &binding.config,
            );
        }
        Record::Grant(grant) => {
            let mut out = builder.init_grant();
            out.set_config_digest(grant.config_digest.as_str());
            match &grant.outcome {
                GrantOutcome::Granted(token) => out.set_token(token.as_str()),
                GrantOutcome::Failed(why) => out.set_failed(why.as_str()),
            }
        }
        Record::Host(host) => builder.init_host().set_token(host.token.as_str()),
        Record::Route(route) => write_route(builder.init_route(), route),
    }
}

/// Writes an entry.
pub fn write_entry(mut builder: entry::Builder<'_>, key: &str, record: &Record, index: u64) {
    builder.set_key(key);
    builder.set_index(index);
    write_record(builder.init_record(), record);
}

/// Reads an entry: key, record, index.
pub fn read_entry(reader: entry::Reader<'_>) -> capnp::Result<(String, Record, u64)> {
    Ok((
        reader.get_key()?.to_string()?,
        read_record(reader.get_record()?)?,
        reader.get_index(),
    ))
}

/// Writes a change.
pub fn write_change(mut builder: change::Builder<'_>, change: &Change) {
    builder.set_index(change.index);
    builder.set_key(change.key.as_str());
    match &change.record {
        Some(record) => write_record(builder.init_record(), record),
        None => builder.set_deleted(true),
    }
}

/// Reads a change.
pub fn read_change(reader: change::Reader<'_>) -> capnp::Result<Change> {
    Ok(Change {
        index: reader.get_index(),
        key: reader.get_key()?.to_string()?,
        record: if reader.get_deleted() {
            None
        } else {
            Some(read_record(reader.get_record()?)?)
        },
    })
}

/// Writes a call's outcome.
pub fn write_outcome(builder: outcome::Builder<'_>, outcome: &Result<Done, DirectoryError>) {
    match outcome {
        Ok(done) => {
            let mut out = builder.init_done();
            out.set_index(done.index);
            out.set_staleness_ms(done.staleness_ms);
            out.set_served_by(done.served_by.as_str());
            out.set_leader(done.leader.as_str());
        }
        Err(DirectoryError::NoQuorum { reached, members }) => {
            let mut out = builder.init_no_quorum();
            out.set_reached(*reached);
            out.set_members(*members);
        }
        Err(DirectoryError::Refused {
            kind,
            limit,
            size,
            message,
        }) => {
            let mut out = builder.init_refused();
            out.set_kind(match kind {
                RefusalKind::NotPermitted => refused::Kind::NotPermitted,
                RefusalKind::BadKey => refused::Kind::BadKey,
                RefusalKind::TooLarge => refused::Kind::TooLarge,
                RefusalKind::WrongKind => refused::Kind::WrongKind,
                RefusalKind::TooMany => refused::Kind::TooMany,
                RefusalKind::NoSuchVat => refused::Kind::NoSuchVat,
                RefusalKind::Forgotten => refused::Kind::Forgotten,
                RefusalKind::BadArgument => refused::Kind::BadArgument,
            });
            out.set_limit(limit.unwrap_or(0));
            out.set_size(size.unwrap_or(0));
            out.set_message(message.as_str());
        }
        Err(other) => {
            let mut builder = builder;
            builder.set_unavailable(other.to_string().as_str());
        }
    }
}

/// Reads a call's outcome.
pub fn read_outcome(reader: outcome::Reader<'_>) -> Result<Done, DirectoryError> {
    let malformed = |e: capnp::Error| DirectoryError::Call(vat::Error::from(e));
    match reader.which().map_err(|e| malformed(e.into()))? {
        outcome::Done(done) => {
            let done = done.map_err(malformed)?;
            Ok(Done {
                index: done.get_index(),
                staleness_ms: done.get_staleness_ms(),
                served_by: done
                    .get_served_by()
                    .and_then(|t| Ok(t.to_string()?))
                    .map_err(malformed)?,
                leader: done
                    .get_leader()
                    .and_then(|t| Ok(t.to_string()?))
                    .map_err(malformed)?,
            })
        }
        outcome::NoQuorum(no) => {
            let no = no.map_err(malformed)?;
            Err(DirectoryError::NoQuorum {
                reached: no.get_reached(),
                members: no.get_members(),
            })
        }
        outcome::Refused(refused) => {
            let refused = refused.map_err(malformed)?;
            let kind = match refused.get_kind().map_err(|e| malformed(e.into()))? {
                refused::Kind::NotPermitted => RefusalKind::NotPermitted,
                refused::Kind::BadKey => RefusalKind::BadKey,
                refused::Kind::TooLarge => RefusalKind::TooLarge,
                refused::Kind::WrongKind => RefusalKind::WrongKind,
                refused::Kind::TooMany => RefusalKind::TooMany,
                refused::Kind::NoSuchVat => RefusalKind::NoSuchVat,
                refused::Kind::Forgotten => RefusalKind::Forgotten,
                refused::Kind::BadArgument => RefusalKind::BadArgument,
            };
            let nonzero = |v: u64| (v != 0).then_some(v);
            Err(DirectoryError::Refused {
                kind,
                limit: nonzero(refused.get_limit()),
                size: nonzero(refused.get_size()),
                message: refused
                    .get_message()
                    .and_then(|t| Ok(t.to_string()?))
                    .map_err(malformed)?,
            })
        }
        outcome::Unavailable(reason) => Err(DirectoryError::Unavailable {
            reason: reason.and_then(|t| Ok(t.to_string()?)).map_err(malformed)?,
        }),
    }
}

/// The state machine's refusal as the directory's error.
pub fn refusal(refusal: &Refusal) -> DirectoryError {
    let (kind, limit, size) = match refusal {
        Refusal::NotPermitted => (RefusalKind::NotPermitted, None, None),
        Refusal::Key(_) => (RefusalKind::BadKey, None, None),
        Refusal::RecordTooLarge { size, limit } => (
            RefusalKind::TooLarge,
            Some(*limit as u64),
            Some(*size as u64),
        ),
        Refusal::WrongKind { .. } => (RefusalKind::WrongKind, None, None),
        Refusal::TooManyRecords { limit } => (RefusalKind::TooMany, Some(*limit as u64), None),
        Refusal::NoSuchVat { .. } => (RefusalKind::NoSuchVat, None, None),
        Refusal::Forgotten { .. } => (RefusalKind::Forgotten, None, None),
    };
    DirectoryError::Refused {
        kind,
        limit,
        size,
        message: refusal.to_string(),
    }
}

/// A member's view of the cluster, as `status` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusInfo {
    /// The leader's vat id, if one is known (never the answering member
    /// while it reaches no quorum: it cannot act as one).
    pub leader: Option<String>,
    /// The current term.
    pub term: u64,
    /// The highest committed index this member knows.
    pub commit_index: u64,
    /// The highest index it applied.
    pub applied_index: u64,
    /// The member that answered.
    pub served_by: String,
    /// Its role: `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    /// Every member in the membership.
    pub members: Vec<MemberInfo>,
}

/// One member in a status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its vat id.
    pub vat: String,
    /// Its hints.
    pub hints: Vec<String>,
    /// A voter (else a learner).
    pub voter: bool,
    /// The last index the leader knows it holds (leader's view; 0 if
    /// unknown).
    pub matched: u64,
    /// How far behind the leader's last index it is.
    pub lag: u64,
    /// Whether the answering member reaches it.
    pub reachable: bool,
}

/// Writes a status.
pub fn write_status(mut builder: status::Builder<'_>, info: &StatusInfo) {
    builder.set_leader(info.leader.as_deref().unwrap_or(""));
    builder.set_term(info.term);
    builder.set_commit_index(info.commit_index);
    builder.set_applied_index(info.applied_index);
    builder.set_served_by(info.served_by.as_str());
    builder.set_role(info.role.as_str());
    let mut members = builder.init_members(info.members.len() as u32);
    for (i, member) in info.members.iter().enumerate() {
        let mut out = members.reborrow().get(i as u32);
        out.set_vat(member.vat.as_str());
        set_texts(
            out.reborrow().init_hints(member.hints.len() as u32),
            &member.hints,
        );
        out.set_voter(member.voter);
        out.set_matched(member.matched);
        out.set_lag(member.lag);
        out.set_reachable(member.reachable);
    }
}

/// Reads a status.
pub fn read_status(reader: status::Reader<'_>) -> capnp::Result<StatusInfo> {
    let leader = reader.get_leader()?.to_string()?;
    let mut members = Vec::new();
    for member in reader.get_members()?.iter() {
        members.push(MemberInfo {
            vat: member.get_vat()?.to_string()?,
            hints: texts(member.get_hints()?)?,
            voter: member.get_voter(),
            matched: member.get_matched(),
            lag: member.get_lag(),
            reachable: member.get_reachable(),
        });
    }
    Ok(StatusInfo {
        leader: (!leader.is_empty()).then_some(leader),
        term: reader.get_term(),
        commit_index: reader.get_commit_index(),
        applied_index: reader.get_applied_index(),
        served_by: reader.get_served_by()?.to_string()?,
        role: reader.get_role()?.to_string()?,
        members,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests

    use super::*;

    fn round_trip(record: &Record) -> Record {
        let mut message = capnp::message::Builder::new_default();
        write_record(message.init_root(), record);
        read_record(message.get_root_as_reader().unwrap()).unwrap()
    }

    #[test]
    fn routes_cross_the_wire_unchanged() {
        let rules = vec![
            RouteRule {
                on: RouteOn::Key,
                pattern: "beta-*".into(),
                version: "1.1.0".into(),
            },
            RouteRule {
                on: RouteOn::Field("request.path".into()),
                pattern: "/new/*".into(),
                version: "2.0.0".into(),
            },
        ];
        for pick in [
            RoutePick::Weights {
                weights: [("1.0.0".into(), 90), ("1.1.0".into(), 10)].into(),
                sticky: true,
            },
            RoutePick::Live {
                version: "1.1.0".into(),
                previous: Some("1.0.0".into()),
            },
            RoutePick::Live {
                version: "1.0.0".into(),
                previous: None,
            },
        ] {
            let record = Record::Route(RouteRecord {
                rules: rules.clone(),
                pick,
            });
            assert_eq!(round_trip(&record), record);
        }
    }
}
