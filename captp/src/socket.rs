//! Connecting within a deadline, and the socket options every connection
//! between vats gets.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;
use vat_env::Instant;

use crate::{DialStage, Limits, NetError};

/// How long [`dial`](crate::dial) and [`tls::dial`](crate::tls::dial) wait
/// for a connection, the TCP connection and the TLS handshake together,
/// before giving up with [`NetError::DialTimedOut`].
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a TCP connection to `addr`, giving up at `deadline` (which is
/// `timeout` after the dial started) with [`NetError::DialTimedOut`].
pub(crate) async fn connect(
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, NetError> {
    match vat_env::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_elapsed) => Err(NetError::DialTimedOut {
            addr,
            timeout,
            stage: DialStage::Connecting,
        }),
        Ok(Err(source)) => Err(NetError::Dial { addr, source }),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// The shortest keep-alive period the kernel is asked for.
const MIN_PROBE: Duration = Duration::from_secs(1);

/// Prepares a freshly connected or accepted socket: no Nagle delay (RPC
/// messages are small and latency-bound), and dead-peer detection within
/// [`Limits::dead_peer_timeout`]:
///
/// - while the connection is idle, TCP keep-alive probes start after a
///   third of the bound and repeat every sixth, and two unanswered probes
///   end the connection (about two thirds of the bound in all);
/// - while data is outstanding, `TCP_USER_TIMEOUT` ends the connection once
///   sent data has gone unacknowledged for the whole bound.
///
/// A connection that ends so fails its calls in flight with a disconnected
/// error instead of leaving them waiting for a peer that is gone.
pub(crate) fn prepare(stream: &TcpStream, limits: &Limits) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let bound = limits.dead_peer_timeout;
    let socket = SockRef::from(stream);
    let keepalive = TcpKeepalive::new()
        .with_time((bound / 3).max(MIN_PROBE))
        .with_interval((bound / 6).max(MIN_PROBE))
        .with_retries(2);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.set_tcp_user_timeout(Some(bound.max(MIN_PROBE)))?;
    Ok(())
}
