//! `hello`, the example actor `vat lattice host --actor NAME` runs: it
//! answers every HTTP request with its kind, version and where it runs, and keeps
//! values in the key-value provider it is bound to (`GET /kv/set/K/V`,
//! `GET /kv/get/K`).

use std::rc::Rc;

use schema::lattice_capnp::{http_handler, key_value};

use crate::actor::{ActorContext, Links};
use crate::kind::DEFAULT_LINK;

/// One instance of the example actor.
pub struct Hello {
    name: String,
    links: Links,
}

impl Hello {
    /// The instance `context` describes, on the host `host` (a short name
    /// for its answers).
    pub fn new(context: &ActorContext, host: &str) -> Hello {
        Hello {
            name: format!("{} on {host}/{}", context.kind, context.number),
            links: context.links.clone(),
        }
    }

    /// As a factory's capability.
    pub fn export(self) -> capnp::capability::Client {
        vat::export::<http_handler::Client, _>(self).client
    }

    async fn key_value(&self, parts: &[&str]) -> Result<String, capnp::Error> {
        let kv: key_value::Client = self.links.get(crate::providers::kv::NAME, DEFAULT_LINK)?;
        let outcome = match parts {
            ["set", key, value] => {
                let mut call = kv.set_request();
                call.get().set_key(key);
                call.get().set_value(value.as_bytes());
                call.send().promise.await.map(|_| "set".to_owned())
            }
            ["get", key] => {
                let mut call = kv.get_request();
                call.get().set_key(key);
                match call.send().promise.await {
                    Ok(reply) => {
                        Ok(String::from_utf8_lossy(reply.get()?.get_value()?).into_owned())
                    }
                    Err(error) => Err(error),
                }
            }
            _ => Ok("kv paths: /kv/set/KEY/VALUE, /kv/get/KEY".to_owned()),
        };
        outcome.or_else(|error| Ok(format!("error: {:?}", vat::Error::from(error).kind())))
    }
}

impl http_handler::Server for Hello {
    async fn handle(
        self: Rc<Self>,
        params: http_handler::HandleParams,
        mut results: http_handler::HandleResults,
    ) -> Result<(), capnp::Error> {
        let path = params.get()?.get_request()?.get_path()?.to_string()?;
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let body = match parts.split_first() {
            Some((&"kv", rest)) => self.key_value(rest).await?,
            _ => format!("hello from {}", self.name),
        };
        let mut response = results.get().init_response();
        response.set_status(200);
        response.set_body(body.as_bytes());
        Ok(())
    }
}
