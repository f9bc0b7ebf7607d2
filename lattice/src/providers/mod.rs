//! The providers shipped with the lattice, written with the SDK
//! ([`crate::Provider`]) as a user would write their own.

pub mod http;
pub mod kv;
