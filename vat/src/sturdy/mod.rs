//! Sturdyrefs in a running vat: minting tokens for objects, restoring them
//! into live references, revoking them, and persistent objects whose state
//! survives `kill -9`.
//!
//! - The **serving** vat opens its [`Persistence`] in its data folder,
//!   provides or registers the objects tokens may name, mints tokens, and
//!   serves its gateway on a TLS listener. Its store keeps each token's
//!   record under the hash of its swiss number, never the number itself.
//! - A **holder** turns a token's text into a [`sturdyrefs::SturdyRef`] and
//!   calls [`restore`]: it dials the token's location hints until a peer
//!   proves the vat's key, and asks that vat's gateway for the object.
//! - A **persistent object** is a [`Durable`] kind whose state sits in a
//!   [`StateCell`]: each [`update`](StateCell::update) is committed before it
//!   resolves, so a reply sent after it acknowledges only what is on disk.
//!   After a restart, restoring a token revives the object from its last
//!   committed state.
//! - Revoking a token (or its expiry) breaks every reference restored from
//!   it on its next call, with a [`Revoked`](crate::ErrorKind::Revoked) (or
//!   [`Expired`](crate::ErrorKind::Expired)) error. A token bound to one vat
//!   and presented by another is refused exactly as an unknown one.
//!
//! - A **healing** reference ([`healing`]) restores its token again when
//!   its connection drops or its vat restarts; calls made meanwhile wait
//!   (bounded), calls in flight at the drop fail and are never re-sent.
//! - **Handoff**: a vat that restored an object can ask its vat for a
//!   token of the same object bound to a third vat, single-use and
//!   short-lived ([`handoff`]); the third vat restores it directly, so the
//!   introducer may leave. Revoking the introducer's token revokes the
//!   recipient's reference too.
//! - **Bounds**: unused handoff tokens are capped per caller, per object
//!   and per vat ([`HandoffQuota`]; beyond, [`QuotaExceeded`], an
//!   [`Overloaded`](crate::ErrorKind::Overloaded) error on the wire), and a
//!   periodic sweep deletes expired and used single-use token records in
//!   bounded passes ([`Persistence::sweep`]). Refused restores are counted
//!   ([`Persistence::stats`]) and summarised in one WARN line per interval.
//!   The settings are [`PersistenceConfig`].
//! - The vat's **operator** (whoever holds its data folder, and so its key)
//!   gets an admin capability from the gateway by proving the vat's own key:
//!   list, mint and revoke tokens of the running vat.
//!
//! docs/PROTOCOL.md describes the wire side for clients in other languages.

mod admin;
mod committer;
mod config;
mod healing;
mod persistence;
mod quota;
mod refusals;
mod restore;
mod revocable;
mod sessions;
mod state;
mod stats;
mod sweep;

pub use admin::parse_object;
pub use config::{PersistenceConfig, HANDOFF_LIFETIME, MIN_INTERVAL};
pub use healing::{healing, HealOptions};
pub use persistence::{object_ref, Persistence, Restorer, STORE_FILE};
pub use quota::{Caller, HandoffError, HandoffQuota, QuotaExceeded, QuotaKind};
pub use refusals::RefusalCounts;
pub use restore::{connect, handoff, restore, restore_on, vat_id, vat_key, RestoreError};
pub use sessions::{connections, ConnectionInfo, DUPLICATE_GRACE};
pub use state::{Durable, StateCell};
pub use stats::PersistenceStats;
pub use sweep::SweepReport;
