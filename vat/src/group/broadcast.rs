//! Calling every member (call-all), and one-way sends to one member or to
//! all (tell-one, tell-all).

use std::future::Future;
use std::rc::Rc;

use capnp::capability::FromClientHook;
use captp::log::Untrusted;

use super::handle::Group;
use super::member::{Member, MemberId};
use super::state::{settled, Shared};
use crate::error::Error;

/// One member's answer to a call made on every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<T> {
    /// Who answered.
    pub member: MemberId,
    /// What it answered, or why its call failed.
    pub outcome: Result<T, Error>,
}

impl Group {
    /// Calls every member: `call` gets each member's capability (typed as
    /// the members' interface `C`), makes the call and reads the answer.
    /// Resolves once every member has answered, with one [`Reply`] per
    /// member in the order they joined, errors included. Members the group
    /// believes unreachable are called too: their replies say why they
    /// fail (a member that waits for its vat, such as a healing reference,
    /// delays the whole answer by as long as it waits).
    ///
    /// ```
    /// # let vat = vat::VatHandle::start("doc").unwrap();
    /// # vat.run_async(|| async {
    /// use schema::demo_capnp::counter;
    /// let group = vat::group::Group::new("counters", vat::group::Strategy::RoundRobin);
    /// for _ in 0..3 {
    ///     let worker: counter::Client = vat::export(vat::demo::Counter::default());
    ///     group.join(worker).keep();
    /// }
    /// let replies = group
    ///     .call_all(|worker: counter::Client| async move {
    ///         let mut add = worker.add_request();
    ///         add.get().set_by(2);
    ///         Ok(add.send().promise.await?.get()?.get_value())
    ///     })
    ///     .await;
    /// assert_eq!(replies.len(), 3);
    /// assert!(replies.iter().all(|reply| reply.outcome == Ok(2)));
    /// # }).wait().unwrap();
    /// # vat.stop().unwrap();
    /// ```
    pub async fn call_all<C, T, F, Fut>(&self, mut call: F) -> Vec<Reply<T>>
    where
        C: FromClientHook,
        F: FnMut(C) -> Fut,
        Fut: Future<Output = Result<T, capnp::Error>>,
    {
        let members = self.shared.snapshot();
        let calls = members.iter().map(|member| {
            let sent = call(C::new(member.hook.add_ref()));
            counted(&self.shared, member, sent)
        });
        let outcomes = futures::future::join_all(calls).await;
        members
            .iter()
            .zip(outcomes)
            .map(|(member, outcome)| Reply {
                member: member.id,
                outcome,
            })
            .collect()
    }

    /// Sends one one-way message through the call-one face: `send` gets
    /// the face (typed as `C`) and makes the call; the answer is dropped.
    /// The message goes to one member by the strategy, exactly as a call
    /// would (so a refusal before delivery moves it to another member). A
    /// failure is logged by this vat (a warning naming the group), since
    /// nobody waits for it.
    ///
    /// ```
    /// # let vat = vat::VatHandle::start("doc").unwrap();
    /// # vat.run(|| {
    /// use schema::demo_capnp::counter;
    /// let group = vat::group::Group::new("counters", vat::group::Strategy::RoundRobin);
    /// let worker: counter::Client = vat::export(vat::demo::Counter::default());
    /// group.join(worker).keep();
    /// group.tell_one(|counters: counter::Client| {
    ///     let mut add = counters.add_request();
    ///     add.get().set_by(1);
    ///     add.send().promise
    /// });
    /// # }).wait().unwrap();
    /// # vat.stop().unwrap();
    /// ```
    ///
    /// # Panics
    /// Outside a vat.
    pub fn tell_one<C, T, F, Fut>(&self, send: F)
    where
        C: FromClientHook,
        F: FnOnce(C) -> Fut,
        Fut: Future<Output = Result<T, capnp::Error>> + 'static,
        T: 'static,
    {
        let sent = send(self.client());
        let group = self.shared.name.clone();
        vat_env::spawn(async move {
            if let Err(error) = sent.await {
                tracing::warn!(%group, error = %Untrusted(Error::from(error)), "a one-way message to a member failed");
            }
        });
    }

    /// Sends one one-way message to every member: `send` gets each
    /// member's capability and makes the call; the answers are dropped.
    /// Failures are logged by this vat, one warning per member that failed.
    ///
    /// ```
    /// # let vat = vat::VatHandle::start("doc").unwrap();
    /// # vat.run(|| {
    /// use schema::demo_capnp::counter;
    /// let group = vat::group::Group::new("counters", vat::group::Strategy::RoundRobin);
    /// let worker: counter::Client = vat::export(vat::demo::Counter::default());
    /// group.join(worker).keep();
    /// group.tell_all(|worker: counter::Client| {
    ///     let mut add = worker.add_request();
    ///     add.get().set_by(1);
    ///     add.send().promise
    /// });
    /// # }).wait().unwrap();
    /// # vat.stop().unwrap();
    /// ```
    ///
    /// # Panics
    /// Outside a vat.
    pub fn tell_all<C, T, F, Fut>(&self, mut send: F)
    where
        C: FromClientHook,
        F: FnMut(C) -> Fut,
        Fut: Future<Output = Result<T, capnp::Error>> + 'static,
        T: 'static,
    {
        for member in self.shared.snapshot() {
            let sent = send(C::new(member.hook.add_ref()));
            let shared = self.shared.clone();
            vat_env::spawn(async move {
                if let Err(error) = counted(&shared, &member, sent).await {
                    tracing::warn!(
                        group = %shared.name,
                        member = %member.id,
                        error = %Untrusted(&error),
                        "a one-way message to a member failed"
                    );
                }
            });
        }
    }
}

/// Awaits one call on `member`, counting it in flight and learning from its
/// failure whether the member is reachable.
pub(crate) async fn counted<T>(
    shared: &Rc<Shared>,
    member: &Member,
    call: impl Future<Output = Result<T, capnp::Error>>,
) -> Result<T, Error> {
    member.begin();
    // Ends the count also if the caller stops waiting.
    struct Count<'a>(&'a Member, bool);
    impl Drop for Count<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.end();
            }
        }
    }
    let mut count = Count(member, false);
    let outcome = call.await.map_err(Error::from);
    count.1 = true;
    settled(shared, member, outcome.as_ref().err());
    outcome
}
