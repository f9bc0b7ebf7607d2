//! A vat in a process of its own, for the two-process tests.
//!
//! Starts a vat serving [`vat::demo::Host`] (named `peer`) over plain TCP on
//! a free loopback port, prints `listening 127.0.0.1:PORT` as one line on
//! standard output, and runs until its standard input closes or it is killed.

use std::io::{Read, Write};

use schema::demo_capnp::host;
use vat::net::{Limits, Listener};
use vat::VatHandle;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let vat = VatHandle::start("peer")?;
    let addr = vat
        .run_async(|| async {
            let host: host::Client = vat::export(vat::demo::Host::new("peer"));
            let listener = Listener::bind(([127, 0, 0, 1], 0).into()).await?;
            let addr = listener.local_addr();
            listener.serve(host.client, Limits::default());
            Ok::<_, vat::net::NetError>(addr)
        })
        .wait()??;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {addr}")?;
    stdout.flush()?;
    drop(stdout);

    // The parent closes our stdin (or exits) when it is done with us.
    let mut stdin = std::io::stdin().lock();
    let mut buffer = [0u8; 256];
    while stdin.read(&mut buffer)? > 0 {}
    vat.stop()?;
    Ok(())
}
