//! What the lattice's calls fail with. What a caller acts on is a field.

use vat_directory::DirectoryError;

use crate::kind::{BindingId, Role};

/// Why a lattice call did not do what it asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LatticeError {
    /// A name that cannot be a kind, version or link.
    #[error("{what} {name:?} is not 1 to 64 of A-Z a-z 0-9 . _ - +")]
    BadName {
        /// Which name.
        what: &'static str,
        /// The name, escaped.
        name: String,
    },
    /// The host's program registered no factory for that kind.
    #[error("this host has no factory for {role} {name}{}", version.as_deref().map(|v| format!("@{v}")).unwrap_or_default())]
    NoFactory {
        /// Actor or provider.
        role: Role,
        /// The kind's name.
        name: String,
        /// The version asked for, if one was.
        version: Option<String>,
    },
    /// Several versions of the kind are registered and none was named.
    #[error("this host has {role} {name} at versions {}; name one", versions.join(", "))]
    AmbiguousVersion {
        /// Actor or provider.
        role: Role,
        /// The kind's name.
        name: String,
        /// The versions it has.
        versions: Vec<String>,
    },
    /// Several versions of the kind run on this host and a lifecycle
    /// command named none; nothing changed.
    #[error("{name} runs here at versions {}; name one ({name}@{})", versions.join(", "), versions.first().map(String::as_str).unwrap_or("VERSION"))]
    SeveralVersionsRun {
        /// The kind's name.
        name: String,
        /// The versions running.
        versions: Vec<String>,
    },
    /// No instance of that number runs on this host.
    #[error("no instance {number} runs on this host")]
    NoInstance {
        /// The number asked for.
        number: u64,
    },
    /// Provider instances could not provision a binding; the binding is
    /// recorded (it applies as soon as they can: free the port, or set it
    /// again with another config).
    #[error("{binding}: {} of the provider's instances could not provision it: {}", failures.len(), failures.iter().map(|(i, why)| format!("{i}: {why}")).collect::<Vec<_>>().join("; "))]
    NotProvisioned {
        /// The binding.
        binding: BindingId,
        /// Each failed instance (`<vat>/<n>`) and why.
        failures: Vec<(String, String)>,
    },
    /// Not every provider instance answered a binding in time; the
    /// binding is recorded and applies as they come.
    #[error(
        "{binding}: {answered} of {instances} provider instances took it within {waited_ms} ms"
    )]
    NotYetProvisioned {
        /// The binding.
        binding: BindingId,
        /// Instances that answered.
        answered: usize,
        /// Instances of the provider.
        instances: usize,
        /// How long the call waited.
        waited_ms: u64,
    },
    /// A route that cannot be written as given.
    #[error("bad route: {why}")]
    BadRoute {
        /// What is wrong with it.
        why: String,
    },
    /// Not every host's routers followed a route in time; the route is
    /// written and they follow when they can.
    #[error("the route of {kind} (index {index}) is not yet followed by {}", lagging.join(", "))]
    RouteNotYetFollowed {
        /// The kind.
        kind: String,
        /// The route's log index.
        index: u64,
        /// Each lagging host, and what it follows or why it did not answer.
        lagging: Vec<String>,
    },
    /// The directory refused or could not answer.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// A call of the runtime failed.
    #[error(transparent)]
    Vat(#[from] vat::Error),
}
