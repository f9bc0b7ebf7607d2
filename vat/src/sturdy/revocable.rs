//! References that die with their token: a restored capability checks, on
//! every call, that the sturdyref it came from still stands.

use std::cell::Cell;
use std::rc::Rc;
use std::time::SystemTime;

use capnp::capability::Promise;
use capnp::private::capability::{ClientHook, ParamsHook, ResultsHook};

use crate::error::{Error, ErrorKind};
use crate::hook::{front, Front};

/// Whether one token still stands. Shared by every reference restored from
/// it; revoking the token flips it for all of them at once.
#[derive(Debug)]
pub(crate) struct Standing {
    revoked: Cell<bool>,
    expires_at: Option<SystemTime>,
}

impl Standing {
    pub(crate) fn new(expires_at: Option<SystemTime>) -> Rc<Standing> {
        Rc::new(Standing {
            revoked: Cell::new(false),
            expires_at,
        })
    }

    pub(crate) fn revoke(&self) {
        self.revoked.set(true);
    }

    /// `Ok` while the token stands; the error a call gets otherwise.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.revoked.get() {
            return Err(Error::new(
                ErrorKind::Revoked,
                "the sturdyref this reference was restored from has been revoked",
            ));
        }
        match self.expires_at {
            Some(deadline) if vat_env::wall() >= deadline => Err(Error::new(
                ErrorKind::Expired,
                "the sturdyref this reference was restored from has expired",
            )),
            _ => Ok(()),
        }
    }
}

/// Wraps `client` so that each call first checks `standing`.
pub(crate) fn revocable(
    client: capnp::capability::Client,
    standing: Rc<Standing>,
) -> capnp::capability::Client {
    front(Rc::new(Revocable {
        inner: client.hook,
        standing,
    }))
}

struct Revocable {
    inner: Box<dyn ClientHook>,
    standing: Rc<Standing>,
}

impl Front for Revocable {
    fn forward_call(
        self: &Rc<Self>,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        match self.standing.check() {
            Ok(()) => self.inner.call(interface_id, method_id, params, results),
            Err(error) => Promise::err(error.into()),
        }
    }

    /// One identity per token, not the object's: capnp-rpc shares an export
    /// between hooks with the same pointer, and a reference restored from
    /// one token must never turn into the bare object or another token's.
    fn identity(self: &Rc<Self>) -> usize {
        Rc::as_ptr(&self.standing) as usize
    }
}
