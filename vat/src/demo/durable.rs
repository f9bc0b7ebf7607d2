//! A persistent example object: a counter whose value survives restarts.

use std::rc::Rc;

use capnp::Error;
use schema::demo_capnp::counter;

use crate::sturdy::{Durable, StateCell};

/// A counter kept in the vat's store. `add` replies only once the new value
/// is committed, and `get` reads only committed values, so whatever a caller
/// was told survives `kill -9`.
pub struct DurableCounter {
    value: StateCell<i64>,
}

impl DurableCounter {
    /// The counter kept in `value`, for a kind of its own that wraps it
    /// (revive it through [`Durable`] to serve it as it is).
    pub fn new(value: StateCell<i64>) -> DurableCounter {
        DurableCounter { value }
    }
}

impl Durable for DurableCounter {
    const KIND: &'static str = "counter";
    type State = i64;

    fn revive(value: StateCell<i64>) -> capnp::capability::Client {
        crate::export::<counter::Client, _>(DurableCounter::new(value)).client
    }
}

impl counter::Server for DurableCounter {
    async fn add(
        self: Rc<Self>,
        params: counter::AddParams,
        mut results: counter::AddResults,
    ) -> Result<(), Error> {
        let by = params.get()?.get_by();
        let value = self
            .value
            .update(|value| {
                let sum = value.checked_add(by)?;
                *value = sum;
                Some(sum)
            })
            .await?
            .ok_or_else(|| {
                crate::Error::new(
                    crate::ErrorKind::InvalidArgument,
                    format!("adding {by} would overflow the counter"),
                )
            })?;
        results.get().set_value(value);
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        _: counter::GetParams,
        mut results: counter::GetResults,
    ) -> Result<(), Error> {
        let value = self.value.read_committed(|value| *value).await?;
        results.get().set_value(value);
        Ok(())
    }
}
