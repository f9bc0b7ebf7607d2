//! Example objects speaking the interfaces of `schema/capnp/demo.capnp`.
//!
//! `vat demo`, the examples, the tests and the benchmarks host these. Each is a
//! small Cap'n Proto server; [`Host`] is the bootstrap object that hands out
//! the others.

mod durable;
mod objects;

pub use durable::DurableCounter;

pub use objects::{Counter, Greeter, Host, Link, Sequencer, MAX_PIPELINE_DEPTH};
