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
//! - [`directory_capnp`]: the replicated directory: its facets, records,
//!   watches, members' own object and the Raft messages between members.
//! - [`lattice_capnp`]: hosts of the lattice and the interfaces of the
//!   providers shipped with it (HTTP, key-value).

#![forbid(unsafe_code)]

// One module per schema (`demo_capnp`, `gateway_capnp`, …), written by
// vat-build.
include!(concat!(env!("OUT_DIR"), "/vat_schemas.rs"));
