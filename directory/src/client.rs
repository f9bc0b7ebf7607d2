//! A client of the directory: holds one token (one facet, every member),
//! talks to whichever member answers, and retries a write with the same
//! request id after a member or a leader is lost, so that it is applied at
//! most once.
//!
//! ```no_run
//! # async fn f(text: &str) -> Result<(), vat_directory::DirectoryError> {
//! use vat_directory::{DirectoryClient, DirectoryToken};
//! use vat_directory::record::{NameRecord, Record};
//! let token: DirectoryToken = text.parse()?;
//! let directory = DirectoryClient::new(token, None);
//! let index = directory
//!     .put("names/shop", Record::Name(NameRecord { refs: vec!["captp://...".into()] }))
//!     .await?;
//! let entry = directory.get("names/shop", vat_directory::client::Consistency::Linearizable).await?;
//! # Ok(()) }
//! ```

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use futures::channel::mpsc;
use futures::StreamExt;
use schema::directory_capnp::{directory, watcher};
use vat::net::{Identity, Limits};
use vat::ErrorKind;

use crate::command::{ClientId, FacetKind};
use crate::convert::{self, Done, StatusInfo};
use crate::error::DirectoryError;
use crate::machine::Change;
use crate::record::Record;
use crate::token::DirectoryToken;

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (the
    /// leader confirms it still leads with a quorum).
    Linearizable,
    /// Whatever the answering member applied; [`Read::staleness_ms`] says
    /// how old it may be.
    Any,
}

/// An entry read from the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its key.
    pub key: String,
    /// Its record.
    pub record: Record,
    /// The log index of its last write.
    pub index: u64,
}

/// What a read saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read<T> {
    /// The value.
    pub value: T,
    /// The log index the answering member had applied.
    pub index: u64,
    /// For `Any` reads: how old the state may be, in milliseconds
    /// (`u64::MAX`: the member has not heard from a leader).
    pub staleness_ms: u64,
    /// The member that answered.
    pub served_by: String,
}

/// One event of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Changes, in log order.
    Changed(Vec<Change>),
    /// The prefix's whole state as of `index` (the member no longer kept
    /// the changes since the index the watch resumed from).
    Reset {
        /// The index the state is as of.
        index: u64,
        /// Every entry under the prefix.
        entries: Vec<Entry>,
    },
}

/// What a call does, which decides what its error may say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// It only reads: an attempt that got no answer changed nothing.
    Reads,
    /// It writes: an attempt that got no answer may have been applied, and
    /// the call's error must not say it was not.
    Writes,
}

/// How long a call keeps trying members before it answers `Unavailable`.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// A directory client. Cheap to clone; clones share the request ids.
#[derive(Clone)]
pub struct DirectoryClient {
    inner: Rc<Inner>,
}

struct Inner {
    token: RefCell<DirectoryToken>,
    identity: Option<Identity>,
    limits: Limits,
    id: ClientId,
    next_serial: Cell<u64>,
    in_flight: RefCell<BTreeSet<u64>>,
    /// The member in use and its facet.
    current: RefCell<Option<(usize, directory::Client)>>,
    /// Only this member (tests and `vat directory --member`).
    pinned: Option<usize>,
    /// The member a follower last named as the leader that committed a
    /// write: the next facet is restored there first.
    leader: Cell<Option<usize>>,
    deadline: Duration,
}

impl std::fmt::Debug for DirectoryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryClient")
            .field("token", &*self.inner.token.borrow())
            .finish_non_exhaustive()
    }
}

impl DirectoryClient {
    /// A client of the facet `token` names, proving `identity`'s key to
    /// the members (or calling anonymously).
    pub fn new(token: DirectoryToken, identity: Option<Identity>) -> DirectoryClient {
        DirectoryClient::build(token, identity, None, CALL_DEADLINE)
    }

    /// A client that talks only to the token's member number `member`
    /// (from 0), never another: to see what one member answers.
    pub fn pinned(
        token: DirectoryToken,
        identity: Option<Identity>,
        member: usize,
    ) -> DirectoryClient {
        DirectoryClient::build(token, identity, Some(member), CALL_DEADLINE)
    }

    /// The same client with another deadline per call.
    pub fn with_deadline(self, deadline: Duration) -> DirectoryClient {
        let inner = &self.inner;
        DirectoryClient::build(
            inner.token.borrow().clone(),
            inner.identity.clone(),
            inner.pinned,
            deadline,
        )
    }

    fn build(
        token: DirectoryToken,
        identity: Option<Identity>,
        pinned: Option<usize>,
        deadline: Duration,
    ) -> DirectoryClient {
        let mut id = [0u8; 16];
        // A client id only needs to differ from other clients'; without
        // randomness, the clock's nanoseconds do.
        if vat_env::fill(&mut id).is_err() {
            let nanos = vat_env::wall()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            id = nanos.to_le_bytes();
        }
        DirectoryClient {
            inner: Rc::new(Inner {
                token: RefCell::new(token),
                identity,
                limits: Limits::default(),
                id,
                next_serial: Cell::new(1),
                in_flight: RefCell::new(BTreeSet::new()),
                current: RefCell::new(None),
                pinned,
                leader: Cell::new(None),
                deadline,
            }),
        }
    }

    /// The token in use (its members follow what statuses reported).
    pub fn token(&self) -> DirectoryToken {
        self.inner.token.borrow().clone()
    }

    /// The facet at the member in use, restoring it from the next member
    /// that answers if there is none.
    async fn facet(
        &self,
        skip: Option<usize>,
    ) -> Result<(usize, directory::Client), DirectoryError> {
        if let Some(current) = self.inner.current.borrow().clone() {
            if Some(current.0) != skip {
                return Ok(current);
            }
        }
        let token = self.inner.token.borrow().clone();
        let count = token.members().len();
        let start = skip.map_or_else(|| self.inner.leader.take().unwrap_or(0), |s| s + 1);
        let order: Vec<usize> = match self.inner.pinned {
            Some(member) => vec![member.min(count - 1)],
            None => (0..count).map(|i| (start + i) % count).collect(),
        };
        let mut last = String::new();
        let mut unknown = 0usize;
        let asked = order.len();
        for index in order {
            let member = &token.members()[index];
            match vat::sturdy::restore(member, self.inner.identity.as_ref(), self.inner.limits)
                .await
            {
                Ok((object, _kind)) => {
                    let facet: directory::Client = object.cast_to();
                    *self.inner.current.borrow_mut() = Some((index, facet.clone()));
                    return Ok((index, facet));
                }
                Err(vat::sturdy::RestoreError::Refused(error))
                    if error.kind() == ErrorKind::UnknownToken =>
                {
                    // A follower that has not yet applied the facet's
                    // minting does not know it either: only every member
                    // saying so means it does not exist (or was revoked).
                    unknown += 1;
                    last = format!("member {} does not know the token", member.vat());
                }
                Err(error) => last = format!("member {}: {error}", member.vat()),
            }
        }
        if unknown == asked {
            return Err(DirectoryError::Refused {
                kind: crate::error::RefusalKind::NotPermitted,
                limit: None,
                size: None,
                message: "the directory does not know this token".to_owned(),
            });
        }
        Err(DirectoryError::Unavailable {
            reason: if last.is_empty() {
                "no member".to_owned()
            } else {
                last
            },
        })
    }

    /// After a write a follower forwarded: calls go to the leader that
    /// committed it from now on, sparing every later write the extra hop.
    fn follow(&self, done: &Done) {
        if self.inner.pinned.is_some() || done.leader.is_empty() {
            return;
        }
        let token = self.inner.token.borrow();
        let Some(index) = token
            .members()
            .iter()
            .position(|m| m.vat().to_string() == done.leader)
        else {
            return;
        };
        let mut current = self.inner.current.borrow_mut();
        if current.as_ref().is_some_and(|(at, _)| *at != index) {
            *current = None;
            self.inner.leader.set(Some(index));
        }
    }

    /// Runs `call` at the member in use, moving to the next member when it
    /// is unreachable or has no leader, until the deadline.
    async fn with_member<T, F, Fut>(&self, effect: Effect, call: F) -> Result<T, DirectoryError>
    where
        F: Fn(directory::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, DirectoryError>>,
    {
        let deadline = vat_env::now() + self.inner.deadline;
        let mut skip = None;
        let mut backoff = Duration::from_millis(10);
        let mut no_quorum_seen = 0usize;
        // Whether a write's attempt reached a member and got no answer: it
        // may have been applied.
        let mut in_doubt = false;
        let settle = |error: DirectoryError, in_doubt: bool| match effect {
            Effect::Writes => error.for_write(in_doubt),
            Effect::Reads => error,
        };
        loop {
            let attempt = match self.facet(skip).await {
                Ok((index, facet)) => (Some(index), call(facet).await),
                Err(error) => (None, Err(error)),
            };
            let (index, error) = match attempt {
                (_, Ok(value)) => return Ok(value),
                (index, Err(error)) => (index, error),
            };
            let members = self.inner.token.borrow().members().len();
            match &error {
                DirectoryError::Refused { .. } | DirectoryError::Token(_) => return Err(error),
                DirectoryError::NoQuorum { .. } => {
                    // Another member may be on the majority's side.
                    no_quorum_seen += 1;
                    if self.inner.pinned.is_some() || no_quorum_seen >= members {
                        return Err(settle(error, in_doubt));
                    }
                }
                DirectoryError::Unavailable { .. } | DirectoryError::Call(_) => {
                    in_doubt |= index.is_some();
                }
                DirectoryError::NotInitialized => {}
            }
            if vat_env::now() >= deadline {
                return Err(match error {
                    DirectoryError::Call(e) => DirectoryError::Unavailable {
                        reason: e.to_string(),
                    },
                    other => settle(other, in_doubt),
                });
            }
            *self.inner.current.borrow_mut() = None;
            skip = index;
            vat_env::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    fn take_serial(&self) -> (u64, u64) {
        let serial = self.inner.next_serial.get();
        self.inner.next_serial.set(serial + 1);
        let mut in_flight = self.inner.in_flight.borrow_mut();
        in_flight.insert(serial);
        let answered_below = in_flight.iter().next().copied().unwrap_or(serial);
        (serial, answered_below)
    }

    fn answered(&self, serial: u64) {
        self.inner.in_flight.borrow_mut().remove(&serial);
    }

    /// A write's end: its serial answered, the leader that committed it
    /// followed, its log index.
    fn committed(
        &self,
        serial: u64,
        result: Result<Done, DirectoryError>,
    ) -> Result<u64, DirectoryError> {
        self.answered(serial);
        result.map(|done| {
            self.follow(&done);
            done.index
        })
    }

    /// Writes `record` under `key`; answers the write's log index once it
    /// is committed on a quorum.
    pub async fn put(&self, key: &str, record: Record) -> Result<u64, DirectoryError> {
        let (serial, _) = self.take_serial();
        let result = self
            .with_member(Effect::Writes, |facet| {
                let record = record.clone();
                async move {
                    let mut call = facet.put_request();
                    let mut params = call.get();
                    params.set_key(key);
                    convert::write_record(params.reborrow().init_record(), &record);
                    self.set_request(params.init_request(), serial);
                    let reply = call.send().promise.await.map_err(call_error)?;
                    convert::read_outcome(
                        reply
                            .get()
                            .map_err(call_error)?
                            .get_outcome()
                            .map_err(call_error)?,
                    )
                }
            })
            .await;
        self.committed(serial, result)
    }

    /// Deletes `key` (absent: nothing happens, and the answer is the same).
    pub async fn delete(&self, key: &str) -> Result<u64, DirectoryError> {
        let (serial, _) = self.take_serial();
        let result = self
            .with_member(Effect::Writes, |facet| async move {
                let mut call = facet.delete_request();
                let mut params = call.get();
                params.set_key(key);
                self.set_request(params.init_request(), serial);
                let reply = call.send().promise.await.map_err(call_error)?;
                convert::read_outcome(
                    reply
                        .get()
                        .map_err(call_error)?
                        .get_outcome()
                        .map_err(call_error)?,
                )
            })
            .await;
        self.committed(serial, result)
    }

    /// Renews the lease of `vats/<vat>`.
    pub async fn renew(&self, vat: &str) -> Result<u64, DirectoryError> {
        let (serial, _) = self.take_serial();
        let result = self
            .with_member(Effect::Writes, |facet| async move {
                let mut call = facet.renew_request();
                let mut params = call.get();
                params.set_vat(vat);
                self.set_request(params.init_request(), serial);
                let reply = call.send().promise.await.map_err(call_error)?;
                convert::read_outcome(
                    reply
                        .get()
                        .map_err(call_error)?
                        .get_outcome()
                        .map_err(call_error)?,
                )
            })
            .await;
        self.committed(serial, result)
    }

    fn set_request(
        &self,
        mut builder: schema::directory_capnp::request_id::Builder<'_>,
        serial: u64,
    ) {
        builder.set_client(&self.inner.id);
        builder.set_serial(serial);
        let below = self
            .inner
            .in_flight
            .borrow()
            .iter()
            .next()
            .copied()
            .unwrap_or(serial);
        builder.set_answered_below(below);
    }

    /// The entry under `key`, if any.
    pub async fn get(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Read<Option<Entry>>, DirectoryError> {
        self.with_member(Effect::Reads, |facet| async move {
            let mut call = facet.get_request();
            call.get().set_key(key);
            call.get().set_consistency(wire_consistency(consistency));
            let reply = call.send().promise.await.map_err(call_error)?;
            let reply = reply.get().map_err(call_error)?;
            let done = convert::read_outcome(reply.get_outcome().map_err(call_error)?)?;
            let value = if reply.get_found() {
                let (key, record, index) =
                    convert::read_entry(reply.get_entry().map_err(call_error)?)
                        .map_err(call_error)?;
                Some(Entry { key, record, index })
            } else {
                None
            };
            Ok(read(value, done))
        })
        .await
    }

    /// Entries under `prefix`, in key order, at most `limit` (0: as many as
    /// a member answers at once, 1000); the flag says whether there are
    /// more.
    pub async fn list(
        &self,
        prefix: &str,
        consistency: Consistency,
        limit: u32,
    ) -> Result<Read<(Vec<Entry>, bool)>, DirectoryError> {
        self.with_member(Effect::Reads, |facet| async move {
            let mut call = facet.list_request();
            call.get().set_prefix(prefix);
            call.get().set_consistency(wire_consistency(consistency));
            call.get().set_limit(limit);
            let reply = call.send().promise.await.map_err(call_error)?;
            let reply = reply.get().map_err(call_error)?;
            let done = convert::read_outcome(reply.get_outcome().map_err(call_error)?)?;
            let mut entries = Vec::new();
            for entry in reply.get_entries().map_err(call_error)?.iter() {
                let (key, record, index) = convert::read_entry(entry).map_err(call_error)?;
                entries.push(Entry { key, record, index });
            }
            Ok(read((entries, reply.get_more()), done))
        })
        .await
    }

    /// What the answering member knows of the cluster. The client also
    /// learns the current members from it, for later calls.
    pub async fn status(&self) -> Result<StatusInfo, DirectoryError> {
        let status = self
            .with_member(Effect::Reads, |facet| async move {
                let reply = facet
                    .status_request()
                    .send()
                    .promise
                    .await
                    .map_err(call_error)?;
                let reply = reply.get().map_err(call_error)?;
                convert::read_outcome(reply.get_outcome().map_err(call_error)?)?;
                convert::read_status(reply.get_status().map_err(call_error)?).map_err(call_error)
            })
            .await?;
        self.learn_members(&status);
        Ok(status)
    }

    fn learn_members(&self, status: &StatusInfo) {
        let members: Option<Vec<_>> = status
            .members
            .iter()
            .map(|m| {
                let vat = sturdyrefs::VatId::parse(&m.vat).ok()?;
                let hints = m
                    .hints
                    .iter()
                    .map(|h| h.parse().ok())
                    .collect::<Option<Vec<_>>>()?;
                Some((vat, hints))
            })
            .collect();
        if self.inner.pinned.is_some() {
            return;
        }
        if let Some(Ok(token)) = members.map(|m| self.inner.token.borrow().with_members(&m)) {
            *self.inner.token.borrow_mut() = token;
            *self.inner.current.borrow_mut() = None;
        }
    }

    /// Admin: a new facet; answers its token.
    pub async fn mint_facet(&self, kind: FacetKind) -> Result<DirectoryToken, DirectoryError> {
        let (serial, _) = self.take_serial();
        let result = self
            .with_member(Effect::Writes, |facet| {
                let kind = kind.clone();
                async move {
                    let mut call = facet.mint_facet_request();
                    crate::facet::write_facet_kind(call.get().init_kind(), &kind);
                    self.set_request(call.get().init_request(), serial);
                    let reply = call.send().promise.await.map_err(call_error)?;
                    let reply = reply.get().map_err(call_error)?;
                    convert::read_outcome(reply.get_outcome().map_err(call_error)?)?;
                    let text = reply
                        .get_token()
                        .map_err(call_error)?
                        .to_str()
                        .map_err(|e| call_error(e.into()))?;
                    Ok(DirectoryToken::parse(text)?)
                }
            })
            .await;
        self.answered(serial);
        result
    }

    /// Admin: revokes the facet `token` names.
    pub async fn revoke_facet(&self, token: &DirectoryToken) -> Result<u64, DirectoryError> {
        let (serial, _) = self.take_serial();
        let text = token.to_string();
        let result = self
            .with_member(Effect::Writes, |facet| {
                let text = text.clone();
                async move {
                    let mut call = facet.revoke_facet_request();
                    call.get().set_token(text.as_str());
                    self.set_request(call.get().init_request(), serial);
                    let reply = call.send().promise.await.map_err(call_error)?;
                    convert::read_outcome(
                        reply
                            .get()
                            .map_err(call_error)?
                            .get_outcome()
                            .map_err(call_error)?,
                    )
                }
            })
            .await;
        self.committed(serial, result)
    }

    /// Admin: adds a member (a learner until it caught up, then a voter).
    /// The vat must have joined the cluster first (`DirectoryMember.join`
    /// with [`DirectoryClient::cluster`]).
    pub async fn add_member(&self, vat: &str, hints: &[String]) -> Result<u64, DirectoryError> {
        self.with_member(Effect::Writes, |facet| async move {
            let mut call = facet.add_member_request();
            call.get().set_vat(vat);
            let mut list = call.get().init_hints(hints.len() as u32);
            for (i, hint) in hints.iter().enumerate() {
                list.set(i as u32, hint.as_str());
            }
            let reply = call.send().promise.await.map_err(call_error)?;
            convert::read_outcome(
                reply
                    .get()
                    .map_err(call_error)?
                    .get_outcome()
                    .map_err(call_error)?,
            )
        })
        .await
        .map(|done| done.index)
    }

    /// Admin: removes a voter.
    pub async fn remove_member(&self, vat: &str) -> Result<u64, DirectoryError> {
        self.with_member(Effect::Writes, |facet| async move {
            let mut call = facet.remove_member_request();
            call.get().set_vat(vat);
            let reply = call.send().promise.await.map_err(call_error)?;
            convert::read_outcome(
                reply
                    .get()
                    .map_err(call_error)?
                    .get_outcome()
                    .map_err(call_error)?,
            )
        })
        .await
        .map(|done| done.index)
    }

    /// Admin: the cluster's configuration, for a new member to join.
    pub async fn cluster(&self) -> Result<crate::Cluster, DirectoryError> {
        self.with_member(Effect::Reads, |facet| async move {
            let reply = facet
                .cluster_request()
                .send()
                .promise
                .await
                .map_err(call_error)?;
            let reply = reply.get().map_err(call_error)?;
            convert::read_outcome(reply.get_outcome().map_err(call_error)?)?;
            crate::facet::read_cluster(reply.get_cluster().map_err(call_error)?)
        })
        .await
    }

    /// Watches `prefix` from log index `from` (0: from the start, which
    /// begins with a `Reset` holding the prefix's state). The watch follows
    /// the client to another member if its member is lost, resuming after
    /// the last index it delivered: no change is missed, none is delivered
    /// twice.
    pub fn watch(&self, prefix: &str, from: u64) -> Watching {
        let (sender, receiver) = mpsc::channel(16);
        let client = self.clone();
        let prefix = prefix.to_owned();
        vat_env::spawn(async move {
            let mut from = from;
            loop {
                let (events, mut raw) = mpsc::channel(16);
                let watcher: watcher::Client = vat::export(Sink { events });
                let started = client
                    .with_member(Effect::Reads, |facet| {
                        let watcher = watcher.clone();
                        let prefix = prefix.clone();
                        async move {
                            let mut call = facet.watch_request();
                            call.get().set_prefix(prefix.as_str());
                            call.get().set_from_index(from);
                            call.get().set_watcher(watcher);
                            let reply = call.send().promise.await.map_err(call_error)?;
                            let reply = reply.get().map_err(call_error)?;
                            convert::read_outcome(reply.get_outcome().map_err(call_error)?)?;
                            Ok((facet.clone(), reply.get_handle().map_err(call_error)?))
                        }
                    })
                    .await;
                let (facet, handle) = match started {
                    Ok(started) => started,
                    Err(error) => {
                        let mut sender = sender.clone();
                        let _ = futures::SinkExt::send(&mut sender, Err(error)).await;
                        return;
                    }
                };
                drop(watcher);
                // Deliver until the member is lost (its facet stops
                // answering) or the receiver is dropped.
                loop {
                    let next = vat_env::timeout(Duration::from_secs(1), raw.next()).await;
                    match next {
                        Ok(Some(event)) => {
                            let event = match event {
                                WatchEvent::Changed(changes) => {
                                    let fresh: Vec<Change> =
                                        changes.into_iter().filter(|c| c.index > from).collect();
                                    if fresh.is_empty() {
                                        continue;
                                    }
                                    from = fresh.last().map_or(from, |c| c.index);
                                    WatchEvent::Changed(fresh)
                                }
                                WatchEvent::Reset { index, entries } => {
                                    from = index;
                                    WatchEvent::Reset { index, entries }
                                }
                            };
                            let mut sender = sender.clone();
                            if futures::SinkExt::send(&mut sender, Ok(event))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            if sender.is_closed() {
                                return;
                            }
                            let alive = vat_env::timeout(
                                Duration::from_secs(2),
                                facet.status_request().send().promise,
                            )
                            .await;
                            if !matches!(alive, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                drop(handle);
                *client.inner.current.borrow_mut() = None;
            }
        });
        Watching { receiver }
    }
}

/// The events of a watch, in order.
pub struct Watching {
    receiver: mpsc::Receiver<Result<WatchEvent, DirectoryError>>,
}

impl Watching {
    /// The next event; `None` once the watch ended.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, DirectoryError>> {
        self.receiver.next().await
    }
}

/// The watcher capability a member calls.
struct Sink {
    events: mpsc::Sender<WatchEvent>,
}

impl watcher::Server for Sink {
    async fn changed(
        self: Rc<Self>,
        params: watcher::ChangedParams,
        _: watcher::ChangedResults,
    ) -> Result<(), capnp::Error> {
        let mut changes = Vec::new();
        for change in params.get()?.get_changes()?.iter() {
            changes.push(convert::read_change(change)?);
        }
        let mut events = self.events.clone();
        futures::SinkExt::send(&mut events, WatchEvent::Changed(changes))
            .await
            .map_err(|_| capnp::Error::disconnected("the watch ended".to_owned()))
    }

    async fn reset(
        self: Rc<Self>,
        params: watcher::ResetParams,
        _: watcher::ResetResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let mut entries = Vec::new();
        for entry in params.get_entries()?.iter() {
            let (key, record, index) = convert::read_entry(entry)?;
            entries.push(Entry { key, record, index });
        }
        let mut events = self.events.clone();
        futures::SinkExt::send(
            &mut events,
            WatchEvent::Reset {
                index: params.get_index(),
                entries,
            },
        )
        .await
        .map_err(|_| capnp::Error::disconnected("the watch ended".to_owned()))
    }
}

fn read<T>(value: T, done: Done) -> Read<T> {
    Read {
        value,
        index: done.index,
        staleness_ms: done.staleness_ms,
        served_by: done.served_by,
    }
}

fn wire_consistency(consistency: Consistency) -> schema::directory_capnp::Consistency {
    match consistency {
        Consistency::Linearizable => schema::directory_capnp::Consistency::Linearizable,
        Consistency::Any => schema::directory_capnp::Consistency::Any,
    }
}

fn call_error(error: capnp::Error) -> DirectoryError {
    DirectoryError::Call(vat::Error::from(error))
}
