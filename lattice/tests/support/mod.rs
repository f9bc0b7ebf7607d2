//! HTTP on a raw socket, for the lattice's tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Generous: the machine may be busy.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A free port on loopback (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// `GET path` on loopback `port`: the status and body, or `None` if
/// nothing listens (or the connection closed without an answer).
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    Some((status, reply.split_once("\r\n\r\n")?.1.to_owned()))
}

/// Polls `GET path` until `accept` holds or patience runs out; answers the
/// last reply.
pub fn until(
    port: u16,
    path: &str,
    accept: impl Fn(&Option<(u16, String)>) -> bool,
) -> Option<(u16, String)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = get(port, path);
        if accept(&reply) || Instant::now() > deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a reply is a 200 with exactly `body`.
pub fn says(body: &str) -> impl Fn(&Option<(u16, String)>) -> bool + '_ {
    move |reply| matches!(reply, Some((200, b)) if b == body)
}
