//! A vat program for the supervision tests that need a process of their own
//! (`vat/tests/supervise_process.rs`).
//!
//! - `supervise_peer give-up`: starts a vat whose root supervisor allows no
//!   restart, crashes its only child, and so exits with
//!   `vat::supervise::ROOT_GAVE_UP_EXIT` (70).
//! - `supervise_peer spawner DATA_DIR PORT`: serves a spawner with one
//!   factory, `counter` (the durable counter `counter#1` of its store), on a
//!   TLS listener on `127.0.0.1:PORT` (0: any free port), and prints
//!   `listening ADDR` and `token TOKEN` (a sturdyref to the spawner). It
//!   runs until its standard input closes or it is killed.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use schema::demo_capnp::host;
use vat::demo::{DurableCounter, Host};
use vat::net::tls::TlsListener;
use vat::net::{Identity, Limits};
use vat::sturdy::{object_ref, vat_id, Persistence};
use vat::supervise::{durable_factory, ChildSpec, Intensity, Restart, Spawner, SupervisorBuilder};
use vat::VatHandle;

type Failure = Box<dyn std::error::Error>;

fn give_up() -> Result<(), Failure> {
    let vat = VatHandle::start("give-up")?;
    vat.run_async(|| async {
        let root = SupervisorBuilder::new("root")
            .intensity(Intensity::new(0, Duration::from_secs(60)))
            .child(ChildSpec::local("host", Restart::Permanent, |_| {
                Ok(vat::export::<host::Client, _>(Host::crashable("give-up")).client)
            }))
            .start_root()
            .await?;
        let host: host::Client = root.child("host")?;
        let mut crash = host.crash_request();
        crash.get().set_message("the peer crashes its only child");
        // Breaks with the crash; the root then gives up and ends the process.
        let _ = crash.send().promise.await;
        Ok::<_, vat::Error>(())
    })
    .wait()??;
    // The root's give-up ends the process; reaching the end is a failure.
    std::thread::sleep(Duration::from_secs(20));
    Err("the root supervisor did not end the process".into())
}

fn spawner(dir: PathBuf, port: u16) -> Result<(), Failure> {
    let identity = Identity::load_or_create(&dir)?;
    let vat = VatHandle::start("spawner")?;
    let (addr, token) = vat
        .run_async(move || async move {
            let persistence = Persistence::open(&dir, vat_id(identity.public_key()))?;
            let spawner = Spawner::new()
                .factory(
                    "counter",
                    durable_factory::<DurableCounter>(persistence.clone(), 1),
                )
                .export();
            let object = object_ref("spawner", 1)?;
            persistence.provide(object.clone(), spawner.client);
            let listener = TlsListener::bind(([127, 0, 0, 1], port).into(), &identity)
                .await
                .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
            let addr = listener.local_addr().to_string();
            let hint = addr
                .parse()
                .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, format!("{e}")))?;
            persistence.set_hints(vec![hint]);
            persistence.serve(listener, Limits::default());
            let token = persistence.mint(&object, Default::default()).await?;
            Ok::<_, vat::Error>((addr, token.to_string()))
        })
        .wait()??;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {addr}")?;
    writeln!(stdout, "token {token}")?;
    stdout.flush()?;
    drop(stdout);
    let mut stdin = std::io::stdin().lock();
    let mut buffer = [0u8; 256];
    while stdin.read(&mut buffer)? > 0 {}
    vat.stop()?;
    Ok(())
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode] if mode == "give-up" => give_up(),
        [mode, dir, port] if mode == "spawner" => spawner(PathBuf::from(dir), port.parse()?),
        _ => Err("usage: supervise_peer give-up | supervise_peer spawner DATA_DIR PORT".into()),
    }
}
