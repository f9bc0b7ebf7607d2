//! Groups: one capability for many members of one interface; call one
//! (load balanced) or call all.
//!
//! Request/response work is often served by replicated workers: each
//! request goes to any one of them, and some questions go to every one. A
//! [`Group`] is that, as capabilities: its **call-one face** is a
//! capability of the members' own interface, so holding it is the
//! authority to have calls served and nothing else is needed; each call on
//! it goes to one member, picked by a [`Strategy`] (round-robin, random,
//! least calls in flight) or, on a view bound to a key
//! ([`Group::with_key`]), by consistent (rendezvous) hashing of the key.
//! Beside it, [`Group::call_all`] returns every member's reply or error,
//! and [`Group::tell_one`] / [`Group::tell_all`] send one-way messages.
//! [`Group::service`] is the same over the wire
//! (`schema/capnp/group.capnp`).
//!
//! ```
//! use schema::demo_capnp::counter;
//! use vat::group::{Group, Strategy};
//!
//! let vat = vat::VatHandle::start("doc").unwrap();
//! vat.run_async(|| async {
//!     let group = Group::new("workers", Strategy::LeastInFlight);
//!     let mut memberships = Vec::new();
//!     for _ in 0..3 {
//!         let worker: counter::Client = vat::export(vat::demo::Counter::default());
//!         memberships.push(group.join(worker)); // the member serves while this is held
//!     }
//!     let workers: counter::Client = group.client(); // call one
//!     let mut add = workers.add_request();
//!     add.get().set_by(5);
//!     assert_eq!(add.send().promise.await.unwrap().get().unwrap().get_value(), 5);
//!     let totals = group // call all
//!         .call_all(|worker: counter::Client| async move {
//!             Ok(worker.get_request().send().promise.await?.get()?.get_value())
//!         })
//!         .await;
//!     let mut values: Vec<i64> = totals.into_iter().map(|r| r.outcome.unwrap()).collect();
//!     values.sort();
//!     assert_eq!(values, [0, 0, 5]);
//! }).wait().unwrap();
//! vat.stop().unwrap();
//! ```
//!
//! # Members
//!
//! Members are capabilities of one interface, in any vat: local objects,
//! other vats' objects, restored or [healing](crate::sturdy::healing)
//! references, supervised [stable references](crate::supervise). They join
//! and leave at run time: [`Group::join`] returns a [`Membership`] whose
//! drop (or [`Membership::leave`]) takes the member out; calls already
//! sent to it go on.
//!
//! A call on a member that fails as if its vat were gone
//! ([`Disconnected`](crate::ErrorKind::Disconnected), `VatStopped`), or as
//! if the member will not serve again as it is (`Crashed`, `Revoked`,
//! `Expired`, `UnknownToken`), marks it **unreachable**: the call-one face
//! skips it while any reachable member is left. A task of the group's vat
//! then probes it (`Probe.ping`, an interface no member implements, so an
//! `unimplemented` answer proves its vat answers and nothing ran), after
//! 50 ms and then with doubling pauses up to 1 s ([`ProbeOptions`]); an
//! answered probe, or any successful call, makes it reachable again. A
//! healing or supervised member holds the probe until it can serve, so it
//! comes back as soon as its vat or its next incarnation does. When every
//! member is unreachable, calls still go to one of them (it may only be
//! waiting for its vat).
//!
//! # Which failures count as refused before delivery
//!
//! A call whose member refused it before delivery goes to another member
//! (each member is tried at most once per call); a call that may have been
//! delivered is never sent again, since only the caller knows whether
//! repeating it is safe. The proofs of non-delivery are:
//!
//! 1. the member was known unreachable: it is not picked at all;
//! 2. the member is a capability of an RPC connection and the call failed
//!    with `Disconnected` *at once*: the group polls the member's promise
//!    once right after handing it the call, and capnp-rpc fails a call
//!    there only when its connection had ended before the message could be
//!    written;
//! 3. an `Overloaded` refusal from a bound that answers before delivering:
//!    captp's calls-in-flight and bytes-in-flight bounds, a supervised
//!    child's waiting bounds, a healing reference's waiting bound. (An
//!    `Overloaded` error from a connection captp closed for a broken bound
//!    is not one: calls in flight on it may have been delivered.)
//!
//! Everything else — a `Disconnected` error after the call was sent, a
//! crash, the member's own errors — goes back to the caller as it is.
//! To send a call again elsewhere the group lends the call's params and
//! results to the member rather than giving them: the member reads the
//! params through a shared handle, and results it drops unwritten come
//! back to the group.
//!
//! A call made in the group's vat on the call-one face that goes to a
//! member of another vat is not lent, by default: the group picks the
//! member when the request is made and hands the caller the member's own
//! request, built in the connection's outgoing message, so the params and
//! results are not copied on the way. Case 2 still holds (a connection
//! already gone is seen then, before the params exist, and another member
//! is picked), but an `Overloaded` refusal answered by the member's vat
//! after the call was sent (case 3, captp's bounds) reaches the caller,
//! which may retry it: it was not delivered.
//! [`GroupBuilder::resend_remote_refusals`] lends those calls too, at the
//! cost of the copies. Calls that reach the face over a connection are
//! always lent.
//!
//! # Sturdyrefs
//!
//! The call-one face is a capability like any other: provide it to a
//! [`Persistence`](crate::sturdy::Persistence) under an object name (say
//! `group#1`) and mint tokens for it; a vat that restores such a token
//! calls the group's members through it.

mod broadcast;
mod builder;
mod delivery;
mod direct;
mod forward;
mod handle;
mod member;
mod probe;
mod service;
mod state;
mod strategy;

pub use broadcast::Reply;
pub use builder::{GroupBuilder, ProbeOptions};
pub use handle::Group;
pub use member::{MemberId, MemberInfo, Membership};
pub use strategy::Strategy;
