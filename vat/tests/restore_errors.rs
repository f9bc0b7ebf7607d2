//! What a holder is told when a restore fails for another reason than a
//! refusal: a vat that stops before it answers is no refusal, and the
//! error says that restoring again is safe.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;

use schema::gateway_capnp::gateway;
use sturdyrefs::{SturdyRef, SwissNumber};
use tokio::sync::Notify;
use vat::net::{tls, Identity, Limits};
use vat::sturdy::{restore, vat_id, RestoreError};
use vat::VatHandle;

/// A gateway that takes restores and never answers them, telling the test
/// when one has arrived; or, `hostile`, refuses them with a reason that
/// would forge a line and colour the terminal if printed raw.
struct Mute(std::sync::mpsc::Sender<()>, bool);

/// What the hostile gateway refuses with.
const FORGED: &str = "no\nvat: everything is fine\u{1b}[31m";

impl gateway::Server for Mute {
    async fn restore(
        self: Rc<Self>,
        _: gateway::RestoreParams,
        _: gateway::RestoreResults,
    ) -> Result<(), capnp::Error> {
        let _ = self.0.send(());
        if self.1 {
            return Err(capnp::Error::failed(FORGED.to_string()));
        }
        Notify::new().notified().await;
        Ok(())
    }
}

/// A vat serving a [`Mute`] gateway on loopback, a token for it, and the
/// channel that says when a restore has arrived.
fn mute_vat() -> (VatHandle, SturdyRef, std::sync::mpsc::Receiver<()>) {
    gateway_vat(false)
}

/// A vat serving a [`Mute`] gateway (`hostile` or not), a token for it,
/// and the channel that says when a restore has arrived.
fn gateway_vat(hostile: bool) -> (VatHandle, SturdyRef, std::sync::mpsc::Receiver<()>) {
    let identity = Identity::generate().unwrap();
    let server = VatHandle::start("mute").unwrap();
    let (arrived, restores) = std::sync::mpsc::channel();
    let key = identity.clone();
    let addr = server
        .run_async(move || async move {
            let listener = tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &key)
                .await
                .unwrap();
            let addr = listener.local_addr();
            let gateway: gateway::Client = vat::export(Mute(arrived, hostile));
            listener.serve(move |_| Some(gateway.client.clone()), Limits::default());
            addr
        })
        .wait()
        .unwrap();
    let token = SturdyRef::new(
        vat_id(identity.public_key()),
        vec![addr.to_string().parse().unwrap()],
        SwissNumber::generate().unwrap(),
    )
    .unwrap();
    (server, token, restores)
}

#[test]
fn a_restore_cut_off_by_a_stopping_vat_is_no_refusal_and_may_be_retried() {
    let (server, token, restores) = mute_vat();
    let client = VatHandle::start("holder").unwrap();
    let restoring = client.run_async(move || async move {
        restore(&token, None, Limits::default())
            .await
            .map(|_| ())
            .unwrap_err()
    });
    restores.recv().unwrap();
    server.stop().unwrap();
    let error = restoring.wait().unwrap();

    // The connection broke, so the restore tried afresh and found nobody.
    assert!(
        matches!(
            error,
            RestoreError::Unreachable { .. } | RestoreError::NotAnswered(_)
        ),
        "{error:?}"
    );
    assert!(error.retry_is_safe());
    let message = error.to_string();
    assert!(!message.contains("vat refused the token"), "{message}");
    client.stop().unwrap();
}

#[test]
fn vat_call_cut_off_by_a_stopping_vat_says_what_happened_and_that_retrying_is_safe() {
    let (server, token, restores) = mute_vat();
    let calling = std::process::Command::new(env!("CARGO_BIN_EXE_vat"))
        .args(["call", &token.to_string(), "get"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    restores.recv().unwrap();
    server.stop().unwrap();
    let ran = calling.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("vat refused the token"), "{stderr}");
    assert!(
        stderr.contains("the restore got no answer: disconnected"),
        "{stderr}"
    );
    assert!(stderr.contains("restoring it again is safe"), "{stderr}");
}

#[test]
fn a_refusal_quoting_the_peer_is_printed_escaped_on_one_line() {
    let (server, token, _restores) = gateway_vat(true);
    let ran = std::process::Command::new(env!("CARGO_BIN_EXE_vat"))
        .args(["call", &token.to_string(), "get"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "a raw ESC: {stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr:?}");
    assert!(lines[0].starts_with("vat: "), "{stderr:?}");
    assert!(
        lines[0].contains(r"no\nvat: everything is fine\u{1b}[31m"),
        "{stderr:?}"
    );
    server.stop().unwrap();
}
