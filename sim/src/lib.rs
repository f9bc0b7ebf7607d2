//! A deterministic simulator for whole federations of vats.
#![forbid(unsafe_code)]

pub mod disk;
pub mod log;
pub mod net;
pub mod property;
mod sim;
mod transport;
mod world;

pub use log::EventLog;
pub use sim::{Report, Sim, SimBuilder, SimHandle, VatContext};
pub use world::EPOCH_SECS;
