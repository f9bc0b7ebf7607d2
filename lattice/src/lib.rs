//! The lattice: hosts that run actors and capability providers, and
//! bindings that grant actors revocable capabilities to providers.
//!
//! - A **host** is a vat joined to a lattice: it holds its host facet of
//!   the directory, registers itself (`vats/<id>`) and renews its lease
//!   ([`HostBuilder::join`]).
//! - An **actor** is a named kind of object whose instances run on hosts;
//!   a **provider** is a named kind of capability provider whose instances
//!   run on hosts. Both have versions ([`Kind`]); a host's program
//!   registers local factories for the kinds it can run, and instances are
//!   started and stopped through the host ([`Host::start_actor`],
//!   [`Host::start_provider`], [`Host::stop`]). Each instance is recorded
//!   under `instances/<kind>@<version>/<vat>/<n>`.
//! - A **binding** (`bindings/<actor>/<provider>/<link>`, with a config)
//!   is set by the operator ([`Lattice::set_binding`]). Every instance of
//!   the provider, on every host, receives a revocable capability to the
//!   actor's instances (as one group) and the config, and provisions what
//!   it needs ([`Provider::bind`]); what it grants back (a bucket, say) is
//!   recorded under `grants/...`, and every instance of the actor receives
//!   a revocable capability to those grants ([`Links`]). Removing the
//!   binding unbinds every provider instance and revokes every capability
//!   it granted. Removing or moving instances keeps bindings; a new
//!   instance receives its bindings at start.
//! - **Least knowledge**: a host reads the directory through a facet that
//!   shows it only the bindings and grants of kinds it runs.

#![forbid(unsafe_code)]

mod actor;
mod apply;
pub mod cli;
pub mod demo;
mod error;
mod host;
mod kind;
mod members;
mod operator;
mod provider;
pub mod providers;
mod reference;
mod registry;
pub mod route;
pub mod serve;
mod service;
mod versions;

pub use actor::{ActorContext, Links, NotBound};
pub use error::LatticeError;
pub use host::{
    ActorFactory, Host, HostBuilder, InstanceInfo, ProviderFactory, DEFAULT_LEASE, RESYNC_INTERVAL,
};
pub use kind::{check_name, config_digest, BindingId, Config, Kind, Role, DEFAULT_LINK};
pub use operator::{BindingStatus, GrantStatus, Lattice, SET_BINDING_WAIT};
pub use provider::{Binding, Provider, ProviderContext, ProvisionError, Provisioned};
pub use reference::Reference;
pub use registry::{Changes, Local, LocalView, Registry};
pub use route::{Fields, Route};
pub use versions::{RouteStatus, VersionStatus, ROUTE_WAIT};
