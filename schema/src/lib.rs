//! Cap'n Proto wire contracts of the vat system.
//!
//! The `.capnp` files under `schema/capnp/` are the contracts; this crate only
//! compiles them (with the embedded compiler, so no system `capnp` is needed)
//! and re-exports the generated modules. It holds no logic of its own.
//!
//! - [`demo_capnp`]: the example interfaces used by `vat demo`, the examples,
//!   the tests and the benchmarks.
//! - [`gateway_capnp`]: how holders of sturdyref tokens restore them into live
//!   capabilities.
//! - [`supervise_capnp`]: supervisors, their crash logs, and spawners that
//!   start supervised objects in another vat.
//! - [`group_capnp`]: groups of members of one interface: joining, listing
//!   and calling every member.

#![forbid(unsafe_code)]

/// Generated from `schema/capnp/demo.capnp`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    unused_qualifications
)]
pub mod demo_capnp {
    include!(concat!(env!("OUT_DIR"), "/demo_capnp.rs"));
}

/// Generated from `schema/capnp/gateway.capnp`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    unused_qualifications
)]
pub mod gateway_capnp {
    include!(concat!(env!("OUT_DIR"), "/gateway_capnp.rs"));
}

/// Generated from `schema/capnp/supervise.capnp`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    unused_qualifications
)]
pub mod supervise_capnp {
    include!(concat!(env!("OUT_DIR"), "/supervise_capnp.rs"));
}

/// Generated from `schema/capnp/group.capnp`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    unused_qualifications
)]
pub mod group_capnp {
    include!(concat!(env!("OUT_DIR"), "/group_capnp.rs"));
}
