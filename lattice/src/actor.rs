//! What an actor instance holds: the capabilities its bindings granted,
//! by provider and link, kept current by its host.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use capnp::capability::FromClientHook;

use crate::kind::Kind;

/// The capabilities an actor instance's bindings grant it, by provider
/// kind and link name. Its host adds one when a binding applies and takes
/// it out (revoked) when the binding goes; clones share the same view.
#[derive(Clone, Default)]
pub struct Links {
    granted: Rc<RefCell<BTreeMap<(String, String), capnp::capability::Client>>>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.granted.borrow().keys()).finish()
    }
}

/// No binding grants that provider under that link to this actor now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this actor is not bound to provider {provider} under link {link}")]
pub struct NotBound {
    /// The provider asked for.
    pub provider: String,
    /// The link asked for.
    pub link: String,
}

impl From<NotBound> for vat::Error {
    fn from(error: NotBound) -> vat::Error {
        vat::Error::new(vat::ErrorKind::Failed, error.to_string())
    }
}

impl From<NotBound> for capnp::Error {
    fn from(error: NotBound) -> capnp::Error {
        vat::Error::from(error).into()
    }
}

impl Links {
    /// The capability granted by the binding to `provider` under `link`,
    /// as the provider's interface `C`.
    pub fn get<C: FromClientHook>(&self, provider: &str, link: &str) -> Result<C, NotBound> {
        self.granted
            .borrow()
            .get(&(provider.to_owned(), link.to_owned()))
            .map(|client| C::new(client.hook.add_ref()))
            .ok_or_else(|| NotBound {
                provider: provider.to_owned(),
                link: link.to_owned(),
            })
    }

    /// The bindings it has now: (provider, link).
    pub fn bound(&self) -> Vec<(String, String)> {
        self.granted.borrow().keys().cloned().collect()
    }

    pub(crate) fn grant(&self, provider: &str, link: &str, client: capnp::capability::Client) {
        self.granted
            .borrow_mut()
            .insert((provider.to_owned(), link.to_owned()), client);
    }

    pub(crate) fn take(&self, provider: &str, link: &str) {
        self.granted
            .borrow_mut()
            .remove(&(provider.to_owned(), link.to_owned()));
    }
}

/// What an actor factory is given for each instance it makes.
#[derive(Debug, Clone)]
pub struct ActorContext {
    /// The kind being started.
    pub kind: Kind,
    /// The instance's number on its host.
    pub number: u64,
    /// The capabilities its bindings grant it, kept current by the host.
    pub links: Links,
}
