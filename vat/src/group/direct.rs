//! The call-one face's fast path for members of other vats: the caller
//! gets the member's own request, built in the connection's outgoing
//! message, instead of a local request the group would copy into one.
//!
//! The member is picked when the request is made, before any params
//! exist. capnp-rpc makes a request whose brand is 0 (a broken one) when
//! the member's connection has already ended: nothing can have been
//! written, so the group marks the member and picks another, as it does
//! for a call refused at once on the lending path. What comes after the
//! send is the caller's: the params are in the member's message, so a
//! refusal answered later (captp's `Overloaded`) cannot go elsewhere.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use capnp::any_pointer;
use capnp::capability::{Promise, RemotePromise, Request};
use capnp::private::capability::{PipelineHook, RequestHook};
use captp::log::Untrusted;
use futures::FutureExt;

use super::member::{Member, MemberId};
use super::state::{settled, Shared};
use crate::error::Error;

/// The member's own request for a call on the call-one face (bound to
/// `key`, for a keyed view), or `None` when the call should be lent instead: the group resends
/// remote refusals, or the member picked is not a connection's capability
/// (a local member is called directly either way, with nothing to copy).
pub(crate) fn request(
    shared: &Rc<Shared>,
    key: Option<u64>,
    interface_id: u64,
    method_id: u16,
    size_hint: Option<capnp::MessageSize>,
) -> Option<Request<any_pointer::Owned, any_pointer::Owned>> {
    if shared.resend_remote_refusals || !shared.has_remote() {
        return None;
    }
    let mut tried: Vec<MemberId> = Vec::new();
    let mut last_error: Option<capnp::Error> = None;
    loop {
        let cursor = shared.cursor();
        let Some(member) = shared.pick(key, &tried) else {
            // Every member was refused: the caller gets the last refusal,
            // as on the lending path. With no member at all, that path
            // makes the error.
            let error = last_error?;
            let broken = capnp_rpc::new_broken_cap(error);
            return Some(broken.hook.new_call(interface_id, method_id, size_hint));
        };
        if !member.asks_for_requests() {
            // The lending path picks again from the same place: the same
            // member for round-robin and least in flight.
            shared.restore_cursor(cursor);
            return None;
        }
        let request = member.hook.new_call(interface_id, method_id, size_hint);
        if request.hook.get_brand() != 0 {
            return Some(Request::new(Box::new(Counted {
                inner: request.hook,
                member,
                shared: shared.clone(),
            })));
        }
        if !member.remote {
            // A forwarding member not connected now: its request is dropped
            // unsent, and the call is lent to it, to wait as its own do.
            shared.restore_cursor(cursor);
            return None;
        }
        // The connection is gone: the broken request fails at once with
        // its reason, and no call was written.
        let error = request
            .send()
            .promise
            .now_or_never()
            .and_then(Result::err)
            .unwrap_or_else(|| {
                capnp::Error::disconnected("the member's connection has ended".into())
            });
        member.begin();
        settled(shared, &member, Some(&Error::from(error.clone())));
        tracing::debug!(
            group = %shared.name,
            member = %member.id,
            error = %Untrusted(&error),
            "member's connection has ended; trying another"
        );
        tried.push(member.id);
        last_error = Some(error);
    }
}

/// A member's request, counted as the member's call in flight from its
/// send until it settles (or its caller drops it).
struct Counted {
    inner: Box<dyn RequestHook>,
    member: Rc<Member>,
    shared: Rc<Shared>,
}

impl Counted {
    fn watch<T>(
        member: Rc<Member>,
        shared: Rc<Shared>,
        promise: Promise<T, capnp::Error>,
    ) -> Promise<T, capnp::Error>
    where
        T: Unpin + 'static,
    {
        Promise::from_future(Watched {
            promise,
            member: Some(member),
            shared,
        })
    }
}

impl RequestHook for Counted {
    fn get(&mut self) -> any_pointer::Builder<'_> {
        self.inner.get()
    }

    fn get_brand(&self) -> usize {
        self.inner.get_brand()
    }

    fn send(self: Box<Self>) -> RemotePromise<any_pointer::Owned> {
        let Counted {
            inner,
            member,
            shared,
        } = *self;
        member.begin();
        let RemotePromise { promise, pipeline } = inner.send();
        RemotePromise {
            promise: Counted::watch(member, shared, promise),
            pipeline,
        }
    }

    fn send_streaming(self: Box<Self>) -> Promise<(), capnp::Error> {
        let Counted {
            inner,
            member,
            shared,
        } = *self;
        member.begin();
        Counted::watch(member, shared, inner.send_streaming())
    }

    fn tail_send(
        self: Box<Self>,
    ) -> Option<(u32, Promise<(), capnp::Error>, Box<dyn PipelineHook>)> {
        let Counted {
            inner,
            member,
            shared,
        } = *self;
        let (question, promise, pipeline) = inner.tail_send()?;
        member.begin();
        Some((question, Counted::watch(member, shared, promise), pipeline))
    }
}

/// The promise of a sent member request: settles the member's count and
/// what the group believes of it, like a lent call.
struct Watched<T> {
    promise: Promise<T, capnp::Error>,
    /// Until the call settles.
    member: Option<Rc<Member>>,
    shared: Rc<Shared>,
}

impl<T: Unpin> Future for Watched<T> {
    type Output = Result<T, capnp::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = match Pin::new(&mut self.promise).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(outcome) => outcome,
        };
        if let Some(member) = self.member.take() {
            let failure = outcome.as_ref().err().map(|e| Error::from(e.clone()));
            settled(&self.shared, &member, failure.as_ref());
        }
        Poll::Ready(outcome)
    }
}

impl<T> Drop for Watched<T> {
    fn drop(&mut self) {
        // The caller gave up: the call no longer counts as in flight.
        if let Some(member) = self.member.take() {
            member.end();
        }
    }
}
