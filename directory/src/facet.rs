//! The `Directory` interface as one facet serves it, and the member's own
//! object. A facet checks what it grants at each call (a revoked one stops
//! at once on every member that applied the revocation); the state machine
//! checks again when a write is applied.

use std::rc::Rc;

use capnp::Error;
use schema::directory_capnp::{
    cluster, directory, directory_member, facet_kind, request_id, watch_handle, watcher,
};

use crate::command::MembershipChange;
use crate::command::{ClientId, FacetId, FacetKind, Op, Request};
use crate::convert::{self, Done, MAX_LIST};
use crate::error::{DirectoryError, RefusalKind};
use crate::machine::{Change, Machine};
use crate::member::{wall_ms, Cluster, DirectoryMember};
use crate::record::{check_key, check_prefix};
use crate::types::Member;
use crate::DirectoryToken;

/// The most changes one `changed` call carries.
const WATCH_BATCH: usize = 256;

/// A facet's capability, served by `member`.
pub(crate) fn facet_object(member: DirectoryMember, id: FacetId) -> directory::Client {
    vat::export(Facet { member, id })
}

/// The member's own object.
pub(crate) fn member_object(member: DirectoryMember) -> directory_member::Client {
    vat::export(MemberObject { member })
}

struct Facet {
    member: DirectoryMember,
    id: FacetId,
}

fn refused(kind: RefusalKind, message: impl Into<String>) -> DirectoryError {
    DirectoryError::Refused {
        kind,
        limit: None,
        size: None,
        message: message.into(),
    }
}

fn not_permitted() -> DirectoryError {
    refused(RefusalKind::NotPermitted, "this facet does not allow that")
}

fn read_request_id(reader: request_id::Reader<'_>) -> Result<(ClientId, u64, u64), DirectoryError> {
    let client = reader
        .get_client()
        .map_err(|e| refused(RefusalKind::BadArgument, e.to_string()))?;
    let client: ClientId = client
        .try_into()
        .map_err(|_| refused(RefusalKind::BadArgument, "a client id is 16 bytes"))?;
    let serial = reader.get_serial();
    if serial == 0 {
        return Err(refused(RefusalKind::BadArgument, "serials start at 1"));
    }
    Ok((client, serial, reader.get_answered_below()))
}

fn bad(e: capnp::Error) -> DirectoryError {
    refused(RefusalKind::BadArgument, e.to_string())
}

impl Facet {
    /// What this facet grants now.
    fn kind(&self) -> Result<FacetKind, DirectoryError> {
        self.member
            .machine()
            .borrow()
            .facet(&self.id)
            .ok_or_else(not_permitted)
    }

    fn admin(&self) -> Result<(), DirectoryError> {
        match self.kind()? {
            FacetKind::Admin => Ok(()),
            _ => Err(not_permitted()),
        }
    }

    fn request(&self, id: request_id::Reader<'_>, op: Op) -> Result<Request, DirectoryError> {
        let (client, serial, answered_below) = read_request_id(id)?;
        Ok(Request {
            facet: self.id,
            client,
            serial,
            answered_below,
            at_ms: wall_ms(),
            op,
        })
    }
}

fn linearizable(
    consistency: Result<schema::directory_capnp::Consistency, capnp::NotInSchema>,
) -> bool {
    !matches!(consistency, Ok(schema::directory_capnp::Consistency::Any))
}

impl directory::Server for Facet {
    async fn put(
        self: Rc<Self>,
        params: directory::PutParams,
        mut results: directory::PutResults,
    ) -> Result<(), Error> {
        let outcome = async {
            let params = params.get().map_err(bad)?;
            let key = params
                .get_key()
                .and_then(|k| Ok(k.to_string()?))
                .map_err(bad)?;
            check_key(&key).map_err(|e| refused(RefusalKind::BadKey, e.to_string()))?;
            if !self.kind()?.may_write(&key) {
                return Err(not_permitted());
            }
            let record = convert::read_record(params.get_record().map_err(bad)?).map_err(bad)?;
            // Refused here as well as when applied, so an oversized record
            // never reaches the log.
            let size = record.encoded_len();
            if size > crate::record::MAX_RECORD_BYTES {
                return Err(DirectoryError::Refused {
                    kind: RefusalKind::TooLarge,
                    limit: Some(crate::record::MAX_RECORD_BYTES as u64),
                    size: Some(size as u64),
                    message: format!(
                        "the record is {size} bytes encoded; at most {} are allowed",
                        crate::record::MAX_RECORD_BYTES
                    ),
                });
            }
            let request =
                self.request(params.get_request().map_err(bad)?, Op::Put { key, record })?;
            self.member.write(request).await
        }
        .await;
        convert::write_outcome(results.get().init_outcome(), &outcome);
        Ok(())
    }

    async fn delete(
        self: Rc<Self>,
        params: directory::DeleteParams,
        mut results: directory::DeleteResults,
    ) -> Result<(), Error> {
        let outcome = async {
            let params = params.get().map_err(bad)?;
            let key = params
                .get_key()
                .and_then(|k| Ok(k.to_string()?))
                .map_err(bad)?;
            check_key(&key).map_err(|e| refused(RefusalKind::BadKey, e.to_string()))?;
            if !self.kind()?.may_write(&key) {
                return Err(not_permitted());
            }
            let request = self.request(params.get_request().map_err(bad)?, Op::Delete { key })?;
            self.member.write(request).await
        }
        .await;
        convert::write_outcome(results.get().init_outcome(), &outcome);
        Ok(())
    }

    async fn renew(
        self: Rc<Self>,
        params: directory::RenewParams,
        mut results: directory::RenewResults,
    ) -> Result<(), Error> {
        let outcome = async {
            let params = params.get().map_err(bad)?;
            let vat = params
                .get_vat()
                .and_then(|k| Ok(k.to_string()?))
                .map_err(bad)?;
            if !self
                .kind()?
                .may_write(&format!("{}{vat}", crate::record::VATS))
            {
                return Err(not_permitted());
            }
            let request = self.request(params.get_request().map_err(bad)?, Op::Renew { vat })?;
            self.member.write(request).await
        }
        .await;
        convert::write_outcome(results.get().init_outcome(), &outcome);
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        params: directory::GetParams,
        mut results: directory::GetResults,
    ) -> Result<(), Error> {
        let params = params.get()?;
        let outcome = async {
            let key = params
                .get_key()
                .and_then(|k| Ok(k.to_string()?))
                .map_err(bad)?;
            check_key(&key).map_err(|e| refused(RefusalKind::BadKey, e.to_string()))?;
            if !self.kind()?.may_read(&key) {
                return Err(not_permitted());
            }
            let done = self
                .member
                .read(linearizable(params.get_consistency()))
                .await?;
            Ok((done, key))
        }
        .await;
        // Whether a host sees a binding depends on the state the read saw.
        let outcome = outcome.and_then(|(done, key)| {
            let kind = self.kind()?;
            if self.member.machine().borrow().visible(&kind, &key) {
                Ok((done, key))
            } else {
                Err(not_permitted())
            }
        });
        let mut out = results.get();
        match outcome {
            Ok((done, key)) => {
                let machine = self.member.machine();
                let machine = machine.borrow();
                if let Some(stored) = machine.get(&key) {
                    out.set_found(true);
                    convert::write_entry(
                        out.reborrow().init_entry(),
                        &key,
                        &stored.record,
                        stored.index,
                    );
                }
                convert::write_outcome(out.init_outcome(), &Ok(done));
            }
            Err(error) => convert::write_outcome(out.init_outcome(), &Err(error)),
        }
        Ok(())
    }

    async fn list(
        self: Rc<Self>,
        params: directory::ListParams,
        mut results: directory::ListResults,
    ) -> Result<(), Error> {
        let params = params.get()?;
        let outcome = async {
            let prefix = params
                .get_prefix()
                .and_then(|k| Ok(k.to_string()?))
                .map_err(bad)?;
            check_prefix(&prefix).map_err(|e| refused(RefusalKind::BadKey, e.to_string()))?;
            if !self.kind()?.may_read(&prefix) {
                return Err(not_permitted());
            }
            let done = self
                .member
                .read(linearizable(params.get_consistency()))
                .await?;
            Ok((done, prefix, self.kind()?))
        }
        .await;
        let limit = match params.get_limit() {
            0 => MAX_LIST,
            n => n.min(MAX_LIST),
        } as usize;
        let mut out = results.get();
        match outcome {
            Ok((done, prefix, kind)) => {
                let machine = self.member.machine();
                let machine = machine.borrow();
                let entries: Vec<_> = machine
                    .list(&prefix)
                    .filter(|(key, _)| machine.visible(&kind, key))
                    .take(limit + 1)
                    .collect();
                let more = entries.len() > limit;
                let shown = &entries[..entries.len().min(limit)];
                let mut list = out.reborrow().init_entries(shown.len() as u32);
                for (i, (key, stored)) in shown.iter().enumerate() {
                    convert::write_entry(
                        list.reborrow().get(i as u32),
                        key,
                        &stored.record,
                        stored.index,
                    );
                }
                out.set_more(more);
                convert::write_outcome(out.init_outcome(), &Ok(done));
            }
            Err(error) => convert::write_outcome(out.init_outcome(), &Err(error)),
        }
        Ok(())
    }

    async fn watch(
        self: Rc<Self>,
        params: directory::WatchParams,
        mut results: directory::WatchResults,
    ) -> Result<(), Error> {
        let params = params.get()?;
        let started = (|| {
            let prefix = params
                .get_prefix()
                .and_then(|k| Ok(k.to_string()?))
                .map_err(bad)?;
            check_prefix(&prefix).map_err(|e| refused(RefusalKind::BadKey, e.to_string()))?;
            if !self.kind()?.may_read(&prefix) {
                return Err(not_permitted());
            }
            let watcher = params.get_watcher().map_err(bad)?;
            let slot = self.member.take_watch().ok_or(DirectoryError::Refused {
                kind: RefusalKind::TooMany,
                limit: Some(crate::member::MAX_WATCHES as u64),
                size: None,
                message: "this member serves as many watches as it may".to_owned(),
            })?;
            Ok((prefix, watcher, slot))
        })();
        let mut out = results.get();
        match started {
            Ok((prefix, watcher, slot)) => {
                let handle = Rc::new(Handle::default());
                let watch = Watch {
                    member: self.member.clone(),
                    facet: self.id,
                    prefix,
                    from: params.get_from_index(),
                    watcher,
                    handle: Rc::downgrade(&handle),
                    _slot: slot,
                };
                vat_env::spawn(watch.run());
                out.set_handle(vat::export(HandleServer(handle)));
                convert::write_outcome(
                    out.init_outcome(),
                    &Ok(Done {
                        index: self.member.machine().borrow().applied(),
                        ..Done::default()
                    }),
                );
            }
            Err(error) => convert::write_outcome(out.init_outcome(), &Err(error)),
        }
        Ok(())
    }

    async fn status(
        self: Rc<Self>,
        _: directory::StatusParams,
        mut results: directory::StatusResults,
    ) -> Result<(), Error> {
        let mut out = results.get();
        let status = self.kind().and_then(|_| self.member.status());
        match status {
            Ok(status) => {
                convert::write_status(out.reborrow().init_status(), &status);
                convert::write_outcome(
                    out.init_outcome(),
                    &Ok(Done {
                        index: status.applied_index,
                        staleness_ms: 0,
                        served_by: status.served_by.clone(),
                        ..Done::default()
                    }),
                );
            }
            Err(error) => convert::write_outcome(out.init_outcome(), &Err(error)),
        }
        Ok(())
    }

    async fn mint_facet(
        self: Rc<Self>,
        params: directory::MintFacetParams,
        mut results: directory::MintFacetResults,
    ) -> Result<(), Error> {
        let outcome = async {
            self.admin()?;
            let params = params.get().map_err(bad)?;
            let kind = read_facet_kind(params.get_kind().map_err(bad)?)?;
            let (swiss, op) = self.member.mint_request(kind)?;
            let request = self.request(params.get_request().map_err(bad)?, op)?;
            let done = self.member.write(request).await?;
            Ok((done, self.member.token_for(&swiss)?))
        }
        .await;
        let mut out = results.get();
        match outcome {
            Ok((done, token)) => {
                out.set_token(token.to_string().as_str());
                convert::write_outcome(out.init_outcome(), &Ok(done));
            }
            Err(error) => convert::write_outcome(out.init_outcome(), &Err(error)),
        }
        Ok(())
    }

    async fn revoke_facet(
        self: Rc<Self>,
        params: directory::RevokeFacetParams,
        mut results: directory::RevokeFacetResults,
    ) -> Result<(), Error> {
        let outcome = async {
            self.admin()?;
            let params = params.get().map_err(bad)?;
            let text = params
                .get_token()
                .and_then(|k| Ok(k.to_string()?))
                .map_err(bad)?;
            let token = DirectoryToken::parse(&text)?;
            let id = *token.swiss().hash().as_bytes();
            let request =
                self.request(params.get_request().map_err(bad)?, Op::RevokeFacet { id })?;
            self.member.write(request).await
        }
        .await;
        convert::write_outcome(results.get().init_outcome(), &outcome);
        Ok(())
    }

    async fn add_member(
        self: Rc<Self>,
        params: directory::AddMemberParams,
        mut results: directory::AddMemberResults,
    ) -> Result<(), Error> {
        let outcome = async {
            self.admin()?;
            let params = params.get().map_err(bad)?;
            let vat = params
                .get_vat()
                .and_then(|k| Ok(k.to_string()?))
                .map_err(bad)?;
            let hints = params
                .get_hints()
                .map_err(bad)?
                .iter()
                .map(|h| Ok(h?.to_string()?))
                .collect::<capnp::Result<Vec<_>>>()
                .map_err(bad)?;
            self.member
                .change_membership(MembershipChange::Add(Member { vat, hints }))
                .await
        }
        .await;
        convert::write_outcome(results.get().init_outcome(), &outcome);
        Ok(())
    }

    async fn remove_member(
        self: Rc<Self>,
        params: directory::RemoveMemberParams,
        mut results: directory::RemoveMemberResults,
    ) -> Result<(), Error> {
        let outcome = async {
            self.admin()?;
            let vat = params
                .get()
                .and_then(|p| Ok(p.get_vat()?.to_string()?))
                .map_err(bad)?;
            self.member
                .change_membership(MembershipChange::Remove(vat))
                .await
        }
        .await;
        convert::write_outcome(results.get().init_outcome(), &outcome);
        Ok(())
    }

    async fn cluster(
        self: Rc<Self>,
        _: directory::ClusterParams,
        mut results: directory::ClusterResults,
    ) -> Result<(), Error> {
        let mut out = results.get();
        let cluster = self
            .admin()
            .and_then(|()| self.member.cluster().ok_or(DirectoryError::NotInitialized));
        match cluster {
            Ok(cluster) => {
                write_cluster(out.reborrow().init_cluster(), &cluster);
                convert::write_outcome(out.init_outcome(), &Ok(Done::default()));
            }
            Err(error) => convert::write_outcome(out.init_outcome(), &Err(error)),
        }
        Ok(())
    }
}

fn read_facet_kind(reader: facet_kind::Reader<'_>) -> Result<FacetKind, DirectoryError> {
    let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> Result<String, DirectoryError> {
        t.and_then(|t| Ok(t.to_string()?)).map_err(bad)
    };
    let kind = match reader.which().map_err(|e| bad(e.into()))? {
        facet_kind::Admin(()) => FacetKind::Admin,
        facet_kind::Host(vat) => {
            let vat = text(vat)?;
            sturdyrefs::VatId::parse(&vat)
                .map_err(|e| refused(RefusalKind::BadArgument, e.to_string()))?;
            FacetKind::Host { vat }
        }
        facet_kind::ReaderOf(prefix) => {
            let prefix = text(prefix)?;
            check_prefix(&prefix).map_err(|e| refused(RefusalKind::BadKey, e.to_string()))?;
            FacetKind::Reader { prefix }
        }
        facet_kind::WriterOf(prefix) => {
            let prefix = text(prefix)?;
            check_prefix(&prefix).map_err(|e| refused(RefusalKind::BadKey, e.to_string()))?;
            FacetKind::Writer { prefix }
        }
    };
    Ok(kind)
}

/// Writes a facet kind.
pub fn write_facet_kind(mut builder: facet_kind::Builder<'_>, kind: &FacetKind) {
    match kind {
        FacetKind::Admin => builder.set_admin(()),
        FacetKind::Host { vat } => builder.set_host(vat.as_str()),
        FacetKind::Reader { prefix } => builder.set_reader_of(prefix.as_str()),
        FacetKind::Writer { prefix } => builder.set_writer_of(prefix.as_str()),
    }
}

/// Writes a cluster's configuration.
pub fn write_cluster(mut builder: cluster::Builder<'_>, cluster: &Cluster) {
    builder.set_id(&cluster.id);
    builder.set_admin(&cluster.admin);
    builder.set_peers(&cluster.peers);
    let mut members = builder.init_members(cluster.members.len() as u32);
    for (i, member) in cluster.members.iter().enumerate() {
        let mut out = members.reborrow().get(i as u32);
        out.set_vat(member.vat.as_str());
        let mut hints = out.init_hints(member.hints.len() as u32);
        for (j, hint) in member.hints.iter().enumerate() {
            hints.set(j as u32, hint.as_str());
        }
    }
}

/// Reads a cluster's configuration (checked by [`Cluster::check`] where
/// it is used).
pub fn read_cluster(reader: cluster::Reader<'_>) -> Result<Cluster, DirectoryError> {
    let bytes =
        |data: capnp::Result<&[u8]>, len: usize, what: &str| -> Result<Vec<u8>, DirectoryError> {
            let data = data.map_err(bad)?;
            if data.len() != len {
                return Err(refused(
                    RefusalKind::BadArgument,
                    format!("a cluster's {what} is {len} bytes"),
                ));
            }
            Ok(data.to_vec())
        };
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes(reader.get_id(), 16, "id")?);
    let mut admin = [0u8; 32];
    admin.copy_from_slice(&bytes(reader.get_admin(), 32, "admin facet")?);
    let mut peers = [0u8; 32];
    peers.copy_from_slice(&bytes(reader.get_peers(), 32, "peers' swiss number")?);
    let list = reader.get_members().map_err(bad)?;
    if list.len() > 7 {
        return Err(refused(
            RefusalKind::BadArgument,
            "a cluster has at most 7 members",
        ));
    }
    let mut members = Vec::new();
    for member in list.iter() {
        let vat = member
            .get_vat()
            .and_then(|t| Ok(t.to_string()?))
            .map_err(bad)?;
        let hints_list = member.get_hints().map_err(bad)?;
        if hints_list.len() > sturdyrefs::MAX_HINTS as u32 {
            return Err(refused(RefusalKind::BadArgument, "too many hints"));
        }
        let hints = hints_list
            .iter()
            .map(|h| Ok(h?.to_string()?))
            .collect::<capnp::Result<Vec<_>>>()
            .map_err(bad)?;
        members.push(Member { vat, hints });
    }
    let cluster = Cluster {
        id,
        members,
        admin,
        peers,
    };
    cluster.check()?;
    Ok(cluster)
}

/// Ends its watch when dropped or cancelled.
#[derive(Default)]
struct Handle {
    cancelled: std::cell::Cell<bool>,
}

struct HandleServer(Rc<Handle>);

impl watch_handle::Server for HandleServer {
    async fn cancel(
        self: Rc<Self>,
        _: watch_handle::CancelParams,
        _: watch_handle::CancelResults,
    ) -> Result<(), Error> {
        self.0.cancelled.set(true);
        Ok(())
    }
}

/// One watch: sends the changes under its prefix after `from` that its
/// facet may see, in log order, one call at a time (the watcher's pace
/// bounds what is queued).
struct Watch {
    member: DirectoryMember,
    facet: FacetId,
    prefix: String,
    from: u64,
    watcher: watcher::Client,
    handle: std::rc::Weak<Handle>,
    _slot: crate::member::WatchSlot,
}

impl Watch {
    fn live(&self) -> bool {
        let standing = self
            .member
            .machine()
            .borrow()
            .facet(&self.facet)
            .is_some_and(|kind| kind.may_read(&self.prefix));
        standing && self.handle.upgrade().is_some_and(|h| !h.cancelled.get())
    }

    async fn run(mut self) {
        let notify = self.member.applied_notify();
        while self.live() {
            let notified = notify.notified();
            let pending = self.pending();
            let sent = match pending {
                None => self.reset().await,
                Some((shown, seen)) if shown.is_empty() && seen > self.from => {
                    // Nothing this facet may see: move past it unsent.
                    self.from = seen;
                    continue;
                }
                Some((shown, _)) if shown.is_empty() => {
                    // Wake now and then to notice a dropped handle.
                    let _ = vat_env::timeout(std::time::Duration::from_secs(1), notified).await;
                    continue;
                }
                Some((shown, _)) => self.send(shown).await,
            };
            if sent.is_err() {
                return;
            }
        }
    }

    /// The changes after `from` under the prefix that the facet may see,
    /// and the index of the last change there, seen or not; `None` if the
    /// history no longer reaches back to `from`.
    fn pending(&self) -> Option<(Vec<Change>, u64)> {
        let machine = self.member.machine();
        let machine = machine.borrow();
        let changes = machine.changes_after(self.from, &self.prefix)?;
        let seen = changes.last().map_or(self.from, |c| c.index);
        let kind = machine.facet(&self.facet);
        let shown = changes
            .into_iter()
            .filter(|change| shows(&machine, kind.as_ref(), &change.key))
            .collect();
        Some((shown, seen))
    }

    async fn reset(&mut self) -> Result<(), Error> {
        let mut request = self.watcher.reset_request();
        let index = {
            let machine = self.member.machine();
            let machine = machine.borrow();
            let kind = machine.facet(&self.facet);
            let entries: Vec<_> = machine
                .list(&self.prefix)
                .filter(|(key, _)| shows(&machine, kind.as_ref(), key))
                .collect();
            let mut params = request.get();
            params.set_index(machine.applied());
            let mut list = params.init_entries(entries.len() as u32);
            for (i, (key, stored)) in entries.iter().enumerate() {
                convert::write_entry(
                    list.reborrow().get(i as u32),
                    key,
                    &stored.record,
                    stored.index,
                );
            }
            machine.applied()
        };
        request.send().promise.await?;
        self.from = index;
        Ok(())
    }

    async fn send(&mut self, changes: Vec<Change>) -> Result<(), Error> {
        let batch = &changes[..changes.len().min(WATCH_BATCH)];
        let mut request = self.watcher.changed_request();
        let mut list = request.get().init_changes(batch.len() as u32);
        for (i, change) in batch.iter().enumerate() {
            convert::write_change(list.reborrow().get(i as u32), change);
        }
        request.send().promise.await?;
        if let Some(last) = batch.last() {
            self.from = last.index;
        }
        Ok(())
    }
}

/// Whether a watch's facet (`None` once revoked) may see `key`.
fn shows(machine: &Machine, kind: Option<&FacetKind>, key: &str) -> bool {
    kind.is_some_and(|kind| machine.visible(kind, key))
}

struct MemberObject {
    member: DirectoryMember,
}

impl directory_member::Server for MemberObject {
    async fn initialize(
        self: Rc<Self>,
        params: directory_member::InitializeParams,
        mut results: directory_member::InitializeResults,
    ) -> Result<(), Error> {
        let outcome = async {
            let cluster = read_cluster(params.get().map_err(bad)?.get_cluster().map_err(bad)?)?;
            self.member
                .run(cluster, true)
                .await
                .map(|()| Done::default())
        }
        .await;
        convert::write_outcome(results.get().init_outcome(), &outcome);
        Ok(())
    }

    async fn join(
        self: Rc<Self>,
        params: directory_member::JoinParams,
        mut results: directory_member::JoinResults,
    ) -> Result<(), Error> {
        let outcome = async {
            let cluster = read_cluster(params.get().map_err(bad)?.get_cluster().map_err(bad)?)?;
            self.member
                .run(cluster, false)
                .await
                .map(|()| Done::default())
        }
        .await;
        convert::write_outcome(results.get().init_outcome(), &outcome);
        Ok(())
    }

    async fn status(
        self: Rc<Self>,
        _: directory_member::StatusParams,
        mut results: directory_member::StatusResults,
    ) -> Result<(), Error> {
        let mut out = results.get();
        if let Ok(status) = self.member.status() {
            out.set_initialized(true);
            convert::write_status(out.init_status(), &status);
        }
        Ok(())
    }
}
