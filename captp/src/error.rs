use std::net::SocketAddr;

/// What went wrong while setting up or running a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Binding a listening socket failed (address in use, no permission, …).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Dialling a peer failed (refused, unreachable, …).
    #[error("cannot connect to {addr}: {source}")]
    Dial {
        /// The address dialled.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another socket-level failure.
    #[error("network I/O failed: {0}")]
    Io(#[from] std::io::Error),
}
