//! Bindings without a lattice: one host keeps the records in its own store
//! (`Local`, a file in its data folder) and everything works as in a
//! lattice: an HTTP binding serves, a key-value binding grants its bucket,
//! removal closes the port, and the bindings survive the host's restart.

// Test setup failing is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use vat::VatHandle;
use vat_lattice::demo::Hello;
use vat_lattice::providers::{http::HttpProvider, kv::KeyValueProvider};
use vat_lattice::{BindingId, Config, HostBuilder, Kind, Lattice, Local, DEFAULT_LINK};

mod support;

use support::{free_port, get, says, until};

/// Starts a host on its own store in `dir`, running `hello` and the two
/// providers, with the plan kept in `dir`.
fn host(dir: &Path) -> VatHandle {
    let vat = VatHandle::start("single-host").unwrap();
    let dir = dir.to_owned();
    vat.block_on(move || async move {
        let served = vat_lattice::serve::serve(&dir, ([127, 0, 0, 1], 0).into()).await?;
        let local = Local::open(
            dir.join("lattice.records"),
            &served.persistence.vat().to_string(),
        )
        .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
        let host = HostBuilder::new()
            .plan(dir.join("plan"))
            .actor(Kind::new("hello", "1.0.0").unwrap(), |cx| {
                Ok(Hello::new(cx, "single").export())
            })
            .provider(Kind::new("http", "1.0.0").unwrap(), |_| {
                Ok(Box::new(HttpProvider::new()))
            })
            .provider(Kind::new("kv", "1.0.0").unwrap(), |cx| {
                Ok(Box::new(KeyValueProvider::new(cx.persistence.clone())))
            })
            .join(
                local.host.clone(),
                served.persistence.clone(),
                Some(served.identity),
            )
            .await
            .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
        if host.inventory().is_empty() {
            for provider in ["http", "kv"] {
                host.start_provider(provider, None)
                    .await
                    .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
            }
            host.start_actor("hello", None)
                .await
                .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
        }
        LOCAL.with(|l| *l.borrow_mut() = Some((local, host)));
        Ok::<_, vat::Error>(())
    })
    .unwrap();
    vat
}

thread_local! {
    static LOCAL: std::cell::RefCell<Option<(Local, vat_lattice::Host)>> =
        const { std::cell::RefCell::new(None) };
}

fn bind(vat: &VatHandle, provider: &'static str, config: Config) {
    vat.block_on(move || async move {
        let (local, _) = LOCAL.with(|l| l.borrow().clone()).expect("host started");
        let id = BindingId::new("hello", provider, DEFAULT_LINK)?;
        Lattice::new(local.admin)
            .set_binding(&id, config)
            .await
            .map(drop)
    })
    .unwrap();
}

fn unbind(vat: &VatHandle, provider: &'static str) {
    vat.block_on(move || async move {
        let (local, _) = LOCAL.with(|l| l.borrow().clone()).expect("host started");
        let id = BindingId::new("hello", provider, DEFAULT_LINK)?;
        Lattice::new(local.admin).remove_binding(&id).await
    })
    .unwrap();
}

#[test]
fn one_host_keeps_its_bindings_in_its_own_store_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let vat = host(dir.path());
    bind(&vat, "http", [("port".to_owned(), port.to_string())].into());
    bind(&vat, "kv", Config::new());
    assert_eq!(
        get(port, "/"),
        Some((200, "hello from hello@1.0.0 on single/2".to_owned()))
    );
    assert_eq!(get(port, "/kv/set/k/v"), Some((200, "set".to_owned())));
    assert_eq!(get(port, "/kv/get/k"), Some((200, "v".to_owned())));

    // Restarted: the same instances from the plan, the same bindings from
    // the store, the same bucket.
    vat.stop().unwrap();
    assert_eq!(until(port, "/", Option::is_none), None);
    let vat = host(dir.path());
    let reply = until(port, "/kv/get/k", says("v"));
    assert_eq!(reply, Some((200, "v".to_owned())));

    unbind(&vat, "http");
    assert_eq!(
        until(port, "/", Option::is_none),
        None,
        "the port still answers"
    );
    vat.stop().unwrap();
}
