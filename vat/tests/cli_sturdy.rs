//! The `vat` tool's sturdyref commands, run as real processes: identities,
//! a serving vat and the processes that call it, refusals, the token table
//! online and offline, `kill -9` in the middle of a stream of updates, and
//! what the data folder keeps.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use capnp::capability::FromClientHook;
use schema::demo_capnp::{counter, host};
use sturdyrefs::{SturdyRef, SwissNumber, VatId};
use vat::net::Limits;

/// How long a `vat serve` may take to say it is serving, or to stop.
const PATIENCE: Duration = Duration::from_secs(20);

fn vat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vat"))
}

/// What a finished `vat` process said.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Ran {
    let output = vat().args(args).output().expect("run vat");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `vat args...`, which must succeed; returns its standard output.
fn ok(args: &[&str]) -> String {
    let ran = run(args);
    assert_eq!(ran.code, Some(0), "vat {args:?} failed: {ran:?}");
    ran.stdout
}

/// Runs `vat args...`, which must fail with status 1 and a `vat: ` message;
/// returns that message.
fn fails(args: &[&str]) -> String {
    let ran = run(args);
    assert_eq!(ran.code, Some(1), "vat {args:?} should fail: {ran:?}");
    assert!(ran.stderr.contains("vat: "), "{ran:?}");
    ran.stderr
}

/// The `vat: ` line of a failed command's standard error (logs aside).
fn said(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|line| line.starts_with("vat: "))
        .unwrap_or_default()
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `vat init`s the folder `name` under `root`; returns it and its vat id.
fn init(root: &Path, name: &str) -> (PathBuf, String) {
    let dir = root.join(name);
    ok(&["init", "--data", text(&dir)]);
    let id = ok(&["id", "--data", text(&dir)]).trim().to_owned();
    (dir, id)
}

/// A port nothing listens on (for a moment).
fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A running `vat serve`; killed when dropped, so no test leaves one behind.
struct Serving {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
    /// The tokens it printed on its first start, by object.
    tokens: HashMap<String, String>,
    /// What it printed before it said it was serving.
    preamble: Vec<String>,
}

impl Serving {
    /// Starts `vat serve --data dir --listen listen extra...` and waits until
    /// it serves. Its log goes to a file beside `dir`.
    fn start(dir: &Path, listen: &str, extra: &[&str]) -> Serving {
        let log = dir.with_extension("log");
        let mut child = vat()
            .args(["serve", "--data", text(dir), "--listen", listen])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start vat serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serving = Serving {
            child,
            lines,
            log,
            tokens: HashMap::new(),
            preamble: Vec::new(),
        };
        loop {
            let line = serving.next_line();
            if line.starts_with("serving vat ") {
                break;
            }
            if let Some(rest) = line.strip_prefix("token ") {
                let (object, token) = rest.split_once(' ').unwrap();
                serving.tokens.insert(object.to_owned(), token.to_owned());
            }
            serving.preamble.push(line);
        }
        serving
    }

    /// The next line it prints; panics, showing its log, if none comes.
    fn next_line(&self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(error) => panic!(
                "vat serve printed nothing more ({error}); its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            ),
        }
    }

    fn token(&self, object: &str) -> String {
        self.tokens
            .get(object)
            .unwrap_or_else(|| panic!("no token for {object}: {:?}", self.tokens))
            .clone()
    }

    /// Sends SIGTERM and waits for the process to end.
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.wait()
    }

    /// Sends SIGKILL (`kill -9`) and waits for the process to end.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.wait();
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "vat serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // Already gone is fine: this only makes sure.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `token` with its vat id, or its swiss number, replaced.
fn tampered(token: &str, vat: Option<VatId>, swiss: Option<SwissNumber>) -> String {
    let parsed: SturdyRef = token.parse().unwrap();
    SturdyRef::new(
        vat.unwrap_or(*parsed.vat()),
        parsed.hints().to_vec(),
        swiss.unwrap_or_else(|| parsed.swiss().clone()),
    )
    .unwrap()
    .to_string()
}

#[test]
fn init_makes_a_private_key_and_id_reads_it_back() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a");
    let made = ok(&["init", "--data", text(&dir)]);
    assert!(made.contains("made a new vat identity"), "{made}");

    let key = dir.join("identity.key");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&dir), 0o700);

    let id = ok(&["id", "--data", text(&dir)]);
    let id = id.trim();
    VatId::parse(id).unwrap();
    assert!(made.contains(&format!("vat id: {id}")), "{made}");

    // Again: the key is kept, and said to be.
    let pem = std::fs::read(&key).unwrap();
    let again = ok(&["init", "--data", text(&dir)]);
    assert!(again.contains("already existed"), "{again}");
    assert!(again.contains(&format!("vat id: {id}")), "{again}");
    assert_eq!(std::fs::read(&key).unwrap(), pem);
}

#[test]
fn commands_on_a_folder_without_an_identity_fail_and_create_nothing() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = root.path().join("missing");
    for dir in [&empty, &missing] {
        let message = fails(&["id", "--data", text(dir)]);
        assert!(message.contains("identity.key"), "{message}");
        assert!(message.contains("vat init --data"), "{message}");
        let message = fails(&["tokens", "list", "--data", text(dir)]);
        assert!(message.contains("no identity key"), "{message}");
        let message = fails(&["serve", "--data", text(dir), "--listen", "127.0.0.1:0"]);
        assert!(message.contains("no identity key"), "{message}");
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert!(!missing.exists());
}

#[test]
fn a_token_printed_by_serve_is_called_from_another_process() {
    let root = tempfile::tempdir().unwrap();
    let (dir, id) = init(root.path(), "a");
    let serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    let counter = serving.token("counter#1");
    let host = serving.token("host#1");
    assert!(
        counter.starts_with(&format!("captp://{id}@127.0.0.1:")),
        "{counter}"
    );

    assert_eq!(ok(&["call", &counter, "add", "5"]), "5\n");
    assert_eq!(ok(&["call", &counter, "get"]), "5\n");
    assert_eq!(ok(&["call", &counter, "add", "-2"]), "3\n");
    assert_eq!(ok(&["call", &host, "echo", "7"]), "7\n");
    let greeting = ok(&["call", &host, "greet", "bob"]);
    assert!(
        greeting.contains("heard \"hello bob, from vat "),
        "{greeting}"
    );

    // Methods of the wrong kind, or with wrong arguments, are clear errors.
    let message = fails(&["call", &host, "add", "1"]);
    assert!(message.contains("the token names a host"), "{message}");
    let message = fails(&["call", &counter, "add", "many"]);
    assert!(message.contains("add takes a whole number"), "{message}");
    let message = fails(&["call", &counter, "frobnicate"]);
    assert!(message.contains("unknown method"), "{message}");
    assert_eq!(run(&["call", &counter]).code, Some(2));
}

#[test]
fn tampered_tokens_are_refused_and_the_vat_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = init(root.path(), "a");
    let (_, other_id) = init(root.path(), "other");
    let serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    let token = serving.token("counter#1");

    // Another vat id: the vat at the hinted address cannot prove that key.
    let other = VatId::parse(&other_id).unwrap();
    let message = fails(&["call", &tampered(&token, Some(other), None), "get"]);
    assert!(message.contains("could not be reached"), "{message}");
    assert!(message.contains("it proved it is vat"), "{message}");

    // Another port: nothing listens there.
    let parsed: SturdyRef = token.parse().unwrap();
    let hint = parsed.hints()[0].to_string();
    let moved = token.replace(&hint, &format!("127.0.0.1:{}", free_port()));
    let message = fails(&["call", &moved, "get"]);
    assert!(message.contains("cannot connect"), "{message}");

    // Another swiss number: the vat never minted it.
    let guessed = tampered(&token, None, Some(SwissNumber::generate().unwrap()));
    let message = fails(&["call", &guessed, "get"]);
    assert!(
        message.contains("vat refused the token: unknown token"),
        "{message}"
    );

    // Malformed tokens: the parse error names the part that is wrong.
    let swiss_at = token.rfind('/').unwrap() + 1;
    let malformed = [
        (token.replacen("captp", "http", 1), "wrong scheme"),
        (token.replacen("captp://", "captp://A", 1), "bad vat id"),
        (token.replace(&hint, "127.0.0.1"), "bad location hint #1"),
        (token[..token.len() - 1].to_owned(), "bad swiss number"),
        (
            format!("{}!{}", &token[..swiss_at], &token[swiss_at + 1..]),
            "bad character '!'",
        ),
    ];
    for (bad, names) in &malformed {
        let message = fails(&["call", bad, "get"]);
        assert!(message.contains("vat: bad token: "), "{message}");
        assert!(message.contains(names), "{names}: {message}");
    }

    // Through all that the vat served the real token.
    assert_eq!(ok(&["call", &token, "add", "1"]), "1\n");
}

#[test]
fn revoked_expired_and_bound_tokens_are_refused_with_their_errors() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = init(root.path(), "a");
    let (owner, owner_id) = init(root.path(), "owner");
    let (thief, _) = init(root.path(), "thief");
    let serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    let data = text(&dir);

    // Revoked while the vat serves (through its admin capability).
    let doomed = ok(&["tokens", "mint", "--data", data, "counter#1"]);
    let doomed = doomed.trim();
    assert_eq!(ok(&["call", doomed, "add", "1"]), "1\n");
    let revoked = ok(&["tokens", "revoke", "--data", data, doomed]);
    assert!(revoked.starts_with("revoked "), "{revoked}");
    let message = fails(&["call", doomed, "get"]);
    assert!(
        message.contains("vat: the vat refused the token: revoked: the token was revoked"),
        "{message}"
    );

    // Expired.
    let brief = ok(&[
        "tokens",
        "mint",
        "--data",
        data,
        "counter#1",
        "--expires-in",
        "1",
    ]);
    std::thread::sleep(Duration::from_millis(1100));
    let message = fails(&["call", brief.trim(), "get"]);
    assert!(
        message.contains("vat refused the token: expired: the token has expired"),
        "{message}"
    );

    // Bound to the owner: unknown to anyone else, anonymous or not.
    let bound = ok(&[
        "tokens",
        "mint",
        "--data",
        data,
        "counter#1",
        "--bound-to",
        &owner_id,
    ]);
    let bound = bound.trim();
    let unknown = "vat refused the token: unknown token: no such token";
    let message = fails(&["call", bound, "get"]);
    assert!(message.contains(unknown), "{message}");
    let message = fails(&["call", bound, "get", "--as", text(&thief)]);
    assert!(message.contains(unknown), "{message}");
    let guessed = tampered(bound, None, Some(SwissNumber::generate().unwrap()));
    let never_minted = fails(&["call", &guessed, "get"]);
    assert_eq!(said(&message), said(&never_minted));
    assert_eq!(
        ok(&["call", bound, "add", "2", "--as", text(&owner)]),
        "3\n"
    );

    // The vat goes on serving.
    assert_eq!(ok(&["call", &serving.token("counter#1"), "get"]), "3\n");
}

/// The data rows of `vat tokens list`, as (hash prefix, object, state).
fn listed(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .skip_while(|line| !line.starts_with("HASH"))
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (
                cells[0].to_owned(),
                cells[1].to_owned(),
                cells[cells.len() - 1].to_owned(),
            )
        })
        .collect()
}

#[test]
fn tokens_are_listed_and_revoked_while_the_vat_runs_and_after_it_stopped() {
    let root = tempfile::tempdir().unwrap();
    let (dir, id) = init(root.path(), "a");
    let data = text(&dir);
    let mut serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    let host = serving.token("host#1");
    assert!(dir.join("serve.addr").exists());

    let online = ok(&["tokens", "list", "--data", data]);
    assert!(
        online.contains(&format!("vat {id} is running at")),
        "{online}"
    );
    let rows = listed(&online);
    let objects: Vec<&str> = rows.iter().map(|(_, o, _)| o.as_str()).collect();
    assert_eq!(objects, ["host#1", "counter#1"], "{online}");
    assert!(rows.iter().all(|(_, _, state)| state == "live"), "{online}");
    let counter_hash = &rows[1].0;
    assert_eq!(counter_hash.len(), 16);

    // Prefixes: too short, not hex, or matching nothing are errors.
    let message = fails(&["tokens", "revoke", "--data", data, "abc"]);
    assert!(message.contains("8 to 64 hex digits"), "{message}");
    let message = fails(&["tokens", "revoke", "--data", data, "not-a-hash"]);
    assert!(message.contains("neither a token"), "{message}");
    let unused = if counter_hash.starts_with("00") && rows[0].0.starts_with("00") {
        "ffffffff"
    } else {
        "00000000"
    };
    let message = fails(&["tokens", "revoke", "--data", data, unused]);
    assert!(
        message.contains("no token whose hash starts with"),
        "{message}"
    );

    let revoked = ok(&["tokens", "revoke", "--data", data, &counter_hash[..8]]);
    assert_eq!(revoked, format!("revoked {counter_hash} (counter#1)\n"));
    let rows = listed(&ok(&["tokens", "list", "--data", data]));
    assert_eq!(rows[1].2, "revoked");

    // Stopped by SIGTERM: a clean exit that removes serve.addr.
    let status = serving.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!dir.join("serve.addr").exists());

    let offline = ok(&["tokens", "list", "--data", data]);
    assert!(offline.contains("is not running"), "{offline}");
    let rows = listed(&offline);
    assert_eq!(rows[0].2, "live", "{offline}");
    assert_eq!(rows[1].2, "revoked", "{offline}");

    // Revoked offline by the whole token; again says it already was.
    let revoked = ok(&["tokens", "revoke", "--data", data, &host]);
    assert!(revoked.starts_with("revoked "), "{revoked}");
    let again = ok(&["tokens", "revoke", "--data", data, &host]);
    assert!(again.contains("was already revoked"), "{again}");
    let rows = listed(&ok(&["tokens", "list", "--data", data]));
    assert!(rows.iter().all(|(_, _, state)| state == "revoked"));

    // Minting needs the running vat.
    let message = fails(&["tokens", "mint", "--data", data, "counter#1"]);
    assert!(message.contains("is not running"), "{message}");

    // A later start says how many tokens there are, and the revoked stay so.
    let serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    assert!(serving.tokens.is_empty());
    let said = serving.preamble.join("\n");
    assert!(
        said.contains("the store holds 2 tokens (0 live, 2 revoked"),
        "{said}"
    );
}

#[test]
fn serve_refuses_what_it_cannot_do() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = init(root.path(), "a");
    let data = text(&dir);

    let message = fails(&["serve", "--data", data, "--listen", "0.0.0.0:0"]);
    assert!(message.contains("--hint"), "{message}");
    let usage = run(&[
        "serve",
        "--data",
        data,
        "--listen",
        "0.0.0.0:0",
        "--hint",
        "x",
    ]);
    assert_eq!(usage.code, Some(2), "{usage:?}");

    // On every interface, with the hint callers should dial.
    let port = free_port();
    let hint = format!("localhost:{port}");
    let serving = Serving::start(&dir, &format!("0.0.0.0:{port}"), &["--hint", &hint]);
    let token = serving.token("counter#1");
    assert!(token.contains(&format!("@{hint}/")), "{token}");
    assert_eq!(ok(&["call", &token, "get"]), "0\n");
    let addr = std::fs::read_to_string(dir.join("serve.addr")).unwrap();
    assert_eq!(addr.trim(), format!("127.0.0.1:{port}"));

    let message = fails(&["serve", "--data", data, "--listen", "127.0.0.1:0"]);
    assert!(message.contains("already running"), "{message}");
}

/// Restores `token` in a vat of this process and adds 1 until a call fails;
/// returns the last value acknowledged.
fn add_until_it_fails(token: &str) -> i64 {
    let client = vat::VatHandle::start("client").unwrap();
    let token: SturdyRef = token.parse().unwrap();
    let last = client
        .run_async(move || async move {
            let (object, kind) = vat::sturdy::restore(&token, None, Limits::default())
                .await
                .unwrap();
            assert_eq!(kind, "counter");
            let counter: counter::Client = object.cast_to();
            let mut last = None;
            loop {
                let mut request = counter.add_request();
                request.get().set_by(1);
                match request.send().promise.await {
                    Ok(response) => {
                        let value = response.get().unwrap().get_value();
                        assert_eq!(value, last.unwrap_or(value - 1) + 1);
                        last = Some(value);
                    }
                    Err(_) => return last.unwrap_or(0),
                }
            }
        })
        .wait()
        .unwrap();
    client.stop().unwrap();
    last
}

#[test]
fn kill_9_in_a_stream_of_adds_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = init(root.path(), "a");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut serving = Serving::start(&dir, &listen, &[]);
    let token = serving.token("counter#1");

    let adding = {
        let token = token.clone();
        std::thread::spawn(move || add_until_it_fails(&token))
    };
    std::thread::sleep(Duration::from_millis(300));
    serving.kill_9();
    let acknowledged = adding.join().unwrap();
    assert!(acknowledged > 0, "no add was acknowledged before the kill");

    // A killed vat leaves serve.addr behind; its store's lock says it is gone.
    assert!(dir.join("serve.addr").exists());
    let offline = ok(&["tokens", "list", "--data", text(&dir)]);
    assert!(offline.contains("is not running"), "{offline}");

    let serving = Serving::start(&dir, &listen, &[]);
    let value: i64 = ok(&["call", &token, "get"]).trim().parse().unwrap();
    eprintln!("acknowledged before the kill: {acknowledged}; after the restart: {value}");
    // The add in flight at the kill may have committed without its answer
    // arriving; nothing acknowledged may be lost.
    assert!(
        value == acknowledged || value == acknowledged + 1,
        "acknowledged {acknowledged}, found {value}"
    );
    assert!(value >= acknowledged);
    drop(serving);
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_data_folder_keeps_no_swiss_number_only_hashes() {
    let root = tempfile::tempdir().unwrap();
    let (dir, owner_id) = init(root.path(), "a");
    let data = text(&dir);
    let mut serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    let mut tokens: Vec<String> = serving.tokens.values().cloned().collect();
    tokens.push(
        ok(&["tokens", "mint", "--data", data, "counter#1"])
            .trim()
            .to_owned(),
    );
    tokens.push(
        ok(&[
            "tokens",
            "mint",
            "--data",
            data,
            "host#1",
            "--bound-to",
            &owner_id,
        ])
        .trim()
        .to_owned(),
    );
    ok(&["call", &serving.token("counter#1"), "add", "3"]);
    ok(&["call", &tokens[2], "add", "4"]);
    ok(&["call", &tokens[3], "echo", "1", "--as", data]);
    ok(&["tokens", "revoke", "--data", data, &tokens[2]]);
    assert!(serving.terminate().success());

    let files = files(&dir);
    assert!(files.iter().any(|(path, _)| path.ends_with("vat.redb")));
    for token in &tokens {
        let parsed: SturdyRef = token.parse().unwrap();
        let swiss = parsed.swiss().as_bytes();
        let text = &token[token.rfind('/').unwrap() + 1..];
        let (lower, upper) = (hex(swiss), hex(swiss).to_uppercase());
        let forms: [&[u8]; 4] = [swiss, text.as_bytes(), lower.as_bytes(), upper.as_bytes()];
        for (path, bytes) in &files {
            for form in forms {
                assert!(
                    !contains(bytes, form),
                    "{} holds a swiss number",
                    path.display()
                );
            }
        }
        // The store does hold each token, under its hash: the search above
        // read the right bytes.
        let hash = parsed.swiss().hash();
        assert!(
            files
                .iter()
                .any(|(_, bytes)| contains(bytes, hash.as_bytes())),
            "no file holds the hash of {token}"
        );
    }
}

/// One round of `add(10), get, add(1), get`, pipelined on one reference
/// (all four sent before any answer); the four answers.
async fn pipelined_round(counter: &counter::Client) -> Result<[i64; 4], capnp::Error> {
    let add = |by| {
        let mut request = counter.add_request();
        request.get().set_by(by);
        request.send().promise
    };
    let get = || counter.get_request().send().promise;
    let (first, second, third, fourth) = (add(10), get(), add(1), get());
    Ok([
        first.await?.get()?.get_value(),
        second.await?.get()?.get_value(),
        third.await?.get()?.get_value(),
        fourth.await?.get()?.get_value(),
    ])
}

/// Restores the counter `token` names in a vat of this process and runs
/// `rounds` pipelined rounds (until a call fails, for `None`); returns
/// each round's answers and the first error, if any.
fn pipelined_rounds(token: &str, rounds: Option<usize>) -> (Vec<[i64; 4]>, Option<String>) {
    let client = vat::VatHandle::start("client").unwrap();
    let token: SturdyRef = token.parse().unwrap();
    let answered = client
        .run_async(move || async move {
            let (object, _) = vat::sturdy::restore(&token, None, Limits::default())
                .await
                .unwrap();
            let counter: counter::Client = object.cast_to();
            let mut answers = Vec::new();
            while rounds.is_none_or(|rounds| answers.len() < rounds) {
                match pipelined_round(&counter).await {
                    Ok(round) => answers.push(round),
                    Err(error) => return (answers, Some(error.to_string())),
                }
            }
            (answers, None)
        })
        .wait()
        .unwrap();
    client.stop().unwrap();
    answered
}

#[test]
fn a_durable_read_answers_the_state_at_its_delivery_never_a_later_one() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = init(root.path(), "a");
    let serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    let token = serving.token("counter#1");

    let (rounds, error) = pipelined_rounds(&token, Some(50));
    assert_eq!(error, None);
    for (index, answers) in rounds.iter().enumerate() {
        let start = i64::try_from(index).unwrap() * 11;
        let relative = answers.map(|value| value - start);
        assert_eq!(relative, [10, 10, 11, 11], "round {index}: {answers:?}");
    }
    drop(serving);
}

#[test]
fn kill_9_after_any_answer_loses_nothing_a_read_or_an_add_reported() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = init(root.path(), "a");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut serving = Serving::start(&dir, &listen, &[]);
    let token = serving.token("counter#1");

    let reading = {
        let token = token.clone();
        std::thread::spawn(move || pipelined_rounds(&token, None))
    };
    // Some rounds must have been answered before the kill.
    let mut first = ok(&["call", &token, "get"]);
    while first.trim() == "0" {
        std::thread::sleep(Duration::from_millis(20));
        first = ok(&["call", &token, "get"]);
    }
    serving.kill_9();
    let (rounds, error) = reading.join().unwrap();
    assert!(error.is_some(), "the calls end with the vat");
    let reported = rounds.iter().flatten().copied().max().unwrap_or(0);

    let serving = Serving::start(&dir, &listen, &[]);
    let value: i64 = ok(&["call", &token, "get"]).trim().parse().unwrap();
    eprintln!(
        "{} rounds answered before the kill, the highest value reported {reported}; after the \
         restart: {value}",
        rounds.len()
    );
    assert!(value >= reported, "reported {reported}, found {value}");
    drop(serving);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn everything_in_a_data_folder_is_owner_only_and_serve_refuses_an_exposed_one() {
    let root = tempfile::tempdir().unwrap();
    // A folder that existed, readable by all, before `vat init`.
    let dir = root.path().join("a");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let made = ok(&["init", "--data", text(&dir)]);
    assert!(made.contains("owner-only"), "{made}");
    assert_eq!(mode(&dir), 0o700);

    let mut serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    for file in ["identity.key", "vat.redb", "serve.addr"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert!(serving.terminate().success());

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let message = fails(&["serve", "--data", text(&dir), "--listen", "127.0.0.1:0"]);
    let fix = format!("chmod 700 {}", dir.display());
    assert!(said(&message).contains(&fix), "{message}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    let store = dir.join("vat.redb");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let message = fails(&["serve", "--data", text(&dir), "--listen", "127.0.0.1:0"]);
    let fix = format!("chmod 600 {}", store.display());
    assert!(said(&message).contains(&fix), "{message}");
}

#[test]
fn serve_started_while_a_short_command_has_the_store_open_waits_for_it() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = init(root.path(), "a");
    let mut serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    assert!(serving.terminate().success());

    // `vat tokens list` over and over while the vat is down, as an
    // operator's script might, and the vat restarted ten times meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listing = {
        let (dir, stop) = (dir.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut runs = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ran = run(&["tokens", "list", "--data", text(&dir)]);
                assert_eq!(ran.code, Some(0), "{ran:?}");
                runs += 1;
            }
            runs
        })
    };
    for _ in 0..10 {
        let mut serving = Serving::start(&dir, "127.0.0.1:0", &[]);
        assert!(serving.terminate().success());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = listing.join().unwrap();
    eprintln!("`vat tokens list` ran {runs} times around ten restarts");
}

#[test]
fn a_stale_address_file_is_not_taken_for_a_running_vat() {
    let root = tempfile::tempdir().unwrap();
    let (dir, id) = init(root.path(), "a");
    let mut serving = Serving::start(&dir, "127.0.0.1:0", &[]);
    serving.kill_9();
    assert!(dir.join("serve.addr").exists(), "kill -9 leaves it behind");

    // Another process (this test) has the store open for a moment while
    // the address file is stale: the command waits for it, then reads the
    // store itself.
    let store = sturdyrefs::RedbStore::open(dir.join("vat.redb")).unwrap();
    let listing = {
        let dir = dir.clone();
        std::thread::spawn(move || run(&["tokens", "list", "--data", text(&dir)]))
    };
    std::thread::sleep(Duration::from_millis(500));
    drop(store);
    let listed = listing.join().unwrap();
    assert_eq!(listed.code, Some(0), "{listed:?}");
    assert!(
        listed.stdout.contains(&format!("vat {id} is not running")),
        "{listed:?}"
    );

    // Held for longer than the command waits: it says who holds it.
    let _store = sturdyrefs::RedbStore::open(dir.join("vat.redb")).unwrap();
    let message = fails(&["tokens", "list", "--data", text(&dir)]);
    let holder = format!("process {}", std::process::id());
    assert!(said(&message).contains(&holder), "{message}");
    let message = fails(&["serve", "--data", text(&dir), "--listen", "127.0.0.1:0"]);
    assert!(said(&message).contains(&holder), "{message}");
    assert!(!said(&message).contains("already running"), "{message}");
}

/// Restores the host `token` names, asks it to crash, then calls
/// `echo(7)` on the same reference; the crash's error kind and the echo's
/// answer.
fn crash_then_echo(token: &str) -> (vat::ErrorKind, Result<u64, vat::Error>) {
    let client = vat::VatHandle::start("client").unwrap();
    let token: SturdyRef = token.parse().unwrap();
    let outcome = client
        .run_async(move || async move {
            let (object, kind) = vat::sturdy::restore(&token, None, Limits::default())
                .await
                .unwrap();
            assert_eq!(kind, "host");
            let host: host::Client = object.cast_to();
            let mut crash = host.crash_request();
            crash.get().set_message("asked to crash");
            let crashed = crash.send().promise.await.map(|_| ()).unwrap_err();
            let mut echo = host.echo_request();
            echo.get().set_value(7);
            let echoed = async { Ok(echo.send().promise.await?.get()?.get_value()) }.await;
            (vat::Error::from(crashed).kind(), echoed)
        })
        .wait()
        .unwrap();
    client.stop().unwrap();
    outcome
}

#[test]
fn a_served_host_refuses_to_crash_on_demand_unless_asked_and_then_comes_back() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = init(root.path(), "a");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut serving = Serving::start(&dir, &listen, &[]);
    let token = serving.token("host#1");
    let (refused, echoed) = crash_then_echo(&token);
    assert_eq!(refused, vat::ErrorKind::Unimplemented);
    assert_eq!(echoed, Ok(7));
    assert!(serving.terminate().success());

    // For demonstrations: it obeys, crashes, and its supervisor restarts
    // it behind the same token and the same reference.
    let serving = Serving::start(&dir, &listen, &["--crash-on-demand"]);
    let (crashed, echoed) = crash_then_echo(&token);
    assert_eq!(crashed, vat::ErrorKind::Crashed);
    assert_eq!(echoed, Ok(7));
    assert_eq!(ok(&["call", &token, "echo", "8"]), "8\n");
    drop(serving);
}
