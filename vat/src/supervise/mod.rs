//! Supervision trees: let it crash, restart at fine grain, keep references
//! working.
//!
//! A [`Supervisor`] starts **children** — far objects built by a factory
//! ([`ChildSpec::local`]), persistent objects revived from their last
//! committed state ([`ChildSpec::durable`]), objects started in another vat
//! through its [`Spawner`] ([`ChildSpec::remote`]), or other supervisors
//! ([`ChildSpec::supervisor`]) — and restarts them when they crash, as
//! Erlang/OTP supervisors do. Restarting one object is cheap, so code may
//! panic on the unexpected and let its supervisor restore service.
//!
//! - **Strategies** ([`Strategy`]): one-for-one restarts the child that
//!   ended; one-for-all restarts every child; rest-for-one restarts it and
//!   those started after it. Siblings stop last-started first and start
//!   again in order.
//! - **Policies** ([`Restart`]): permanent children always restart,
//!   transient ones only after a crash (not after
//!   [`ExitHandle::exit_normally`]), temporary ones never.
//! - **Intensity** ([`Intensity`]): more than N restarts within T and the
//!   supervisor gives up: it stops its children and fails, which its own
//!   supervisor sees as that child crashing. A failed start counts as a
//!   restart too. A [`Backoff`] spaces restarts.
//! - **Stable references** ([`Supervisor::child`]): callers hold the
//!   child, not one incarnation. While it restarts, new calls wait (at most
//!   [`WaitLimits::max_calls`], each at most [`WaitLimits::max_wait`], else
//!   they fail with [`Overloaded`](crate::ErrorKind::Overloaded) undelivered)
//!   and go to the next incarnation in the order they came. A call in
//!   progress when its incarnation crashes fails with the crash error and is
//!   never sent again.
//! - **The root**: [`SupervisorBuilder::start_root`] makes a vat's root
//!   supervisor. When it gives up, the vat stops and the process exits with
//!   status [`ROOT_GAVE_UP_EXIT`] (70, `EX_SOFTWARE`), so that systemd or
//!   Kubernetes restarts it; [`SupervisorBuilder::on_give_up`] replaces
//!   that.
//! - **Remote children**: a vat serves a [`Spawner`] with factories by
//!   name; a supervisor elsewhere starts children through it and watches
//!   each with a pending `ChildWatch.ended` call, which breaks at once if
//!   that vat dies. The child then restarts by the strategy, through the
//!   first spawner that answers: the same vat once it is back (spawners
//!   held as sturdyrefs are restored afresh) or another.
//! - **Crash log**: the last crashes of each supervisor (time, child,
//!   error, restarts before), from [`Supervisor::crash_log`] or its
//!   capability ([`Supervisor::service`], `schema/capnp/supervise.capnp`).
//!
//! Crashes of local children are seen at the end of the crashing turn: the
//! vat tells the supervisor which object panicked, so calls made on the
//! incarnation's own capability (not through the stable reference) count
//! as well. Logs: a span per supervisor; info on starts and restarts, warn
//! on crashes, error on giving up.
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use schema::demo_capnp::host;
//! use vat::supervise::{ChildSpec, Restart, SupervisorBuilder};
//!
//! let vat = vat::VatHandle::start("doc").unwrap();
//! let (crashed, after) = vat.run_async(|| async {
//!     let supervisor = SupervisorBuilder::new("app")
//!         .child(ChildSpec::local("host", Restart::Permanent, |_| {
//!             Ok(vat::export::<host::Client, _>(vat::demo::Host::crashable("doc")).client)
//!         }))
//!         .start()
//!         .await?;
//!     let host: host::Client = supervisor.child("host")?;
//!     let mut crash = host.crash_request();
//!     crash.get().set_message("boom");
//!     let crashed = vat::Error::from(crash.send().promise.await.err().unwrap());
//!     // The same reference reaches the next incarnation.
//!     let mut echo = host.echo_request();
//!     echo.get().set_value(7);
//!     let after = echo.send().promise.await?.get()?.get_value();
//!     Ok::<_, vat::Error>((crashed.kind(), after))
//! }).wait().unwrap().unwrap();
//! assert_eq!(crashed, vat::ErrorKind::Crashed);
//! assert_eq!(after, 7);
//! vat.stop().unwrap();
//! ```

mod backoff;
mod context;
mod crash_log;
mod incarnation;
mod intensity;
mod policy;
mod root;
mod service;
mod spawner;
mod spec;
mod stable;
mod supervisor;

pub use backoff::Backoff;
pub use context::{ChildContext, ExitHandle};
pub use crash_log::CrashEntry;
pub use incarnation::Factory;
pub use intensity::Intensity;
pub use policy::{Restart, Strategy};
pub use root::{exit_process, ROOT_GAVE_UP_EXIT};
pub use spawner::{Spawner, SpawnerRef};
pub use spec::{durable_factory, ChildSpec, SupervisorBuilder};
pub use stable::WaitLimits;
pub use supervisor::{ChildInfo, ChildStatus, Supervisor, SupervisorState};
