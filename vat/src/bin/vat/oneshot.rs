//! Work that needs a vat for a moment: a client command starts one, runs
//! its work there, and stops it, which closes every connection it opened.

use std::future::Future;

use vat::VatHandle;

use crate::error::CliError;

/// Runs `work` in a fresh vat named `name` and returns its result once the
/// vat has stopped.
pub fn run<R, F, Fut>(name: &str, work: F) -> Result<R, CliError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<R, CliError>> + 'static,
    R: Send + 'static,
{
    let vat = VatHandle::start(name)?;
    let outcome = vat.run_async(work).wait();
    let stopped = vat.stop();
    let result = outcome??;
    stopped?;
    Ok(result)
}
