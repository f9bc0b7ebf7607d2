//! The holder's side: from a sturdyref token to a live reference.

use std::fmt;
use std::net::SocketAddr;

use captp::{tls, Connection, Identity, Limits, NetError, PublicKey};
use schema::gateway_capnp::gateway;
use sturdyrefs::{Host, LocationHint, SturdyRef, SwissNumber, VatId};

use crate::error::Error;

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
    /// The vat was reached and refused the token (see the error's kind:
    /// [`UnknownToken`](crate::ErrorKind::UnknownToken),
    /// [`Revoked`](crate::ErrorKind::Revoked),
    /// [`Expired`](crate::ErrorKind::Expired)), or the connection failed
    /// during the exchange.
    #[error("vat refused the token: {0}")]
    Refused(#[from] Error),
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
/// Must be awaited inside a vat.
pub async fn connect(
    token: &SturdyRef,
    identity: Option<&Identity>,
    limits: Limits,
) -> Result<Connection, RestoreError> {
    let key = vat_key(token.vat());
    let mut attempts = Vec::new();
    for hint in token.hints() {
        let addrs = match resolve(hint).await {
            Ok(addrs) => addrs,
            Err(error) => {
                attempts.push((hint.to_string(), NetError::Io(error)));
                continue;
            }
        };
        for addr in addrs {
            match tls::dial(addr, key, identity, None, limits).await {
                Ok(connection) => return Ok(connection),
                Err(error) => {
                    tracing::debug!(%addr, %error, "location hint failed");
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

/// Restores `token` into a live reference: dials its vat ([`connect`]),
/// restores the object, and waits for the answer so that a refusal is
/// reported here. Returns the reference and the object's kind.
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
    let connection = connect(token, identity, limits).await?;
    let gateway: gateway::Client = connection.peer();
    let mut request = gateway.restore_request();
    request.get().set_swiss_number(token.swiss().as_bytes());
    let response = request.send().promise.await.map_err(Error::from)?;
    let results = response.get().map_err(Error::from)?;
    let kind = results
        .get_kind()
        .map_err(Error::from)?
        .to_string()
        .map_err(|e| Error::from(capnp::Error::from(e)))?;
    let object = results
        .get_object()
        .get_as_capability()
        .map_err(Error::from)?;
    Ok((object, kind))
}

/// The socket addresses a hint stands for.
async fn resolve(hint: &LocationHint) -> std::io::Result<Vec<SocketAddr>> {
    match hint.host() {
        Host::Ipv4(ip) => Ok(vec![SocketAddr::from((*ip, hint.port()))]),
        Host::Ipv6(ip) => Ok(vec![SocketAddr::from((*ip, hint.port()))]),
        Host::Dns(name) => Ok(tokio::net::lookup_host((name.as_str(), hint.port()))
            .await?
            .collect()),
    }
}
