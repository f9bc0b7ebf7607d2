//! The provider SDK: what a capability provider implements so that a host
//! can run its instances and bind them to actors.
//!
//! A provider instance is told of each binding of its kind
//! ([`Provider::bind`]) with a revocable capability to the bound actor's
//! instances (a group: each call goes to one of them) and the binding's
//! config; it provisions what the binding needs (the HTTP provider opens
//! the configured port) and may hand back a capability of its own for the
//! actor (the key-value provider's bucket), which the host grants to every
//! instance of the actor, revocably. A changed config comes as
//! [`Provider::reconfigure`]; a removed binding as [`Provider::unbind`],
//! after which the provider releases what it provisioned.

use futures::future::LocalBoxFuture;

use crate::kind::{BindingId, Config, Kind};

/// One binding as a provider instance receives it.
pub struct Binding {
    /// Which binding.
    pub id: BindingId,
    /// The bound actor's instances, as one capability (a group); revoked
    /// when the binding goes. Cast it to the interface the provider calls.
    pub actor: capnp::capability::Client,
    /// The binding's settings.
    pub config: Config,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("id", &self.id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a provider could not provision a binding. The host records it in
/// the binding's grant for this instance, where `set_binding` and `vat
/// lattice bindings` show it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// A setting is missing or wrong.
    #[error("setting {setting:?}: {reason}")]
    Setting {
        /// The setting.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A resource the binding needs is not to be had (a port in use).
    #[error("{resource}: {reason}")]
    Unavailable {
        /// The resource (`127.0.0.1:8080`).
        resource: String,
        /// Why.
        reason: String,
    },
    /// The provider takes this change of config only as a new binding:
    /// the host unbinds it (revoking what it granted) and binds it afresh.
    #[error("this provider does not reconfigure a binding in place")]
    NoReconfigure,
}

/// What a provider provisions for a binding: a capability to grant the
/// actor, if it has one (the HTTP provider calls the actor and grants
/// nothing back).
pub type Provisioned = Result<Option<capnp::capability::Client>, ProvisionError>;

/// A capability provider's instance. Its methods run in the host's vat, one
/// at a time per instance (the host awaits each before the next).
pub trait Provider: 'static {
    /// Provisions `binding`.
    fn bind(&mut self, binding: Binding) -> LocalBoxFuture<'static, Provisioned>;

    /// The binding `id`'s config changed to `config`: apply it. On an error
    /// the binding's earlier provisioning, if any, may be gone.
    fn reconfigure(
        &mut self,
        id: &BindingId,
        config: &Config,
    ) -> LocalBoxFuture<'static, Result<(), ProvisionError>>;

    /// The binding `id` is gone: release what it provisioned.
    fn unbind(&mut self, id: &BindingId) -> LocalBoxFuture<'static, ()>;

    /// The instance stops (after every binding was unbound).
    fn shutdown(&mut self) -> LocalBoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// What a provider factory is given for each instance it makes.
#[derive(Clone)]
pub struct ProviderContext {
    /// The kind being started.
    pub kind: Kind,
    /// The instance's number on its host.
    pub number: u64,
    /// The host vat's persistence, for providers that keep state in its
    /// store.
    pub persistence: vat::sturdy::Persistence,
}
