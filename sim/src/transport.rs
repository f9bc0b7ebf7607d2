//! Dialling over the simulated network, authenticated by the network
//! itself.
//!
//! Inside the simulator TLS is replaced: rustls draws its handshake
//! randomness from the OS, which no seed controls. Instead each end's
//! hello carries the public key of the vat it belongs to, and the
//! simulated network, which is the kernel of every host here and carries
//! only what the simulator's own vats send, hands it to the other end as
//! the proven key. A vat still checks that the listener it reached is the
//! vat its token names.

use std::io;
use std::rc::Rc;

use captp::{Connection, DialRequest, NetError, PublicKey, Side, Transport};
use futures::future::LocalBoxFuture;

use crate::net::Network;

/// One vat's way onto the simulated network.
pub(crate) struct SimTransport {
    pub(crate) network: Network,
    pub(crate) host: Rc<str>,
}

/// The hello of an end: its vat's key, or nothing (anonymous).
pub(crate) fn hello(key: Option<PublicKey>) -> Vec<u8> {
    key.map(|key| <[u8; 32]>::from(key).to_vec())
        .unwrap_or_default()
}

/// The key a hello names, if it names one.
pub(crate) fn key_of(hello: &[u8]) -> Option<PublicKey> {
    <[u8; 32]>::try_from(hello).ok().map(PublicKey::from)
}

impl Transport for SimTransport {
    fn dial(&self, request: DialRequest) -> LocalBoxFuture<'static, Result<Connection, NetError>> {
        let network = self.network.clone();
        let host = self.host.clone();
        Box::pin(async move {
            let ours = request.identity.as_ref().map(|i| i.public_key());
            let (stream, theirs) = network
                .connect(
                    &host,
                    &request.host,
                    request.port,
                    hello(ours),
                    captp::DEFAULT_DIAL_TIMEOUT,
                )
                .await
                .map_err(NetError::Io)?;
            match key_of(&theirs) {
                Some(key) if key == request.expected => {}
                found => {
                    return Err(NetError::Io(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{}:{} is not vat {}: it is {}",
                            request.host,
                            request.port,
                            request.expected,
                            found.map_or("anonymous".to_owned(), |k| k.to_string())
                        ),
                    )))
                }
            }
            let label = format!("{}:{}", request.host, request.port);
            Ok(Connection::open_authenticated(
                stream,
                Side::Dialer,
                request.offer,
                request.limits,
                label,
                Some(request.expected),
            ))
        })
    }
}
