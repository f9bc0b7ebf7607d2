//! Vats: event loops that hold objects, with near calls, eventual sends,
//! E-order and promise pipelining, locally and across the network.
//!
//! ```
//! struct Counter(u64);
//!
//! // A vat is a thread with one event loop. Other threads reach it through a handle.
//! let vat = vat::VatHandle::start("alice").unwrap();
//! let total = vat.run_async(|| async {
//!     let counter = vat::spawn(Counter(0));        // a near reference
//!     counter.call(|c| c.0 += 1).unwrap();          // near call: now, on this stack
//!     counter.send(|c| c.0 += 1);                   // eventual send: a later turn
//!     counter.send(|c| c.0).await                   // a promise for the result
//! }).wait().unwrap();
//! assert_eq!(total, Ok(2));
//! vat.stop().unwrap();
//! ```
//!
//! # The model
//!
//! A **vat** is one thread running a tokio current-thread runtime and a
//! `LocalSet`. It owns a **heap** of objects, runs their code on a **local
//! call stack** and takes incoming messages from a **queue**, one **turn** at
//! a time: a turn delivers one message to one object and runs it to
//! completion (or to an `.await`). Turns of one vat never overlap, so objects
//! need no locks.
//!
//! - [`Ref<T>`] is a **near reference**: [`Ref::call`] runs a method now;
//!   [`Ref::send`] queues it and returns a [`Promise`] at once. Messages on one
//!   reference arrive in the order sent (**E-order**). A `Ref` is `!Send`: it
//!   cannot leave its vat.
//! - [`Promise<Ref<T>>`](Promise::send) can be sent to before it resolves
//!   (**promise pipelining**): the messages wait in the promise and follow it
//!   to its target in order.
//! - A **far reference** is a Cap'n Proto capability. An object written
//!   with [`#[vat::object(interface)]`](macro@object) (its interface's methods
//!   taking `&mut self`) is spawned once and gives its capability through
//!   [`Ref::export`]: near and far calls are turns of the same object (the
//!   [`object`](mod@crate::object) module docs have the model). [`export`]
//!   turns any other capnp server into one; capnp-rpc carries calls to it
//!   from other vats, with pipelining across the network ([`net`]). A
//!   [`Brand`] exports them too and recognises its own among the
//!   capabilities handed back.
//! - A panic in any turn is caught: the caller's promise breaks with a
//!   [`Crashed`](ErrorKind::Crashed) error naming the object and the panic
//!   message, the object is marked crashed, and the vat goes on.
//! - [`VatHandle`] (`Send`) spawns objects in a vat, runs closures in it, and
//!   stops it: pending promises break with [`VatStopped`](ErrorKind::VatStopped),
//!   and peers' calls into it break with [`Disconnected`](ErrorKind::Disconnected).

#![forbid(unsafe_code)]

// The code `#[vat::object]` writes names this crate `::vat`, here too.
extern crate self as vat;

mod caretaker;
mod core;
pub mod demo;
mod error;
mod far;
pub mod group;
mod handle;
mod heap;
mod hook;
mod hosted;
pub mod object;
mod panic_hook;
mod promise;
mod reference;
mod seal;
pub mod sturdy;
pub mod supervise;
pub mod switch;

pub use caretaker::{caretaker, Revoker};
pub use error::{Error, ErrorKind};
pub use far::export;
pub use handle::{
    current, spawn, spawn_cyclic, try_current, Completion, LocalVat, Root, VatBuilder, VatHandle,
};
pub use heap::{ObjectId, ObjectInfo, ObjectKind, ObjectState};
pub use hosted::HostedVat;
pub use object::{done, later, Far, Later, Reply, Served};
pub use promise::{promise, Promise, Resolver};
pub use reference::{Ref, WeakRef};
pub use seal::Brand;
pub use vat_macros::object;

pub mod net;
