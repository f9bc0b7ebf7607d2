//! The directory (being built).
#![forbid(unsafe_code)]

pub mod command;
pub mod machine;
pub mod network;
pub mod peer;
pub mod record;
mod runtime;
pub mod store;
pub mod types;
