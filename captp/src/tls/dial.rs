//! Dialling a vat whose key is known.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsConnector;

use super::config;
use super::error::{check_protocol, explain, Explained};
use crate::{
    Connection, DialStage, Identity, Limits, NetError, PublicKey, Side, DEFAULT_DIAL_TIMEOUT,
};

/// Dials the vat `expected` at `addr` over TLS and starts an RPC session,
/// offering `offer` (if any) to it.
///
/// The connection is made only if the peer proves it holds the private key
/// of `expected`; otherwise dialling fails with [`NetError::NotThatVat`] (it
/// proved another key) or [`NetError::Handshake`] (it proved nothing: no
/// usable certificate, no TLS, wrong protocol). If the TCP connection and
/// the handshake together take longer than
/// [`DEFAULT_DIAL_TIMEOUT`](crate::DEFAULT_DIAL_TIMEOUT), it fails with
/// [`NetError::DialTimedOut`], which says how far it got; nothing was sent,
/// so retrying is safe. With `identity` this vat proves its own key to the
/// peer; with `None` it connects anonymously.
///
/// The returned connection's [`peer_key`](Connection::peer_key) is
/// `Some(expected)`. Must be awaited inside a vat.
///
/// In TLS 1.3 the client's certificate is checked after the client has
/// finished its side of the handshake, so if the peer refuses this vat's
/// certificate, dialling succeeds and the session then ends with the peer's
/// alert as its error.
pub async fn dial(
    addr: SocketAddr,
    expected: PublicKey,
    identity: Option<&Identity>,
    offer: Option<capnp::capability::Client>,
    limits: Limits,
) -> Result<Connection, NetError> {
    dial_within(
        DEFAULT_DIAL_TIMEOUT,
        addr,
        expected,
        identity,
        offer,
        limits,
    )
    .await
}

/// [`dial`], giving up after `timeout` instead of
/// [`DEFAULT_DIAL_TIMEOUT`](crate::DEFAULT_DIAL_TIMEOUT).
pub async fn dial_within(
    timeout: Duration,
    addr: SocketAddr,
    expected: PublicKey,
    identity: Option<&Identity>,
    offer: Option<capnp::capability::Client>,
    limits: Limits,
) -> Result<Connection, NetError> {
    let deadline = vat_env::now() + timeout;
    let connector = TlsConnector::from(Arc::new(config::client(expected, identity)?));
    let server_name = config::server_name()?;
    let stream = crate::socket::connect(addr, deadline, timeout).await?;
    crate::socket::prepare(&stream, &limits)?;
    let failed = |reason| NetError::Handshake { addr, reason };
    let handshake = connector.connect(server_name, stream);
    let stream = match vat_env::timeout_at(deadline, handshake).await {
        Err(_elapsed) => {
            return Err(NetError::DialTimedOut {
                addr,
                timeout,
                stage: DialStage::Handshaking,
            })
        }
        Ok(Err(error)) => {
            return Err(match explain(error) {
                Explained::NotThatVat { found } => NetError::NotThatVat {
                    addr,
                    expected,
                    found,
                },
                Explained::Failed(reason) => failed(reason),
            })
        }
        Ok(Ok(stream)) => stream,
    };
    check_protocol(stream.get_ref().1.alpn_protocol()).map_err(failed)?;
    Ok(Connection::open_authenticated(
        stream,
        Side::Dialer,
        offer,
        limits,
        addr.to_string(),
        Some(expected),
    ))
}
