//! Making a group: its name, strategy and how it probes unreachable members.

use std::rc::Rc;
use std::time::Duration;

use super::handle::Group;
use super::state::Shared;
use super::strategy::Strategy;

/// How a group brings back members it skips as unreachable (see
/// [`Group`]): it probes each one, waiting `initial` before the first
/// probe and twice as long after each unanswered one, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// The pause before the first probe. Default: 50 ms.
    pub initial: Duration,
    /// The longest pause between probes. Default: 1 s.
    pub max: Duration,
    /// How long a probe may take before it counts as unanswered. Default: 2 s.
    pub timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> ProbeOptions {
        ProbeOptions {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Builds a [`Group`] with options beyond [`Group::new`]'s.
///
/// ```
/// # let vat = vat::VatHandle::start("doc").unwrap();
/// # vat.run(|| {
/// use std::time::Duration;
/// use vat::group::{GroupBuilder, ProbeOptions, Strategy};
/// let group = GroupBuilder::new("workers")
///     .strategy(Strategy::LeastInFlight)
///     .probe(ProbeOptions { initial: Duration::from_millis(20), ..ProbeOptions::default() })
///     .build();
/// assert_eq!(group.strategy(), Strategy::LeastInFlight);
/// # }).wait().unwrap();
/// # vat.stop().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct GroupBuilder {
    name: String,
    strategy: Strategy,
    probe: ProbeOptions,
    resend_remote_refusals: bool,
}

impl GroupBuilder {
    /// A group named `name` (for logs and errors), round-robin, default probes.
    pub fn new(name: impl Into<String>) -> GroupBuilder {
        GroupBuilder {
            name: name.into(),
            strategy: Strategy::default(),
            probe: ProbeOptions::default(),
            resend_remote_refusals: false,
        }
    }

    /// How calls on the call-one face pick a member.
    pub fn strategy(mut self, strategy: Strategy) -> GroupBuilder {
        self.strategy = strategy;
        self
    }

    /// How unreachable members are probed.
    pub fn probe(mut self, probe: ProbeOptions) -> GroupBuilder {
        self.probe = probe;
        self
    }

    /// Whether a call that a remote member's vat refuses *after* it was
    /// sent — captp's calls-in-flight or bytes-in-flight bound, answered
    /// `Overloaded` without delivering it — goes to another member.
    ///
    /// Default `false`: a call on the call-one face to a member of another
    /// vat is built directly in that connection's outgoing message, which
    /// saves copying its params and results (about 2.5 µs a call), and
    /// such a refusal reaches the caller as it is (`Overloaded` proves the
    /// call was not delivered, so the caller may retry it). A member whose
    /// connection is already gone still has the call go to another member.
    /// `true`: the group lends such calls to remote members as it does to
    /// local ones, keeping their params to send a refused call elsewhere.
    pub fn resend_remote_refusals(mut self, resend: bool) -> GroupBuilder {
        self.resend_remote_refusals = resend;
        self
    }

    /// The group, empty. It lives in the current vat (it is `!Send`); its
    /// capabilities reach it from anywhere.
    pub fn build(self) -> Group {
        Group::from_shared(Rc::new(Shared::new(
            self.name,
            self.strategy,
            self.probe,
            self.resend_remote_refusals,
        )))
    }
}
