//! Switches: one capability whose every call goes to a capability picked
//! for that call. A router in front of several versions of a service is
//! one: the caller holds the switch, and what it reaches can change from
//! one call to the next while the reference stays the same.
//!
//! The picker sees the call's interface and method, and the key of the
//! view it was made on ([`Switch::with_key`]). It answers at once, before
//! the params exist, and the caller then builds them in the picked
//! target's own request (no copy, and a target across a connection builds
//! them in the outgoing message). A picker that needs the params to choose
//! (a rule on a field of the call) says so, and is asked again with them.
//! Each call is picked once: a call in flight finishes where it went,
//! whatever the picker answers for later calls.
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use schema::demo_capnp::counter;
//! use vat::switch::{CallInfo, Pick, Picked, Switch};
//!
//! struct Either {
//!     targets: [capnp::capability::Client; 2],
//!     second: Rc<Cell<bool>>,
//! }
//! impl Pick for Either {
//!     fn pick(&self, _call: &CallInfo<'_>) -> Picked {
//!         Picked::To(self.targets[usize::from(self.second.get())].clone())
//!     }
//! }
//!
//! let vat = vat::VatHandle::start("doc").unwrap();
//! vat.run_async(|| async {
//!     let a: counter::Client = vat::export(vat::demo::Counter::default());
//!     let b: counter::Client = vat::export(vat::demo::Counter::default());
//!     let second = Rc::new(Cell::new(false));
//!     let switch = Switch::new(Either { targets: [a.client.clone(), b.client], second: second.clone() });
//!     let counters: counter::Client = switch.client();
//!     for _ in 0..3 {
//!         let mut add = counters.add_request();
//!         add.get().set_by(1);
//!         add.send().promise.await.unwrap();
//!     }
//!     second.set(true); // later calls go to b
//!     let get = counters.get_request().send().promise.await.unwrap();
//!     assert_eq!(get.get().unwrap().get_value(), 0);
//!     let get = a.get_request().send().promise.await.unwrap();
//!     assert_eq!(get.get().unwrap().get_value(), 3);
//! }).wait().unwrap();
//! vat.stop().unwrap();
//! ```

use std::rc::Rc;

use capnp::any_pointer;
use capnp::capability::{FromClientHook, Promise, Request};
use capnp::private::capability::{ParamsHook, ResultsHook};

use crate::hook::{front_hook, Front};

/// What a picker is told of one call.
#[derive(Clone, Copy)]
pub struct CallInfo<'a> {
    /// The interface of the method called.
    pub interface_id: u64,
    /// The method.
    pub method_id: u16,
    /// The key of the view the call was made on, if it was made on one.
    pub key: Option<&'a [u8]>,
    /// The call's params, once the picker asked for them
    /// ([`Picked::NeedParams`]); `None` on the first ask.
    pub params: Option<any_pointer::Reader<'a>>,
}

/// A picker's answer for one call.
pub enum Picked {
    /// The call goes to this capability.
    To(capnp::capability::Client),
    /// The picker needs the call's params to choose: ask again with them.
    /// The call is then built locally and handed on (one copy of params
    /// where the target is across a connection).
    NeedParams,
    /// The call fails with this error, delivered nowhere.
    Refuse(capnp::Error),
}

/// Picks the target of each call made on a [`Switch`].
pub trait Pick: 'static {
    /// The target of `call`. Called in the switch's vat, once or twice per
    /// call (the second time with the params, after
    /// [`NeedParams`](Picked::NeedParams)); it must not block.
    fn pick(&self, call: &CallInfo<'_>) -> Picked;
}

/// A capability whose calls go where its [`Pick`] says, per call. Clones
/// share the picker.
#[derive(Clone)]
pub struct Switch {
    picker: Rc<dyn Pick>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch").finish_non_exhaustive()
    }
}

impl Switch {
    /// A switch asking `picker` where each call goes.
    pub fn new(picker: impl Pick) -> Switch {
        Switch {
            picker: Rc::new(picker),
        }
    }

    /// The switch as a capability of the targets' interface `C`.
    pub fn client<C: FromClientHook>(&self) -> C {
        C::new(front_hook(Rc::new(SwitchHook {
            picker: Rc::clone(&self.picker),
            key: None,
        })))
    }

    /// The switch as a capability whose calls carry `key` to the picker
    /// (a routing key, as a group's keyed view carries one): the key
    /// travels with the reference, not in the interface.
    pub fn with_key<C: FromClientHook>(&self, key: impl AsRef<[u8]>) -> C {
        C::new(front_hook(Rc::new(SwitchHook {
            picker: Rc::clone(&self.picker),
            key: Some(Rc::from(key.as_ref())),
        })))
    }
}

struct SwitchHook {
    picker: Rc<dyn Pick>,
    key: Option<Rc<[u8]>>,
}

impl Front for SwitchHook {
    fn new_request(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        size_hint: Option<capnp::MessageSize>,
    ) -> Option<Request<any_pointer::Owned, any_pointer::Owned>> {
        let call = CallInfo {
            interface_id,
            method_id,
            key: self.key.as_deref(),
            params: None,
        };
        match self.picker.pick(&call) {
            Picked::To(target) => Some(target.hook.new_call(interface_id, method_id, size_hint)),
            Picked::NeedParams => None,
            Picked::Refuse(error) => {
                let broken = capnp_rpc::new_broken_cap(error);
                Some(broken.hook.new_call(interface_id, method_id, size_hint))
            }
        }
    }

    fn forward_call(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        let picked = match params.get() {
            Ok(reader) => self.picker.pick(&CallInfo {
                interface_id,
                method_id,
                key: self.key.as_deref(),
                params: Some(reader),
            }),
            Err(error) => Picked::Refuse(error),
        };
        match picked {
            Picked::To(target) => target.hook.call(interface_id, method_id, params, results),
            Picked::NeedParams => Promise::err(capnp::Error::failed(
                "the switch's picker asked for params it was given".into(),
            )),
            Picked::Refuse(error) => Promise::err(error),
        }
    }

    fn identity(self: &Rc<Self>) -> usize {
        match &self.key {
            Some(key) => Rc::as_ptr(key).cast::<u8>() as usize,
            None => Rc::as_ptr(&self.picker).cast::<()>() as usize,
        }
    }
}
