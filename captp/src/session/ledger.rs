//! The per-connection accounts behind [`Limits`]: a mirror of capnp-rpc's
//! question, answer, import and export tables, kept from the messages that
//! pass through the connection in both directions.
//!
//! capnp-rpc keeps its tables private and unbounded, so the connection
//! watches every message instead and follows the same rules capnp-rpc
//! follows when it adds and removes entries. A message the ledger cannot
//! decode is delivered untouched: capnp-rpc decodes it too and ends the
//! connection with its own error.

use std::collections::{HashMap, HashSet};

use capnp_rpc::rpc_capnp::{
    call, cap_descriptor, finish, message, message_target, payload, resolve, return_,
};

use crate::Limits;

/// What to do with a message the peer sent.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Hand it to capnp-rpc.
    Deliver,
    /// A call the vat will not run: answer it with an `overloaded`
    /// exception and release the capabilities it carried.
    Refuse(Refusal),
    /// A message about a refused call that capnp-rpc never saw: drop it.
    Swallow,
    /// The peer broke a bound: end the connection.
    Exceeded(Exceeded),
}

/// A call answered with `overloaded` instead of being delivered.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    /// The peer's question id, to answer.
    pub question_id: u32,
    /// The peer's capabilities the call carried, one entry per reference.
    pub releases: Vec<u32>,
    /// Why, for the exception's reason.
    pub reason: String,
}

/// A bound the peer broke, with the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Exceeded {
    /// The name of the [`Limits`] field.
    pub bound: &'static str,
    /// What was counted.
    pub what: &'static str,
    /// The count that broke it.
    pub count: usize,
    /// The bound.
    pub max: usize,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connection limit {} exceeded: {} reached {} (at most {})",
            self.bound, self.what, self.count, self.max
        )
    }
}

/// One of the peer's questions that the vat holds an answer for.
#[derive(Debug, Default)]
struct Answer {
    /// The vat sent its return (or refused the call).
    returned: bool,
    /// The peer sent its finish.
    finished: bool,
    /// Answered with `overloaded` by the connection; capnp-rpc never saw it.
    refused: bool,
    /// Size of the call message while it is in flight (capnp-rpc holds it).
    bytes: usize,
    /// Exports sent in the return, released if the finish says so.
    result_exports: Vec<u32>,
    /// A bootstrap request, not a call: it does not make the connection
    /// in use.
    bootstrap: bool,
}

/// One of the vat's questions to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    /// Awaiting its return.
    Awaiting,
    /// Finished by the vat before the return came: capnp-rpc will ignore
    /// the capabilities in the return, and the peer releases them itself.
    Canceled,
}

/// The accounts of one connection.
#[derive(Debug)]
pub(super) struct Ledger {
    limits: Limits,
    answers: HashMap<u32, Answer>,
    calls_in_flight: usize,
    call_bytes_in_flight: usize,
    questions: HashMap<u32, Question>,
    imports: HashMap<u32, u32>,
    exports: HashMap<u32, u32>,
    /// Calls refused since the last one delivered (for the log).
    refused_in_a_row: u64,
    /// The vat's bootstrap questions awaiting their return.
    bootstrap_questions: HashSet<u32>,
    /// References in `imports` that came with the peer's bootstrap.
    bootstrap_imports: HashMap<u32, u32>,
    /// References in `exports` that went with the vat's bootstrap.
    bootstrap_exports: HashMap<u32, u32>,
    /// Whether the peer's answer to the vat's bootstrap carried a
    /// capability; `None` until it came.
    peer_bootstrap: Option<bool>,
}

impl Ledger {
    pub(super) fn new(limits: Limits) -> Ledger {
        Ledger {
            limits,
            answers: HashMap::new(),
            calls_in_flight: 0,
            call_bytes_in_flight: 0,
            questions: HashMap::new(),
            imports: HashMap::new(),
            exports: HashMap::new(),
            refused_in_a_row: 0,
            bootstrap_questions: HashSet::new(),
            bootstrap_imports: HashMap::new(),
            bootstrap_exports: HashMap::new(),
            peer_bootstrap: None,
        }
    }

    /// Whether anything but the two bootstrap capabilities is outstanding:
    /// a question either way not yet answered and finished, or a
    /// capability either side holds of the other.
    pub(super) fn in_use(&self) -> bool {
        let beyond = |table: &HashMap<u32, u32>, bootstrap: &HashMap<u32, u32>| {
            table
                .iter()
                .any(|(id, held)| *held > bootstrap.get(id).copied().unwrap_or(0))
        };
        self.questions
            .keys()
            .any(|id| !self.bootstrap_questions.contains(id))
            || self.answers.values().any(|a| !a.bootstrap)
            || beyond(&self.imports, &self.bootstrap_imports)
            || beyond(&self.exports, &self.bootstrap_exports)
    }

    /// Whether the peer offered a bootstrap capability; `None` until its
    /// answer came.
    pub(super) fn peer_bootstrap(&self) -> Option<bool> {
        self.peer_bootstrap
    }

    /// Accounts for a message from the peer of `bytes` bytes and says what
    /// to do with it.
    pub(super) fn incoming(&mut self, body: message::Reader<'_>, bytes: usize) -> Verdict {
        let verdict = match body.which() {
            Ok(message::Call(Ok(call))) => self.incoming_call(call, bytes),
            Ok(message::Bootstrap(Ok(bootstrap))) => {
                let question_id = bootstrap.get_question_id();
                let verdict = self.incoming_question(question_id, 0);
                if let Some(answer) = self.answers.get_mut(&question_id) {
                    answer.bootstrap = true;
                }
                verdict
            }
            Ok(message::Return(Ok(ret))) => self.incoming_return(ret),
            Ok(message::Finish(Ok(finish))) => self.incoming_finish(finish),
            Ok(message::Resolve(Ok(resolve))) => match resolve.which() {
                Ok(resolve::Cap(Ok(cap))) => {
                    self.import(cap);
                    self.check_imports()
                }
                _ => Verdict::Deliver,
            },
            Ok(message::Release(Ok(release))) => {
                self.release_export(release.get_id(), release.get_reference_count());
                Verdict::Deliver
            }
            Ok(message::Unimplemented(Ok(echoed))) => {
                // capnp-rpc releases the export it named in a Resolve the
                // peer did not understand.
                if let Ok(message::Resolve(Ok(resolve))) = echoed.which() {
                    if let Ok(resolve::Cap(Ok(cap))) = resolve.which() {
                        if let Some(id) = sender_export(cap) {
                            self.release_export(id, 1);
                        }
                    }
                }
                Verdict::Deliver
            }
            _ => Verdict::Deliver,
        };
        if let Verdict::Refuse(refusal) = &verdict {
            self.refused_in_a_row += 1;
            // One line per run of refusals, not one per call.
            if self.refused_in_a_row == 1 {
                tracing::warn!(
                    in_flight = self.calls_in_flight,
                    max_calls_in_flight = self.limits.max_calls_in_flight,
                    bytes_in_flight = self.call_bytes_in_flight,
                    max_bytes_in_flight = self.limits.max_bytes_in_flight,
                    reason = %refusal.reason,
                    "the peer has too many calls in flight; refusing its further calls with overloaded"
                );
            }
        }
        verdict
    }

    fn incoming_call(&mut self, call: call::Reader<'_>, bytes: usize) -> Verdict {
        let question_id = call.get_question_id();
        if let Some(answer) = self.answers.get(&question_id) {
            if answer.refused {
                return Verdict::Exceeded(Exceeded {
                    bound: "protocol",
                    what: "calls on a question id the peer had not finished",
                    count: 1,
                    max: 0,
                });
            }
            // capnp-rpc ends the connection for reusing a question id.
            return Verdict::Deliver;
        }
        let on_refused = match call.get_target().map(|t| t.which()) {
            Ok(Ok(message_target::PromisedAnswer(Ok(promised)))) => self
                .answers
                .get(&promised.get_question_id())
                .is_some_and(|a| a.refused),
            _ => false,
        };
        let too_many = self.calls_in_flight >= self.limits.max_calls_in_flight;
        // One call alone is never refused for its size: the message size
        // bound already applies to it.
        let too_big = self.calls_in_flight > 0
            && self.call_bytes_in_flight.saturating_add(bytes) > self.limits.max_bytes_in_flight;
        if on_refused || too_many || too_big {
            if let Some(exceeded) = self.answers_full() {
                return Verdict::Exceeded(exceeded);
            }
            let reason = if on_refused {
                "this call was pipelined on a call the vat refused".to_string()
            } else if too_many {
                format!(
                    "{} calls from this connection are in flight (max_calls_in_flight is {}); \
                     retry later",
                    self.calls_in_flight, self.limits.max_calls_in_flight
                )
            } else {
                format!(
                    "calls in flight from this connection hold {} bytes in the vat \
                     (max_bytes_in_flight is {}); retry later",
                    self.call_bytes_in_flight, self.limits.max_bytes_in_flight
                )
            };
            // Never delivered: the caller may send it elsewhere, or again.
            let reason = crate::delivery::not_delivered(&reason);
            self.answers.insert(
                question_id,
                Answer {
                    returned: true,
                    refused: true,
                    ..Answer::default()
                },
            );
            let releases = call
                .get_params()
                .ok()
                .map(|params| sender_exports(params))
                .unwrap_or_default();
            return Verdict::Refuse(Refusal {
                question_id,
                releases,
                reason,
            });
        }
        if let Ok(params) = call.get_params() {
            for id in sender_exports(params) {
                *self.imports.entry(id).or_default() += 1;
            }
        }
        if let Verdict::Exceeded(exceeded) = self.check_imports() {
            return Verdict::Exceeded(exceeded);
        }
        if self.refused_in_a_row > 0 {
            tracing::info!(
                refused = self.refused_in_a_row,
                "the peer's calls are accepted again"
            );
            self.refused_in_a_row = 0;
        }
        self.incoming_question(question_id, bytes)
    }

    /// Opens an answer for a question the peer asked (a call or a bootstrap).
    fn incoming_question(&mut self, question_id: u32, bytes: usize) -> Verdict {
        if self.answers.contains_key(&question_id) {
            return Verdict::Deliver;
        }
        if let Some(exceeded) = self.answers_full() {
            return Verdict::Exceeded(exceeded);
        }
        self.answers.insert(
            question_id,
            Answer {
                bytes,
                ..Answer::default()
            },
        );
        self.calls_in_flight += 1;
        self.call_bytes_in_flight += bytes;
        Verdict::Deliver
    }

    fn answers_full(&self) -> Option<Exceeded> {
        (self.answers.len() >= self.limits.max_answers).then(|| Exceeded {
            bound: "max_answers",
            what: "answers held for the peer's unfinished questions",
            count: self.answers.len() + 1,
            max: self.limits.max_answers,
        })
    }

    fn incoming_return(&mut self, ret: return_::Reader<'_>) -> Verdict {
        let answer_id = ret.get_answer_id();
        let bootstrap = self.bootstrap_questions.remove(&answer_id);
        let awaited = self.questions.remove(&answer_id) == Some(Question::Awaiting);
        let results = match ret.which() {
            Ok(return_::Results(Ok(results))) => Some(results),
            _ => None,
        };
        if bootstrap {
            self.peer_bootstrap = Some(results.is_some_and(|r| !sender_exports(r).is_empty()));
        }
        if let (true, Some(results)) = (awaited, results) {
            for id in sender_exports(results) {
                *self.imports.entry(id).or_default() += 1;
                if bootstrap {
                    *self.bootstrap_imports.entry(id).or_default() += 1;
                }
            }
            return self.check_imports();
        }
        Verdict::Deliver
    }

    fn incoming_finish(&mut self, finish: finish::Reader<'_>) -> Verdict {
        let question_id = finish.get_question_id();
        let Some(answer) = self.answers.get_mut(&question_id) else {
            return Verdict::Deliver;
        };
        if answer.refused {
            self.answers.remove(&question_id);
            return Verdict::Swallow;
        }
        answer.finished = true;
        if finish.get_release_result_caps() {
            for id in std::mem::take(&mut answer.result_exports) {
                release_from(&mut self.exports, id, 1);
                forget_released(&self.exports, &mut self.bootstrap_exports, id);
            }
        }
        if answer.returned {
            self.answers.remove(&question_id);
        }
        Verdict::Deliver
    }

    /// The peer dropped `count` references to the vat's export `id`.
    fn release_export(&mut self, id: u32, count: u32) {
        release_from(&mut self.exports, id, count);
        forget_released(&self.exports, &mut self.bootstrap_exports, id);
    }

    fn import(&mut self, cap: cap_descriptor::Reader<'_>) {
        if let Some(id) = sender_export(cap) {
            *self.imports.entry(id).or_default() += 1;
        }
    }

    fn check_imports(&self) -> Verdict {
        if self.imports.len() > self.limits.max_imports {
            Verdict::Exceeded(Exceeded {
                bound: "max_imports",
                what: "capabilities of the peer held by the vat",
                count: self.imports.len(),
                max: self.limits.max_imports,
            })
        } else {
            Verdict::Deliver
        }
    }

    /// Accounts for a message the vat sends; says which bound the peer has
    /// made the vat break, if any.
    pub(super) fn outgoing(&mut self, body: message::Reader<'_>) -> Option<Exceeded> {
        match body.which() {
            Ok(message::Call(Ok(call))) => {
                self.questions
                    .insert(call.get_question_id(), Question::Awaiting);
                if let Ok(params) = call.get_params() {
                    self.export_all(params);
                }
                self.questions_full().or_else(|| self.exports_full())
            }
            Ok(message::Bootstrap(Ok(bootstrap))) => {
                self.questions
                    .insert(bootstrap.get_question_id(), Question::Awaiting);
                self.bootstrap_questions.insert(bootstrap.get_question_id());
                self.questions_full()
            }
            Ok(message::Finish(Ok(finish))) => {
                if let Some(question) = self.questions.get_mut(&finish.get_question_id()) {
                    *question = Question::Canceled;
                }
                None
            }
            Ok(message::Return(Ok(ret))) => self.outgoing_return(ret),
            Ok(message::Resolve(Ok(resolve))) => {
                if let Ok(resolve::Cap(Ok(cap))) = resolve.which() {
                    if let Some(id) = sender_export(cap) {
                        *self.exports.entry(id).or_default() += 1;
                    }
                }
                self.exports_full()
            }
            Ok(message::Release(Ok(release))) => {
                let id = release.get_id();
                release_from(&mut self.imports, id, release.get_reference_count());
                forget_released(&self.imports, &mut self.bootstrap_imports, id);
                None
            }
            _ => None,
        }
    }

    fn outgoing_return(&mut self, ret: return_::Reader<'_>) -> Option<Exceeded> {
        let exports = match ret.which() {
            Ok(return_::Results(Ok(results))) => self.export_all(results),
            _ => Vec::new(),
        };
        let answer_id = ret.get_answer_id();
        if let Some(answer) = self.answers.get_mut(&answer_id) {
            if answer.bootstrap {
                for &id in &exports {
                    *self.bootstrap_exports.entry(id).or_default() += 1;
                }
            }
            if !answer.returned {
                answer.returned = true;
                self.calls_in_flight = self.calls_in_flight.saturating_sub(1);
                self.call_bytes_in_flight = self.call_bytes_in_flight.saturating_sub(answer.bytes);
            }
            // capnp-rpc keeps the result exports only while it waits for the
            // finish; a return that needs none ends the answer.
            if answer.finished || ret.get_no_finish_needed() {
                self.answers.remove(&answer_id);
            } else {
                answer.result_exports = exports;
            }
        }
        self.exports_full()
    }

    /// Counts the vat's capabilities in `payload` as exported; returns them.
    fn export_all(&mut self, payload: payload::Reader<'_>) -> Vec<u32> {
        let ids = sender_exports(payload);
        for &id in &ids {
            *self.exports.entry(id).or_default() += 1;
        }
        ids
    }

    fn questions_full(&self) -> Option<Exceeded> {
        (self.questions.len() > self.limits.max_questions).then_some(Exceeded {
            bound: "max_questions",
            what: "questions to the peer it has not answered",
            count: self.questions.len(),
            max: self.limits.max_questions,
        })
    }

    fn exports_full(&self) -> Option<Exceeded> {
        (self.exports.len() > self.limits.max_exports).then_some(Exceeded {
            bound: "max_exports",
            what: "capabilities of the vat held by the peer",
            count: self.exports.len(),
            max: self.limits.max_exports,
        })
    }

    /// Answers held for the peer (for tests and logs).
    #[cfg(test)]
    fn answers(&self) -> usize {
        self.answers.len()
    }
}

/// The export id a descriptor names on the side that sent it, if it names
/// one of the sender's own capabilities.
fn sender_export(cap: cap_descriptor::Reader<'_>) -> Option<u32> {
    match cap.which() {
        Ok(cap_descriptor::SenderHosted(id) | cap_descriptor::SenderPromise(id)) => Some(id),
        _ => None,
    }
}

/// The sender's own capabilities in a payload's cap table, one entry per
/// reference.
fn sender_exports(payload: payload::Reader<'_>) -> Vec<u32> {
    match payload.get_cap_table() {
        Ok(table) => table.iter().filter_map(sender_export).collect(),
        Err(_) => Vec::new(),
    }
}

/// Drops `count` references to `id` from `table`. A release that does not
/// match is left for capnp-rpc to report.
fn release_from(table: &mut HashMap<u32, u32>, id: u32, count: u32) {
    if let Some(held) = table.get_mut(&id) {
        if count <= *held {
            *held -= count;
            if *held == 0 {
                table.remove(&id);
            }
        }
    }
}

/// Once `id` has left `table`, its bootstrap references went with it: a
/// later capability under the same (reused) id is not the bootstrap.
fn forget_released(table: &HashMap<u32, u32>, bootstrap: &mut HashMap<u32, u32>, id: u32) {
    if !table.contains_key(&id) {
        bootstrap.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // unit tests: a panic is a failed test

    use super::*;
    use capnp::message::{Builder, HeapAllocator};

    fn build(fill: impl FnOnce(message::Builder<'_>)) -> Builder<HeapAllocator> {
        let mut out = Builder::new_default();
        fill(out.init_root());
        out
    }

    fn call(question_id: u32, target: Option<u32>, caps: &[u32]) -> Builder<HeapAllocator> {
        build(|m| {
            let mut call = m.init_call();
            call.set_question_id(question_id);
            match target {
                Some(question) => call
                    .reborrow()
                    .init_target()
                    .init_promised_answer()
                    .set_question_id(question),
                None => call.reborrow().init_target().set_imported_cap(0),
            }
            let mut table = call.init_params().init_cap_table(caps.len() as u32);
            for (i, &id) in caps.iter().enumerate() {
                table.reborrow().get(i as u32).set_sender_hosted(id);
            }
        })
    }

    fn ret(answer_id: u32, caps: &[u32]) -> Builder<HeapAllocator> {
        build(|m| {
            let mut ret = m.init_return();
            ret.set_answer_id(answer_id);
            ret.set_no_finish_needed(caps.is_empty());
            let mut table = ret.init_results().init_cap_table(caps.len() as u32);
            for (i, &id) in caps.iter().enumerate() {
                table.reborrow().get(i as u32).set_sender_hosted(id);
            }
        })
    }

    fn finish(question_id: u32, release: bool) -> Builder<HeapAllocator> {
        build(|m| {
            let mut finish = m.init_finish();
            finish.set_question_id(question_id);
            finish.set_release_result_caps(release);
        })
    }

    fn release(id: u32, count: u32) -> Builder<HeapAllocator> {
        build(|m| {
            let mut release = m.init_release();
            release.set_id(id);
            release.set_reference_count(count);
        })
    }

    fn read(message: &Builder<HeapAllocator>) -> message::Reader<'_> {
        message.get_root_as_reader().unwrap()
    }

    fn limits() -> Limits {
        Limits {
            max_calls_in_flight: 2,
            max_answers: 4,
            max_imports: 2,
            max_exports: 2,
            max_questions: 2,
            ..Limits::default()
        }
    }

    #[test]
    fn calls_beyond_the_bound_are_refused_until_one_returns() {
        let mut ledger = Ledger::new(limits());
        assert_eq!(
            ledger.incoming(read(&call(1, None, &[])), 64),
            Verdict::Deliver
        );
        assert_eq!(
            ledger.incoming(read(&call(2, None, &[])), 64),
            Verdict::Deliver
        );
        let Verdict::Refuse(refusal) = ledger.incoming(read(&call(3, None, &[7, 7])), 64) else {
            panic!("the third call is refused");
        };
        assert_eq!(refusal.question_id, 3);
        assert_eq!(refusal.releases, vec![7, 7]);
        assert!(
            refusal.reason.contains("max_calls_in_flight"),
            "{}",
            refusal.reason
        );
        // Pipelined on the refused call: refused too, whatever the count.
        assert!(matches!(
            ledger.incoming(read(&call(4, Some(3), &[])), 64),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            ledger.incoming(read(&finish(3, true)), 64),
            Verdict::Swallow
        );
        assert_eq!(ledger.outgoing(read(&ret(1, &[]))), None);
        assert_eq!(
            ledger.incoming(read(&call(5, None, &[])), 64),
            Verdict::Deliver
        );
        assert_eq!(ledger.answers(), 3, "2, 4 (refused, unfinished) and 5");
    }

    #[test]
    fn unfinished_answers_fill_the_answer_table() {
        let mut ledger = Ledger::new(limits());
        for id in 0..4 {
            assert_eq!(
                ledger.incoming(read(&call(id, None, &[])), 64),
                Verdict::Deliver
            );
            // A return with a capability needs a finish, which never comes.
            assert_eq!(ledger.outgoing(read(&ret(id, &[100]))), None);
        }
        let Verdict::Exceeded(exceeded) = ledger.incoming(read(&call(9, None, &[])), 64) else {
            panic!("the answer table is full");
        };
        assert_eq!(exceeded.bound, "max_answers");
        // Finishing releases the result's capability and frees the entry.
        let mut ledger = Ledger::new(limits());
        ledger.incoming(read(&call(1, None, &[])), 64);
        ledger.outgoing(read(&ret(1, &[100])));
        assert_eq!(
            ledger.incoming(read(&finish(1, true)), 64),
            Verdict::Deliver
        );
        assert_eq!(ledger.answers(), 0);
        assert!(ledger.exports.is_empty());
    }

    #[test]
    fn imports_count_references_and_releases_free_them() {
        let mut ledger = Ledger::new(limits());
        assert_eq!(
            ledger.incoming(read(&call(1, None, &[5, 6])), 64),
            Verdict::Deliver
        );
        assert_eq!(ledger.outgoing(read(&release(5, 1))), None);
        assert_eq!(ledger.outgoing(read(&ret(1, &[]))), None);
        assert_eq!(
            ledger.incoming(read(&call(2, None, &[7])), 64),
            Verdict::Deliver
        );
        let Verdict::Exceeded(exceeded) = ledger.incoming(read(&call(3, None, &[8])), 64) else {
            panic!("a third distinct import breaks the bound");
        };
        assert_eq!(exceeded.bound, "max_imports");
        assert_eq!((exceeded.count, exceeded.max), (3, 2));
    }

    #[test]
    fn exports_are_released_by_the_peer_and_bounded() {
        let mut ledger = Ledger::new(limits());
        ledger.incoming(read(&call(1, None, &[])), 64);
        assert_eq!(ledger.outgoing(read(&ret(1, &[1, 2]))), None);
        assert_eq!(ledger.incoming(read(&release(1, 1)), 64), Verdict::Deliver);
        ledger.incoming(read(&call(2, None, &[])), 64);
        assert_eq!(ledger.outgoing(read(&ret(2, &[3]))), None);
        ledger.incoming(read(&call(3, None, &[])), 64);
        let exceeded = ledger
            .outgoing(read(&ret(3, &[4])))
            .expect("too many exports");
        assert_eq!(exceeded.bound, "max_exports");
    }

    #[test]
    fn questions_awaiting_returns_are_bounded_and_canceled_returns_import_nothing() {
        let mut ledger = Ledger::new(limits());
        assert_eq!(ledger.outgoing(read(&call(0, None, &[]))), None);
        assert_eq!(ledger.outgoing(read(&call(1, None, &[]))), None);
        // Canceled before its return: the return's capabilities are not ours.
        assert_eq!(ledger.outgoing(read(&finish(1, true))), None);
        assert_eq!(ledger.incoming(read(&ret(1, &[9])), 64), Verdict::Deliver);
        assert!(ledger.imports.is_empty());
        assert_eq!(ledger.outgoing(read(&call(2, None, &[]))), None);
        let exceeded = ledger
            .outgoing(read(&call(3, None, &[])))
            .expect("too many questions");
        assert_eq!(exceeded.bound, "max_questions");
    }

    fn bootstrap(question_id: u32) -> Builder<HeapAllocator> {
        build(|m| m.init_bootstrap().set_question_id(question_id))
    }

    #[test]
    fn only_what_is_beyond_the_bootstraps_makes_the_connection_in_use() {
        let mut ledger = Ledger::new(Limits::default());
        // Each side asks for the other's bootstrap and gets it.
        ledger.outgoing(read(&bootstrap(0)));
        assert_eq!(ledger.peer_bootstrap(), None);
        ledger.incoming(read(&ret(0, &[10])), 64);
        assert_eq!(ledger.peer_bootstrap(), Some(true));
        ledger.incoming(read(&bootstrap(0)), 64);
        ledger.outgoing(read(&ret(0, &[20])));
        assert!(!ledger.in_use(), "{ledger:?}");
        // A call out is in use until its answer; the capability it brought
        // until released.
        ledger.outgoing(read(&call(1, None, &[])));
        assert!(ledger.in_use());
        ledger.incoming(read(&ret(1, &[11])), 64);
        assert!(ledger.in_use(), "an imported capability is held");
        ledger.outgoing(read(&release(11, 1)));
        assert!(!ledger.in_use());
        // The peer's call holds an answer; its result, an export.
        ledger.incoming(read(&call(1, None, &[])), 64);
        assert!(ledger.in_use());
        ledger.outgoing(read(&ret(1, &[20])));
        ledger.incoming(read(&finish(1, false)), 64);
        assert!(ledger.in_use(), "the bootstrap, handed out once more");
        ledger.incoming(read(&release(20, 1)), 64);
        assert!(!ledger.in_use());
    }

    #[test]
    fn a_peer_without_a_bootstrap_is_noticed() {
        let mut ledger = Ledger::new(Limits::default());
        ledger.outgoing(read(&bootstrap(0)));
        ledger.incoming(read(&ret(0, &[])), 64);
        assert_eq!(ledger.peer_bootstrap(), Some(false));
    }

    #[test]
    fn call_bytes_in_flight_are_bounded() {
        let mut ledger = Ledger::new(Limits {
            max_bytes_in_flight: 1000,
            ..limits()
        });
        assert_eq!(
            ledger.incoming(read(&call(1, None, &[])), 900),
            Verdict::Deliver
        );
        let Verdict::Refuse(refusal) = ledger.incoming(read(&call(2, None, &[])), 200) else {
            panic!("the second call would hold too many bytes");
        };
        assert!(refusal.reason.contains("bytes"), "{}", refusal.reason);
    }
}
