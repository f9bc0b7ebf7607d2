//! A worker pool behind one capability: a small TCP request/response server
//! whose listener hands each request to one of six workers spread over
//! three vats, and asks every worker at once for a `status` request.
//!
//! ```sh
//! cargo run -p examples --example worker_pool
//! ```
//!
//! The protocol is the application's own, plain text lines over TCP (not
//! captp): a line `status` is answered by one line per worker and a line
//! `end`; any other line by one line from one worker. The listener holds
//! only the group: its call-one face (`Group::client`), a capability of the
//! workers' own interface, for requests, and `Group::call_all` for the
//! status. The worker vats reach the listener's vat over in-memory pipes, to
//! keep the example self-contained; over the network they would join through
//! TLS connections or sturdyrefs in the same way.

use std::io::{BufRead, BufReader, Write};

use schema::demo_capnp::callback;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use vat::group::{Group, Strategy};
use vat::net::{Connection, Limits, Side};
use vat::{Error, VatHandle};

/// A worker: answers a request with the request reversed, saying who did
/// it; answers `status` with how many requests it served.
struct Worker {
    name: String,
    served: u64,
}

#[vat::object(callback)]
impl Worker {
    fn call(
        &mut self,
        params: callback::CallParams,
        mut results: callback::CallResults,
    ) -> vat::Reply {
        let request = params.get()?.get_message()?.to_str()?;
        let reply = if request == "status" {
            format!("{}: served {}", self.name, self.served)
        } else {
            self.served += 1;
            let reversed: String = request.chars().rev().collect();
            format!("{reversed} (by {})", self.name)
        };
        results.get().set_reply(reply.as_str());
        vat::done()
    }
}

/// Asks `worker` (one member, or the group's call-one face) with `line`.
async fn ask(worker: callback::Client, line: String) -> Result<String, capnp::Error> {
    let mut request = worker.call_request();
    request.get().set_message(line.as_str());
    let response = request.send().promise.await?;
    Ok(response.get()?.get_reply()?.to_string()?)
}

/// Serves one client: a reply per request line.
async fn serve_client(stream: tokio::net::TcpStream, group: Group) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer =
            |reply: Result<String, _>| reply.unwrap_or_else(|e| format!("error: {e}")) + "\n";
        let out = if line == "status" {
            let replies = group.call_all(|w| ask(w, "status".into())).await;
            let lines: Vec<String> = replies.into_iter().map(|r| answer(r.outcome)).collect();
            lines.concat() + "end\n"
        } else {
            answer(ask(group.client(), line).await.map_err(Error::from))
        };
        write.write_all(out.as_bytes()).await?;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    // 1. Three vats of two workers each, reached over in-memory pipes.
    let (mut vats, mut ends) = (Vec::new(), Vec::new());
    for name in ["alpha", "beta", "gamma"] {
        let vat = VatHandle::start(name)?;
        for n in 1..=2 {
            let (ours, theirs) = vat::net::pipe();
            let name = format!("{name}-{n}");
            vat.run(move || {
                let worker: callback::Client = vat::spawn(Worker { name, served: 0 }).export();
                // The session lives as long as the vat or the pipe.
                let offer = Some(worker.client);
                Connection::open(theirs, Side::Acceptor, offer, Limits::default(), "pipe");
            })
            .wait()?;
            ends.push(ours);
        }
        vats.push(vat);
    }

    // 2. The listener's vat: a group of the six workers, and a TCP server
    //    whose every client is served through the group.
    let front = VatHandle::start("front")?;
    let addr = front.block_on(move || async move {
        let group = Group::new("workers", Strategy::RoundRobin);
        for end in ends {
            let connection = Connection::open(end, Side::Dialer, None, Limits::default(), "pipe");
            group.join(connection.peer::<callback::Client>()).keep();
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        tokio::task::spawn_local(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::task::spawn_local(serve_client(stream, group.clone()));
            }
        });
        Ok::<_, Error>(addr)
    })?;
    println!("serving on {addr}");

    // 3. A client: a few requests, then the status of every worker.
    let stream = std::net::TcpStream::connect(addr)?;
    let mut replies = BufReader::new(stream.try_clone()?).lines();
    let mut next = || replies.next().unwrap_or(Ok(String::new())); // "" at the end
    let mut requests = stream;
    for word in "capability vat group pipeline turn promise sturdy".split(' ') {
        writeln!(requests, "{word}")?;
        println!("{word:>10} -> {}", next()?);
    }
    writeln!(requests, "status")?;
    let (mut workers, mut total) = (0, 0);
    for line in std::iter::from_fn(|| next().ok()).take_while(|l| !l.is_empty() && l != "end") {
        println!("  {line}");
        let served = line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok());
        (workers, total) = (workers + 1, total + served.unwrap_or(0));
    }
    // Round-robin: seven requests over six workers, each served once.
    assert_eq!(
        (workers, total),
        (6, 7),
        "one status per worker, each request served once"
    );

    // 4. Stop: the front first, then the workers.
    front.stop()?;
    vats.iter().try_for_each(VatHandle::stop)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pool_serves_its_clients_and_exits() {
        super::main().unwrap();
    }
}
