//! Starting one incarnation of a child in this vat: run its factory, find
//! the object it made, and watch that object for a crash.

use std::rc::Rc;

use crate::error::{Error, ErrorKind};
use crate::heap::ObjectId;

use super::context::{ChildContext, Ender, Ending};

/// Builds a child's object. See [`ChildSpec::local`](super::ChildSpec::local).
pub type Factory = Rc<dyn Fn(&ChildContext) -> Result<capnp::capability::Client, Error>>;

/// A local incarnation: the object and the id its vat knows it by.
pub(crate) struct Local {
    pub(crate) client: capnp::capability::Client,
    pub(crate) id: ObjectId,
}

/// Runs `factory` for `ctx` and watches what it made: when the object
/// crashes, `ender` hears of it (at the end of the crashing turn).
pub(crate) fn start_local(
    factory: &Factory,
    ctx: &ChildContext,
    ender: Ender,
) -> Result<Local, Error> {
    let vat = crate::current().core().clone();
    let (made, exported) = crate::far::capture_exports(&vat, || factory(ctx));
    let client = match made {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => return Err(error),
        Err(panic) => {
            return Err(Error::new(
                ErrorKind::Crashed,
                format!(
                    "the factory of child `{}` panicked: {}",
                    ctx.name(),
                    crate::core::panic_message(panic.as_ref())
                ),
            ))
        }
    };
    let ptr = client.hook.get_ptr();
    let Some(&(_, id)) = exported.iter().find(|(p, _)| *p == ptr) else {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the factory of child `{}` returned a capability it did not export (with \
                 vat::export) while it ran; a supervisor can watch only an object its factory makes",
                ctx.name()
            ),
        ));
    };
    vat.watch_crash(
        id,
        Box::new(move |error: &Error| ender(Ending::Crashed(error.clone()))),
    );
    Ok(Local { client, id })
}

/// Stops watching a local incarnation (it is being retired).
pub(crate) fn unwatch(id: ObjectId) {
    if let Some(vat) = crate::try_current() {
        vat.core().unwatch_crash(id);
    }
}
