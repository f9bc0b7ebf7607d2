//! A vat that calls a durable counter through a healing reference, over
//! and over, and reports every outcome: the client side of the federation
//! tests in network namespaces (`tests/tests/netns_federation.rs`).
//!
//! `heal_client TOKEN SECONDS [DEAD_PEER_SECONDS]` restores `TOKEN` as a
//! healing reference (`vat::sturdy::healing`; its connections notice a dead
//! peer within `DEAD_PEER_SECONDS`, default 30) and, for `SECONDS`, adds 1
//! to the counter, one call after another, printing a line per call:
//!
//! ```text
//! ok <value>          the call was acknowledged; the counter reads <value>
//! err <kind> <text>   the call failed (a call in flight when the link dropped)
//! ```
//!
//! then `final <value>` (the counter read through the same reference) and
//! `tally <acknowledged> <failed>`.

use std::io::Write;
use std::time::{Duration, Instant};

use capnp::capability::FromClientHook;
use schema::demo_capnp::counter;
use vat::sturdy::{healing, HealOptions};
use vat::VatHandle;

async fn add(counter: &counter::Client) -> Result<i64, vat::Error> {
    let mut request = counter.add_request();
    request.get().set_by(1);
    Ok(request.send().promise.await?.get()?.get_value())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let token: sturdyrefs::SturdyRef = args
        .next()
        .ok_or("usage: heal_client TOKEN SECONDS")?
        .parse()?;
    let seconds: u64 = args
        .next()
        .ok_or("usage: heal_client TOKEN SECONDS")?
        .parse()?;
    let mut limits = vat::net::Limits::default();
    if let Some(dead_peer) = args.next() {
        limits.dead_peer_timeout = Duration::from_secs(dead_peer.parse()?);
    }
    let vat = VatHandle::start("heal-client")?;
    let outcome = vat
        .run_async(move || async move {
            let options = HealOptions {
                limits,
                wait: Duration::from_secs(30),
                ..HealOptions::default()
            };
            let counter: counter::Client = healing(token, None, options).cast_to();
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let (mut acknowledged, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                let line = match add(&counter).await {
                    Ok(value) => {
                        acknowledged += 1;
                        format!("ok {value}")
                    }
                    Err(error) => {
                        failed += 1;
                        format!("err {} {}", error.kind(), error.message())
                    }
                };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let request = counter.get_request();
            let value = request.send().promise.await?.get()?.get_value();
            Ok::<_, vat::Error>((value, acknowledged, failed))
        })
        .wait()??;
    let (value, acknowledged, failed) = outcome;
    println!("final {value}");
    println!("tally {acknowledged} {failed}");
    vat.stop()?;
    Ok(())
}
