//! Spawners: children started in another vat, from factories registered
//! there by name.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use schema::supervise_capnp::{child_watch, spawner};
use sturdyrefs::SturdyRef;
use tokio::sync::Notify;

use super::context::{ChildContext, Ending};
use super::incarnation::{start_local, unwatch, Factory};
use crate::error::{Error, ErrorKind};
use crate::heap::ObjectId;
use crate::net::{Identity, Limits};

/// The factories a vat offers to supervisors in other vats, by name.
///
/// ```
/// use schema::demo_capnp::counter;
/// let vat = vat::VatHandle::start("worker").unwrap();
/// vat.run(|| {
///     let spawner = vat::supervise::Spawner::new()
///         .factory("counter", |_ctx| {
///             Ok(vat::export::<counter::Client, _>(vat::demo::Counter::default()).client)
///         })
///         .export();
///     // Serve `spawner` (for example with Persistence::provide and a token).
///     # drop(spawner);
/// }).wait().unwrap();
/// vat.stop().unwrap();
/// ```
#[derive(Default)]
pub struct Spawner {
    factories: BTreeMap<String, Factory>,
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner")
            .field("factories", &self.factories.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Spawner {
    /// A spawner with no factories.
    pub fn new() -> Spawner {
        Spawner::default()
    }

    /// Registers `factory` under `name` (replacing any factory of that name).
    pub fn factory(
        mut self,
        name: impl Into<String>,
        factory: impl Fn(&ChildContext) -> Result<capnp::capability::Client, Error> + 'static,
    ) -> Spawner {
        self.factories.insert(name.into(), Rc::new(factory));
        self
    }

    /// Exports the spawner from the current vat.
    ///
    /// # Panics
    /// Outside a vat.
    pub fn export(self) -> spawner::Client {
        crate::export(Served {
            factories: RefCell::new(self.factories),
        })
    }
}

struct Served {
    factories: RefCell<BTreeMap<String, Factory>>,
}

impl spawner::Server for Served {
    async fn spawn(
        self: Rc<Self>,
        params: spawner::SpawnParams,
        mut results: spawner::SpawnResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let name = params.get_name()?.to_str()?.to_owned();
        let incarnation = params.get_incarnation();
        let factory = self.factories.borrow().get(&name).cloned();
        let Some(factory) = factory else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("this vat has no factory named `{name}`"),
            )
            .into());
        };
        let end = Rc::new(End::default());
        let ender = {
            let end = Rc::downgrade(&end);
            Rc::new(move |ending: Ending| {
                if let Some(end) = end.upgrade() {
                    end.set(ending);
                }
            })
        };
        let ctx = ChildContext::new(&name, incarnation, ender.clone());
        let local = start_local(&factory, &ctx, ender)?;
        tracing::info!(child = %name, incarnation, object = %local.id, "spawned for a remote supervisor");
        let watch: child_watch::Client = crate::export(Watch { end, id: local.id });
        let mut out = results.get();
        out.reborrow()
            .init_child()
            .set_as_capability(local.client.hook);
        out.set_watch(watch);
        Ok(())
    }

    async fn names(
        self: Rc<Self>,
        _: spawner::NamesParams,
        mut results: spawner::NamesResults,
    ) -> Result<(), capnp::Error> {
        let factories = self.factories.borrow();
        let count = u32::try_from(factories.len())
            .map_err(|_| Error::new(ErrorKind::Failed, "too many factories to list"))?;
        let mut list = results.get().init_names(count);
        for (i, name) in factories.keys().enumerate() {
            list.set(i as u32, name);
        }
        Ok(())
    }
}

/// How one spawned object ended, once it has.
#[derive(Default)]
struct End {
    ending: RefCell<Option<Ending>>,
    changed: Notify,
}

impl End {
    fn set(&self, ending: Ending) {
        let mut slot = self.ending.borrow_mut();
        if slot.is_none() {
            *slot = Some(ending);
            self.changed.notify_waiters();
        }
    }

    async fn wait(&self) -> Ending {
        loop {
            let notified = self.changed.notified();
            if let Some(ending) = self.ending.borrow().clone() {
                return ending;
            }
            notified.await;
        }
    }
}

/// A spawned object's watch.
struct Watch {
    end: Rc<End>,
    id: ObjectId,
}

impl Drop for Watch {
    fn drop(&mut self) {
        unwatch(self.id);
    }
}

impl child_watch::Server for Watch {
    async fn ended(
        self: Rc<Self>,
        _: child_watch::EndedParams,
        mut results: child_watch::EndedResults,
    ) -> Result<(), capnp::Error> {
        let ending = self.end.wait().await;
        let mut out = results.get();
        match ending {
            Ending::Crashed(error) | Ending::Lost(error) => {
                out.set_crashed(true);
                out.set_reason(error.message());
            }
            Ending::Exited => out.set_crashed(false),
        }
        Ok(())
    }
}

/// A spawner a supervisor may start a remote child with.
// Made once per child specification and read at each start, never on a
// call's path: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum SpawnerRef {
    /// A sturdyref to a spawner, restored (with `identity`, if the token is
    /// bound to this vat) at each start: a vat that died and came back at
    /// the token's address is reached again.
    Token {
        /// The spawner's token.
        token: SturdyRef,
        /// The identity this vat proves, or `None` to call anonymously.
        identity: Option<Identity>,
    },
    /// A live capability to a spawner: gone for good if its vat dies.
    Live(spawner::Client),
}

impl std::fmt::Debug for SpawnerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnerRef::Token { token, .. } => write!(f, "SpawnerRef::Token(vat {})", token.vat()),
            SpawnerRef::Live(_) => f.write_str("SpawnerRef::Live"),
        }
    }
}

impl SpawnerRef {
    /// The spawner `token` names, restored anonymously.
    pub fn token(token: SturdyRef) -> SpawnerRef {
        SpawnerRef::Token {
            token,
            identity: None,
        }
    }

    fn describe(&self) -> String {
        match self {
            SpawnerRef::Token { token, .. } => format!("spawner of vat {}", token.vat()),
            SpawnerRef::Live(_) => "a live spawner".to_owned(),
        }
    }

    async fn client(&self) -> Result<spawner::Client, Error> {
        match self {
            SpawnerRef::Live(client) => Ok(client.clone()),
            SpawnerRef::Token { token, identity } => {
                match crate::sturdy::restore(token, identity.as_ref(), Limits::default()).await {
                    Ok((object, _kind)) => Ok(object.cast_to()),
                    Err(
                        crate::sturdy::RestoreError::Refused(error)
                        | crate::sturdy::RestoreError::NotAnswered(error),
                    ) => Err(error),
                    Err(unreachable) => {
                        Err(Error::new(ErrorKind::Disconnected, unreachable.to_string()))
                    }
                }
            }
        }
    }
}

/// A remote incarnation: the object, and its pending watch call.
pub(crate) struct Remote {
    pub(crate) client: capnp::capability::Client,
    pub(crate) watch: child_watch::Client,
}

/// Starts `factory` through the first of `spawners` that answers within
/// `timeout`.
pub(crate) async fn start_remote(
    factory: &str,
    incarnation: u64,
    spawners: &[SpawnerRef],
    timeout: Duration,
) -> Result<Remote, Error> {
    let mut attempts = Vec::new();
    for spawner in spawners {
        let attempt = async {
            let client = spawner.client().await?;
            let mut request = client.spawn_request();
            request.get().set_name(factory);
            request.get().set_incarnation(incarnation);
            let response = request.send().promise.await?;
            let results = response.get()?;
            Ok::<_, Error>(Remote {
                client: results.get_child().get_as_capability()?,
                watch: results.get_watch()?,
            })
        };
        match vat_env::timeout(timeout, attempt).await {
            Ok(Ok(remote)) => return Ok(remote),
            Ok(Err(error)) => attempts.push(format!("{}: {error}", spawner.describe())),
            Err(_) => attempts.push(format!(
                "{}: no answer within {timeout:?}",
                spawner.describe()
            )),
        }
    }
    Err(Error::new(
        ErrorKind::Disconnected,
        format!("no spawner started `{factory}`: {}", attempts.join("; ")),
    ))
}

/// How a remote incarnation ended, as its watch call tells.
pub(crate) async fn watch_remote(watch: child_watch::Client) -> Ending {
    match watch.ended_request().send().promise.await {
        Ok(response) => match response.get() {
            Ok(results) if results.get_crashed() => {
                let reason = results
                    .get_reason()
                    .ok()
                    .and_then(|r| r.to_str().ok().map(str::to_owned))
                    .unwrap_or_default();
                Ending::Crashed(Error::new(ErrorKind::Crashed, reason))
            }
            Ok(_) => Ending::Exited,
            Err(error) => Ending::Lost(error.into()),
        },
        Err(error) => Ending::Lost(error.into()),
    }
}
