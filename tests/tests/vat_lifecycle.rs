//! Vats leave nothing behind: stopping them ends their threads, drops their
//! tasks and closes their sockets, and dropping every handle stops a vat.
//!
//! This binary holds a single test because it counts the process's threads
//! and sockets, which any test running beside it would disturb.

use std::sync::Arc;
use std::time::Duration;

use schema::demo_capnp::host;
use tests::{eventually, serve_host, thread_count, Transport};
use vat::{ErrorKind, VatHandle};

const VATS: usize = 100;
/// Threads may take a moment to leave `/proc` after they are joined.
const PATIENCE: Duration = Duration::from_secs(5);

/// How many sockets this process holds open.
fn open_sockets() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Spawns a task in `vat` that holds a clone of `token` and never ends.
fn hold_forever(vat: &VatHandle, token: &Arc<()>) {
    let held = token.clone();
    vat.run(move || {
        tokio::task::spawn_local(async move {
            let _held = held;
            futures::future::pending::<()>().await;
        });
    })
    .wait()
    .unwrap_or_else(|error| panic!("{} runs work: {error}", vat.name()));
}

#[test]
fn vats_leave_no_thread_task_or_socket_behind() {
    let threads = thread_count();
    let sockets = open_sockets();
    let token = Arc::new(());

    let vats: Vec<VatHandle> = (0..VATS)
        .map(|i| VatHandle::start(format!("v{i}")).unwrap())
        .collect();
    assert_eq!(thread_count(), threads + VATS, "one thread per vat");
    for vat in &vats {
        hold_forever(vat, &token);
    }
    assert_eq!(Arc::strong_count(&token), VATS + 1);

    // Live sessions too: each odd vat calls a host its even neighbour serves
    // on loopback TCP, and leaves the connection open.
    for pair in vats.chunks(2) {
        let route = serve_host(&pair[0], pair[0].name(), Transport::Tcp);
        let echoed = pair[1]
            .run_async(move || async move {
                let connection = route.connect(None).await;
                let host: host::Client = connection.peer();
                let mut echo = host.echo_request();
                echo.get().set_value(42);
                let response = echo.send().promise.await?;
                // The session outlives `connection`: the vat's stop must end it.
                Ok::<_, capnp::Error>(response.get()?.get_value())
            })
            .wait()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, 42);
    }
    // Per pair: the listener, and the two ends of the connection.
    assert_eq!(
        open_sockets(),
        sockets + 3 * VATS / 2,
        "the sessions are up"
    );

    for vat in &vats {
        vat.stop().unwrap();
        assert!(!vat.is_running());
    }
    // `stop` returns once the vat's tasks are dropped.
    assert_eq!(Arc::strong_count(&token), 1, "a vat task outlived its vat");
    assert!(
        eventually(PATIENCE, || thread_count() == threads),
        "{} threads remain of a baseline of {threads}",
        thread_count()
    );
    assert!(
        eventually(PATIENCE, || open_sockets() == sockets),
        "{} sockets are open, against {sockets} before the vats started",
        open_sockets()
    );
    drop(vats);

    // Dropping every handle stops the vat.
    let vat = VatHandle::start("dropped").unwrap();
    let other = vat.clone();
    hold_forever(&vat, &token);
    let unfinished = vat.run_async(futures::future::pending::<()>);
    assert_eq!(thread_count(), threads + 1);
    assert_eq!(Arc::strong_count(&token), 2);
    drop(vat);
    assert!(other.is_running(), "a handle remains");
    drop(other);
    assert!(
        eventually(PATIENCE, || Arc::strong_count(&token) == 1),
        "the vat's task outlived its last handle"
    );
    assert!(
        eventually(PATIENCE, || thread_count() == threads),
        "the vat's thread outlived its last handle"
    );
    let error = unfinished.wait().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::VatStopped, "{error}");
}
