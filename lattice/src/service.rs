//! The host's own capability (`Host`, schema/capnp/lattice.capnp): its
//! operator starts and stops instances through it. Its token is recorded
//! under `hosts/<vat-id>`, which only the admin facet reads.

use std::rc::Rc;

use schema::lattice_capnp::{host, instance, Role as WireRole};

use crate::error::LatticeError;
use crate::host::{Host, InstanceInfo};
use crate::kind::Role;

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
}
