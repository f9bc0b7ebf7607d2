//! Bringing unreachable members back: a task of the group's vat sends each
//! of them a probe, with backoff, until it answers.
//!
//! The probe is `Probe.ping` (`schema/capnp/group.capnp`), an interface no
//! member implements: an `unimplemented` answer proves the member's vat
//! answers again, and the call does nothing there. A healing or supervised
//! member holds the probe until its vat or its next incarnation is back,
//! so it is answered as soon as the member can serve.

use std::rc::{Rc, Weak};

use capnp::capability::FromClientHook;
use schema::group_capnp::probe;

use super::member::Member;
use super::state::Shared;
use crate::error::{Error, ErrorKind};

/// Starts the probing task of `shared`, unless it runs already.
pub(crate) fn start(shared: &Rc<Shared>) {
    if shared.probing.replace(true) {
        return;
    }
    let weak = Rc::downgrade(shared);
    vat_env::spawn(run(weak));
}

async fn run(weak: Weak<Shared>) {
    loop {
        let wake = {
            // The group is gone: nobody needs its members back.
            let Some(shared) = weak.upgrade() else { return };
            let down = shared.unreachable();
            if down.is_empty() {
                shared.probing.set(false);
                return;
            }
            let now = vat_env::now();
            for member in down.iter().filter(|m| m.probe_due(now)) {
                member.set_probing(true);
                vat_env::spawn(probe_one(weak.clone(), member.clone()));
            }
            down.iter()
                .filter_map(|m| m.next_probe())
                .min()
                .unwrap_or(now + shared.probe.initial)
                .max(now + shared.probe.initial / 4)
        };
        vat_env::sleep_until(wake).await;
    }
}

async fn probe_one(weak: Weak<Shared>, member: Rc<Member>) {
    let Some(timeout) = weak.upgrade().map(|s| s.probe.timeout) else {
        return;
    };
    let client = probe::Client::new(member.hook.add_ref());
    let outcome = vat_env::timeout(timeout, client.ping_request().send().promise).await;
    let answered = match outcome {
        Err(_elapsed) => false,
        Ok(Ok(_)) => true,
        Ok(Err(error)) => answers(Error::from(error).kind()),
    };
    member.set_probing(false);
    let Some(shared) = weak.upgrade() else { return };
    if answered {
        if member.mark_up() {
            tracing::info!(group = %shared.name, member = %member.id, "member answers again");
        }
    } else {
        member.probe_failed(shared.probe.max);
        tracing::debug!(group = %shared.name, member = %member.id, "probe unanswered");
    }
}

/// Whether a probe that failed with `kind` was answered by a live member:
/// it does not implement `Probe` (as expected), or refused it itself.
fn answers(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Unimplemented | ErrorKind::Failed | ErrorKind::InvalidArgument
    )
}
