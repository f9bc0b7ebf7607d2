//! The host's own capability (`Host`, schema/capnp/lattice.capnp): its
//! operator starts and stops instances through it. Its token is recorded
//! under `hosts/<vat-id>`, which only the admin facet reads.

use std::rc::Rc;

use schema::lattice_capnp::{host, instance, Role as WireRole};

use crate::error::LatticeError;
use crate::host::{Host, InstanceInfo};
use crate::kind::Role;

/// The `Host` capability the token text `token` (a `hosts/` record's)
/// restores, or why it could not be reached.
pub(crate) async fn restore(token: &str) -> Result<host::Client, String> {
    let token: sturdyrefs::SturdyRef = token
        .parse()
        .map_err(|e: sturdyrefs::ParseError| e.to_string())?;
    let (client, _) = vat::sturdy::restore(&token, None, vat::net::Limits::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(capnp::capability::FromClientHook::new(client.hook))
}

/// Serves `host` as the `Host` interface.
pub(crate) struct HostService {
    pub(crate) host: Host,
}

fn role(wire: WireRole) -> Role {
    match wire {
        WireRole::Actor => Role::Actor,
        WireRole::Provider => Role::Provider,
    }
}

fn wire(role: Role) -> WireRole {
    match role {
        Role::Actor => WireRole::Actor,
        Role::Provider => WireRole::Provider,
    }
}

fn failed(error: LatticeError) -> capnp::Error {
    let kind = match error {
        LatticeError::BadName { .. }
        | LatticeError::NoFactory { .. }
        | LatticeError::AmbiguousVersion { .. }
        | LatticeError::SeveralVersionsRun { .. }
        | LatticeError::NoInstance { .. } => vat::ErrorKind::InvalidArgument,
        _ => vat::ErrorKind::Failed,
    };
    vat::Error::new(kind, error.to_string()).into()
}

fn set(mut out: instance::Builder<'_>, info: &InstanceInfo) {
    out.set_role(wire(info.role));
    out.set_kind(info.kind.name.as_str());
    out.set_version(info.kind.version.as_str());
    out.set_number(info.number);
}

impl host::Server for HostService {
    async fn start(
        self: Rc<Self>,
        params: host::StartParams,
        mut results: host::StartResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let which = role(params.get_role()?);
        let name = params.get_kind()?.to_string()?;
        let version = params.get_version()?.to_string()?;
        let version = (!version.is_empty()).then_some(version);
        let number = match which {
            Role::Actor => self.host.start_actor(&name, version.as_deref()).await,
            Role::Provider => self.host.start_provider(&name, version.as_deref()).await,
        }
        .map_err(failed)?;
        let info = self
            .host
            .inventory()
            .into_iter()
            .find(|i| i.number == number)
            .ok_or_else(|| failed(LatticeError::NoInstance { number }))?;
        set(results.get().init_instance(), &info);
        Ok(())
    }

    async fn stop(
        self: Rc<Self>,
        params: host::StopParams,
        _: host::StopResults,
    ) -> Result<(), capnp::Error> {
        let number = params.get()?.get_number();
        self.host.stop(number).await.map_err(failed)
    }

    async fn inventory(
        self: Rc<Self>,
        _: host::InventoryParams,
        mut results: host::InventoryResults,
    ) -> Result<(), capnp::Error> {
        let running = self.host.inventory();
        let factories = self.host.factories();
        let mut out = results.get();
        let mut list = out.reborrow().init_instances(running.len() as u32);
        for (i, info) in running.iter().enumerate() {
            set(list.reborrow().get(i as u32), info);
        }
        let mut list = out.init_factories(factories.len() as u32);
        for (i, (role, kind)) in factories.iter().enumerate() {
            let mut entry = list.reborrow().get(i as u32);
            entry.set_role(wire(*role));
            entry.set_kind(kind.name.as_str());
            entry.set_version(kind.version.as_str());
        }
        Ok(())
    }

    async fn followed(
        self: Rc<Self>,
        params: host::FollowedParams,
        mut results: host::FollowedResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let kind = params.get_kind()?.to_string()?;
        let at_least = params.get_at_least();
        let wait = std::time::Duration::from_millis(u64::from(params.get_wait_ms().min(10_000)));
        let started = vat_env::now();
        let followed = loop {
            let followed = self.host.followed(&kind);
            let reached = followed.is_none_or(|index| index >= at_least);
            if reached || vat_env::now().duration_since(started) >= wait {
                break followed;
            }
            vat_env::sleep(std::time::Duration::from_millis(5)).await;
        };
        let mut out = results.get();
        out.set_routes(followed.is_some());
        out.set_index(followed.unwrap_or(0));
        Ok(())
    }

    async fn stop_kind(
        self: Rc<Self>,
        params: host::StopKindParams,
        mut results: host::StopKindResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let (name, version) = kind_and_version(params.get_kind()?, params.get_version()?)?;
        let stopped = self
            .host
            .stop_kind(&name, version.as_deref())
            .await
            .map_err(failed)?;
        let mut list = results.get().init_stopped(stopped.len() as u32);
        for (i, number) in stopped.iter().enumerate() {
            list.set(i as u32, *number);
        }
        Ok(())
    }

    async fn scale(
        self: Rc<Self>,
        params: host::ScaleParams,
        mut results: host::ScaleResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let (name, version) = kind_and_version(params.get_kind()?, params.get_version()?)?;
        let count = params.get_count();
        if count > MAX_SCALE {
            return Err(vat::Error::new(
                vat::ErrorKind::InvalidArgument,
                format!("a host runs at most {MAX_SCALE} instances of a kind, not {count}"),
            )
            .into());
        }
        let running = self
            .host
            .scale(&name, version.as_deref(), count as usize)
            .await
            .map_err(failed)?;
        let mut list = results.get().init_instances(running.len() as u32);
        for (i, info) in running.iter().enumerate() {
            set(list.reborrow().get(i as u32), info);
        }
        Ok(())
    }
}

/// The most instances of one kind `scale` starts on a host.
const MAX_SCALE: u32 = 1024;

/// A kind's name and version from the wire (an empty version: none named).
fn kind_and_version(
    kind: capnp::text::Reader<'_>,
    version: capnp::text::Reader<'_>,
) -> Result<(String, Option<String>), capnp::Error> {
    let kind = kind.to_string()?;
    let version = version.to_string()?;
    crate::kind::check_name("kind", &kind).map_err(failed)?;
    if !version.is_empty() {
        crate::kind::check_name("version", &version).map_err(failed)?;
    }
    Ok((kind, (!version.is_empty()).then_some(version)))
}
