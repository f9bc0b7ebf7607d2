//! The key-value provider: each binding grants its actor a bucket
//! (`KeyValue`, schema/capnp/lattice.capnp) kept in the host vat's own
//! store, durable before each `set` or `delete` answers.
//!
//! Settings: `bucket` (default: the actor's name). Two bindings naming one
//! bucket share it; changing a binding's bucket revokes the old bucket's
//! grant and grants the new one. A bucket is one persistent object whose whole state is
//! committed at each change, so it is bounded: keys of at most
//! [`MAX_KEY_BYTES`], values of at most [`MAX_VALUE_BYTES`], at most
//! [`MAX_BUCKET_BYTES`] in all.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use schema::lattice_capnp::key_value;
use sha2::{Digest, Sha256};
use vat::sturdy::{Durable, Persistence, StateCell};

use crate::kind::{check_name, BindingId, Config};
use crate::provider::{Binding, Provider, ProvisionError, Provisioned};

/// The provider's kind name.
pub const NAME: &str = "kv";
/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The most a bucket holds, keys and values together, in bytes.
pub const MAX_BUCKET_BYTES: usize = 1024 * 1024;

/// One instance of the key-value provider.
pub struct KeyValueProvider {
    persistence: Persistence,
    buckets: BTreeMap<BindingId, String>,
}

impl KeyValueProvider {
    /// An instance keeping its buckets in `persistence`'s store.
    pub fn new(persistence: Persistence) -> KeyValueProvider {
        persistence.register::<Bucket>();
        KeyValueProvider {
            persistence,
            buckets: BTreeMap::new(),
        }
    }

    fn bucket_name(id: &BindingId, config: &Config) -> Result<String, ProvisionError> {
        let name = config
            .get("bucket")
            .cloned()
            .unwrap_or_else(|| id.actor.clone());
        check_name("bucket", &name).map_err(|e| ProvisionError::Setting {
            setting: "bucket".to_owned(),
            reason: e.to_string(),
        })?;
        Ok(name)
    }
}

impl Provider for KeyValueProvider {
    fn bind(&mut self, binding: Binding) -> LocalBoxFuture<'static, Provisioned> {
        let outcome = Self::bucket_name(&binding.id, &binding.config).and_then(|name| {
            let mut digest = Sha256::new();
            digest.update(name.as_bytes());
            let digest = digest.finalize();
            let mut id = [0u8; 8];
            id.copy_from_slice(&digest[..8]);
            let client = self
                .persistence
                .durable::<Bucket>(u64::from_le_bytes(id))
                .map_err(|e| ProvisionError::Unavailable {
                    resource: format!("bucket {name}"),
                    reason: e.to_string(),
                })?;
            self.buckets.insert(binding.id.clone(), name);
            Ok(Some(client))
        });
        Box::pin(async move { outcome })
    }

    fn reconfigure(
        &mut self,
        id: &BindingId,
        config: &Config,
    ) -> LocalBoxFuture<'static, Result<(), ProvisionError>> {
        let outcome = Self::bucket_name(id, config).and_then(|name| {
            // Another bucket is another capability for the actor: the host
            // binds afresh, revoking the old bucket's grant.
            if self.buckets.get(id) == Some(&name) {
                Ok(())
            } else {
                Err(ProvisionError::NoReconfigure)
            }
        });
        Box::pin(async move { outcome })
    }

    fn unbind(&mut self, id: &BindingId) -> LocalBoxFuture<'static, ()> {
        self.buckets.remove(id);
        Box::pin(async {})
    }
}

/// A bucket: a persistent object of the host's store.
struct Bucket {
    state: StateCell<BTreeMap<String, Vec<u8>>>,
}

impl Durable for Bucket {
    const KIND: &'static str = "lattice.kv.bucket";
    type State = BTreeMap<String, Vec<u8>>;

    fn revive(state: StateCell<Self::State>) -> capnp::capability::Client {
        vat::export::<key_value::Client, _>(Bucket { state }).client
    }
}

fn size(map: &BTreeMap<String, Vec<u8>>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn invalid(text: String) -> capnp::Error {
    vat::Error::new(vat::ErrorKind::InvalidArgument, text).into()
}

impl key_value::Server for Bucket {
    async fn get(
        self: Rc<Self>,
        params: key_value::GetParams,
        mut results: key_value::GetResults,
    ) -> Result<(), capnp::Error> {
        let key = params.get()?.get_key()?.to_str()?.to_owned();
        let value = self
            .state
            .read_committed(move |map| map.get(&key).cloned())
            .await?;
        let mut out = results.get();
        out.set_found(value.is_some());
        out.set_value(value.as_deref().unwrap_or_default());
        Ok(())
    }

    async fn set(
        self: Rc<Self>,
        params: key_value::SetParams,
        _: key_value::SetResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let key = params.get_key()?.to_str()?.to_owned();
        let value = params.get_value()?.to_vec();
        if key.len() > MAX_KEY_BYTES {
            return Err(invalid(format!(
                "a key is at most {MAX_KEY_BYTES} bytes; this one is {}",
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(invalid(format!(
                "a value is at most {MAX_VALUE_BYTES} bytes; this one is {}",
                value.len()
            )));
        }
        let changed = self.state.update(move |map| {
            let old = map.get(&key).map_or(0, |v| key.len() + v.len());
            let after = size(map) - old + key.len() + value.len();
            if after > MAX_BUCKET_BYTES {
                return Err(after);
            }
            map.insert(key, value);
            Ok(())
        });
        changed.await?.map_err(|after| {
            invalid(format!(
                "a bucket holds at most {MAX_BUCKET_BYTES} bytes; this set would make it {after}"
            ))
        })
    }

    async fn delete(
        self: Rc<Self>,
        params: key_value::DeleteParams,
        mut results: key_value::DeleteResults,
    ) -> Result<(), capnp::Error> {
        let key = params.get()?.get_key()?.to_str()?.to_owned();
        let existed = self
            .state
            .update(move |map| map.remove(&key).is_some())
            .await?;
        results.get().set_existed(existed);
        Ok(())
    }
}
