//! E's caretaker: a capability that forwards to another until its
//! revoker says stop.
//!
//! ```
//! use schema::demo_capnp::counter;
//!
//! let vat = vat::VatHandle::start("doc").unwrap();
//! let (before, after) = vat.run_async(|| async {
//!     let counter: counter::Client = vat::export(vat::demo::Counter::default());
//!     let (granted, revoker) = vat::caretaker(counter.client);
//!     let granted: counter::Client = capnp::capability::FromClientHook::new(granted.hook);
//!     let mut add = granted.add_request();
//!     add.get().set_by(1);
//!     let before = add.send().promise.await.is_ok();
//!     revoker.revoke("the binding was removed");
//!     let after = granted.add_request().send().promise.await.map_err(vat::Error::from);
//!     (before, after.map(|_| ()).map_err(|e| e.kind()))
//! }).wait().unwrap();
//! assert!(before);
//! assert_eq!(after, Err(vat::ErrorKind::Revoked));
//! vat.stop().unwrap();
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use capnp::any_pointer;
use capnp::capability::{Promise, Request};
use capnp::private::capability::{ClientHook, ParamsHook, ResultsHook};

use crate::error::{Error, ErrorKind};
use crate::hook::{front, Front};

/// Ends the capability its [`caretaker`] made: every later call on it, and
/// on every copy of it in any vat, fails with
/// [`Revoked`](ErrorKind::Revoked). Dropping the revoker does not revoke.
#[derive(Clone)]
pub struct Revoker {
    state: Rc<Care>,
}

impl std::fmt::Debug for Revoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revoker")
            .field("revoked", &self.is_revoked())
            .finish()
    }
}

/// A capability forwarding every call to `target` until the returned
/// revoker revokes it: the capability to hand out and the [`Revoker`] to
/// keep. It has an identity of its own: handed back to this vat it is never
/// taken for `target`.
pub fn caretaker(target: capnp::capability::Client) -> (capnp::capability::Client, Revoker) {
    let state = Rc::new(Care {
        target: RefCell::new(Some(target.hook)),
        reason: RefCell::new(String::new()),
    });
    (front(Rc::clone(&state)), Revoker { state })
}

impl Revoker {
    /// Revokes the capability for good, saying `reason` to later callers.
    /// The target is released at once.
    pub fn revoke(&self, reason: impl Into<String>) {
        *self.state.reason.borrow_mut() = reason.into();
        self.state.target.borrow_mut().take();
    }

    /// Whether [`revoke`](Revoker::revoke) was called.
    pub fn is_revoked(&self) -> bool {
        self.state.target.borrow().is_none()
    }
}

struct Care {
    /// The target while the capability stands.
    target: RefCell<Option<Box<dyn ClientHook>>>,
    reason: RefCell<String>,
}

impl Care {
    fn revoked(&self) -> Error {
        let reason = self.reason.borrow();
        let text = if reason.is_empty() {
            "this capability was revoked".to_owned()
        } else {
            format!("this capability was revoked: {reason}")
        };
        Error::new(ErrorKind::Revoked, text)
    }
}

impl Front for Care {
    fn forward_call(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        let target = self.target.borrow().as_ref().map(|hook| hook.add_ref());
        match target {
            Some(target) => target.call(interface_id, method_id, params, results),
            None => Promise::err(self.revoked().into()),
        }
    }

    /// While it stands, the caller builds its call in the target's own
    /// request: a caretaker costs a check, not a copy of params and results.
    fn new_request(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        size_hint: Option<capnp::MessageSize>,
    ) -> Option<Request<any_pointer::Owned, any_pointer::Owned>> {
        let target = self.target.borrow();
        target
            .as_ref()
            .map(|hook| hook.new_call(interface_id, method_id, size_hint))
    }
}
