//! A group member in a process of its own, for `tests/tests/group_processes.rs`.
//!
//! `group_member LOG` starts a vat serving a `Counter` over plain TCP on a
//! free loopback port, prints `listening 127.0.0.1:PORT` on standard output,
//! and runs until its standard input closes or it is killed. Each
//! `add(by)` is a call numbered `by`: the member appends the number to the
//! file `LOG` (one line, one `write`, before it answers, so the line
//! survives `kill -9`), waits a millisecond so that calls overlap, and
//! answers `by`. The test reads the logs to count who ran which call.

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::Duration;

use schema::demo_capnp::counter;
use vat::net::{Limits, Listener};
use vat::VatHandle;

struct Member {
    log: RefCell<File>,
}

impl counter::Server for Member {
    async fn add(
        self: Rc<Self>,
        params: counter::AddParams,
        mut results: counter::AddResults,
    ) -> Result<(), capnp::Error> {
        let by = params.get()?.get_by();
        self.log
            .borrow_mut()
            .write_all(format!("{by}\n").as_bytes())
            .map_err(|e| capnp::Error::failed(format!("cannot write the log: {e}")))?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        results.get().set_value(by);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or("usage: group_member LOG")?;
    let log = File::options().create(true).append(true).open(path)?;
    let vat = VatHandle::start("member")?;
    let addr = vat
        .run_async(move || async move {
            let member: counter::Client = vat::export(Member {
                log: RefCell::new(log),
            });
            let listener = Listener::bind(([127, 0, 0, 1], 0).into()).await?;
            let addr = listener.local_addr();
            listener.serve(member.client, Limits::default());
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
