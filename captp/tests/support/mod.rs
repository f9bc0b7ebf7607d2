#![allow(clippy::unwrap_used, clippy::expect_used)] // test scaffolding: a failure here is a failed test

//! A vat to run tests in, a tiny echo server, captured logs, and raw TLS
//! peers that do what vats would not.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use captp::{Connection, PublicKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use schema::demo_capnp::host;
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for something that must happen before calling it
/// a failure. Generous on purpose: tests assert what happens, never how fast.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// Runs `future` the way a vat runs its work: on a current-thread runtime
/// inside a `LocalSet`.
pub fn in_vat<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

/// 127.0.0.1 on a free port.
pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A host whose only method is `echo`.
struct Echo;

impl host::Server for Echo {
    async fn echo(
        self: Rc<Self>,
        params: host::EchoParams,
        mut results: host::EchoResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_value(params.get()?.get_value());
        Ok(())
    }
}

/// A fresh echo host, as a bootstrap capability.
pub fn echo_host() -> capnp::capability::Client {
    capnp_rpc::new_client::<host::Client, _>(Echo).client
}

/// Calls `echo(value)` on the peer's bootstrap host.
pub async fn echo(connection: &Connection, value: u64) -> Result<u64, capnp::Error> {
    let host: host::Client = connection.peer();
    let mut request = host.echo_request();
    request.get().set_value(value);
    let response = request.send().promise.await?;
    Ok(response.get()?.get_value())
}

/// The keys a listener's bootstrap chooser was called with, in order.
#[derive(Clone, Default)]
pub struct RecordedKeys(Rc<RefCell<Vec<Option<PublicKey>>>>);

impl RecordedKeys {
    /// A bootstrap chooser that records the caller's key and offers an echo host.
    pub fn recording_echo_host(
        &self,
    ) -> impl Fn(Option<PublicKey>) -> Option<capnp::capability::Client> + 'static {
        let keys = self.clone();
        move |key| {
            keys.0.borrow_mut().push(key);
            Some(echo_host())
        }
    }

    /// The keys recorded so far.
    pub fn keys(&self) -> Vec<Option<PublicKey>> {
        self.0.borrow().clone()
    }
}

/// Log lines written on this thread while the guard lives.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Starts capturing this thread's logs (INFO and up, no colours).
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` has been logged `count` times; returns the
    /// logs. The deadline only guards against a hang: it is far above what
    /// any test needs on a slow or busy machine, so reaching it means the
    /// line never came.
    pub async fn wait_for(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let text = self.text();
            if text.matches(needle).count() >= count {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {count} times; logs:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for a fresh P-256 key, and the key.
pub fn p256_certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["p256.invalid".to_string()]).unwrap();
    let certificate = params.self_signed(&key).unwrap().der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (certificate, key)
}

/// Believes any server: for playing a client that is not a vat.
#[derive(Debug)]
struct BelieveAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for BelieveAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".to_string()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS 1.3 client that is not a vat: it offers the ALPN protocols
/// `alpn`, presents `certificate` if given, and believes any server.
pub async fn raw_tls_client(
    addr: SocketAddr,
    alpn: Vec<Vec<u8>>,
    certificate: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(BelieveAnyServer(provider)));
    let mut config = match certificate {
        Some((certificate, key)) => builder
            .with_client_auth_cert(vec![certificate], key)
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(captp::tls::SERVER_NAME).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
}

/// A TLS 1.3 server that is not a vat (its key is P-256) and accepts one
/// connection, speaking the vat ALPN protocol. Returns its address.
pub async fn serve_p256_tls_once() -> SocketAddr {
    let (certificate, key) = p256_certificate();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    config.alpn_protocols = vec![captp::tls::ALPN_PROTOCOL.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::task::spawn_local(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // The handshake is expected to fail; the client reports why.
        let _ = acceptor.accept(stream).await;
    });
    addr
}

/// Raises this process's soft limit on open files to at least `wanted`
/// (up to the hard limit), for tests that hold many sockets.
pub fn raise_fd_limit(wanted: u64) {
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    if soft < wanted {
        rlimit::Resource::NOFILE
            .set(wanted.min(hard), hard)
            .unwrap();
    }
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
    assert!(
        soft >= wanted,
        "the hard limit on open files is {hard}, below {wanted}"
    );
}

/// A listening socket that never accepts, its backlog already full: a
/// connection to it is never established (the kernel drops the SYN), like
/// one to a blackholed address.
pub async fn never_answers() -> (socket2::Socket, SocketAddr, TcpStream) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&localhost().into()).unwrap();
    // A backlog of 0 holds one established connection on Linux.
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let filler = TcpStream::connect(addr).await.unwrap();
    (socket, addr, filler)
}
