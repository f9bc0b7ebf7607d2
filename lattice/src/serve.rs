//! A host's vat in a data folder: its identity, its store and its TLS
//! listener, ready for [`HostBuilder::join`](crate::HostBuilder::join).

use std::net::SocketAddr;
use std::path::Path;

use sturdyrefs::LocationHint;
use vat::net::tls::TlsListener;
use vat::net::{Identity, Limits};
use vat::sturdy::{vat_id, Persistence};

/// A vat serving its store over TLS.
#[derive(Clone)]
pub struct Served {
    /// Its store and tokens.
    pub persistence: Persistence,
    /// Its key.
    pub identity: Identity,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("vat", &self.persistence.vat())
            .field("addr", &self.addr)
            .finish()
    }
}

/// Opens (or creates) the identity and store in `dir` and serves them on
/// `listen` (port 0: one the system picks), with tokens naming the address
/// it got. Must be called in the vat.
pub async fn serve(dir: &Path, listen: SocketAddr) -> Result<Served, vat::Error> {
    std::fs::create_dir_all(dir).map_err(|e| {
        vat::Error::new(
            vat::ErrorKind::Failed,
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    let identity = Identity::load_or_create(dir).map_err(vat::Error::from)?;
    let persistence = Persistence::open(dir, vat_id(identity.public_key()))?;
    let listener = TlsListener::bind(listen, &identity)
        .await
        .map_err(vat::Error::from)?;
    let addr = listener.local_addr();
    let hint = LocationHint::parse(&addr.to_string())
        .map_err(|e| vat::Error::new(vat::ErrorKind::InvalidArgument, e.to_string()))?;
    persistence.set_hints(vec![hint]);
    persistence.serve(listener, Limits::default());
    Ok(Served {
        persistence,
        identity,
        addr,
    })
}
