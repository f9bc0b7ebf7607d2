//! The management capability (`Group` in `schema/capnp/group.capnp`): the
//! call-one face (plain or keyed), joining, listing, and calling every
//! member over the wire.

use std::cell::RefCell;
use std::rc::Rc;

use captp::log::Untrusted;
use schema::group_capnp::{group, membership};

use super::broadcast::counted;
use super::handle::Group;
use super::member::Membership;
use crate::error::{Error, ErrorKind};

impl Group {
    /// The group's management capability: `caller` (the call-one face,
    /// optionally keyed), `join`, `members`, `callAll` and `tellAll`, for
    /// holders in any vat (see `schema/capnp/group.capnp`). Holding it is
    /// the authority to add members and to call all of them.
    ///
    /// ```
    /// # let vat = vat::VatHandle::start("doc").unwrap();
    /// # vat.run_async(|| async {
    /// use schema::demo_capnp::counter;
    /// let group = vat::group::Group::new("counters", vat::group::Strategy::RoundRobin);
    /// let service = group.service();
    /// let worker: counter::Client = vat::export(vat::demo::Counter::default());
    /// let mut join = service.join_request();
    /// join.get().init_member().set_as_capability(worker.client.hook);
    /// // The member stays in while `membership` is held.
    /// let membership = join.send().promise.await.unwrap().get().unwrap().get_membership().unwrap();
    /// assert_eq!(group.len(), 1);
    /// membership.leave_request().send().promise.await.unwrap();
    /// assert_eq!(group.len(), 0);
    /// # }).wait().unwrap();
    /// # vat.stop().unwrap();
    /// ```
    pub fn service(&self) -> group::Client {
        crate::export(Service {
            group: self.clone(),
        })
    }
}

struct Service {
    group: Group,
}

impl group::Server for Service {
    async fn caller(
        self: Rc<Self>,
        params: group::CallerParams,
        mut results: group::CallerResults,
    ) -> Result<(), capnp::Error> {
        let key = params.get()?.get_key()?;
        let caller: capnp::capability::Client = if key.is_empty() {
            self.group.client()
        } else {
            self.group.with_key(key)
        };
        results.get().init_caller().set_as_capability(caller.hook);
        Ok(())
    }

    async fn join(
        self: Rc<Self>,
        params: group::JoinParams,
        mut results: group::JoinResults,
    ) -> Result<(), capnp::Error> {
        let member: capnp::capability::Client = params.get()?.get_member().get_as_capability()?;
        let membership = self.group.join(member);
        let held: membership::Client = crate::export(Held {
            membership: RefCell::new(Some(membership)),
        });
        results.get().set_membership(held);
        Ok(())
    }

    async fn members(
        self: Rc<Self>,
        _: group::MembersParams,
        mut results: group::MembersResults,
    ) -> Result<(), capnp::Error> {
        let infos = self.group.members();
        let mut list = results.get().init_members(len(infos.len())?);
        for (i, info) in infos.iter().enumerate() {
            let mut entry = list.reborrow().get(len(i)?);
            entry.set_id(info.id.get());
            entry.set_reachable(info.reachable);
            entry.set_in_flight(info.in_flight);
            entry.set_calls(info.calls);
        }
        Ok(())
    }

    async fn call_all(
        self: Rc<Self>,
        params: group::CallAllParams,
        mut results: group::CallAllResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let (interface_id, method_id) = (params.get_interface_id(), params.get_method_id());
        let content = params.get_params();
        let members = self.group.shared.snapshot();
        let mut sent = Vec::with_capacity(members.len());
        for member in &members {
            let mut request = member.hook.new_call(interface_id, method_id, None);
            request.get().set_as(content)?;
            sent.push(counted(&self.group.shared, member, request.send().promise));
        }
        let outcomes = futures::future::join_all(sent).await;
        let mut replies = results.get().init_replies(len(members.len())?);
        for (i, (member, outcome)) in members.iter().zip(outcomes).enumerate() {
            let mut reply = replies.reborrow().get(len(i)?);
            reply.set_member(member.id.get());
            match &outcome {
                Ok(response) => match response.get() {
                    Ok(answer) => reply.init_ok().set_as(answer)?,
                    Err(error) => reply.set_error(Error::from(error).to_string().as_str()),
                },
                Err(error) => reply.set_error(error.to_string().as_str()),
            }
        }
        Ok(())
    }

    async fn tell_all(
        self: Rc<Self>,
        params: group::TellAllParams,
        _: group::TellAllResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let (interface_id, method_id) = (params.get_interface_id(), params.get_method_id());
        let content = params.get_params();
        let shared = self.group.shared.clone();
        for member in shared.snapshot() {
            let mut request = member.hook.new_call(interface_id, method_id, None);
            request.get().set_as(content)?;
            let sent = request.send().promise;
            let shared = shared.clone();
            vat_env::spawn(async move {
                if let Err(error) = counted(&shared, &member, sent).await {
                    tracing::warn!(group = %shared.name, member = %member.id, error = %Untrusted(&error), "a one-way message to a member failed");
                }
            });
        }
        Ok(())
    }
}

/// A list length or index as Cap'n Proto wants it.
fn len(n: usize) -> Result<u32, capnp::Error> {
    u32::try_from(n).map_err(|_| {
        Error::new(
            ErrorKind::Overloaded,
            format!("{n} members are too many for one list"),
        )
        .into()
    })
}

/// A membership held by another vat: released, it takes the member out.
struct Held {
    membership: RefCell<Option<Membership>>,
}

impl membership::Server for Held {
    async fn leave(
        self: Rc<Self>,
        _: membership::LeaveParams,
        _: membership::LeaveResults,
    ) -> Result<(), capnp::Error> {
        let membership = self.membership.borrow_mut().take();
        if let Some(membership) = membership {
            membership.leave();
        }
        Ok(())
    }
}
