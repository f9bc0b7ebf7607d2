//! The call-one face: a `ClientHook` of the members' own interface that
//! hands each call to one member and, if that member refused it before
//! delivery, to another.
//!
//! The params and results of a call are moved into the member's call. To
//! be able to send a refused call again, the group lends them instead: the
//! member reads the params through a shared handle, and the results come
//! back to the group when the member drops them unused. A call the member
//! wrote results for, or kept, is its own.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use capnp::capability::Promise;
use capnp::private::capability::{ParamsHook, PipelineHook, RequestHook, ResultsHook};
use captp::log::Untrusted;

use super::delivery::refused_before_delivery;
use super::member::{Member, MemberId};
use super::state::{settled, Shared};
use crate::error::Error;
use crate::hook::Front;

/// The hook behind [`Group::client`](super::Group::client) and
/// [`Group::with_key`](super::Group::with_key).
pub(crate) struct GroupHook {
    pub(crate) shared: Rc<Shared>,
    /// The caller's key, for a keyed view; its `Rc` is the view's identity.
    pub(crate) key: Option<Rc<u64>>,
}

impl Front for GroupHook {
    fn forward_call(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        let mut forward = Forward {
            shared: self.shared.clone(),
            key: self.key.as_deref().copied(),
            interface_id,
            method_id,
            lent: Rc::new(Lent {
                params,
                results: RefCell::new(Some(results)),
            }),
            tried: Vec::new(),
            last_error: None,
            current: None,
        };
        // One poll now, before anything else can run: a member that fails
        // the call here had it refused before it was sent (see `delivery`),
        // and a call answered at once needs no future of its own. Later
        // polls come with the caller's waker.
        match forward.advance(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => Promise::ok(()),
            Poll::Ready(Err(error)) => Promise::err(error),
            Poll::Pending => Promise::from_future(forward),
        }
    }

    /// A remote member's own request: see `direct`.
    fn new_request(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        size_hint: Option<capnp::MessageSize>,
    ) -> Option<capnp::capability::Request<capnp::any_pointer::Owned, capnp::any_pointer::Owned>>
    {
        let key = self.key.as_deref().copied();
        super::direct::request(&self.shared, key, interface_id, method_id, size_hint)
    }

    /// The group's identity, or the keyed view's own.
    fn identity(self: &Rc<Self>) -> usize {
        match &self.key {
            Some(key) => Rc::as_ptr(key) as usize,
            None => Rc::as_ptr(&self.shared) as usize,
        }
    }
}

/// A call's params and results, lent to one member at a time.
struct Lent {
    params: Box<dyn ParamsHook>,
    /// Here while no member holds them.
    results: RefCell<Option<Box<dyn ResultsHook>>>,
}

/// The params as a member sees them.
struct LentParams(Rc<Lent>);

impl ParamsHook for LentParams {
    fn get(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.0.params.get()
    }
}

/// The results as a member sees them: given back to the group if the
/// member drops them without handing them on in a tail call.
struct LentResults {
    inner: Option<Box<dyn ResultsHook>>,
    lent: Rc<Lent>,
}

impl LentResults {
    fn gone() -> capnp::Error {
        capnp::Error::failed("the results of this call were handed on already".into())
    }
}

impl ResultsHook for LentResults {
    fn get(&mut self) -> capnp::Result<capnp::any_pointer::Builder<'_>> {
        match &mut self.inner {
            Some(inner) => inner.get(),
            None => Err(LentResults::gone()),
        }
    }

    fn set_pipeline(&mut self) -> capnp::Result<()> {
        match &mut self.inner {
            Some(inner) => inner.set_pipeline(),
            None => Err(LentResults::gone()),
        }
    }

    fn allow_cancellation(&self) {
        if let Some(inner) = &self.inner {
            inner.allow_cancellation();
        }
    }

    fn tail_call(mut self: Box<Self>, request: Box<dyn RequestHook>) -> Promise<(), capnp::Error> {
        match self.inner.take() {
            Some(inner) => inner.tail_call(request),
            None => Promise::err(LentResults::gone()),
        }
    }

    fn direct_tail_call(
        mut self: Box<Self>,
        request: Box<dyn RequestHook>,
    ) -> (Promise<(), capnp::Error>, Box<dyn PipelineHook>) {
        match self.inner.take() {
            Some(inner) => inner.direct_tail_call(request),
            None => {
                let broken = capnp_rpc::new_broken_cap(LentResults::gone());
                let pipeline = broken.hook.new_call(0, 0, None).send().pipeline.hook;
                (Promise::err(LentResults::gone()), pipeline)
            }
        }
    }
}

impl Drop for LentResults {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            *self.lent.results.borrow_mut() = Some(inner);
        }
    }
}

/// The call on the member it was last handed to.
struct Current {
    member: Rc<Member>,
    promise: Promise<(), capnp::Error>,
}

/// One call through the call-one face, until it settles.
struct Forward {
    shared: Rc<Shared>,
    key: Option<u64>,
    interface_id: u64,
    method_id: u16,
    lent: Rc<Lent>,
    /// Members that refused it (empty, so no allocation, unless one did).
    tried: Vec<MemberId>,
    last_error: Option<capnp::Error>,
    current: Option<Current>,
}

impl Forward {
    fn advance(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), capnp::Error>> {
        loop {
            let at_once = self.current.is_none();
            if at_once {
                let results = self.lent.results.borrow_mut().take();
                let (Some(results), Some(member)) =
                    (results, self.shared.pick(self.key, &self.tried))
                else {
                    let error = self
                        .last_error
                        .take()
                        .unwrap_or_else(|| self.shared.no_member().into());
                    return Poll::Ready(Err(error));
                };
                member.begin();
                let promise = member.hook.call(
                    self.interface_id,
                    self.method_id,
                    Box::new(LentParams(self.lent.clone())),
                    Box::new(LentResults {
                        inner: Some(results),
                        lent: self.lent.clone(),
                    }),
                );
                self.current = Some(Current { member, promise });
            }
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            let outcome = match Pin::new(&mut current.promise).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(outcome) => outcome,
            };
            let Some(Current { member, .. }) = self.current.take() else {
                continue;
            };
            let error = match outcome {
                Ok(()) => {
                    settled(&self.shared, &member, None);
                    return Poll::Ready(Ok(()));
                }
                Err(error) => error,
            };
            let kind = Error::from(error.clone());
            settled(&self.shared, &member, Some(&kind));
            let returned = self.lent.results.borrow().is_some();
            if returned && refused_before_delivery(&kind, at_once, member.remote) {
                tracing::debug!(
                    group = %self.shared.name,
                    member = %member.id,
                    error = %Untrusted(&kind),
                    "member refused the call before delivery; trying another"
                );
                self.tried.push(member.id);
                self.last_error = Some(error);
                continue;
            }
            return Poll::Ready(Err(error));
        }
    }
}

impl Future for Forward {
    type Output = Result<(), capnp::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.advance(cx)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        // The caller gave up: the call no longer counts as in flight.
        if let Some(current) = self.current.take() {
            current.member.end();
        }
    }
}
