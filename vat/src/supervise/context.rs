//! What a child's factory is given: its name, which incarnation it is, and
//! a way to end itself normally.

use std::fmt;
use std::rc::Rc;

use crate::error::{Error, ErrorKind};

/// How one incarnation of a child ended.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    /// It panicked (or, for a supervisor, gave up).
    Crashed(Error),
    /// It ended itself normally.
    Exited,
    /// Its vat went away, or could not be reached.
    Lost(Error),
}

impl Ending {
    pub(crate) fn is_abnormal(&self) -> bool {
        !matches!(self, Ending::Exited)
    }

    /// The error calls in progress on the incarnation get.
    pub(crate) fn caller_error(&self, child: &str) -> Error {
        match self {
            Ending::Crashed(error) | Ending::Lost(error) => error.clone(),
            Ending::Exited => Error::new(
                ErrorKind::Failed,
                format!("supervised child `{child}` exited normally"),
            ),
        }
    }

    /// What the crash log says.
    pub(crate) fn describe(&self) -> String {
        match self {
            Ending::Crashed(error) => error.to_string(),
            Ending::Lost(error) => format!("lost: {error}"),
            Ending::Exited => "exited normally".to_owned(),
        }
    }
}

/// Called when an incarnation ends; fires at most once.
pub(crate) type Ender = Rc<dyn Fn(Ending)>;

/// What a factory knows of the child it builds.
///
/// ```
/// use vat::supervise::ChildContext;
/// fn factory(ctx: &ChildContext) -> Result<capnp::capability::Client, vat::Error> {
///     let exit = ctx.exit_handle(); // kept by the object, to end itself normally
///     # drop(exit);
///     tracing::info!(child = ctx.name(), incarnation = ctx.incarnation(), "starting");
///     Ok(vat::export::<schema::demo_capnp::counter::Client, _>(vat::demo::Counter::default()).client)
/// }
/// ```
pub struct ChildContext {
    name: String,
    incarnation: u64,
    exit: ExitHandle,
}

impl fmt::Debug for ChildContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildContext")
            .field("name", &self.name)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

impl ChildContext {
    pub(crate) fn new(name: &str, incarnation: u64, ender: Ender) -> ChildContext {
        ChildContext {
            name: name.to_owned(),
            incarnation,
            exit: ExitHandle { ender },
        }
    }

    /// The child's name in its supervisor (for a spawned child: the
    /// factory's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which start of the child this is: 1 for the first, one more for
    /// each restart.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// A handle the object keeps to end itself normally.
    pub fn exit_handle(&self) -> ExitHandle {
        self.exit.clone()
    }
}

/// Ends one incarnation of a child normally: a
/// [`Transient`](super::Restart::Transient) or
/// [`Temporary`](super::Restart::Temporary) child is then not restarted, a
/// [`Permanent`](super::Restart::Permanent) one is.
#[derive(Clone)]
pub struct ExitHandle {
    ender: Ender,
}

impl fmt::Debug for ExitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExitHandle")
    }
}

impl ExitHandle {
    /// Ends this incarnation normally. The call in progress (if the object
    /// calls this from a method) still returns its result; later calls go
    /// to the next incarnation or fail, by the child's restart policy.
    /// Calling it again, or after the incarnation ended, does nothing.
    pub fn exit_normally(&self) {
        (self.ender)(Ending::Exited);
    }
}
