//! Certificate verifiers that pin ed25519 keys instead of trusting a CA.
//!
//! A vat's certificate is only an envelope for its ed25519 key: what counts
//! is that the key inside is the one expected (for a server) or an ed25519
//! key at all (for a client), and that the peer proves it holds the private
//! half by signing the handshake transcript (TLS 1.3 CertificateVerify).
//! Names, dates, issuer, extensions and the certificate's own signature are
//! not looked at: they carry no trust when the key itself is pinned.

use std::sync::Arc;

use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::VerifyingKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, PeerMisbehaved,
    SignatureScheme,
};

use super::error::CertificateProblem;
use crate::PublicKey;

/// The ed25519 key in a peer's certificate chain, which must be a single
/// certificate.
///
/// The certificate is parsed by webpki and its SubjectPublicKeyInfo by the
/// RustCrypto `spki`/`pkcs8` decoders behind `ed25519-dalek`, which check the
/// algorithm (id-Ed25519, RFC 8410) and the key's length and encoding.
pub(crate) fn key_of(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<PublicKey, CertificateProblem> {
    if !intermediates.is_empty() {
        return Err(CertificateProblem::Chain(intermediates.len() + 1));
    }
    let certificate = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|error| CertificateProblem::Malformed(error.to_string()))?;
    let spki = certificate.subject_public_key_info();
    let key = VerifyingKey::from_public_key_der(spki.as_ref())
        .map_err(|error| CertificateProblem::NotEd25519(error.to_string()))?;
    Ok(PublicKey(key.to_bytes()))
}

/// Why one of our verifiers refused a certificate. It travels inside
/// rustls's error and is recovered by [`explain`](super::error::explain).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejection {
    /// The certificate holds no usable key.
    #[error("{0}")]
    Problem(CertificateProblem),
    /// The server's key is not the one dialled.
    #[error("it holds key {found:?}, not the key dialled")]
    WrongKey {
        /// The key the certificate holds.
        found: PublicKey,
    },
}

impl From<Rejection> for rustls::Error {
    fn from(rejection: Rejection) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(rejection))))
    }
}

/// Verifies a TLS 1.3 CertificateVerify signature, which must be ed25519,
/// with the key in `certificate`.
fn verify_ed25519(
    message: &[u8],
    certificate: &CertificateDer<'_>,
    signature: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if signature.scheme != SignatureScheme::ED25519 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    rustls::crypto::verify_tls13_signature(message, certificate, signature, algorithms)
}

/// The error for any TLS 1.2 signature: vats speak TLS 1.3 only, so rustls
/// never asks (the protocol versions are restricted), but if it did, refuse.
fn tls12_refused() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is refused: vats speak TLS 1.3 only".to_string())
}

/// The only signature scheme vats use.
fn schemes() -> Vec<SignatureScheme> {
    vec![SignatureScheme::ED25519]
}

/// Accepts a server only if it proves the ed25519 key that was dialled.
#[derive(Debug)]
pub(crate) struct PinnedServer {
    expected: PublicKey,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedServer {
    /// A verifier that accepts only `expected`, checking signatures with the
    /// algorithms of `provider`.
    pub(crate) fn new(expected: PublicKey, provider: &CryptoProvider) -> PinnedServer {
        PinnedServer {
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = key_of(end_entity, intermediates).map_err(Rejection::Problem)?;
        if found != self.expected {
            return Err(Rejection::WrongKey { found }.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// Lets a client connect without a certificate (anonymously), or with an
/// ed25519 certificate whose key it proves.
#[derive(Debug)]
pub(crate) struct OptionalClient {
    algorithms: WebPkiSupportedAlgorithms,
}

impl OptionalClient {
    /// A verifier checking signatures with the algorithms of `provider`.
    pub(crate) fn new(provider: &CryptoProvider) -> OptionalClient {
        OptionalClient {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for OptionalClient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        key_of(end_entity, intermediates).map_err(Rejection::Problem)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::config::certified;
    use crate::tls::error::{explain, Explained};
    use crate::Identity;

    fn p256_certificate() -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["p256.invalid".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    #[test]
    fn the_key_of_a_vat_certificate_is_the_vat_key() {
        let identity = Identity::generate().unwrap();
        let (certificate, _) = certified(&identity).unwrap();
        assert_eq!(key_of(&certificate, &[]), Ok(identity.public_key()));
    }

    #[test]
    fn a_certificate_chain_is_refused() {
        let identity = Identity::generate().unwrap();
        let (certificate, _) = certified(&identity).unwrap();
        let chain = [certificate.clone()];
        assert_eq!(
            key_of(&certificate, &chain),
            Err(CertificateProblem::Chain(2))
        );
    }

    #[test]
    fn bytes_that_are_not_a_certificate_are_refused_as_malformed() {
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            key_of(&garbage, &[]),
            Err(CertificateProblem::Malformed(_))
        ));
    }

    #[test]
    fn a_p256_certificate_is_refused_as_not_ed25519() {
        let problem = key_of(&p256_certificate(), &[]).unwrap_err();
        assert!(
            matches!(problem, CertificateProblem::NotEd25519(_)),
            "{problem:?}"
        );
        assert!(
            problem.to_string().contains("not an ed25519 key"),
            "{problem}"
        );
    }

    #[test]
    fn the_pinned_verifier_refuses_another_key_and_names_it() {
        let dialled = Identity::generate().unwrap().public_key();
        let other = Identity::generate().unwrap();
        let (certificate, _) = certified(&other).unwrap();
        let verifier = PinnedServer::new(dialled, &provider());
        let name = ServerName::try_from("capnp-vat.invalid").unwrap();
        let error = verifier
            .verify_server_cert(&certificate, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
        assert!(matches!(
            explain(io),
            Explained::NotThatVat { found } if found == other.public_key()
        ));
    }

    #[test]
    fn the_pinned_verifier_accepts_the_dialled_key() {
        let identity = Identity::generate().unwrap();
        let (certificate, _) = certified(&identity).unwrap();
        let verifier = PinnedServer::new(identity.public_key(), &provider());
        let name = ServerName::try_from("capnp-vat.invalid").unwrap();
        assert!(verifier
            .verify_server_cert(&certificate, &[], &name, &[], UnixTime::now())
            .is_ok());
    }

    #[test]
    fn the_client_verifier_is_optional_and_takes_only_ed25519() {
        let verifier = OptionalClient::new(&provider());
        assert!(verifier.offer_client_auth());
        assert!(!verifier.client_auth_mandatory());
        assert!(verifier
            .verify_client_cert(&p256_certificate(), &[], UnixTime::now())
            .is_err());
        assert_eq!(
            verifier.supported_verify_schemes(),
            vec![SignatureScheme::ED25519]
        );
    }
}
