//! The holder's side: from a sturdyref token to a live reference.

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use captp::{tls, Connection, Identity, Limits, NetError, PublicKey};
use schema::gateway_capnp::gateway;
use sturdyrefs::{Host, LocationHint, SturdyRef, SwissNumber, VatId};

use super::sessions::{self, session, session_key};
use crate::error::{Error, ErrorKind};

/// Why a sturdyref could not be restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// None of the token's location hints led to the vat it names. Each
    /// attempt says why: nothing listening, or a peer that could not prove
    /// the vat's key (another vat at that address), and so on.
    #[error("vat {vat} could not be reached: {}", Attempts(attempts))]
    Unreachable {
        /// The vat the token names.
        vat: VatId,
        /// Every address tried, with what went wrong there.
        attempts: Vec<(String, NetError)>,
    },
    /// The vat was reached and refused (see the error's kind:
    /// [`UnknownToken`](crate::ErrorKind::UnknownToken),
    /// [`Revoked`](crate::ErrorKind::Revoked),
    /// [`Expired`](crate::ErrorKind::Expired),
    /// [`Overloaded`](crate::ErrorKind::Overloaded) for a bound such as a
    /// handoff quota, which the same request may pass later, or another
    /// the vat answered with).
    #[error("the vat refused the token: {0}")]
    Refused(Error),
    /// The vat was reached but did not answer: the connection failed on
    /// the way ([`Disconnected`](crate::ErrorKind::Disconnected): the vat
    /// stopped, its process died, the network timed out). Nothing refused
    /// the token, and restoring it again is safe (a single-use token may
    /// have been used up by the restore that was cut off, and is then
    /// refused).
    #[error(
        "the restore got no answer: {0}; nothing refused the token, and restoring it again is safe"
    )]
    NotAnswered(Error),
}

impl RestoreError {
    /// Whether the same request may succeed if made again later: the vat
    /// could not be reached, did not answer, or refused it for a bound
    /// ([`Overloaded`](crate::ErrorKind::Overloaded)) rather than for the
    /// token. `false` once the vat refused the token itself.
    pub fn retry_is_safe(&self) -> bool {
        match self {
            RestoreError::Unreachable { .. } | RestoreError::NotAnswered(_) => true,
            RestoreError::Refused(error) => error.kind() == ErrorKind::Overloaded,
        }
    }
}

impl From<Error> for RestoreError {
    /// A failed exchange with the vat: a lost connection is no answer at
    /// all; anything the vat answered is a refusal.
    fn from(error: Error) -> RestoreError {
        match error.kind() {
            ErrorKind::Disconnected | ErrorKind::VatStopped => RestoreError::NotAnswered(error),
            _ => RestoreError::Refused(error),
        }
    }
}

struct Attempts<'a>(&'a [(String, NetError)]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no address to try");
        }
        for (i, (addr, error)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{addr}: {error}")?;
        }
        Ok(())
    }
}

/// The key a vat id stands for, as the TLS layer wants it.
pub fn vat_key(vat: &VatId) -> PublicKey {
    PublicKey::from_bytes(vat.to_bytes())
}

/// The vat id of a key.
pub fn vat_id(key: PublicKey) -> VatId {
    VatId::from_bytes(key.to_bytes())
}

/// Dials the vat that `token` names: each location hint in turn (each
/// address a name resolves to, in order) until a peer proves the vat's key.
/// With `identity` this vat proves its own key, which a receiver-bound token
/// requires; with `None` it calls anonymously.
///
/// The connection is this caller's alone: the vat's connection manager
/// neither reuses nor closes it (see [`restore`] for the shared one).
///
/// Must be awaited inside a vat.
pub async fn connect(
    token: &SturdyRef,
    identity: Option<&Identity>,
    limits: Limits,
) -> Result<Connection, RestoreError> {
    dial_offering(token, identity, None, limits).await
}

/// [`connect`], offering `offer` to the peer as this vat's bootstrap.
pub(crate) async fn dial_offering(
    token: &SturdyRef,
    identity: Option<&Identity>,
    offer: Option<capnp::capability::Client>,
    limits: Limits,
) -> Result<Connection, RestoreError> {
    let key = vat_key(token.vat());
    let mut attempts = Vec::new();
    // A vat given a transport of its own (a simulator's) dials through it;
    // every other vat dials TLS over TCP.
    let transport = crate::core::current().and_then(|core| core.transport());
    for hint in token.hints() {
        if let Some(transport) = &transport {
            let request = captp::DialRequest {
                host: host_text(hint.host()),
                port: hint.port(),
                expected: key,
                identity: identity.cloned(),
                offer: offer.clone(),
                limits,
            };
            match transport.dial(request).await {
                Ok(connection) => return Ok(connection),
                Err(error) => attempts.push((hint.to_string(), error)),
            }
            continue;
        }
        let addrs = match resolve(hint).await {
            Ok(addrs) => addrs,
            Err(error) => {
                attempts.push((hint.to_string(), NetError::Io(error)));
                continue;
            }
        };
        for addr in addrs {
            match tls::dial(addr, key, identity, offer.clone(), limits).await {
                Ok(connection) => return Ok(connection),
                Err(error) => {
                    tracing::debug!(%addr, error = %captp::log::Untrusted(&error), "location hint failed");
                    attempts.push((addr.to_string(), error));
                }
            }
        }
    }
    Err(RestoreError::Unreachable {
        vat: *token.vat(),
        attempts,
    })
}

/// Restores the object `swiss` names over an open `connection` to its vat,
/// without waiting: the reference returned can be called at once (the calls
/// are pipelined on the restore) and breaks with the vat's refusal if the
/// token is refused.
pub fn restore_on(connection: &Connection, swiss: &SwissNumber) -> capnp::capability::Client {
    let gateway: gateway::Client = connection.peer();
    let mut request = gateway.restore_request();
    request.get().set_swiss_number(swiss.as_bytes());
    let object = request.send().pipeline.get_object();
    capnp::capability::Client::new(object.as_cap())
}

/// Restores `token` into a live reference: over the vat's connection to the
/// token's vat if it has one (dialled by an earlier restore, or dialled by
/// that vat to this one), else over a new one ([`connect`]), which the vat
/// keeps for later restores until it has been idle for
/// [`Limits::idle_timeout`]. Restores the object and waits for the answer so
/// that a refusal is reported here. Returns the reference and the object's
/// kind.
///
/// When this vat serves a [`Persistence`](super::Persistence) as
/// `identity`, the connection it dials offers its own gateway, so that the
/// peer restores this vat's tokens over the same connection.
///
/// ```no_run
/// # async fn f(text: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use capnp::capability::FromClientHook;
/// use schema::demo_capnp::counter;
/// let token: sturdyrefs::SturdyRef = text.parse()?;
/// let (object, kind) = vat::sturdy::restore(&token, None, vat::net::Limits::default()).await?;
/// let counter: counter::Client = object.cast_to();
/// # Ok(()) }
/// ```
pub async fn restore(
    token: &SturdyRef,
    identity: Option<&Identity>,
    limits: Limits,
) -> Result<(capnp::capability::Client, String), RestoreError> {
    let (object, kind, _) = restore_connected(token, identity, limits).await?;
    Ok((object, kind))
}

/// [`restore`], also returning the connection the reference lives on.
pub(crate) async fn restore_connected(
    token: &SturdyRef,
    identity: Option<&Identity>,
    limits: Limits,
) -> Result<(capnp::capability::Client, String, Rc<Connection>), RestoreError> {
    let connection = session(token, identity, limits).await?;
    match restore_over(&connection, token.swiss()).await {
        // The connection may have died since its last use without this vat
        // noticing yet, or the peer may have closed it as a duplicate before
        // this restore reached it: forget it and try afresh, once.
        Err(error) if error.kind() == ErrorKind::Disconnected => {
            sessions::forget(&session_key(token, identity), &connection);
            let connection = session(token, identity, limits).await?;
            let (object, kind) = restore_over(&connection, token.swiss()).await?;
            Ok((object, kind, connection))
        }
        Ok((object, kind)) => Ok((object, kind, connection)),
        Err(error) => Err(error.into()),
    }
}

/// Three-party handoff, the introducer's side: `object` was restored from
/// `holder` (a token of vat B) by this vat, through [`restore`] with the
/// same `identity`; this asks B for a token of the same object that only
/// `recipient` may use, once, within [`HANDOFF_LIFETIME`](super::HANDOFF_LIFETIME).
/// Pass the token to the recipient, which [`restore`]s it from B directly:
/// its calls never pass through this vat, which may then leave.
///
/// ```no_run
/// # async fn f(holder: sturdyrefs::SturdyRef, carol: sturdyrefs::VatId) -> Result<(), vat::sturdy::RestoreError> {
/// let limits = vat::net::Limits::default();
/// let (object, _kind) = vat::sturdy::restore(&holder, None, limits).await?;
/// let for_carol = vat::sturdy::handoff(&holder, &object, carol, None, limits).await?;
/// // hand `for_carol.to_string()` to carol, who restores it with her identity
/// # Ok(()) }
/// ```
pub async fn handoff(
    holder: &SturdyRef,
    object: &capnp::capability::Client,
    recipient: VatId,
    identity: Option<&Identity>,
    limits: Limits,
) -> Result<SturdyRef, RestoreError> {
    let connection = session(holder, identity, limits).await?;
    let gateway: gateway::Client = connection.peer();
    let mut request = gateway.handoff_request();
    request
        .get()
        .init_object()
        .set_as_capability(object.hook.add_ref());
    request.get().set_recipient(recipient.as_bytes());
    let response = request.send().promise.await.map_err(Error::from)?;
    let text = response
        .get()
        .and_then(|r| r.get_token())
        .map_err(Error::from)?
        .to_str()
        .map_err(|e| Error::from(capnp::Error::from(e)))?
        .to_owned();
    text.parse().map_err(|e| {
        RestoreError::Refused(Error::new(
            ErrorKind::InvalidArgument,
            format!("the vat answered with a token that does not parse: {e}"),
        ))
    })
}

/// Asks the gateway at the other end of `connection` for the object `swiss`
/// names, and waits for the answer.
async fn restore_over(
    connection: &Connection,
    swiss: &SwissNumber,
) -> Result<(capnp::capability::Client, String), Error> {
    let gateway: gateway::Client = connection.peer();
    let mut request = gateway.restore_request();
    request.get().set_swiss_number(swiss.as_bytes());
    let response = request.send().promise.await?;
    let results = response.get()?;
    let kind = results
        .get_kind()?
        .to_string()
        .map_err(capnp::Error::from)?;
    let object = results.get_object().get_as_capability()?;
    Ok((object, kind))
}

/// The socket addresses a hint stands for.
/// A hint's host as a transport takes it: the name, or the bare address.
fn host_text(host: &Host) -> String {
    match host {
        Host::Dns(name) => name.to_string(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    }
}

async fn resolve(hint: &LocationHint) -> std::io::Result<Vec<SocketAddr>> {
    match hint.host() {
        Host::Ipv4(ip) => Ok(vec![SocketAddr::from((*ip, hint.port()))]),
        Host::Ipv6(ip) => Ok(vec![SocketAddr::from((*ip, hint.port()))]),
        Host::Dns(name) => Ok(tokio::net::lookup_host((name.as_str(), hint.port()))
            .await?
            .collect()),
    }
}
