//! One contract, every backend: the `Store` + `HardwareLookup` conformance suite.
//!
//! Each case below is written once against a [`Harness`] and run on
//! * `embedded` — the redb store in a temporary directory;
//! * `remote` — the store API over HTTP on loopback in front of an embedded store, driven by
//!   `RemoteStore` (how the CLI and every separately started service reach `serve`);
//! * `kube` — the Kubernetes backend against the real kube-apiserver + etcd that
//!   `scripts/test.sh` starts (`tests/kube/kube.sh`), each case in its own namespace.
//!
//! Where the contract leaves a backend room (apply_all is a transaction on the embedded store
//! and validate-everything-then-write on Kubernetes), the case checks what both promise: a
//! batch that fails validation writes nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tinkerbell_core::api::server::{ApiConfig, ApiServer};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::remote::RemoteStore;
use tinkerbell_core::store::{Applied, Backend, Kind, Object, StoreError, WatchEvent, WatchStream};
use tokio_util::sync::CancellationToken;

/// How long any one expected event or lookup may take.
const STEP: Duration = Duration::from_secs(10);

/// A backend under test, in a namespace of its own.
trait Harness: Send + Sized {
    /// The store (a fresh handle; drop it before [`Harness::expire_history`]).
    fn store(&self) -> Arc<dyn Backend>;
    /// The namespace the case writes to.
    fn ns(&self) -> &str;
    /// Make the history up to and including `rv` unavailable to watches, and return a
    /// resourceVersion a watch can no longer start from.
    fn expire_history(&mut self, rv: &str) -> impl Future<Output = String> + Send;
}

// ---------------------------------------------------------------------------------------------
// Backends.

struct Embedded {
    dir: tempfile::TempDir,
    store: Option<Arc<EmbeddedStore>>,
}

impl Embedded {
    fn new() -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        Embedded {
            dir,
            store: Some(store),
        }
    }
}

impl Harness for Embedded {
    fn store(&self) -> Arc<dyn Backend> {
        self.store.clone().unwrap()
    }
    fn ns(&self) -> &str {
        "conformance"
    }
    /// History lives in memory: a restart of the store loses it (the objects stay).
    async fn expire_history(&mut self, rv: &str) -> String {
        let s = self.store.take().unwrap();
        assert_eq!(Arc::strong_count(&s), 1, "the case still holds the store");
        drop(s);
        self.store = Some(Arc::new(EmbeddedStore::open(self.dir.path()).unwrap()));
        rv.to_string()
    }
}

struct Remote {
    dir: tempfile::TempDir,
    cancel: CancellationToken,
    server: Option<ApiServer>,
    url: String,
}

const TOKEN: &str = "conformance-token";

impl Remote {
    async fn new() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let (cancel, server, url) = Remote::serve(dir.path()).await;
        Remote {
            dir,
            cancel,
            server: Some(server),
            url,
        }
    }

    async fn serve(path: &std::path::Path) -> (CancellationToken, ApiServer, String) {
        tinkerbell_edge::tls::install_crypto_provider();
        let store = EmbeddedStore::open(path).unwrap();
        let cancel = CancellationToken::new();
        let config = ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            shutdown_grace: Duration::from_secs(1),
            tls: None,
            health: Default::default(),
        };
        let server = ApiServer::start(&config, Arc::new(store), TOKEN, cancel.clone())
            .await
            .unwrap();
        let url = format!("http://{}", server.local_addr());
        (cancel, server, url)
    }
}

impl Harness for Remote {
    fn store(&self) -> Arc<dyn Backend> {
        Arc::new(RemoteStore::new(&self.url, TOKEN).unwrap())
    }
    fn ns(&self) -> &str {
        "conformance"
    }
    /// The appliance restarts: the API's store is reopened, its history gone.
    async fn expire_history(&mut self, rv: &str) -> String {
        self.cancel.cancel();
        if let Some(server) = self.server.take() {
            server.join().await.unwrap();
        }
        let (cancel, server, url) = Remote::serve(self.dir.path()).await;
        self.cancel = cancel;
        self.server = Some(server);
        self.url = url;
        rv.to_string()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Kube {
    store: KubeStore,
    ns: String,
}

impl Kube {
    async fn new(case: &str) -> Option<Kube> {
        let env = tinkerbell_core::testing::test_kube(case).await?;
        let store = KubeStore::new(env.client, &env.namespace).with_sync_timeout(STEP);
        Some(Kube {
            store,
            ns: env.namespace,
        })
    }
}

impl Harness for Kube {
    fn store(&self) -> Arc<dyn Backend> {
        Arc::new(self.store.clone())
    }
    fn ns(&self) -> &str {
        &self.ns
    }
    /// The API server keeps a window of recent history per resource (its watch cache, started
    /// when the CRD was established); anything older is answered 410 Gone. Our CRDs were
    /// installed after resourceVersion 1, so a watch from it is out of every window.
    async fn expire_history(&mut self, _rv: &str) -> String {
        "1".to_string()
    }
}

/// Run `case` on every backend: one test per backend and case.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(#[tokio::test] async fn $case() { super::$case(Embedded::new()).await; })*
        }
        mod remote {
            use super::*;
            $(#[tokio::test] async fn $case() { super::$case(Remote::new().await).await; })*
        }
        mod kube {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(h) = Kube::new(concat!("conf-", stringify!($case))).await {
                    super::$case(h).await;
                }
            })*
        }
    };
}

conformance!(
    create_get_list_delete,
    update_and_update_status_touch_only_what_they_promise,
    stale_writes_conflict,
    watch_from_resource_version_delivers_every_change_in_order,
    watch_without_resource_version_starts_with_every_object,
    expired_history_then_relist,
    apply_all_creates_configures_and_leaves_unchanged,
    apply_all_that_fails_validation_writes_nothing,
    lookups_follow_create_update_delete,
    two_hardware_cannot_claim_one_identity,
    names_follow_the_kubernetes_rules,
);

// ---------------------------------------------------------------------------------------------
// Objects and helpers.

fn hw(ns: &str, name: &str, mac: &str, ip: &str) -> Object {
    Object::from_typed_json(json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Hardware",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "agentID": format!("agent-{name}"),
            "metadata": {"instance": {"id": format!("i-{name}"), "hostname": name}},
            "interfaces": [{"dhcp": {"mac": mac, "ip": {"address": ip, "netmask": "255.255.255.0"}}}]
        }
    }))
    .unwrap()
}

fn template(ns: &str, name: &str, data: &str) -> Object {
    Object::from_typed_json(json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Template",
        "metadata": {"name": name, "namespace": ns, "labels": {"case": "conformance"}},
        "spec": {"data": data}
    }))
    .unwrap()
}

fn secret(ns: &str, name: &str, password: &str) -> Object {
    Object::from_typed_json(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "Opaque",
        "stringData": {"username": "admin", "password": password}
    }))
    .unwrap()
}

fn spec(obj: &Object) -> Value {
    obj.to_json().get("spec").cloned().unwrap_or(Value::Null)
}

fn rv(obj: &Object) -> String {
    obj.resource_version().expect("resourceVersion").to_string()
}

fn names(items: &[Object]) -> Vec<&str> {
    items.iter().map(Object::name).collect()
}

async fn next(stream: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(STEP, stream.next())
        .await
        .expect("a watch event in time")
        .expect("the watch stream is open")
        .expect("no watch error")
}

/// Poll `f` until it returns Some, for backends whose lookups follow a watch.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

async fn create_get_list_delete(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    let a = s.create(template(ns, "a", "one")).await.unwrap();
    assert_eq!(a.name(), "a");
    assert_eq!(a.namespace(), ns);
    assert!(a.meta().uid.is_some(), "create assigns a uid");
    assert!(!rv(&a).is_empty());
    assert!(matches!(
        s.create(template(ns, "a", "two")).await,
        Err(StoreError::AlreadyExists(k)) if k.name == "a"
    ));
    let got = s.get(Kind::Template, ns, "a").await.unwrap();
    assert_eq!(spec(&got), json!({"data": "one"}));
    assert_eq!(rv(&got), rv(&a));
    assert!(matches!(
        s.get(Kind::Template, ns, "missing").await,
        Err(StoreError::NotFound(k)) if k.name == "missing" && k.kind == Kind::Template
    ));

    s.create(template(ns, "b", "two")).await.unwrap();
    s.create(secret(ns, "bmc", "pw")).await.unwrap();
    let list = s.list(Kind::Template, Some(ns)).await.unwrap();
    assert_eq!(names(&list.items), ["a", "b"]);
    assert!(!list.resource_version.is_empty());
    let secrets = s.list(Kind::Secret, Some(ns)).await.unwrap();
    assert_eq!(names(&secrets.items), ["bmc"]);

    let gone = s.delete(Kind::Template, ns, "a", None).await.unwrap();
    assert_eq!(gone.name(), "a");
    assert!(matches!(
        s.get(Kind::Template, ns, "a").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete(Kind::Template, ns, "a", None).await,
        Err(StoreError::NotFound(_))
    ));
    let list = s.list(Kind::Template, Some(ns)).await.unwrap();
    assert_eq!(names(&list.items), ["b"]);
}

/// Every backend takes the names kube-apiserver takes: a label inside a name may be longer
/// than 63 characters (the embedded store used to refuse it); 253 characters in all.
async fn names_follow_the_kubernetes_rules(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    let long_label = format!("{}.x", "a".repeat(64));
    let made = s.create(template(ns, &long_label, "one")).await.unwrap();
    assert_eq!(made.name(), long_label);
    let longest = format!("{}.{}", "a".repeat(126), "b".repeat(126));
    assert_eq!(longest.len(), 253);
    s.create(template(ns, &longest, "one")).await.unwrap();
    let too_long = format!("{longest}c");
    assert!(s.create(template(ns, &too_long, "one")).await.is_err());
    assert!(s.create(template(ns, "Upper", "one")).await.is_err());
}

async fn update_and_update_status_touch_only_what_they_promise(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    // Create ignores a status.
    let with_status = template(ns, "t", "one")
        .with_status_json(json!({"state": "Ready"}))
        .unwrap();
    let created = s.create(with_status).await.unwrap();
    assert_eq!(created.status_json(), Value::Null, "create drops status");

    // update_status changes status only, even when the object carries another spec.
    let mut status_write = template(ns, "t", "ignored")
        .with_status_json(json!({"state": "Ready"}))
        .unwrap();
    status_write.meta_mut().resource_version = Some(rv(&created));
    let st = s.update_status(status_write).await.unwrap();
    assert_eq!(st.status_json(), json!({"state": "Ready"}));
    assert_eq!(
        spec(&st),
        json!({"data": "one"}),
        "update_status keeps spec"
    );
    assert_ne!(rv(&st), rv(&created));

    // update changes spec and metadata only, even when the object carries another status.
    let mut spec_write = template(ns, "t", "two")
        .with_status_json(json!({"state": "Gone"}))
        .unwrap();
    spec_write.meta_mut().resource_version = Some(rv(&st));
    let up = s.update(spec_write).await.unwrap();
    assert_eq!(spec(&up), json!({"data": "two"}));
    assert_eq!(
        up.status_json(),
        json!({"state": "Ready"}),
        "update keeps status"
    );
    assert_eq!(up.meta().uid, created.meta().uid);

    // Without a resourceVersion, update is unconditional.
    let up2 = s.update(template(ns, "t", "three")).await.unwrap();
    assert_eq!(spec(&up2), json!({"data": "three"}));
    assert_eq!(up2.status_json(), json!({"state": "Ready"}));

    let read = s.get(Kind::Template, ns, "t").await.unwrap();
    assert_eq!(read, up2);
}

async fn stale_writes_conflict(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    let v1 = s.create(template(ns, "t", "one")).await.unwrap();
    let mut next_write = template(ns, "t", "two");
    next_write.meta_mut().resource_version = Some(rv(&v1));
    let v2 = s.update(next_write).await.unwrap();

    let mut stale = template(ns, "t", "three");
    stale.meta_mut().resource_version = Some(rv(&v1));
    match s.update(stale.clone()).await {
        Err(StoreError::Conflict { key, .. }) => assert_eq!(key.name, "t"),
        other => panic!("stale update: expected Conflict, got {other:?}"),
    }
    let stale_status = stale.with_status_json(json!({"state": "X"})).unwrap();
    match s.update_status(stale_status).await {
        Err(StoreError::Conflict { key, .. }) => assert_eq!(key.name, "t"),
        other => panic!("stale update_status: expected Conflict, got {other:?}"),
    }
    match s.delete(Kind::Template, ns, "t", Some(&rv(&v1))).await {
        Err(StoreError::Conflict { key, .. }) => assert_eq!(key.name, "t"),
        other => panic!("stale delete: expected Conflict, got {other:?}"),
    }
    // apply_all with a resourceVersion is conditional on it (server-side apply's precondition;
    // the mover's DHCP handoff relies on it).
    match s.apply_all(vec![stale.clone()]).await {
        Err(StoreError::Conflict { key, .. }) => assert_eq!(key.name, "t"),
        other => panic!("stale apply_all: expected Conflict, got {other:?}"),
    }
    // Nothing of the stale writes landed.
    let cur = s.get(Kind::Template, ns, "t").await.unwrap();
    assert_eq!(cur, v2);
    // A write at the current version succeeds.
    s.delete(Kind::Template, ns, "t", Some(&rv(&v2)))
        .await
        .unwrap();
}

async fn watch_from_resource_version_delivers_every_change_in_order(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    let a = s.create(template(ns, "a", "one")).await.unwrap();
    let mut w = s
        .watch(Kind::Template, Some(ns), Some(&rv(&a)))
        .await
        .unwrap();
    let b = s.create(template(ns, "b", "one")).await.unwrap();
    let mut b2 = template(ns, "b", "two");
    b2.meta_mut().resource_version = Some(rv(&b));
    let b2 = s.update(b2).await.unwrap();
    s.delete(Kind::Template, ns, "a", None).await.unwrap();
    // Another kind and another namespace are not part of this watch.
    s.create(secret(ns, "other-kind", "pw")).await.unwrap();

    match next(&mut w).await {
        WatchEvent::Added(o) => assert_eq!((o.name(), rv(&o)), ("b", rv(&b))),
        other => panic!("expected Added b, got {other:?}"),
    }
    match next(&mut w).await {
        WatchEvent::Modified(o) => {
            assert_eq!(o.name(), "b");
            assert_eq!(spec(&o), json!({"data": "two"}));
            assert_eq!(rv(&o), rv(&b2));
        }
        other => panic!("expected Modified b, got {other:?}"),
    }
    match next(&mut w).await {
        WatchEvent::Deleted(o) => assert_eq!(o.name(), "a"),
        other => panic!("expected Deleted a, got {other:?}"),
    }
    // Nothing else arrives for this kind.
    let c = s.create(template(ns, "c", "x")).await.unwrap();
    match next(&mut w).await {
        WatchEvent::Added(o) => assert_eq!((o.name(), rv(&o)), ("c", rv(&c))),
        other => panic!("expected Added c, got {other:?}"),
    }
}

async fn watch_without_resource_version_starts_with_every_object(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    s.create(template(ns, "a", "one")).await.unwrap();
    s.create(template(ns, "b", "one")).await.unwrap();
    let mut w = s.watch(Kind::Template, Some(ns), None).await.unwrap();
    let mut first = Vec::new();
    for _ in 0..2 {
        match next(&mut w).await {
            WatchEvent::Added(o) => first.push(o.name().to_string()),
            other => panic!("expected Added, got {other:?}"),
        }
    }
    first.sort();
    assert_eq!(first, ["a", "b"]);
    s.create(template(ns, "c", "one")).await.unwrap();
    match next(&mut w).await {
        WatchEvent::Added(o) => assert_eq!(o.name(), "c"),
        other => panic!("expected Added c, got {other:?}"),
    }
}

/// The watch reports the gap as `Expired` — at once or as its first item, never by silently
/// skipping changes.
async fn expect_expired(res: Result<WatchStream, StoreError>) {
    match res {
        Err(StoreError::Expired { kind, .. }) => assert_eq!(kind, Kind::Template),
        Err(other) => panic!("expected Expired, got {other}"),
        Ok(mut stream) => match tokio::time::timeout(STEP, stream.next()).await {
            Ok(Some(Err(StoreError::Expired { kind, .. }))) => assert_eq!(kind, Kind::Template),
            other => panic!("expected the watch to end with Expired, got {other:?}"),
        },
    }
}

async fn expired_history_then_relist(mut h: impl Harness) {
    let old = {
        let s = h.store();
        let a = s.create(template(h.ns(), "a", "one")).await.unwrap();
        s.create(template(h.ns(), "b", "one")).await.unwrap();
        rv(&a)
    };
    let gone = h.expire_history(&old).await;
    let s = h.store();
    let ns = h.ns();
    expect_expired(s.watch(Kind::Template, Some(ns), Some(&gone)).await).await;

    // The caller lists again and watches from the list: nothing is missed.
    let list = s.list(Kind::Template, Some(ns)).await.unwrap();
    assert_eq!(names(&list.items), ["a", "b"]);
    let mut w = s
        .watch(Kind::Template, Some(ns), Some(&list.resource_version))
        .await
        .unwrap();
    s.create(template(ns, "c", "one")).await.unwrap();
    match next(&mut w).await {
        WatchEvent::Added(o) => assert_eq!(o.name(), "c"),
        other => panic!("expected Added c, got {other:?}"),
    }
}

async fn apply_all_creates_configures_and_leaves_unchanged(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    let out = s
        .apply_all(vec![
            secret(ns, "bmc", "pw"),
            template(ns, "a", "one"),
            template(ns, "b", "one"),
        ])
        .await
        .unwrap();
    let applied: Vec<Applied> = out.iter().map(|(_, a)| *a).collect();
    assert_eq!(applied, [Applied::Created; 3]);

    let out = s
        .apply_all(vec![
            secret(ns, "bmc", "pw"),
            template(ns, "a", "one"),
            template(ns, "b", "changed"),
        ])
        .await
        .unwrap();
    let applied: Vec<Applied> = out.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        applied,
        [Applied::Unchanged, Applied::Unchanged, Applied::Configured]
    );
    assert_eq!(
        spec(&s.get(Kind::Template, ns, "b").await.unwrap()),
        json!({"data": "changed"})
    );

    // Status given in the batch is written (an import carries it); a status-only difference
    // is a change.
    let with_status = template(ns, "a", "one")
        .with_status_json(json!({"state": "Imported"}))
        .unwrap();
    let out = s.apply_all(vec![with_status]).await.unwrap();
    assert_eq!(out[0].1, Applied::Configured);
    let a = s.get(Kind::Template, ns, "a").await.unwrap();
    assert_eq!(a.status_json(), json!({"state": "Imported"}));
    assert_eq!(spec(&a), json!({"data": "one"}));
}

async fn apply_all_that_fails_validation_writes_nothing(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    s.create(template(ns, "keep", "one")).await.unwrap();
    let before = s.list(Kind::Template, Some(ns)).await.unwrap();

    // An invalid name (not DNS-1123) after two valid objects, one a change.
    let err = s
        .apply_all(vec![
            template(ns, "new", "one"),
            template(ns, "keep", "two"),
            template(ns, "Not_Valid", "one"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid { key, .. } if key.name == "Not_Valid"),
        "expected Invalid naming Not_Valid, got {err:?}"
    );
    // Two Hardware in one batch claiming one MAC.
    let err = s
        .apply_all(vec![
            template(ns, "new", "one"),
            hw(ns, "m1", "aa:bb:cc:00:10:01", "10.0.10.1"),
            hw(ns, "m2", "AA:BB:CC:00:10:01", "10.0.10.2"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Duplicate { key, .. } if key.name == "m2"),
        "expected Duplicate naming m2, got {err:?}"
    );

    let after = s.list(Kind::Template, Some(ns)).await.unwrap();
    assert_eq!(names(&after.items), ["keep"]);
    assert_eq!(after.items, before.items, "nothing was written");
    assert!(
        s.list(Kind::Hardware, Some(ns))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn lookups_follow_create_update_delete(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    let m = s
        .create(hw(ns, "m", "aa:bb:cc:00:20:01", "10.0.20.1"))
        .await
        .unwrap();
    let found = s.hardware_by_mac("AA:BB:CC:00:20:01").await.unwrap();
    assert_eq!(
        found.map(|h| h.metadata.name.clone().unwrap()),
        Some("m".into())
    );
    assert!(s.hardware_by_ip("10.0.20.1").await.unwrap().is_some());
    assert!(s.hardware_by_agent_id("agent-m").await.unwrap().is_some());
    assert!(s.hardware_by_instance_id("i-m").await.unwrap().is_some());

    // New MAC and IP: the old ones stop matching, the new ones match.
    let mut moved = hw(ns, "m", "aa:bb:cc:00:20:02", "10.0.20.2");
    moved.meta_mut().resource_version = Some(rv(&m));
    s.update(moved).await.unwrap();
    eventually("new MAC found, old MAC gone", || {
        let s = s.clone();
        async move {
            let new = s.hardware_by_mac("aa:bb:cc:00:20:02").await.unwrap();
            let old = s.hardware_by_mac("aa:bb:cc:00:20:01").await.unwrap();
            let old_ip = s.hardware_by_ip("10.0.20.1").await.unwrap();
            (new.is_some() && old.is_none() && old_ip.is_none()).then_some(())
        }
    })
    .await;
    assert!(s.hardware_by_ip("10.0.20.2").await.unwrap().is_some());

    s.delete(Kind::Hardware, ns, "m", None).await.unwrap();
    eventually("every lookup misses after delete", || {
        let s = s.clone();
        async move {
            let gone = s
                .hardware_by_mac("aa:bb:cc:00:20:02")
                .await
                .unwrap()
                .is_none()
                && s.hardware_by_ip("10.0.20.2").await.unwrap().is_none()
                && s.hardware_by_agent_id("agent-m").await.unwrap().is_none()
                && s.hardware_by_instance_id("i-m").await.unwrap().is_none();
            gone.then_some(())
        }
    })
    .await;
    // Stays gone (a late watch event must not bring it back).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        s.hardware_by_mac("aa:bb:cc:00:20:02")
            .await
            .unwrap()
            .is_none()
    );
}

async fn two_hardware_cannot_claim_one_identity(h: impl Harness) {
    let s = h.store();
    let ns = h.ns();
    s.create(hw(ns, "a", "aa:bb:cc:00:30:01", "10.0.30.1"))
        .await
        .unwrap();
    match s
        .create(hw(ns, "b", "AA-BB-CC-00-30-01", "10.0.30.2"))
        .await
    {
        Err(StoreError::Duplicate {
            key, field, owner, ..
        }) => {
            assert_eq!(key.name, "b");
            assert!(field.contains("mac"), "{field}");
            assert_eq!(owner, format!("{ns}/a"));
        }
        other => panic!("same MAC: expected Duplicate, got {other:?}"),
    }
    match s
        .create(hw(ns, "b", "aa:bb:cc:00:30:02", "10.0.30.1"))
        .await
    {
        Err(StoreError::Duplicate { field, .. }) => assert!(field.contains("ip"), "{field}"),
        other => panic!("same IP: expected Duplicate, got {other:?}"),
    }
    // b with its own identities is fine; moving it onto a's MAC is not.
    let b = s
        .create(hw(ns, "b", "aa:bb:cc:00:30:02", "10.0.30.2"))
        .await
        .unwrap();
    let mut onto_a = hw(ns, "b", "aa:bb:cc:00:30:01", "10.0.30.2");
    onto_a.meta_mut().resource_version = Some(rv(&b));
    assert!(matches!(
        s.update(onto_a).await,
        Err(StoreError::Duplicate { .. })
    ));
    let found = s
        .hardware_by_mac("aa:bb:cc:00:30:01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.metadata.name.as_deref(), Some("a"));
}
