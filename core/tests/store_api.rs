//! The store API over real HTTP on loopback, driven by the real client (`RemoteStore`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tinkerbell_core::api::server::{ApiConfig, ApiServer};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::remote::RemoteStore;
use tinkerbell_core::store::{
    Applied, HardwareLookup, Kind, Object, Store, StoreError, WatchEvent,
};
use tokio_util::sync::CancellationToken;

fn hw(name: &str, mac: &str, ip: &str) -> Object {
    Object::from_typed_json(json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Hardware",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"agentID": format!("agent-{name}"),
                 "interfaces": [{"dhcp": {"mac": mac, "ip": {"address": ip}}}]}
    }))
    .unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    cancel: CancellationToken,
    server: ApiServer,
    url: String,
}

async fn start() -> Fixture {
    tinkerbell_edge::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let cancel = CancellationToken::new();
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_secs(1),
        tls: None,
        health: Default::default(),
    };
    let server = ApiServer::start(&config, Arc::new(store), "secret-token", cancel.clone())
        .await
        .unwrap();
    let url = format!("http://{}", server.local_addr());
    Fixture {
        _dir: dir,
        cancel,
        server,
        url,
    }
}

#[tokio::test]
async fn remote_store_contract() {
    let f = start().await;
    let s = RemoteStore::new(&f.url, "secret-token").unwrap();

    let a = s
        .create(hw("a", "aa:bb:cc:00:00:01", "10.0.0.1"))
        .await
        .unwrap();
    assert_eq!(s.get(Kind::Hardware, "default", "a").await.unwrap(), a);
    assert!(matches!(
        s.get(Kind::Hardware, "default", "zz").await,
        Err(StoreError::NotFound(_))
    ));

    // Stale update → the same Conflict the store behind the API returned (callers retry on it).
    let mut upd = hw("a", "aa:bb:cc:00:00:01", "10.0.0.2");
    upd.meta_mut().resource_version = a.resource_version().map(str::to_string);
    let a2 = s.update(upd.clone()).await.unwrap();
    match s.update(upd).await.unwrap_err() {
        StoreError::Conflict {
            key,
            current,
            given,
        } => {
            assert_eq!(key.to_string(), "Hardware default/a");
            assert_eq!(Some(current.as_str()), a2.resource_version());
            assert_eq!(Some(given.as_str()), a.resource_version());
        }
        other => panic!("{other}"),
    }

    // Duplicate MAC → 409 naming the owner.
    match s
        .create(hw("b", "AA:BB:CC:00:00:01", "10.0.0.3"))
        .await
        .unwrap_err()
    {
        StoreError::Duplicate {
            key, field, owner, ..
        } => {
            assert_eq!(key.to_string(), "Hardware default/b");
            assert!(field.contains("mac"), "{field}");
            assert_eq!(owner, "default/a");
        }
        other => panic!("{other}"),
    }

    // Lookups.
    assert!(
        s.hardware_by_mac("aa:bb:cc:00:00:01")
            .await
            .unwrap()
            .is_some()
    );
    assert!(s.hardware_by_ip("10.0.0.2").await.unwrap().is_some());
    assert!(s.hardware_by_ip("10.0.0.1").await.unwrap().is_none());
    assert!(s.hardware_by_agent_id("agent-a").await.unwrap().is_some());

    // Status subresource.
    let with_status = a2.with_status_json(json!({"state": "Ready"})).unwrap();
    let st = s.update_status(with_status).await.unwrap();
    assert_eq!(st.status_json(), json!({"state": "Ready"}));

    // Watch from the current rv sees the next change.
    let list = s.list(Kind::Hardware, Some("default")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let mut w = s
        .watch(Kind::Hardware, None, Some(&list.resource_version))
        .await
        .unwrap();
    s.create(hw("c", "aa:bb:cc:00:00:03", "10.0.0.3"))
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, WatchEvent::Added(ref o) if o.name() == "c"),
        "{ev:?}"
    );

    // apply_all: atomic, results per object.
    let before = s.list(Kind::Hardware, None).await.unwrap().resource_version;
    let err = s
        .apply_all(vec![
            hw("d", "aa:bb:cc:00:00:04", "10.0.0.4"),
            hw("e", "aa:bb:cc:00:00:04", "10.0.0.5"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Duplicate { key, .. } if key.name == "e"),
        "{err}"
    );
    assert_eq!(
        s.list(Kind::Hardware, None).await.unwrap().resource_version,
        before
    );
    let out = s
        .apply_all(vec![hw("d", "aa:bb:cc:00:00:04", "10.0.0.4")])
        .await
        .unwrap();
    assert_eq!(out[0].1, Applied::Created);

    // Conditional delete.
    let d = s.get(Kind::Hardware, "default", "d").await.unwrap();
    assert!(
        s.delete(Kind::Hardware, "default", "d", Some("1"))
            .await
            .is_err()
    );
    s.delete(Kind::Hardware, "default", "d", d.resource_version())
        .await
        .unwrap();

    f.cancel.cancel();
    f.server.join().await.unwrap();
}

#[tokio::test]
async fn token_is_required() {
    let f = start().await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/healthz", f.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let path = format!("{}/apis/tinkerbell.org/v1alpha1/hardware", f.url);
    let r = http.get(&path).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(&path).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["code"], 401);
    let r = http
        .get(&path)
        .bearer_auth("secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["kind"], "HardwareList");

    // A client with the wrong token gets a clear error.
    let s = RemoteStore::new(&f.url, "nope").unwrap();
    match s.list(Kind::Template, None).await.unwrap_err() {
        StoreError::Remote {
            status: 401,
            message,
        } => assert!(message.contains("bearer token")),
        other => panic!("{other}"),
    }
    f.cancel.cancel();
}

#[tokio::test]
async fn body_must_match_path() {
    let f = start().await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/apis/tinkerbell.org/v1alpha1/namespaces/ns1/templates",
            f.url
        ))
        .bearer_auth("secret-token")
        .json(&json!({"metadata": {"name": "t", "namespace": "ns2"}, "spec": {"data": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!(
            "{}/apis/tinkerbell.org/v1alpha1/namespaces/ns1/templates",
            f.url
        ))
        .bearer_auth("secret-token")
        .json(&json!({"kind": "Workflow", "metadata": {"name": "t"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!(
            "{}/apis/tinkerbell.org/v1alpha1/namespaces/ns1/templates",
            f.url
        ))
        .bearer_auth("secret-token")
        .json(&json!({"metadata": {"name": "t"}, "spec": {"data": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    f.cancel.cancel();
}
