use std::cell::Cell;
use std::rc::Rc;

use capnp::Error;
use schema::demo_capnp::{callback, chain, counter, host, sequencer};

use crate::export;

/// A number that only grows by what callers add.
#[derive(Debug, Default)]
pub struct Counter {
    value: Cell<i64>,
}

impl counter::Server for Counter {
    async fn add(
        self: Rc<Self>,
        params: counter::AddParams,
        mut results: counter::AddResults,
    ) -> Result<(), Error> {
        let by = params.get()?.get_by();
        let value = self.value.get().checked_add(by).ok_or_else(|| {
            Error::from(crate::Error::new(
                crate::ErrorKind::InvalidArgument,
                format!("adding {by} would overflow the counter"),
            ))
        })?;
        self.value.set(value);
        results.get().set_value(value);
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        _: counter::GetParams,
        mut results: counter::GetResults,
    ) -> Result<(), Error> {
        results.get().set_value(self.value.get());
        Ok(())
    }
}

/// Answers callbacks with a greeting that names its vat.
#[derive(Debug)]
pub struct Greeter {
    vat: String,
}

impl Greeter {
    /// A greeter that signs its replies with `vat`.
    pub fn new(vat: impl Into<String>) -> Greeter {
        Greeter { vat: vat.into() }
    }
}

impl callback::Server for Greeter {
    async fn call(
        self: Rc<Self>,
        params: callback::CallParams,
        mut results: callback::CallResults,
    ) -> Result<(), Error> {
        let message = params.get()?.get_message()?.to_str()?;
        results
            .get()
            .set_reply(format!("{} heard \"{message}\"", self.vat));
        Ok(())
    }
}

/// One link of an endless chain; each `next` exports the following link.
#[derive(Debug, Default)]
pub struct Link {
    depth: u32,
}

impl chain::Server for Link {
    async fn next(
        self: Rc<Self>,
        _: chain::NextParams,
        mut results: chain::NextResults,
    ) -> Result<(), Error> {
        let next: chain::Client = export(Link {
            depth: self.depth.saturating_add(1),
        });
        results.get().set_link(next);
        Ok(())
    }

    async fn depth(
        self: Rc<Self>,
        _: chain::DepthParams,
        mut results: chain::DepthResults,
    ) -> Result<(), Error> {
        results.get().set_depth(self.depth);
        Ok(())
    }
}

/// Checks that numbers pushed to it arrive in the order sent: 0, 1, 2, …
#[derive(Debug, Default)]
pub struct Sequencer {
    received: Cell<u64>,
    first_gap: Cell<Option<u64>>,
}

impl sequencer::Server for Sequencer {
    async fn push(
        self: Rc<Self>,
        params: sequencer::PushParams,
        _: sequencer::PushResults,
    ) -> Result<(), Error> {
        let n = params.get()?.get_n();
        let expected = self.received.get();
        if n != expected && self.first_gap.get().is_none() {
            self.first_gap.set(Some(n));
        }
        self.received.set(expected + 1);
        Ok(())
    }

    async fn report(
        self: Rc<Self>,
        _: sequencer::ReportParams,
        mut results: sequencer::ReportResults,
    ) -> Result<(), Error> {
        let mut report = results.get();
        report.set_received(self.received.get());
        report.set_in_order(self.first_gap.get().is_none());
        report.set_first_gap(self.first_gap.get().unwrap_or(0));
        Ok(())
    }
}

/// The longest chain `Host::pipeline_on` builds for a caller.
pub const MAX_PIPELINE_DEPTH: u32 = 1000;

/// The bootstrap object of the example vats.
///
/// `Host.crash`, which panics on request, is for demonstrations and tests
/// of crash isolation: a host made with [`Host::new`] refuses it
/// (`unimplemented`), so that any holder of a served host cannot take it
/// down; [`Host::crashable`] makes one that obeys.
#[derive(Debug)]
pub struct Host {
    vat: String,
    crash_on_demand: bool,
}

impl Host {
    /// A host for the vat named `vat`, which refuses `crash`.
    pub fn new(vat: impl Into<String>) -> Host {
        Host {
            vat: vat.into(),
            crash_on_demand: false,
        }
    }

    /// A host for the vat named `vat` whose `crash` panics with the
    /// caller's message: for demonstrations and tests only.
    pub fn crashable(vat: impl Into<String>) -> Host {
        Host {
            crash_on_demand: true,
            ..Host::new(vat)
        }
    }
}

impl host::Server for Host {
    async fn counter(
        self: Rc<Self>,
        _: host::CounterParams,
        mut results: host::CounterResults,
    ) -> Result<(), Error> {
        results.get().set_counter(export(Counter::default()));
        Ok(())
    }

    async fn chain(
        self: Rc<Self>,
        _: host::ChainParams,
        mut results: host::ChainResults,
    ) -> Result<(), Error> {
        results.get().set_link(export(Link::default()));
        Ok(())
    }

    async fn sequencer(
        self: Rc<Self>,
        _: host::SequencerParams,
        mut results: host::SequencerResults,
    ) -> Result<(), Error> {
        results.get().set_sequencer(export(Sequencer::default()));
        Ok(())
    }

    async fn greet(
        self: Rc<Self>,
        params: host::GreetParams,
        mut results: host::GreetResults,
    ) -> Result<(), Error> {
        let params = params.get()?;
        let callback = params.get_callback()?;
        let name = params.get_name()?.to_str()?.to_owned();
        let mut request = callback.call_request();
        request
            .get()
            .set_message(format!("hello {name}, from {}", self.vat));
        let response = request.send().promise.await?;
        let reply = response.get()?.get_reply()?.to_str()?.to_owned();
        let mut out = results.get();
        out.set_reply(reply);
        out.set_callback(export(Greeter::new(self.vat.clone())));
        Ok(())
    }

    async fn reflect(
        self: Rc<Self>,
        params: host::ReflectParams,
        mut results: host::ReflectResults,
    ) -> Result<(), Error> {
        let sequencer = params.get()?.get_sequencer()?;
        results.get().set_sequencer(sequencer);
        Ok(())
    }

    async fn crash(
        self: Rc<Self>,
        params: host::CrashParams,
        _: host::CrashResults,
    ) -> Result<(), Error> {
        if !self.crash_on_demand {
            return Err(crate::Error::new(
                crate::ErrorKind::Unimplemented,
                "this host does not crash on demand (only a Host::crashable does, for demos \
                 and tests)",
            )
            .into());
        }
        let message = params.get()?.get_message()?.to_str()?.to_owned();
        panic!("{message}");
    }

    async fn pipeline_on(
        self: Rc<Self>,
        params: host::PipelineOnParams,
        mut results: host::PipelineOnResults,
    ) -> Result<(), Error> {
        let params = params.get()?;
        let depth = params.get_depth();
        if depth > MAX_PIPELINE_DEPTH {
            return Err(crate::Error::new(
                crate::ErrorKind::InvalidArgument,
                format!("a chain of {depth} calls is longer than the {MAX_PIPELINE_DEPTH} allowed"),
            )
            .into());
        }
        let host = params.get_host()?;
        let mut link = host.chain_request().send().pipeline.get_link();
        for _ in 0..depth {
            link = link.next_request().send().pipeline.get_link();
        }
        let reached = link
            .depth_request()
            .send()
            .promise
            .await?
            .get()?
            .get_depth();
        results.get().set_depth(reached);
        Ok(())
    }

    async fn echo(
        self: Rc<Self>,
        params: host::EchoParams,
        mut results: host::EchoResults,
    ) -> Result<(), Error> {
        results.get().set_value(params.get()?.get_value());
        Ok(())
    }
}
