//! Several versions of one actor live at once, on two hosts (each a vat of
//! its own, real TLS and redb) over a three-member directory: weights
//! split calls and move live, sticky keys keep their version, content
//! rules pick by the caller's key and by a field of the call, blue/green
//! swaps under load without a failed call, and lifecycle commands without
//! a version refuse to guess.

// Test setup failing is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use schema::lattice_capnp::http_handler;
use vat::VatHandle;
use vat_directory::command::FacetKind;
use vat_directory::operator::LocalMembers;
use vat_directory::DirectoryClient;
use vat_lattice::demo::Hello;
use vat_lattice::route::{parse_rule, RoutePick};
use vat_lattice::{Host, HostBuilder, Kind, Lattice, LatticeError, Reference, Route};

/// Generous: the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(60);

thread_local! {
    /// The host of the vat whose thread this is.
    static HOST: RefCell<Option<Host>> = const { RefCell::new(None) };
    /// The operator's lattice and its reference to `greeter`.
    static OPERATOR: RefCell<Option<(Lattice, Reference)>> = const { RefCell::new(None) };
}

const V1: &str = "1.0.0";
const V2: &str = "1.1.0";

struct Lab {
    _members: LocalMembers,
    operator: VatHandle,
    hosts: Vec<VatHandle>,
    _dir: tempfile::TempDir,
}

impl Lab {
    /// Two hosts, each able to run greeter@1.0.0 and greeter@1.1.0.
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let members = LocalMembers::start(&dir.path().join("directory"), 3).unwrap();
        let operator = VatHandle::start("operator").unwrap();
        let admin = members.form_cluster(&operator).unwrap();
        let mut hosts = Vec::new();
        for i in 0..2 {
            let vat = VatHandle::start(format!("host{i}")).unwrap();
            let admin = admin.clone();
            let path = dir.path().join(format!("host{i}"));
            vat.block_on(move || async move {
                let served = vat_lattice::serve::serve(&path, ([127, 0, 0, 1], 0).into()).await?;
                let vat_id = served.persistence.vat().to_string();
                let facet = DirectoryClient::new(admin, None)
                    .mint_facet(FacetKind::Host { vat: vat_id })
                    .await
                    .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
                let mut builder = HostBuilder::new();
                for version in [V1, V2] {
                    builder = builder.actor(Kind::new("greeter", version).unwrap(), move |c| {
                        Ok(Hello::new(c, &format!("host{i}")).export())
                    });
                }
                let host = builder
                    .join(
                        DirectoryClient::new(facet, Some(served.identity.clone())),
                        served.persistence.clone(),
                        Some(served.identity.clone()),
                    )
                    .await
                    .map_err(|e| vat::Error::new(vat::ErrorKind::Failed, e.to_string()))?;
                HOST.with(|h| *h.borrow_mut() = Some(host));
                Ok::<_, vat::Error>(())
            })
            .unwrap();
            hosts.push(vat);
        }
        let token = admin.clone();
        operator
            .block_on(move || async move {
                let lattice = Lattice::new(DirectoryClient::new(token, None));
                let reference = lattice.reference("greeter").await?;
                OPERATOR.with(|o| *o.borrow_mut() = Some((lattice, reference)));
                Ok::<_, LatticeError>(())
            })
            .unwrap();
        Lab {
            _members: members,
            operator,
            hosts,
            _dir: dir,
        }
    }

    fn on_host<T, F, Fut>(&self, i: usize, f: F) -> Result<T, LatticeError>
    where
        T: Send + 'static,
        F: FnOnce(Host) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, LatticeError>> + 'static,
    {
        self.hosts[i]
            .run_async(move || async move {
                let host = HOST.with(|h| h.borrow().clone()).expect("host joined");
                f(host).await
            })
            .wait()
            .expect("host vat runs")
    }

    fn start(&self, i: usize, version: &'static str) -> u64 {
        self.on_host(i, move |host| async move {
            host.start_actor("greeter", Some(version)).await
        })
        .unwrap()
    }

    /// Runs `f` in the operator's vat with its lattice and reference.
    fn operator<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Lattice, Reference) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        self.operator
            .run_async(move || async move {
                let (lattice, reference) = OPERATOR
                    .with(|o| o.borrow().clone())
                    .expect("operator ready");
                f(lattice, reference).await
            })
            .wait()
            .expect("operator vat runs")
    }

    fn route(&self, route: Route) {
        self.operator(move |lattice, _| async move { lattice.set_route("greeter", route).await })
            .unwrap();
    }

    /// Waits until the operator's reference sees `instances` of each version.
    fn wait_for_versions(&self, instances: &'static [(&'static str, usize)]) {
        self.operator(move |_, reference| async move {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let seen = reference.versions();
                let all = instances
                    .iter()
                    .all(|(v, n)| seen.iter().any(|(sv, sn)| sv == v && sn == n));
                if all {
                    return;
                }
                assert!(Instant::now() < deadline, "versions seen: {seen:?}");
                reference.refresh().await.unwrap();
                vat_env::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

fn weights(pairs: &[(&str, u32)], sticky: bool) -> Route {
    Route {
        rules: Vec::new(),
        pick: RoutePick::Weights {
            weights: pairs.iter().map(|(v, w)| ((*v).to_owned(), *w)).collect(),
            sticky,
        },
    }
}

fn live(version: &str) -> Route {
    Route {
        rules: Vec::new(),
        pick: RoutePick::Live {
            version: version.to_owned(),
            previous: None,
        },
    }
}

/// Calls `handle` with `path`; answers the version that answered.
async fn call(target: &http_handler::Client, path: &str) -> Result<String, capnp::Error> {
    let mut request = target.handle_request();
    request.get().init_request().set_path(path);
    let reply = request.send().promise.await?;
    let body = reply.get()?.get_response()?.get_body()?;
    let body = String::from_utf8_lossy(body).into_owned();
    Ok(version_of(&body).to_owned())
}

/// `hello from greeter@1.1.0 on host1/0` -> `1.1.0`.
fn version_of(body: &str) -> &str {
    body.split('@')
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or(body)
}

/// Makes `n` calls on the unversioned reference, 16 at a time; answers the
/// count per version, and panics on a failed call.
async fn split(target: http_handler::Client, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut left = n;
    while left > 0 {
        let batch = left.min(16);
        let calls = (0..batch).map(|_| call(&target, "/"));
        for outcome in futures::future::join_all(calls).await {
            *counts.entry(outcome.expect("no call fails")).or_insert(0) += 1;
        }
        left -= batch;
    }
    counts
}

fn share(counts: &BTreeMap<String, usize>, version: &str) -> f64 {
    let total: usize = counts.values().sum();
    counts.get(version).copied().unwrap_or(0) as f64 / total as f64
}

#[test]
fn weights_split_calls_move_live_and_sticky_keys_keep_their_version() {
    let lab = Lab::new();
    lab.start(0, V1);
    lab.start(1, V2);
    lab.wait_for_versions(&[(V1, 1), (V2, 1)]);
    lab.route(weights(&[(V1, 50), (V2, 50)], false));
    let counts =
        lab.operator(|_, reference| async move { split(reference.client(), 10_000).await });
    assert!((share(&counts, V1) - 0.5).abs() <= 0.02, "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 10_000);

    // Move to 90/10 while calls run: none fails, and the calls made after
    // the change split 90/10.
    let (during, after) = lab.operator(|lattice, reference| async move {
        let target: http_handler::Client = reference.client();
        let background = {
            let target = target.clone();
            vat_env::spawn(async move { split(target, 2_000).await })
        };
        lattice
            .set_route("greeter", weights(&[(V1, 90), (V2, 10)], false))
            .await
            .unwrap();
        let after = split(target, 10_000).await;
        (background.await.unwrap(), after)
    });
    assert_eq!(during.values().sum::<usize>(), 2_000, "{during:?}");
    assert!((share(&after, V1) - 0.9).abs() <= 0.02, "{after:?}");

    // Sticky: each key keeps its version, call after call, and across a
    // weight change that need not move it.
    lab.route(weights(&[(V1, 50), (V2, 50)], true));
    let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let placed = |keys: Vec<String>| {
        lab.operator(move |_, reference| async move {
            let mut placed = BTreeMap::new();
            for key in keys {
                let target: http_handler::Client = reference.with_key(&key);
                let first = call(&target, "/").await.unwrap();
                for _ in 0..2 {
                    assert_eq!(call(&target, "/").await.unwrap(), first, "{key} moved");
                }
                placed.insert(key, first);
            }
            placed
        })
    };
    let before = placed(keys.clone());
    let on_v1 = before.values().filter(|v| *v == V1).count();
    assert!((150..250).contains(&on_v1), "{on_v1} of 400 keys on {V1}");
    // 1.0.0 grows: no key leaves it.
    lab.route(weights(&[(V1, 70), (V2, 30)], true));
    let grown = placed(keys.clone());
    for (key, version) in &before {
        if version == V1 {
            assert_eq!(grown[key], V1, "{key} left the version that grew");
        }
    }
    // A rule that matches none of them, and a version of weight 0: no key
    // moves at all.
    let mut unrelated = weights(&[(V1, 70), (V2, 30), ("2.0.0", 0)], true);
    unrelated
        .rules
        .push(parse_rule("key:beta-*=1.1.0").unwrap());
    lab.route(unrelated);
    assert_eq!(placed(keys), grown);
}

#[test]
fn content_rules_pick_by_the_callers_key_and_by_a_field_of_the_call() {
    let lab = Lab::new();
    lab.start(0, V1);
    lab.start(1, V2);
    lab.wait_for_versions(&[(V1, 1), (V2, 1)]);
    let mut route = live(V1);
    route.rules.push(parse_rule("key:beta-*=1.1.0").unwrap());
    route
        .rules
        .push(parse_rule("field.request.path:/beta/*=1.1.0").unwrap());
    lab.route(route);
    let (by_key, by_field) = lab.operator(|_, reference| async move {
        let mut by_key: BTreeMap<(bool, String), usize> = BTreeMap::new();
        for i in 0..1_000 {
            let beta = i % 2 == 0;
            let key = if beta {
                format!("beta-{i}")
            } else {
                format!("user-{i}")
            };
            let target: http_handler::Client = reference.with_key(&key);
            let version = call(&target, "/").await.unwrap();
            *by_key.entry((beta, version)).or_insert(0) += 1;
        }
        let target: http_handler::Client = reference.client();
        let mut by_field = Vec::new();
        for path in ["/beta/cart", "/cart", "/betamax"] {
            by_field.push(call(&target, path).await.unwrap());
        }
        (by_key, by_field)
    });
    assert_eq!(
        by_key,
        [((false, V1.to_owned()), 500), ((true, V2.to_owned()), 500)].into()
    );
    assert_eq!(by_field, [V2, V1, V1]);
}

/// One call of a caller under load: the phase it started in, and the
/// version that answered or why it failed.
type Seen = (u32, Result<String, String>);

#[test]
fn blue_green_swaps_under_load_with_no_failed_call_and_swaps_back() {
    let lab = Lab::new();
    lab.start(0, V1);
    lab.route(live(V1));
    lab.start(1, V2);
    lab.wait_for_versions(&[(V1, 1), (V2, 1)]);
    let outcome = lab.operator(|lattice, reference| async move {
        // Green answers through its versioned reference only.
        let refused = lattice.swap("greeter", Some("9.9.9")).await;
        assert!(
            matches!(&refused, Err(LatticeError::BadRoute { why }) if why.contains("greeter@9.9.9")),
            "{refused:?}"
        );
        let green: http_handler::Client = reference.version(V2);
        assert_eq!(call(&green, "/").await.unwrap(), V2);
        let unversioned: http_handler::Client = reference.client();
        let phase = Rc::new(Cell::new(0u32));
        let stop = Rc::new(Cell::new(false));
        let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (target, phase, stop, seen) = (
                    unversioned.clone(),
                    phase.clone(),
                    stop.clone(),
                    seen.clone(),
                );
                vat_env::spawn(async move {
                    while !stop.get() {
                        let at = phase.get();
                        let outcome = call(&target, "/").await.map_err(|e| e.to_string());
                        seen.borrow_mut().push((at, outcome));
                    }
                })
            })
            .collect();
        // Each phase lasts until the callers made 16 calls in it, however
        // busy the machine.
        let settle = |phase: u32| {
            let seen = seen.clone();
            async move {
                let deadline = Instant::now() + PATIENCE;
                while seen.borrow().iter().filter(|(p, _)| *p == phase).count() < 16 {
                    assert!(Instant::now() < deadline, "phase {phase}: too few calls");
                    vat_env::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        // Phases: 0 before the swap, 1 while it runs, 2 after it, 3 while
        // swapping back, 4 after that.
        settle(0).await;
        phase.set(1);
        let swapped = lattice.swap("greeter", None).await.unwrap();
        phase.set(2);
        settle(2).await;
        phase.set(3);
        let back = lattice.swap("greeter", None).await.unwrap();
        phase.set(4);
        settle(4).await;
        stop.set(true);
        for caller in callers {
            caller.await.unwrap();
        }
        let seen = seen.borrow().clone();
        (swapped.route, back.route, seen)
    });
    let (swapped, back, seen) = outcome;
    assert_eq!(
        swapped.pick,
        RoutePick::Live {
            version: V2.into(),
            previous: Some(V1.into())
        }
    );
    assert_eq!(
        back.pick,
        RoutePick::Live {
            version: V1.into(),
            previous: Some(V2.into())
        }
    );
    let failed: Vec<_> = seen.iter().filter(|(_, o)| o.is_err()).collect();
    assert!(
        failed.is_empty(),
        "calls failed across the swaps: {failed:?}"
    );
    for (phase, expected) in [(0, V1), (2, V2), (4, V1)] {
        let calls: Vec<&String> = seen
            .iter()
            .filter(|(p, _)| *p == phase)
            .filter_map(|(_, o)| o.as_ref().ok())
            .collect();
        assert!(
            calls.len() >= 8,
            "phase {phase}: only {} calls",
            calls.len()
        );
        // Calls made while a swap runs may reach either version (each
        // finishes where it started); every call made after it reaches the
        // version swapped to.
        assert!(
            calls.iter().all(|v| *v == expected),
            "phase {phase}: {calls:?}"
        );
    }
}

#[test]
fn lifecycle_commands_without_a_version_refuse_when_several_run() {
    let lab = Lab::new();
    let blue = lab.start(0, V1);
    let green = lab.start(0, V2);
    let refused = lab.on_host(
        0,
        |host| async move { host.stop_kind("greeter", None).await },
    );
    match refused {
        Err(LatticeError::SeveralVersionsRun { name, versions }) => {
            assert_eq!(name, "greeter");
            assert_eq!(versions, [V1, V2]);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let refused = lab.on_host(
        0,
        |host| async move { host.scale("greeter", None, 3).await },
    );
    assert!(matches!(
        refused,
        Err(LatticeError::SeveralVersionsRun { .. })
    ));
    let message = LatticeError::SeveralVersionsRun {
        name: "greeter".into(),
        versions: vec![V1.into(), V2.into()],
    }
    .to_string();
    assert!(message.contains("1.0.0, 1.1.0"), "{message}");
    let running = |lab: &Lab| {
        lab.on_host(0, |host| async move {
            Ok(host
                .inventory()
                .into_iter()
                .map(|i| (i.kind.version, i.number))
                .collect::<Vec<_>>())
        })
        .unwrap()
    };
    assert_eq!(running(&lab), [(V1.into(), blue), (V2.into(), green)]);
    // With a version: that one only.
    let scaled = lab
        .on_host(
            0,
            |host| async move { host.scale("greeter", Some(V2), 3).await },
        )
        .unwrap();
    assert_eq!(scaled.len(), 3);
    let stopped = lab
        .on_host(0, |host| async move {
            host.stop_kind("greeter", Some(V2)).await
        })
        .unwrap();
    assert_eq!(stopped.len(), 3);
    assert_eq!(running(&lab), [(V1.to_owned(), blue)]);
    // One version left: no version needed.
    let scaled = lab
        .on_host(
            0,
            |host| async move { host.scale("greeter", None, 2).await },
        )
        .unwrap();
    assert!(scaled.iter().all(|i| i.kind.version == V1) && scaled.len() == 2);
}
