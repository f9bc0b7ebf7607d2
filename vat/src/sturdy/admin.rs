//! The admin capability: a running vat's token table, for its operator.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schema::gateway_capnp::admin;
use sturdyrefs::{MintOptions, ObjectRef, SwissHash, VatId};

use super::persistence::{object_ref, Persistence};
use crate::error::{Error, ErrorKind};

/// Serves `Admin` (`schema/capnp/gateway.capnp`) for one vat's persistence.
pub(crate) struct Admin {
    pub(crate) persistence: Persistence,
}

/// Reads `kind#id`, the text form of an object reference.
pub fn parse_object(text: &str) -> Result<ObjectRef, Error> {
    let invalid = |why: &str| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{text:?} is not an object (kind#id): {why}"),
        )
    };
    let (kind, id) = text.rsplit_once('#').ok_or_else(|| invalid("no '#'"))?;
    let id = id
        .parse::<u64>()
        .map_err(|_| invalid("the id is not a whole number"))?;
    object_ref(kind, id)
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl admin::Server for Admin {
    async fn tokens(
        self: Rc<Self>,
        _: admin::TokensParams,
        mut results: admin::TokensResults,
    ) -> Result<(), capnp::Error> {
        let mut records = self.persistence.tokens()?;
        records.sort_by_key(|r| r.created_at);
        let len = u32::try_from(records.len()).map_err(|_| {
            capnp::Error::from(Error::new(ErrorKind::Overloaded, "too many tokens to list"))
        })?;
        let mut list = results.get().init_tokens(len);
        for (i, record) in records.iter().enumerate() {
            let mut info = list.reborrow().get(i as u32);
            info.set_hash(record.swiss_hash.as_bytes());
            info.set_object(record.object.to_string());
            info.set_created_at(seconds(record.created_at));
            info.set_expires_at(record.expires_at.map(seconds).unwrap_or(0));
            info.set_bound_to(record.bound_to.map(|v| v.to_string()).unwrap_or_default());
            info.set_revoked(record.revoked);
        }
        Ok(())
    }

    async fn mint(
        self: Rc<Self>,
        params: admin::MintParams,
        mut results: admin::MintResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let object = parse_object(params.get_object()?.to_str()?)?;
        let expires_at = match params.get_expires_at() {
            0 => None,
            secs => Some(UNIX_EPOCH + Duration::from_secs(secs)),
        };
        let bound_to = match params.get_bound_to()?.to_str()? {
            "" => None,
            text => Some(VatId::parse(text).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("boundTo is not a vat id: {e}"),
                )
            })?),
        };
        let token = self
            .persistence
            .mint(
                &object,
                MintOptions {
                    expires_at,
                    bound_to,
                    single_use: false,
                },
            )
            .await?;
        results.get().set_token(token.to_string());
        Ok(())
    }

    async fn revoke(
        self: Rc<Self>,
        params: admin::RevokeParams,
        mut results: admin::RevokeResults,
    ) -> Result<(), capnp::Error> {
        let bytes = params.get()?.get_hash()?;
        let hash: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("a swiss hash is 32 bytes; {} were given", bytes.len()),
            )
        })?;
        let found = self
            .persistence
            .revoke(&SwissHash::from_bytes(hash))
            .await?;
        results.get().set_found(found);
        Ok(())
    }

    async fn objects(
        self: Rc<Self>,
        _: admin::ObjectsParams,
        mut results: admin::ObjectsResults,
    ) -> Result<(), capnp::Error> {
        let objects = self.persistence.objects();
        let len = u32::try_from(objects.len()).map_err(|_| {
            capnp::Error::from(Error::new(
                ErrorKind::Overloaded,
                "too many objects to list",
            ))
        })?;
        let mut list = results.get().init_objects(len);
        for (i, object) in objects.iter().enumerate() {
            list.set(i as u32, object);
        }
        Ok(())
    }
}
