//! A deterministic simulator for whole federations of vats.
//!
//! Every vat of a [`Sim`] runs on one thread, hosted on one tokio runtime
//! whose clock is paused (time jumps to the next timer whenever every task
//! waits), with its own store on a simulated [`disk`], dialling the others
//! over a simulated [`net`]work, in a world whose wall clock and random
//! numbers come from the run's seed. The same seed gives the same history,
//! event for event ([`EventLog`], whose hash fingerprints a run), so a
//! failure found once replays at will; [`property`] runs a scenario over
//! many seeds and reports the first that breaks an invariant with the
//! command that replays it.
//!
//! ```no_run
//! # use std::time::Duration;
//! let sim = vat_sim::SimBuilder::new(42).build()?;
//! let report = sim.run(|sim| async move {
//!     sim.add_vat("alice", |vat| async move {
//!         // runs inside the vat at every start: open its store, serve, call...
//!         let _persistence = vat.persistence();
//!         std::future::pending::<()>().await;
//!     });
//!     tokio::time::sleep(Duration::from_secs(5)).await; // simulated
//!     sim.crash("alice"); // kill -9: its disk keeps what was synced
//!     sim.restart("alice");
//! });
//! println!("{} events, hash {}", report.events, report.hash);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! `sim/tests/counter_in_simulation.rs` is a complete example to copy;
//! docs/ARCHITECTURE.md ("The environment and the simulator") describes
//! the model: what the network and the disk do, what a crash loses, why
//! TLS is replaced inside.
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
