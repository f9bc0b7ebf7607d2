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
//! `end`; any other line is answered by one line from one worker. The
//! listener holds only the group: its call-one face (`Group::client`), a
//! capability of the workers' own interface, for requests, and
//! `Group::call_all` for the status. The three worker vats run in this
//! process and reach the listener's vat over in-memory pipes, to keep the
//! example self-contained; over the network they would join through TLS
//! connections or sturdyrefs in the same way. The program runs a few client
//! requests itself, prints the answers, and exits.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::rc::Rc;

use schema::demo_capnp::callback;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use vat::group::{Group, Strategy};
use vat::net::{Connection, Limits, PipeEnd, Side};
use vat::VatHandle;

/// Any error this program can meet, as one type that may cross threads.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A worker: answers a request with the request reversed, saying who did
/// it; answers `status` with how many requests it served.
struct Worker {
    name: String,
    served: Cell<u64>,
}

impl callback::Server for Worker {
    async fn call(
        self: Rc<Self>,
        params: callback::CallParams,
        mut results: callback::CallResults,
    ) -> Result<(), capnp::Error> {
        let request = params.get()?.get_message()?.to_str()?;
        let reply = if request == "status" {
            format!("{}: served {}", self.name, self.served.get())
        } else {
            self.served.set(self.served.get() + 1);
            let reversed: String = request.chars().rev().collect();
            format!("{reversed} (by {})", self.name)
        };
        results.get().set_reply(reply.as_str());
        Ok(())
    }
}

/// Starts a worker vat with two workers; returns it and the pipe ends its
/// workers are reached through.
fn worker_vat(name: &str) -> Result<(VatHandle, Vec<PipeEnd>), BoxError> {
    let vat = VatHandle::start(name)?;
    let mut ends = Vec::new();
    for n in 1..=2 {
        let (ours, theirs) = vat::net::pipe();
        let worker = format!("{name}-{n}");
        vat.run(move || {
            let worker: callback::Client = vat::export(Worker {
                name: worker,
                served: Cell::new(0),
            });
            // The session lives as long as the vat or the pipe.
            let _session = Connection::open(
                theirs,
                Side::Acceptor,
                Some(worker.client),
                Limits::default(),
                "pipe",
            );
        })
        .wait()?;
        ends.push(ours);
    }
    Ok((vat, ends))
}

/// Asks one worker, through the group's call-one face.
async fn ask_one(workers: &callback::Client, line: &str) -> String {
    let mut request = workers.call_request();
    request.get().set_message(line);
    let answer = async {
        let response = request.send().promise.await?;
        Ok::<_, capnp::Error>(response.get()?.get_reply()?.to_string()?)
    };
    answer
        .await
        .unwrap_or_else(|e| format!("error: {}", vat::Error::from(e)))
}

/// Asks every worker for its status: one line each.
async fn ask_everyone(group: &Group) -> Vec<String> {
    let replies = group
        .call_all(|worker: callback::Client| async move {
            let mut request = worker.call_request();
            request.get().set_message("status");
            let response = request.send().promise.await?;
            Ok(response.get()?.get_reply()?.to_string()?)
        })
        .await;
    replies
        .into_iter()
        .map(|reply| match reply.outcome {
            Ok(status) => status,
            Err(error) => format!("{}: error: {error}", reply.member),
        })
        .collect()
}

/// Serves one client: a reply per request line.
async fn serve_client(stream: tokio::net::TcpStream, group: Group) -> std::io::Result<()> {
    let workers: callback::Client = group.client();
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let mut out = String::new();
        if line == "status" {
            for status in ask_everyone(&group).await {
                out.push_str(&status);
                out.push('\n');
            }
            out.push_str("end\n");
        } else {
            out.push_str(&ask_one(&workers, &line).await);
            out.push('\n');
        }
        write.write_all(out.as_bytes()).await?;
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    // 1. Three vats of workers, two workers each.
    let mut vats = Vec::new();
    let mut ends = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let (vat, pipes) = worker_vat(name)?;
        vats.push(vat);
        ends.extend(pipes);
    }

    // 2. The listener's vat: a group of the six workers, and a TCP server
    //    whose every client is served through the group.
    let front = VatHandle::start("front")?;
    let addr = front
        .run_async(move || async move {
            let group = Group::new("workers", Strategy::RoundRobin);
            for end in ends {
                let connection =
                    Connection::open(end, Side::Dialer, None, Limits::default(), "pipe");
                let worker: callback::Client = connection.peer();
                group.join(worker).keep();
            }
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let addr = listener.local_addr()?;
            tokio::task::spawn_local(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let group = group.clone();
                    tokio::task::spawn_local(async move {
                        if let Err(error) = serve_client(stream, group).await {
                            eprintln!("a client's connection failed: {error}");
                        }
                    });
                }
            });
            Ok::<_, BoxError>(addr)
        })
        .wait()??;
    println!("serving on {addr}");

    // 3. A client: a few requests, then the status of every worker.
    let stream = std::net::TcpStream::connect(addr)?;
    let mut replies = BufReader::new(stream.try_clone()?).lines();
    let mut requests = stream;
    let mut served_by = Vec::new();
    for word in [
        "capability",
        "vat",
        "group",
        "pipeline",
        "turn",
        "promise",
        "sturdy",
    ] {
        writeln!(requests, "{word}")?;
        let reply = replies.next().ok_or("the server closed the connection")??;
        println!("{word:>10} -> {reply}");
        served_by.push(reply);
    }
    writeln!(requests, "status")?;
    println!("status:");
    let mut statuses = Vec::new();
    loop {
        let line = replies.next().ok_or("the server closed the connection")??;
        if line == "end" {
            break;
        }
        println!("  {line}");
        statuses.push(line);
    }
    // Round-robin: seven requests over six workers, so one served two.
    assert_eq!(statuses.len(), 6, "one status line per worker");
    let total: u64 = statuses
        .iter()
        .filter_map(|s| s.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 7, "every request was served exactly once");
    assert!(served_by.iter().all(|r| r.contains("(by ")));

    // 4. Stop: the front first, then the workers.
    drop(requests);
    front.stop()?;
    for vat in vats {
        vat.stop()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pool_serves_its_clients_and_exits() {
        super::main().unwrap();
    }
}
