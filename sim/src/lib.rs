//! A deterministic simulator for whole federations of vats.
#![forbid(unsafe_code)]

pub mod disk;
pub mod log;
pub mod net;

pub use log::EventLog;
