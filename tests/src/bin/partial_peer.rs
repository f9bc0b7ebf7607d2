//! A vat in a process of its own that says how many partial messages it
//! holds, for `tests/tests/partial_message_memory.rs`.
//!
//! `partial_peer [BODY_TIMEOUT_SECS]` starts a vat serving
//! [`vat::demo::Host`] over plain TCP on a free loopback port with the
//! default limits (but `Limits::message_body_timeout`, if given), prints
//! `listening 127.0.0.1:PORT` and `pid PID`, and then, each time the vat's partial
//! messages ([`captp::partial_messages`]) change, a line
//!
//! ```text
//! partial messages=M received=R buffered=B reserved=S waiting=W
//! ```
//!
//! It runs until its standard input closes or it is killed.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use captp::PartialMessages;
use schema::demo_capnp::host;
use vat::net::{Limits, Listener};
use vat::VatHandle;

/// How often the vat's counts are looked at.
const POLL: Duration = Duration::from_millis(20);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut limits = Limits::default();
    if let Some(seconds) = std::env::args().nth(1) {
        limits.message_body_timeout = Duration::from_secs(seconds.parse()?);
    }
    let vat = VatHandle::start("partial-peer")?;
    let addr = vat
        .run_async(move || async move {
            let host: host::Client = vat::export(vat::demo::Host::new("peer"));
            let listener = Listener::bind(([127, 0, 0, 1], 0).into()).await?;
            let addr = listener.local_addr();
            listener.serve(host.client, limits);
            Ok::<_, vat::net::NetError>(addr)
        })
        .wait()??;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {addr}")?;
    writeln!(stdout, "pid {}", std::process::id())?;
    stdout.flush()?;

    // The parent closes our stdin (or exits) when it is done with us.
    let done = Arc::new(AtomicBool::new(false));
    let stdin_done = Arc::clone(&done);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 256];
        while matches!(stdin.read(&mut buffer), Ok(read) if read > 0) {}
        stdin_done.store(true, Ordering::SeqCst);
    });

    let mut last = None;
    while !done.load(Ordering::SeqCst) {
        // The counts are the vat thread's, so they are read there.
        let counts = vat
            .run_async(|| async { captp::partial_messages() })
            .wait()?;
        if last != Some(counts) {
            report(&mut stdout, counts)?;
            last = Some(counts);
        }
        std::thread::sleep(POLL);
    }
    drop(stdout);
    vat.stop()?;
    Ok(())
}

fn report(out: &mut impl Write, counts: PartialMessages) -> std::io::Result<()> {
    let PartialMessages {
        messages,
        received_bytes,
        buffered_bytes,
        reserved_bytes,
        waiting,
    } = counts;
    writeln!(
        out,
        "partial messages={messages} received={received_bytes} buffered={buffered_bytes} \
         reserved={reserved_bytes} waiting={waiting}"
    )?;
    out.flush()
}
