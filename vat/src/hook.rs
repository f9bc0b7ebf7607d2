//! Capabilities that stand in front of something of this vat: a far
//! object's turns, a reference that dies with its token, one that heals,
//! one that survives restarts, a group. Each is a [`Front`]; [`FrontHook`]
//! gives it the `ClientHook` capnp-rpc calls, so that what they share is
//! written once.

use std::rc::Rc;

use capnp::any_pointer;
use capnp::capability::{Promise, Request};
use capnp::private::capability::{ClientHook, ParamsHook, ResultsHook};

/// What stands behind a front capability: it takes every call made on it.
pub(crate) trait Front: 'static {
    /// Handles one call (the method `method_id` of `interface_id`).
    fn forward_call(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error>;

    /// A request to hand the caller instead of one routed to
    /// [`forward_call`](Front::forward_call), or `None` for that routing.
    /// A front whose call would go on over a connection can return the
    /// connection's own request: the caller then builds its params in the
    /// outgoing message, with no copy of params or results on the way.
    fn new_request(
        self: &Rc<Self>,
        _interface_id: u64,
        _method_id: u16,
        _size_hint: Option<capnp::MessageSize>,
    ) -> Option<Request<any_pointer::Owned, any_pointer::Owned>> {
        None
    }

    /// The identity capnp-rpc sees (`get_ptr`): two capabilities with the
    /// same identity are exported as one. By default, this front itself.
    fn identity(self: &Rc<Self>) -> usize {
        Rc::as_ptr(self).cast::<()>() as usize
    }
}

/// The `ClientHook` of a [`Front`].
pub(crate) struct FrontHook<F: Front>(Rc<F>);

/// `front` as a capability.
pub(crate) fn front<F: Front>(front: Rc<F>) -> capnp::capability::Client {
    capnp::capability::Client::new(front_hook(front))
}

/// `front` as a hook, for typed clients (`C::new`).
pub(crate) fn front_hook<F: Front>(front: Rc<F>) -> Box<dyn ClientHook> {
    Box::new(FrontHook(front))
}

impl<F: Front> ClientHook for FrontHook<F> {
    fn add_ref(&self) -> Box<dyn ClientHook> {
        Box::new(FrontHook(Rc::clone(&self.0)))
    }

    fn new_call(
        &self,
        interface_id: u64,
        method_id: u16,
        size_hint: Option<capnp::MessageSize>,
    ) -> Request<any_pointer::Owned, any_pointer::Owned> {
        if let Some(request) = self.0.new_request(interface_id, method_id, size_hint) {
            return request;
        }
        // capnp-rpc builds local requests only for its own hook types, which
        // would call the server directly and skip this front. Routing the
        // request through a forwarding client makes it land in `call`.
        let me = capnp::capability::Client::new(self.add_ref());
        let forwarder: capnp::capability::Client =
            capnp_rpc::new_future_client(futures::future::ready(Ok(me)));
        forwarder.hook.new_call(interface_id, method_id, size_hint)
    }

    fn call(
        &self,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        self.0
            .forward_call(interface_id, method_id, params, results)
    }

    fn get_brand(&self) -> usize {
        // Not an RPC import: the brand capnp-rpc gives its local clients.
        0
    }

    fn get_ptr(&self) -> usize {
        self.0.identity()
    }

    fn get_resolved(&self) -> Option<Box<dyn ClientHook>> {
        None
    }

    fn when_more_resolved(&self) -> Option<Promise<Box<dyn ClientHook>, capnp::Error>> {
        None
    }

    fn when_resolved(&self) -> Promise<(), capnp::Error> {
        Promise::ok(())
    }
}
