//! The directory: a federation's shared record, replicated with Raft.
//!
//! Three or five directory vats (the *members*) run one Raft group
//! (openraft, on each vat's own event loop). Each keeps the log, its vote
//! and the state machine in its own redb store. The state machine
//! ([`machine`]) is a deterministic function of the log: typed records
//! ([`record`]) under checked keys, facets, and the session table that makes
//! every write at-most-once.
//!
//! Nobody reaches the directory by name: a holder has a *facet*, a
//! capability whose swiss number every member recognises (the facets live
//! in the replicated state), and one token ([`DirectoryToken`]) names every
//! member. Calls go to whichever member answers; a follower forwards to the
//! leader; a member without a quorum refuses at once with
//! [`DirectoryError::NoQuorum`].
//!
//! - [`machine`]: the state machine; [`command`]: its requests and answers.
//! - [`store`]: the redb log and state machine openraft drives;
//!   [`writer`]: where its writes are committed (grouped on a thread of
//!   their own, or inline for the simulator).
//! - [`network`], [`peer`]: Raft's messages as a Cap'n Proto interface
//!   between members that prove the keys the membership names.
//! - [`member`]: one member: Raft, reachability, leases, forwarding.
//! - [`facet`]: the `Directory` interface as each facet serves it.
//! - [`client`]: a client holding a token: finds a member that answers,
//!   retries with the same request id.
//! - [`watch`]: openraft's watch channel, waking in one order in every run.

#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod command;
pub mod convert;
pub mod error;
pub mod facet;
pub mod machine;
pub mod member;
pub mod network;
pub mod operator;
pub mod peer;
pub mod record;
mod runtime;
pub mod store;
pub mod token;
pub mod types;
pub mod watch;
pub mod writer;

pub use client::DirectoryClient;
pub use error::DirectoryError;
pub use member::{Cluster, DirectoryMember, MemberConfig};
pub use token::DirectoryToken;
