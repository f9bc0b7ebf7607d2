//! The operator's way into a running vat: dial it proving the vat's own key
//! (which only the holder of its data folder has) and take the admin
//! capability its gateway hands to that key alone.

use std::net::SocketAddr;
use std::time::SystemTime;

use schema::gateway_capnp::{admin, gateway};
use sturdyrefs::{SwissHash, VatId};
use vat::net::{tls, Connection, Identity, Limits};

use crate::error::CliError;
use crate::table::{seconds, Row, State};

/// An admin capability of a running vat, with the connection it came on.
pub struct AdminSession {
    admin: admin::Client,
    connection: Connection,
}

impl AdminSession {
    /// Dials the vat at `addr`, which must prove `identity`'s key, proving
    /// that same key in turn. Must be awaited inside a vat.
    pub async fn open(addr: SocketAddr, identity: &Identity) -> Result<AdminSession, CliError> {
        let key = identity.public_key();
        let connection = tls::dial(addr, key, Some(identity), None, Limits::default()).await?;
        let gateway: gateway::Client = connection.peer();
        let response = gateway.admin_request().send().promise.await?;
        let admin = response.get()?.get_admin()?;
        tracing::debug!(%addr, "got the admin capability");
        Ok(AdminSession { admin, connection })
    }

    /// Ends the session with a clean goodbye, so the vat does not log a
    /// connection cut short.
    pub async fn close(self) {
        if let Err(error) = self.connection.close().await {
            tracing::debug!(%error, "closing the admin connection failed");
        }
    }

    /// Every token of the vat, oldest first.
    pub async fn tokens(&self) -> Result<Vec<Row>, CliError> {
        let response = self.admin.tokens_request().send().promise.await?;
        let now = seconds(SystemTime::now());
        let mut rows = Vec::new();
        for info in response.get()?.get_tokens()? {
            let hash: [u8; 32] = info.get_hash()?.try_into().map_err(|_| {
                vat::Error::new(
                    vat::ErrorKind::InvalidArgument,
                    "the vat listed a token hash that is not 32 bytes",
                )
            })?;
            let expires = match info.get_expires_at() {
                0 => None,
                at => Some(at),
            };
            let bound_to = match info.get_bound_to()?.to_str()? {
                "" => None,
                vat => Some(vat.to_owned()),
            };
            let state = if info.get_revoked() {
                State::Revoked
            } else if expires.is_some_and(|at| now >= at) {
                State::Expired
            } else {
                State::Live
            };
            rows.push(Row {
                hash: SwissHash::from_bytes(hash),
                object: info.get_object()?.to_str()?.to_owned(),
                created: info.get_created_at(),
                expires,
                bound_to,
                state,
            });
        }
        Ok(rows)
    }

    /// Mints a token for `object` (`kind#id`) that expires at `expires_at`
    /// (seconds since 1970) and only `bound_to` may present; returns its text.
    pub async fn mint(
        &self,
        object: &str,
        expires_at: Option<u64>,
        bound_to: Option<VatId>,
    ) -> Result<String, CliError> {
        let mut request = self.admin.mint_request();
        {
            let mut params = request.get();
            params.set_object(object);
            params.set_expires_at(expires_at.unwrap_or(0));
            params.set_bound_to(bound_to.map(|v| v.to_string()).unwrap_or_default());
        }
        let response = request.send().promise.await?;
        Ok(response.get()?.get_token()?.to_str()?.to_owned())
    }

    /// Revokes the token whose hash is `hash`; returns whether it existed.
    pub async fn revoke(&self, hash: &SwissHash) -> Result<bool, CliError> {
        let mut request = self.admin.revoke_request();
        request.get().set_hash(hash.as_bytes());
        let response = request.send().promise.await?;
        Ok(response.get()?.get_found())
    }
}
