//! The rustls configurations of a vat: TLS 1.3 only, the ring provider, an
//! ed25519 self-signed certificate, key-pinning verifiers, the vat ALPN id,
//! and no session resumption (every connection proves its keys afresh).

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use super::error::SetupError;
use super::verify::{OptionalClient, PinnedServer};
use super::{ALPN_PROTOCOL, SERVER_NAME};
use crate::{Identity, PublicKey};

/// The only protocol version vats speak.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The cryptography: ring's implementations (no C toolchain beyond ring's
/// own, no cmake).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `identity`'s key, and the key in the form
/// rustls takes.
pub(crate) fn certified(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), SetupError> {
    let der = identity.pkcs8_der().map_err(SetupError::Certificate)?;
    let pkcs8 = PrivatePkcs8KeyDer::from(der.to_vec());
    let failed = |error: rcgen::Error| SetupError::Certificate(error.to_string());
    let key_pair = rcgen::KeyPair::try_from(&pkcs8).map_err(failed)?;
    let mut params =
        rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(failed)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "capnp vat");
    let certificate = params.self_signed(&key_pair).map_err(failed)?;
    Ok((certificate.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// The configuration of a vat accepting connections as `identity`.
pub(crate) fn server(identity: &Identity) -> Result<ServerConfig, SetupError> {
    let provider = provider();
    let verifier = Arc::new(OptionalClient::new(&provider));
    let (certificate, key) = certified(identity)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![certificate], key)?;
    config.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The configuration of a vat dialling the vat `expected`, as `identity` or
/// anonymously.
pub(crate) fn client(
    expected: PublicKey,
    identity: Option<&Identity>,
) -> Result<ClientConfig, SetupError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer::new(expected, &provider));
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(identity) => {
            let (certificate, key) = certified(identity)?;
            builder.with_client_auth_cert(vec![certificate], key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The server name a vat sends in SNI: a fixed placeholder, since the key
/// dialled, not a name, says who the server must be.
pub(crate) fn server_name() -> Result<ServerName<'static>, SetupError> {
    ServerName::try_from(SERVER_NAME).map_err(|error| SetupError::ServerName(error.to_string()))
}
