//! References to a kind from outside its hosts: the operator's (or any
//! program holding a facet that shows the kind's instances and route)
//! unversioned and versioned references, following the directory in the
//! program's own vat.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use capnp::capability::FromClientHook;
use vat_directory::record::{INSTANCES, ROUTES};

use crate::error::LatticeError;
use crate::operator::Lattice;
use crate::route::Router;

/// A kind's references in this vat: [`client`](Reference::client) is the
/// unversioned one (the router, following the kind's route),
/// [`version`](Reference::version) a versioned one (that version's
/// instances only). It follows the directory (instances and the route, by
/// watch) while any clone of it is held; capabilities taken from it work
/// as long as it does. Clones share it.
#[derive(Clone)]
pub struct Reference {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference")
            .field("kind", &self.inner.kind)
            .field("versions", &self.versions())
            .field("route_index", &self.followed())
            .finish()
    }
}

pub(crate) struct Inner {
    kind: String,
    router: RefCell<Router>,
    lattice: Lattice,
}

/// The references a [`Lattice`] made, held weakly.
#[derive(Clone, Default)]
pub(crate) struct Made(Rc<RefCell<Vec<Weak<Inner>>>>);

impl Made {
    /// The live references to `kind`.
    pub(crate) fn of(&self, kind: &str) -> Vec<Reference> {
        let mut made = self.0.borrow_mut();
        made.retain(|weak| weak.strong_count() > 0);
        made.iter()
            .filter_map(Weak::upgrade)
            .filter(|inner| inner.kind == kind)
            .map(|inner| Reference { inner })
            .collect()
    }
}

impl Reference {
    /// The unversioned reference, as the kind's interface `C`: each call
    /// goes to the version the route picks.
    pub fn client<C: FromClientHook>(&self) -> C {
        self.inner.router.borrow().client()
    }

    /// The unversioned reference carrying the routing key `key`: rules on
    /// the key, and sticky weights, read it; within a version, calls with
    /// one key meet one instance.
    pub fn with_key<C: FromClientHook>(&self, key: impl AsRef<[u8]>) -> C {
        self.inner.router.borrow().with_key(key)
    }

    /// The versioned reference to `version`: its instances only, whatever
    /// the route says (calls fail, undelivered, while none runs).
    pub fn version<C: FromClientHook>(&self, version: &str) -> C {
        self.inner.router.borrow_mut().version(version)
    }

    /// Each version it knows, with its instance count.
    pub fn versions(&self) -> Vec<(String, usize)> {
        self.inner.router.borrow().versions()
    }

    /// The log index of the route it follows (0: none).
    pub fn followed(&self) -> u64 {
        self.inner.router.borrow().route_index()
    }

    /// Reads the kind's instances and route again now.
    pub async fn refresh(&self) -> Result<(), LatticeError> {
        let inner = &self.inner;
        let lattice = &inner.lattice;
        let wanted = lattice.directory.instances_by_version(&inner.kind).await?;
        let route = lattice.directory.route(&inner.kind).await?;
        let mut router = inner.router.borrow_mut();
        router.follow(lattice.identity.as_ref(), &wanted, &|_| None);
        router.set_route(route);
        Ok(())
    }
}

impl Lattice {
    /// The references to kind `name` in this vat (must be called in it),
    /// following the directory from now on. Answers once it has read the
    /// kind's instances and route.
    pub async fn reference(&self, name: &str) -> Result<Reference, LatticeError> {
        crate::kind::check_name("kind", name)?;
        let reference = Reference {
            inner: Rc::new(Inner {
                kind: name.to_owned(),
                router: RefCell::new(Router::named(
                    name,
                    format!("reference to {name}"),
                    self.fields.clone(),
                )),
                lattice: self.clone(),
            }),
        };
        reference.refresh().await?;
        self.references
            .0
            .borrow_mut()
            .push(Rc::downgrade(&reference.inner));
        for prefix in [format!("{INSTANCES}{name}@"), format!("{ROUTES}{name}")] {
            follow(Rc::downgrade(&reference.inner), prefix);
        }
        Ok(reference)
    }
}

/// Reads the reference again at each change under `prefix`, while it is
/// held.
fn follow(weak: Weak<Inner>, prefix: String) {
    vat_env::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let mut watch = inner.lattice.directory.watch(&prefix);
            drop(inner);
            while let Some(event) = watch.next().await {
                let Some(inner) = weak.upgrade() else { return };
                if let Err(error) = event {
                    tracing::debug!(prefix, %error, "a watch ended; watching again");
                    break;
                }
                let reference = Reference { inner };
                if let Err(error) = reference.refresh().await {
                    tracing::warn!(kind = %reference.inner.kind, %error, "a reference could not read the directory; it keeps what it had");
                }
            }
            vat_env::sleep(Duration::from_secs(1)).await;
        }
    });
}
