//! The HTTP server provider: each binding opens a real HTTP/1.1 listener
//! (hyper) and sends every request to the bound actor group
//! (`HttpHandler`, schema/capnp/lattice.capnp); removing the binding closes
//! the port.
//!
//! Settings: `port` (required), `address` (default: the instance's own, the
//! host's address, so that instances on several hosts of one machine or
//! network serve the same port each on its own address). Bounds, per
//! binding: [`MAX_CONNECTIONS`] open connections and
//! [`MAX_CONNECTIONS_PER_SOURCE`] from one IP address, request bodies of at
//! most [`MAX_BODY_BYTES`], request headers within [`HEADER_TIMEOUT`].
//! Beyond a connection bound the newcomer is not refused: the oldest
//! connection of that scope that has not sent a byte yet is closed to make
//! room (an honest client sends its request at once, so idle sockets, from
//! however many addresses, cannot keep it out); only when every connection
//! of the scope has spoken is the newcomer closed.
//! Answers of its own: `503` when the binding has no actor instance or was
//! revoked, `502` when the actor's call fails, `413` for a body too large.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use schema::lattice_capnp::http_handler;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use crate::kind::{BindingId, Config};
use crate::provider::{Binding, Provider, ProvisionError, Provisioned};

/// The provider's kind name.
pub const NAME: &str = "http";
/// The most connections one binding holds open.
pub const MAX_CONNECTIONS: usize = 256;
/// The most connections one binding holds open from one IP address.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// The largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a connection may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// One instance of the HTTP provider.
pub struct HttpProvider {
    address: IpAddr,
    listeners: BTreeMap<BindingId, Listening>,
}

impl Default for HttpProvider {
    fn default() -> HttpProvider {
        HttpProvider::new()
    }
}

impl HttpProvider {
    /// An instance with no bindings, listening on loopback unless a
    /// binding names an address.
    pub fn new() -> HttpProvider {
        HttpProvider::on(IpAddr::from([127, 0, 0, 1]))
    }

    /// An instance listening on `address` unless a binding names another.
    pub fn on(address: IpAddr) -> HttpProvider {
        HttpProvider {
            address,
            listeners: BTreeMap::new(),
        }
    }
}

/// One binding's listener, its connections, and the actor they call.
struct Listening {
    address: SocketAddr,
    actor: http_handler::Client,
    accept: JoinHandle<()>,
    connections: Connections,
}

/// A binding's open connections, oldest first.
type Connections = Rc<RefCell<Vec<Open>>>;

/// One open connection: where from, whether it sent anything yet, and the
/// task serving it.
struct Open {
    source: IpAddr,
    spoke: Rc<Cell<bool>>,
    task: JoinHandle<()>,
}

/// A stream that notes when its peer first sends a byte.
struct Spoken<S> {
    inner: S,
    spoke: Rc<Cell<bool>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Spoken<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.spoke.set(true);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Spoken<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, bytes)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Makes room for a newcomer from `source`: within a full scope (the
/// source's share, or every place), closes the oldest connection that has
/// not spoken. Answers whether there is room now.
fn make_room(connections: &mut Vec<Open>, source: IpAddr) -> bool {
    connections.retain(|open| !open.task.is_finished());
    // The source's share, then every place.
    let scopes = [
        (Some(source), MAX_CONNECTIONS_PER_SOURCE),
        (None, MAX_CONNECTIONS),
    ];
    for (scope, limit) in scopes {
        let in_scope = |open: &Open| scope.is_none_or(|source| open.source == source);
        if connections.iter().filter(|open| in_scope(open)).count() < limit {
            continue;
        }
        let silent = connections
            .iter()
            .position(|open| in_scope(open) && !open.spoke.get());
        match silent {
            Some(oldest) => {
                let shed = connections.remove(oldest);
                tracing::debug!(source = %shed.source, "HTTP connection that never spoke closed to make room");
                shed.task.abort();
            }
            None => return false,
        }
    }
    true
}

impl Listening {
    fn close(self) {
        self.accept.abort();
        for open in self.connections.borrow_mut().drain(..) {
            open.task.abort();
        }
    }
}

fn address(config: &Config, default: IpAddr) -> Result<SocketAddr, ProvisionError> {
    let port = config.get("port").ok_or_else(|| ProvisionError::Setting {
        setting: "port".to_owned(),
        reason: "the HTTP provider needs the port to listen on".to_owned(),
    })?;
    let port: u16 = port.parse().map_err(|_| ProvisionError::Setting {
        setting: "port".to_owned(),
        reason: format!("{:?} is not a port number", captp::log::Untrusted(port)),
    })?;
    let ip = match config.get("address") {
        None => default,
        Some(host) => host.parse().map_err(|_| ProvisionError::Setting {
            setting: "address".to_owned(),
            reason: format!("{:?} is not an IP address", captp::log::Untrusted(host)),
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn listen(address: SocketAddr, actor: http_handler::Client) -> Result<Listening, ProvisionError> {
    let unavailable = |e: std::io::Error| ProvisionError::Unavailable {
        resource: address.to_string(),
        reason: e.to_string(),
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        None,
    )
    .map_err(unavailable)?;
    // A port just released by an unbind is taken again at once.
    socket.set_reuse_address(true).map_err(unavailable)?;
    socket.bind(&address.into()).map_err(unavailable)?;
    socket.listen(1024).map_err(unavailable)?;
    socket.set_nonblocking(true).map_err(unavailable)?;
    let listener = tokio::net::TcpListener::from_std(std::net::TcpListener::from(socket))
        .map_err(unavailable)?;
    let connections: Connections = Rc::default();
    let accept = vat_env::spawn(accept(listener, actor.clone(), Rc::clone(&connections)));
    tracing::info!(%address, "HTTP provider listening");
    Ok(Listening {
        address,
        actor,
        accept,
        connections,
    })
}

async fn accept(
    listener: tokio::net::TcpListener,
    actor: http_handler::Client,
    connections: Connections,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "HTTP accept failed");
                vat_env::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !make_room(&mut connections.borrow_mut(), peer.ip()) {
            tracing::debug!(%peer, "HTTP connection refused: every place holds a connection that spoke");
            drop(stream);
            continue;
        }
        let actor = actor.clone();
        let spoke = Rc::new(Cell::new(false));
        let stream = Spoken {
            inner: stream,
            spoke: Rc::clone(&spoke),
        };
        let task = vat_env::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(actor.clone(), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "HTTP connection ended");
            }
        });
        connections.borrow_mut().push(Open {
            source: peer.ip(),
            spoke,
            task,
        });
    }
}

fn answer(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}

async fn handle(
    actor: http_handler::Client,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large\n",
            ))
        }
    };
    let mut call = actor.handle_request();
    {
        let mut out = call.get().init_request();
        out.set_method(parts.method.as_str());
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        out.set_path(path);
        let mut headers = out.reborrow().init_headers(parts.headers.len() as u32);
        for (i, (name, value)) in parts.headers.iter().enumerate() {
            let mut header = headers.reborrow().get(i as u32);
            header.set_name(name.as_str());
            header.set_value(value.as_bytes());
        }
        out.set_body(&body);
    }
    let reply = call.send().promise.await;
    let response = match reply {
        Ok(reply) => read_response(&reply),
        Err(error) => Err(vat::Error::from(error)),
    };
    Ok(match response {
        Ok(response) => response,
        Err(error) => {
            let status = match error.kind() {
                vat::ErrorKind::Revoked => StatusCode::SERVICE_UNAVAILABLE,
                _ if error.is_undelivered() => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            };
            tracing::debug!(%error, "an HTTP request's actor call failed");
            answer(
                status,
                &format!("{status}: the bound actor did not answer\n"),
            )
        }
    })
}

fn read_response(
    reply: &capnp::capability::Response<http_handler::handle_results::Owned>,
) -> Result<Response<Full<Bytes>>, vat::Error> {
    let bad = |e: capnp::Error| vat::Error::from(e);
    let out = reply.get().map_err(bad)?.get_response().map_err(bad)?;
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(
        out.get_body().map_err(bad)?,
    )));
    *response.status_mut() = StatusCode::from_u16(out.get_status()).map_err(|_| {
        vat::Error::new(
            vat::ErrorKind::InvalidArgument,
            format!("the actor answered status {}", out.get_status()),
        )
    })?;
    for header in out.get_headers().map_err(bad)?.iter() {
        let name = header.get_name().map_err(bad)?.as_bytes();
        let name = hyper::header::HeaderName::from_bytes(name);
        let value = hyper::header::HeaderValue::from_bytes(header.get_value().map_err(bad)?);
        if let (Ok(name), Ok(value)) = (name, value) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}

impl Provider for HttpProvider {
    fn bind(&mut self, binding: Binding) -> LocalBoxFuture<'static, Provisioned> {
        let actor: http_handler::Client =
            capnp::capability::FromClientHook::new(binding.actor.hook);
        let outcome = address(&binding.config, self.address)
            .and_then(|address| listen(address, actor))
            .map(|listening| {
                if let Some(old) = self.listeners.insert(binding.id.clone(), listening) {
                    old.close();
                }
                None
            });
        Box::pin(async move { outcome })
    }

    fn reconfigure(
        &mut self,
        id: &BindingId,
        config: &Config,
    ) -> LocalBoxFuture<'static, Result<(), ProvisionError>> {
        let outcome = match (address(config, self.address), self.listeners.get(id)) {
            (Err(error), _) => Err(error),
            (Ok(address), Some(old)) if old.address == address => Ok(()),
            (Ok(address), Some(old)) => {
                // The new port first: if it cannot be had, the old one serves on.
                listen(address, old.actor.clone()).map(|listening| {
                    if let Some(old) = self.listeners.insert(id.clone(), listening) {
                        old.close();
                    }
                })
            }
            (Ok(_), None) => Err(ProvisionError::NoReconfigure),
        };
        Box::pin(async move { outcome })
    }

    fn unbind(&mut self, id: &BindingId) -> LocalBoxFuture<'static, ()> {
        if let Some(listening) = self.listeners.remove(id) {
            tracing::info!(address = %listening.address, "HTTP provider closed its port");
            listening.close();
        }
        Box::pin(async {})
    }

    fn shutdown(&mut self) -> LocalBoxFuture<'static, ()> {
        for (_, listening) in std::mem::take(&mut self.listeners) {
            listening.close();
        }
        Box::pin(async {})
    }
}
