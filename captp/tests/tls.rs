//! Vats over TLS on real sockets: who may connect, who learns what, and how
//! the listener survives peers that misbehave.

#[allow(dead_code)] // each test file uses a part
mod support;

use std::time::{Duration, Instant};

use captp::tls::{self, HandshakeError, TlsListener};
use captp::{DialStage, Identity, Limits, NetError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{echo, echo_host, in_vat, localhost, raw_tls_client, Logs, RecordedKeys, HANG_GUARD};

#[test]
fn a_client_dialling_the_right_key_is_served_and_the_acceptor_learns_its_key() {
    in_vat(async {
        let server = Identity::generate().unwrap();
        let client = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server).await.unwrap();
        let addr = listener.local_addr();
        assert_eq!(listener.public_key(), server.public_key());
        let accepted = tokio::task::spawn_local(async move {
            let connection = listener
                .accept(Some(echo_host()), Limits::default())
                .await
                .unwrap();
            let key = connection.peer_key();
            (connection, key)
        });

        let connection = tls::dial(
            addr,
            server.public_key(),
            Some(&client),
            None,
            Limits::default(),
        )
        .await
        .unwrap();
        assert_eq!(connection.peer_key(), Some(server.public_key()));
        assert_eq!(echo(&connection, 42).await.unwrap(), 42);

        let (_server_side, key) = accepted.await.unwrap();
        assert_eq!(key, Some(client.public_key()));
    });
}

#[test]
fn serve_hands_each_callers_key_to_the_bootstrap_chooser() {
    in_vat(async {
        let server = Identity::generate().unwrap();
        let alice = Identity::generate().unwrap();
        let bob = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server).await.unwrap();
        let addr = listener.local_addr();
        let seen = RecordedKeys::default();
        listener.serve(seen.recording_echo_host(), Limits::default());

        for (caller, value) in [(&alice, 1), (&bob, 2)] {
            let connection = tls::dial(
                addr,
                server.public_key(),
                Some(caller),
                None,
                Limits::default(),
            )
            .await
            .unwrap();
            assert_eq!(echo(&connection, value).await.unwrap(), value);
        }
        assert_eq!(
            seen.keys(),
            vec![Some(alice.public_key()), Some(bob.public_key())]
        );
    });
}

#[test]
fn dialling_the_wrong_key_fails_naming_both_keys_and_the_listener_still_serves() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let server = Identity::generate().unwrap();
        let impostor_target = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server).await.unwrap();
        let addr = listener.local_addr();
        listener.serve(|_| Some(echo_host()), Limits::default());

        let error = tls::dial(
            addr,
            impostor_target.public_key(),
            None,
            None,
            Limits::default(),
        )
        .await
        .unwrap_err();
        match &error {
            NetError::NotThatVat {
                addr: at,
                expected,
                found,
            } => {
                assert_eq!(*at, addr);
                assert_eq!(*expected, impostor_target.public_key());
                assert_eq!(*found, server.public_key());
            }
            other => panic!("expected NotThatVat, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains(&addr.to_string()), "{message}");
        assert!(
            message.contains(&format!("{:?}", impostor_target.public_key())),
            "{message}"
        );

        // The refusal was the dialler's; the server saw an alert and goes on.
        logs.wait_for("TLS handshake failed", 1).await;
        let connection = tls::dial(addr, server.public_key(), None, None, Limits::default())
            .await
            .unwrap();
        assert_eq!(echo(&connection, 7).await.unwrap(), 7);
    });
}

#[test]
fn an_anonymous_client_is_served_and_the_acceptor_sees_no_key() {
    in_vat(async {
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server).await.unwrap();
        let addr = listener.local_addr();
        let seen = RecordedKeys::default();
        listener.serve(seen.recording_echo_host(), Limits::default());

        let connection = tls::dial(addr, server.public_key(), None, None, Limits::default())
            .await
            .unwrap();
        assert_eq!(connection.peer_key(), Some(server.public_key()));
        assert_eq!(echo(&connection, 5).await.unwrap(), 5);
        assert_eq!(seen.keys(), vec![None]);
    });
}

#[test]
fn garbage_and_plain_capnp_on_the_tls_port_are_logged_and_the_listener_keeps_serving() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server).await.unwrap();
        let addr = listener.local_addr();
        listener.serve(|_| Some(echo_host()), Limits::default());

        // Bytes that are not TLS: the server answers with an alert at most,
        // then closes.
        let mut garbage = TcpStream::connect(addr).await.unwrap();
        let garbage_addr = garbage.local_addr().unwrap();
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: vat\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection")
            .ok();
        assert!(answer.len() < 64, "no more than an alert: {answer:?}");
        let log = logs.wait_for("TLS handshake failed", 1).await;
        assert!(log.contains(&garbage_addr.to_string()), "{log}");

        // A plain-TCP Cap'n Proto client: its call fails, the server logs it.
        let plain = captp::dial(addr, None, Limits::default()).await.unwrap();
        assert!(echo(&plain, 1).await.is_err());
        logs.wait_for("TLS handshake failed", 2).await;

        let connection = tls::dial(addr, server.public_key(), None, None, Limits::default())
            .await
            .unwrap();
        assert_eq!(echo(&connection, 9).await.unwrap(), 9);
    });
}

/// Longer than any hang guard: a socket closed within the guard was closed
/// by the defence under test, not by this timeout.
const NEVER: Duration = Duration::from_secs(600);

#[test]
fn a_caller_is_served_while_a_silent_one_still_holds_its_handshake() {
    in_vat(async {
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server)
            .await
            .unwrap()
            .with_client_hello_timeout(NEVER)
            .with_handshake_timeout(NEVER);
        let addr = listener.local_addr();
        listener.serve(|_| Some(echo_host()), Limits::default());

        let silent = TcpStream::connect(addr).await.unwrap();
        let connection = tls::dial(addr, server.public_key(), None, None, Limits::default())
            .await
            .unwrap();
        assert_eq!(echo(&connection, 3).await.unwrap(), 3);
        // The silent caller's socket is still open: served alongside it,
        // not after it was dropped.
        let mut buffer = [0u8; 16];
        let read = silent.try_read(&mut buffer);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "still open, nothing sent: {read:?}"
        );
    });
}

#[test]
fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let timeout = Duration::from_millis(300);
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server)
            .await
            .unwrap()
            .with_handshake_timeout(timeout);
        let addr = listener.local_addr();
        listener.serve(|_| Some(echo_host()), Limits::default());

        let started = Instant::now();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(HANG_GUARD, silent.read(&mut buffer))
            .await
            .expect("the silent client is dropped");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed, not answered: {read:?}"
        );
        assert!(started.elapsed() >= timeout, "not before the timeout");
        let log = logs
            .wait_for("did not complete the TLS handshake within 300ms", 1)
            .await;
        assert!(log.contains(&silent_addr.to_string()), "{log}");

        // The listener goes on serving.
        let connection = tls::dial(addr, server.public_key(), None, None, Limits::default())
            .await
            .unwrap();
        assert_eq!(echo(&connection, 4).await.unwrap(), 4);
    });
}

#[test]
fn a_client_trickling_its_client_hello_is_dropped_at_the_client_hello_deadline() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let hello_timeout = Duration::from_millis(300);
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server)
            .await
            .unwrap()
            .with_client_hello_timeout(hello_timeout)
            .with_handshake_timeout(NEVER);
        let addr = listener.local_addr();
        listener.serve(|_| Some(echo_host()), Limits::default());

        let started = Instant::now();
        let stream = TcpStream::connect(addr).await.unwrap();
        let trickler_addr = stream.local_addr().unwrap();
        let (mut reader, mut writer) = stream.into_split();
        // A handshake record announcing 512 bytes, sent a byte at a time.
        let trickle = tokio::task::spawn_local(async move {
            let header = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01];
            for byte in header.into_iter().chain(std::iter::repeat(0)) {
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(HANG_GUARD, reader.read(&mut buffer))
            .await
            .expect("the trickling client is dropped (hang guard)");
        assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
        assert!(
            started.elapsed() >= hello_timeout,
            "not before the deadline"
        );
        let log = logs
            .wait_for("did not send its TLS ClientHello within 300ms", 1)
            .await;
        assert!(log.contains(&trickler_addr.to_string()), "{log}");
        trickle.abort();
    });
}

#[test]
fn when_every_handshake_slot_is_taken_a_newcomer_takes_the_place_of_the_oldest_silent_caller() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server)
            .await
            .unwrap()
            .with_client_hello_timeout(NEVER)
            .with_handshake_timeout(NEVER)
            .with_max_pending_handshakes(1);
        let addr = listener.local_addr();
        listener.serve(|_| Some(echo_host()), Limits::default());

        // Accepted first (the kernel's queue is in order), so it holds the
        // only slot when the caller below arrives.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let connection = tls::dial(addr, server.public_key(), None, None, Limits::default())
            .await
            .unwrap();
        assert_eq!(echo(&connection, 8).await.unwrap(), 8);
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(HANG_GUARD, silent.read(&mut buffer))
            .await
            .expect("the silent caller is dropped long before its timeouts");
        assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
        let log = logs
            .wait_for("still without its ClientHello was dropped to make room", 1)
            .await;
        assert!(log.contains("the listener's total"), "{log}");
    });
}

#[test]
fn accept_reports_a_failed_handshake_with_the_callers_address() {
    in_vat(async {
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server)
            .await
            .unwrap()
            .with_handshake_timeout(Duration::from_millis(200));
        let silent = TcpStream::connect(listener.local_addr()).await.unwrap();
        let error = listener
            .accept(Some(echo_host()), Limits::default())
            .await
            .unwrap_err();
        match error {
            NetError::Handshake { addr, reason } => {
                assert_eq!(addr, silent.local_addr().unwrap());
                assert!(
                    matches!(reason, HandshakeError::TimedOut(t) if t == Duration::from_millis(200))
                );
            }
            other => panic!("expected a handshake error, got {other:?}"),
        }
    });
}

#[test]
fn a_client_offering_another_protocol_is_refused() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server).await.unwrap();
        let addr = listener.local_addr();
        listener.serve(|_| Some(echo_host()), Limits::default());

        let refused = raw_tls_client(addr, vec![b"h2".to_vec()], None).await;
        assert!(refused.is_err(), "the handshake fails");
        let log = logs.wait_for("TLS handshake failed", 1).await;
        assert!(
            log.contains("it does not speak capnp-vat/1 (ALPN protocol agreed: none in common"),
            "{log}"
        );
    });
}

#[test]
fn a_client_offering_no_protocol_is_dropped_after_the_handshake() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server).await.unwrap();
        let addr = listener.local_addr();
        listener.serve(|_| Some(echo_host()), Limits::default());

        if let Ok(mut stream) = raw_tls_client(addr, Vec::new(), None).await {
            let mut buffer = [0u8; 16];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
                .await
                .expect("the server closes the connection");
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }
        let log = logs
            .wait_for(
                "it does not speak capnp-vat/1 (ALPN protocol agreed: none)",
                1,
            )
            .await;
        assert!(log.contains("TLS handshake failed"), "{log}");
    });
}

#[test]
fn a_client_holding_a_p256_key_cannot_prove_it_and_is_let_in_anonymously() {
    in_vat(async {
        let server = Identity::generate().unwrap();
        let listener = TlsListener::bind(localhost(), &server).await.unwrap();
        let addr = listener.local_addr();
        let accepted = tokio::task::spawn_local(async move {
            listener
                .accept(None, Limits::default())
                .await
                .map(|connection| connection.peer_key())
        });
        // The server asks for ed25519 signatures only; a P-256 key cannot
        // make one, so the client sends no certificate.
        let _stream = raw_tls_client(
            addr,
            vec![tls::ALPN_PROTOCOL.to_vec()],
            Some(support::p256_certificate()),
        )
        .await
        .unwrap();
        assert_eq!(accepted.await.unwrap().unwrap(), None);
    });
}

#[test]
fn a_server_without_an_ed25519_key_fails_the_handshake() {
    in_vat(async {
        let addr = support::serve_p256_tls_once().await;
        let anyone = Identity::generate().unwrap().public_key();
        let error = tls::dial(addr, anyone, None, None, Limits::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, NetError::Handshake { addr: at, reason: HandshakeError::Tls(_) } if *at == addr),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with(&format!("the peer at {addr} failed the TLS handshake: ")),
            "{error}"
        );
    });
}

#[test]
fn dialling_a_plain_tcp_vat_over_tls_fails_the_handshake() {
    in_vat(async {
        let listener = captp::Listener::bind(localhost()).await.unwrap();
        let addr = listener.local_addr();
        listener.serve(echo_host(), Limits::default());
        let anyone = Identity::generate().unwrap().public_key();
        let error = tls::dial(addr, anyone, None, None, Limits::default())
            .await
            .unwrap_err();
        // A handshake error, not a timeout: the dialler saw it was not TLS.
        assert!(
            matches!(error, NetError::Handshake { addr: at, .. } if at == addr),
            "{error:?}"
        );
    });
}

#[test]
fn a_dial_to_an_address_that_never_answers_times_out_saying_retrying_is_safe() {
    in_vat(async {
        let (_socket, addr, _filler) = support::never_answers().await;
        let anyone = Identity::generate().unwrap().public_key();
        let timeout = Duration::from_millis(300);

        let error = tls::dial_within(timeout, addr, anyone, None, None, Limits::default())
            .await
            .unwrap_err();
        match &error {
            NetError::DialTimedOut {
                addr: at,
                timeout: after,
                stage,
            } => {
                assert_eq!((*at, *after), (addr, timeout));
                assert_eq!(*stage, DialStage::Connecting);
            }
            other => panic!("expected DialTimedOut, got {other:?}"),
        }
        assert!(
            error
                .to_string()
                .contains("nothing was sent, so retrying is safe"),
            "{error}"
        );

        // Plain TCP dials have the same deadline.
        let error = captp::dial_within(timeout, addr, None, Limits::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                NetError::DialTimedOut {
                    stage: DialStage::Connecting,
                    ..
                }
            ),
            "{error:?}"
        );
    });
}

#[test]
fn a_dial_to_a_server_that_never_answers_the_handshake_times_out_in_the_handshake() {
    in_vat(async {
        // Accepts, then says nothing.
        let listener = tokio::net::TcpListener::bind(localhost()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::task::spawn_local(async move { listener.accept().await.unwrap() });
        let anyone = Identity::generate().unwrap().public_key();
        let timeout = Duration::from_millis(300);
        let error = tls::dial_within(timeout, addr, anyone, None, None, Limits::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                NetError::DialTimedOut { stage: DialStage::Handshaking, timeout: t, .. } if t == timeout
            ),
            "{error:?}"
        );
        drop(held);
    });
}

#[test]
fn plain_tcp_warns_that_it_is_neither_authenticated_nor_encrypted() {
    in_vat(async {
        let (logs, _guard) = Logs::capture();
        let listener = captp::Listener::bind(localhost()).await.unwrap();
        let addr = listener.local_addr();
        listener.serve(echo_host(), Limits::default());
        let connection = captp::dial(addr, None, Limits::default()).await.unwrap();
        assert_eq!(echo(&connection, 6).await.unwrap(), 6);
        assert_eq!(connection.peer_key(), None);
        let log = logs
            .wait_for("neither authenticated nor encrypted", 2)
            .await;
        assert!(log.contains("WARN"), "{log}");
    });
}
