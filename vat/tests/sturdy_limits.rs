//! What holders of tokens cannot make a vat keep: handoff quotas, the sweep
//! of expired and used token records (from the store and from memory), and
//! refused restores counted and summarised in one log line per interval.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use sturdyrefs::{MintOptions, RedbStore, Store, SturdyRef, SwissNumber, VatId};
use vat::demo::DurableCounter;
use vat::net::{tls, Identity, Limits};
use vat::sturdy::{
    object_ref, restore, vat_id, HandoffQuota, Persistence, PersistenceConfig, PersistenceStats,
    RestoreError,
};
use vat::{ErrorKind, Root, VatHandle};

/// A hang guard, not a speed limit.
const PATIENCE: Duration = Duration::from_secs(120);

/// A vat serving a durable counter (`counter#1`) with `config`.
struct Server {
    vat: VatHandle,
    persistence: Arc<Root<Persistence>>,
    key: VatId,
}

impl Server {
    fn start(dir: &Path, config: PersistenceConfig) -> Server {
        let identity = Identity::generate().unwrap();
        let key = vat_id(identity.public_key());
        let vat = VatHandle::start("server").unwrap();
        let dir = dir.to_path_buf();
        let persistence = vat
            .run_async(move || async move {
                let persistence = Persistence::open_with(&dir, key, config).unwrap();
                persistence.durable::<DurableCounter>(1).unwrap();
                let listener = tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &identity)
                    .await
                    .unwrap();
                persistence.set_hints(vec![listener.local_addr().to_string().parse().unwrap()]);
                persistence.serve(listener, Limits::default());
                let kept = vat::spawn(persistence);
                vat::current().root(&kept)
            })
            .wait()
            .unwrap();
        Server {
            vat,
            persistence: Arc::new(persistence),
            key,
        }
    }

    /// Runs `work` with the server's persistence, inside its vat.
    fn with<R, F, Fut>(&self, work: F) -> R
    where
        F: FnOnce(Persistence) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let root = Arc::clone(&self.persistence);
        self.vat
            .run_async(move || async move {
                let persistence = root.get().unwrap().call(|p| p.clone()).unwrap();
                work(persistence).await
            })
            .wait()
            .unwrap()
    }

    fn mint(&self, options: MintOptions) -> String {
        self.with(move |p| async move {
            let object = object_ref("counter", 1).unwrap();
            p.mint(&object, options).await.unwrap().to_string()
        })
    }

    fn stats(&self) -> PersistenceStats {
        self.with(|p| async move { p.stats() })
    }

    fn token_count(&self) -> usize {
        self.with(|p| async move { p.tokens().unwrap().len() })
    }

    /// Waits until `done` holds of the server's stats and token count.
    fn wait_for(&self, what: &str, done: impl Fn(&PersistenceStats, usize) -> bool) {
        let started = Instant::now();
        loop {
            let (stats, tokens) = (self.stats(), self.token_count());
            if done(&stats, tokens) {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{what}: still {stats:?} with {tokens} tokens"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(self) {
        drop(self.persistence);
        self.vat.stop().unwrap();
    }
}

/// A vat with a key of its own (or none) that restores the counter and
/// asks for handoffs of it.
struct Client {
    vat: VatHandle,
    identity: Option<Identity>,
}

/// The counter reference, kept inside the client's vat between steps.
struct Held(capnp::capability::Client);

/// What a handoff request got: the token, or the refusal's kind and text.
type Handed = Result<String, (ErrorKind, String)>;

impl Client {
    fn start(name: &str, anonymous: bool) -> Client {
        Client {
            vat: VatHandle::start(name).unwrap(),
            identity: (!anonymous).then(|| Identity::generate().unwrap()),
        }
    }

    fn id(&self) -> VatId {
        vat_id(self.identity.as_ref().unwrap().public_key())
    }

    /// Restores `token`; the refusal's kind if it is refused.
    fn restore(&self, token: &str) -> Result<Arc<Root<Held>>, ErrorKind> {
        let token: SturdyRef = token.parse().unwrap();
        let identity = self.identity.clone();
        let kept = self
            .vat
            .run_async(move || async move {
                match restore(&token, identity.as_ref(), Limits::default()).await {
                    Ok((object, _)) => Ok(vat::current().root(&vat::spawn(Held(object)))),
                    Err(RestoreError::Refused(error)) => Err(error.kind()),
                    Err(other) => panic!("{other}"),
                }
            })
            .wait()
            .unwrap()?;
        Ok(Arc::new(kept))
    }

    /// Asks for `count` handoffs of `held` (restored from `token`) for
    /// `recipient`, `batch` at a time.
    fn hand_off(
        &self,
        token: &str,
        held: &Arc<Root<Held>>,
        recipient: VatId,
        count: usize,
        batch: usize,
    ) -> Vec<Handed> {
        let token: SturdyRef = token.parse().unwrap();
        let identity = self.identity.clone();
        let held = Arc::clone(held);
        self.vat
            .run_async(move || async move {
                let object = held.get().unwrap().call(|h| h.0.clone()).unwrap();
                let mut handed = Vec::with_capacity(count);
                while handed.len() < count {
                    let asks = (0..batch.min(count - handed.len())).map(|_| {
                        vat::sturdy::handoff(
                            &token,
                            &object,
                            recipient,
                            identity.as_ref(),
                            Limits::default(),
                        )
                    });
                    for outcome in futures::future::join_all(asks).await {
                        handed.push(match outcome {
                            Ok(token) => Ok(token.to_string()),
                            Err(RestoreError::Refused(e)) => {
                                Err((e.kind(), e.message().to_owned()))
                            }
                            Err(other) => panic!("{other}"),
                        });
                    }
                }
                handed
            })
            .wait()
            .unwrap()
    }
}

fn quota(per_caller: usize, per_object: usize, per_vat: usize) -> HandoffQuota {
    HandoffQuota {
        per_caller,
        per_object,
        per_vat,
    }
}

#[test]
fn a_caller_past_its_handoff_quota_is_told_to_retry_later_while_others_still_get_handoffs() {
    let dir = tempfile::tempdir().unwrap();
    let config = PersistenceConfig {
        handoff_quota: quota(4, 100, 1000),
        ..PersistenceConfig::default()
    };
    let server = Server::start(dir.path(), config);
    let token = server.mint(MintOptions::default());
    let carol = Client::start("carol", false).id();

    let alice = Client::start("alice", false);
    let alices = alice.restore(&token).unwrap();
    let handed = alice.hand_off(&token, &alices, carol, 5, 1);
    assert!(handed[..4].iter().all(Result::is_ok), "{handed:?}");
    let (kind, message) = handed[4].clone().unwrap_err();
    assert_eq!(kind, ErrorKind::Overloaded, "{message}");
    assert!(message.contains("per-caller quota of 4"), "{message}");
    assert!(message.contains("retry in"), "{message}");

    // Another caller's bucket is its own; so is the anonymous callers' one.
    let bob = Client::start("bob", false);
    let bobs = bob.restore(&token).unwrap();
    assert!(bob
        .hand_off(&token, &bobs, carol, 4, 1)
        .iter()
        .all(Result::is_ok));
    let anonymous = Client::start("anonymous", true);
    let theirs = anonymous.restore(&token).unwrap();
    assert!(anonymous.hand_off(&token, &theirs, carol, 1, 1)[0].is_ok());

    let stats = server.stats();
    assert_eq!(stats.handoffs_outstanding, 9);
    assert_eq!(stats.handoffs_over_quota, 1);
    server.stop();
}

#[test]
fn fresh_keys_meet_the_per_object_quota() {
    let dir = tempfile::tempdir().unwrap();
    let config = PersistenceConfig {
        handoff_quota: quota(4, 6, 1000),
        ..PersistenceConfig::default()
    };
    let server = Server::start(dir.path(), config);
    let token = server.mint(MintOptions::default());
    let carol = Client::start("carol", false).id();
    let mut handed = Vec::new();
    for n in 0..3 {
        let caller = Client::start(&format!("caller {n}"), false);
        let held = caller.restore(&token).unwrap();
        handed.extend(caller.hand_off(&token, &held, carol, 3, 3));
    }
    let granted = handed.iter().filter(|h| h.is_ok()).count();
    assert_eq!(granted, 6, "{handed:?}");
    let refusal = handed.iter().find_map(|h| h.clone().err()).unwrap();
    assert_eq!(refusal.0, ErrorKind::Overloaded);
    assert!(refusal.1.contains("per-object quota of 6"), "{}", refusal.1);
    server.stop();
}

#[test]
fn ten_thousand_handoff_attempts_by_one_caller_leave_at_most_its_quota_of_records() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), PersistenceConfig::default());
    let per_caller = PersistenceConfig::default().handoff_quota.per_caller;
    let token = server.mint(MintOptions::default());
    let carol = Client::start("carol", false).id();
    let mallory = Client::start("mallory", false);
    let held = mallory.restore(&token).unwrap();

    let handed = mallory.hand_off(&token, &held, carol, 10_000, 500);
    let granted = handed.iter().filter(|h| h.is_ok()).count();
    assert_eq!(granted, per_caller);
    assert!(handed
        .iter()
        .filter_map(|h| h.as_ref().err())
        .all(|(kind, _)| *kind == ErrorKind::Overloaded));
    // The token minted for mallory, and her quota's worth of handoffs.
    assert_eq!(server.token_count(), 1 + per_caller);
    let stats = server.stats();
    assert_eq!(stats.handoffs_outstanding, per_caller);
    assert_eq!(stats.handoffs_over_quota, (10_000 - per_caller) as u64);
    server.stop();
}

#[test]
fn expired_handoffs_are_swept_from_store_and_memory_and_a_swept_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = PersistenceConfig {
        handoff_lifetime: Duration::from_secs(2),
        sweep_interval: Duration::from_millis(200),
        ..PersistenceConfig::default()
    };
    let server = Server::start(dir.path(), config);
    let token = server.mint(MintOptions::default());
    let carol = Client::start("carol", false);
    let alice = Client::start("alice", false);
    let alices = alice.restore(&token).unwrap();
    let handed: Vec<String> = alice
        .hand_off(&token, &alices, carol.id(), 10, 10)
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // Carol uses one at once; the rest go unused.
    let carols = carol.restore(&handed[0]).unwrap();
    assert_eq!(carol.restore(&handed[0]).err(), Some(ErrorKind::Revoked));
    drop(carols);

    // Once they expire the sweep deletes all ten records, the used one too,
    // and memory forgets them.
    server.wait_for("the sweep of expired handoffs", |stats, tokens| {
        tokens == 1 && stats.handoffs_outstanding == 0 && stats.used_pending == 0
    });
    let stats = server.stats();
    assert!(stats.purged >= 10, "{stats:?}");

    // A reference that is gone leaves no standing behind.
    let bob = Client::start("bob", false);
    let other = server.mint(MintOptions::default());
    drop(bob.restore(&other).unwrap());
    server.wait_for("bob's restore", |stats, _| stats.standings == 2);
    bob.vat.stop().unwrap();
    server.wait_for("bob's standing to be released", |stats, _| {
        stats.standings == 1 && stats.restored == 1
    });

    // A swept token is unknown now, used or not.
    assert_eq!(
        carol.restore(&handed[0]).err(),
        Some(ErrorKind::UnknownToken)
    );
    assert_eq!(
        carol.restore(&handed[1]).err(),
        Some(ErrorKind::UnknownToken)
    );
    // The ordinary token was left alone.
    assert!(alice.restore(&token).is_ok());
    server.stop();
}

#[test]
fn one_sweep_pass_deletes_at_most_its_batch_and_later_passes_the_rest() {
    const EXPIRED: usize = 5_000;
    const BATCH: usize = 512;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RedbStore::open(dir.path().join(vat::sturdy::STORE_FILE)).unwrap();
        let counter = object_ref("counter", 1).unwrap();
        let past = SystemTime::now() - Duration::from_secs(3600);
        for _ in 0..EXPIRED {
            let options = MintOptions {
                expires_at: Some(past),
                ..MintOptions::default()
            };
            store.mint_at(counter.clone(), options, past).unwrap();
        }
        store.mint(counter, MintOptions::default()).unwrap();
    }
    // No periodic sweep during the test: the passes are run by hand.
    let config = PersistenceConfig {
        sweep_interval: Duration::from_secs(24 * 3600),
        sweep_batch: BATCH,
        ..PersistenceConfig::default()
    };
    let server = Server::start(dir.path(), config);
    assert_eq!(server.token_count(), EXPIRED + 1);
    let first = server.with(|p| async move { p.sweep().await.unwrap() });
    assert_eq!(first.purged, BATCH);
    assert!(first.more);
    assert_eq!(server.token_count(), EXPIRED + 1 - BATCH);
    let mut passes = vec![first.purged];
    loop {
        let pass = server.with(|p| async move { p.sweep().await.unwrap() });
        assert!(pass.purged <= BATCH);
        passes.push(pass.purged);
        if !pass.more {
            break;
        }
    }
    assert_eq!(passes.iter().sum::<usize>(), EXPIRED, "{passes:?}");
    assert_eq!(passes.len(), EXPIRED.div_ceil(BATCH), "{passes:?}");
    assert_eq!(server.token_count(), 1);
    assert_eq!(server.stats().purged, EXPIRED as u64);
    server.stop();
}

/// Every log line the test binary writes, once [`capture_logs`] ran.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(Mutex::default)
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        logs().lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends INFO and above of every thread to [`logs`].
fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(|| Capture)
            .init();
    });
}

/// The captured lines that mention `text`.
fn lines_with(text: &str) -> Vec<String> {
    String::from_utf8_lossy(&logs().lock().unwrap())
        .lines()
        .filter(|line| line.contains(text))
        .map(str::to_owned)
        .collect()
}

/// The refusal summaries logged by the vat `vat`.
fn summaries(vat: &VatId) -> Vec<String> {
    lines_with(&format!("vat={vat}"))
        .into_iter()
        .filter(|line| line.contains("refused in the last"))
        .collect()
}

/// Waits until the vat `vat` has logged `count` refusal summaries.
fn wait_for_summaries(vat: &VatId, count: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let found = summaries(vat);
        if found.len() >= count {
            return found;
        }
        assert!(started.elapsed() < PATIENCE, "only {found:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_thousand_bad_restores_are_counted_and_summarised_in_one_warn_line() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let config = PersistenceConfig {
        refusal_summary_interval: Duration::from_millis(300),
        ..PersistenceConfig::default()
    };
    let server = Server::start(dir.path(), config);
    let guesser = VatId::from_bytes([0x66; 32]);
    // A thousand guesses within one turn of the vat: one interval's worth.
    let refused = server.with(move |p| async move {
        (0..1000)
            .filter(|_| {
                let guess = SwissNumber::generate().unwrap();
                p.restore(&guess, Some(&guesser)).err().map(|e| e.kind())
                    == Some(ErrorKind::UnknownToken)
            })
            .count()
    });
    assert_eq!(refused, 1000);
    assert_eq!(server.stats().refused.unknown, 1000);
    let first = wait_for_summaries(&server.key, 1);
    assert_eq!(first.len(), 1, "{first:?}");
    let line = &first[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(
            "1000 restores refused in the last 300 ms: unknown 1000, revoked 0, expired 0, \
             used single-use 0; most recent caller vat "
        ),
        "{line}"
    );
    assert!(line.contains(&guesser.to_string()), "{line}");

    // Over the wire, one refusal of each other reason.
    let revoked = server.mint(MintOptions::default());
    let hash = revoked.parse::<SturdyRef>().unwrap().swiss().hash();
    assert!(server.with(move |p| async move { p.revoke(&hash).await.unwrap() }));
    let expired = server.mint(MintOptions {
        expires_at: Some(SystemTime::now() - Duration::from_secs(1)),
        ..MintOptions::default()
    });
    let token = server.mint(MintOptions::default());
    let alice = Client::start("alice", false);
    let carol = Client::start("carol", false);
    let alices = alice.restore(&token).unwrap();
    let handed = alice
        .hand_off(&token, &alices, carol.id(), 1, 1)
        .remove(0)
        .unwrap();
    carol.restore(&handed).unwrap();
    assert_eq!(carol.restore(&handed).err(), Some(ErrorKind::Revoked));
    assert_eq!(carol.restore(&revoked).err(), Some(ErrorKind::Revoked));
    assert_eq!(carol.restore(&expired).err(), Some(ErrorKind::Expired));
    let totals = server.stats().refused;
    assert_eq!(
        (totals.unknown, totals.revoked, totals.expired, totals.used),
        (1000, 1, 1, 1)
    );

    // They are summarised too (in one line or a few, as the interval
    // falls), and nothing else was logged per attempt.
    let started = Instant::now();
    let later = loop {
        let later: Vec<String> = summaries(&server.key).split_off(1);
        let sum = |reason: &str| -> u64 {
            later
                .iter()
                .map(|line| {
                    let at = line.find(&format!("{reason} ")).unwrap() + reason.len() + 1;
                    line[at..]
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                })
                .sum()
        };
        if (sum("revoked"), sum("expired"), sum("used single-use")) == (1, 1, 1) {
            break later;
        }
        assert!(started.elapsed() < PATIENCE, "only {later:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(later.len() <= 3, "{later:?}");
    let per_attempt: Vec<String> = lines_with("restore refused")
        .into_iter()
        .filter(|line| !line.contains("refused in the last"))
        .collect();
    assert!(per_attempt.is_empty(), "{per_attempt:?}");
    // Presented secrets never reach the log.
    let all = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    for text in [&revoked, &expired, &handed] {
        let swiss = text.rsplit('/').next().unwrap();
        assert!(!all.contains(swiss));
    }
    server.stop();
}
