//! The embedded store's contract: Kubernetes-style optimistic concurrency, status separation,
//! identity uniqueness, atomic batches, ordered watches, persistence and refusal of foreign files.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{
    Applied, HardwareLookup, Kind, Object, Store, StoreError, WatchEvent,
};

fn hw(name: &str, mac: &str, ip: &str) -> Object {
    Object::from_typed_json(json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Hardware",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "metadata": {"instance": {"id": mac, "hostname": name}},
            "interfaces": [{"dhcp": {"mac": mac, "ip": {"address": ip, "netmask": "255.255.255.0"}}}]
        }
    }))
    .unwrap()
}

fn template(name: &str, data: &str) -> Object {
    Object::from_typed_json(json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Template",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"data": data}
    }))
    .unwrap()
}

fn with_status(obj: &Object, status: serde_json::Value) -> Object {
    obj.with_status_json(status).unwrap()
}

async fn next(stream: &mut tinkerbell_core::store::WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("watch event within 5 s")
        .expect("stream open")
        .expect("no watch error")
}

#[tokio::test]
async fn crud_and_optimistic_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    let created = s.create(template("t1", "a")).await.unwrap();
    let rv1 = created.resource_version().unwrap().to_string();
    assert!(created.meta().uid.is_some());
    assert_eq!(created.meta().generation, Some(1));
    assert!(matches!(
        s.create(template("t1", "b")).await,
        Err(StoreError::AlreadyExists(_))
    ));

    // Update based on rv1 succeeds and bumps generation.
    let mut upd = template("t1", "b");
    upd.meta_mut().resource_version = Some(rv1.clone());
    let updated = s.update(upd).await.unwrap();
    let rv2 = updated.resource_version().unwrap().to_string();
    assert_ne!(rv1, rv2);
    assert_eq!(updated.meta().generation, Some(2));
    assert_eq!(updated.meta().uid, created.meta().uid);

    // A second update still based on rv1 is stale: rejected, not applied.
    let mut stale = template("t1", "c");
    stale.meta_mut().resource_version = Some(rv1.clone());
    let err = s.update(stale).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(
        s.get(Kind::Template, "default", "t1").await.unwrap(),
        updated
    );

    // Status writes touch only status; spec writes keep status.
    let st = with_status(&updated, json!({"state": "Ready"}));
    let with_st = s.update_status(st).await.unwrap();
    assert_eq!(with_st.status_json(), json!({"state": "Ready"}));
    assert_eq!(
        with_st.meta().generation,
        Some(2),
        "status does not bump generation"
    );
    let mut spec_change = with_status(&template("t1", "d"), json!({"state": "Error"}));
    spec_change.meta_mut().resource_version = with_st.resource_version().map(str::to_string);
    let after = s.update(spec_change).await.unwrap();
    assert_eq!(
        after.status_json(),
        json!({"state": "Ready"}),
        "update must not change status"
    );

    // An update that changes nothing is not a write.
    let same = s.update(after.clone()).await.unwrap();
    assert_eq!(same.resource_version(), after.resource_version());

    // Conditional delete.
    let err = s
        .delete(Kind::Template, "default", "t1", Some(&rv1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    s.delete(Kind::Template, "default", "t1", after.resource_version())
        .await
        .unwrap();
    assert!(matches!(
        s.get(Kind::Template, "default", "t1").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn create_drops_status_and_rejects_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    let obj = with_status(&template("t", "x"), json!({"state": "Ready"}));
    let created = s.create(obj).await.unwrap();
    assert_eq!(created.status_json(), serde_json::Value::Null);
    let mut bad = template("u", "x");
    bad.meta_mut().resource_version = Some("5".into());
    assert!(matches!(
        s.create(bad).await,
        Err(StoreError::Invalid { .. })
    ));
}

#[tokio::test]
async fn names_must_be_dns1123() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    let err = s.create(template("Bad_Name", "x")).await.unwrap_err();
    match err {
        StoreError::Invalid { field, .. } => assert_eq!(field, "metadata.name"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn lookups_follow_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    let a = s
        .create(hw("a", "AA:BB:CC:00:00:01", "10.0.0.1"))
        .await
        .unwrap();
    let found = s
        .hardware_by_mac("aa:bb:cc:00:00:01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.metadata.name.as_deref(), Some("a"));
    assert!(
        s.hardware_by_mac("AA-BB-CC-00-00-01")
            .await
            .unwrap()
            .is_some()
    );
    assert!(s.hardware_by_ip("10.0.0.1").await.unwrap().is_some());
    assert!(
        s.hardware_by_instance_id("AA:BB:CC:00:00:01")
            .await
            .unwrap()
            .is_some()
    );
    assert!(s.hardware_by_ip("10.0.0.2").await.unwrap().is_none());

    // Change the IP: old one gone, new one found.
    let mut moved = hw("a", "aa:bb:cc:00:00:01", "10.0.0.9");
    moved.meta_mut().resource_version = a.resource_version().map(str::to_string);
    s.update(moved).await.unwrap();
    assert!(s.hardware_by_ip("10.0.0.1").await.unwrap().is_none());
    assert!(s.hardware_by_ip("10.0.0.9").await.unwrap().is_some());

    s.delete(Kind::Hardware, "default", "a", None)
        .await
        .unwrap();
    assert!(
        s.hardware_by_mac("aa:bb:cc:00:00:01")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn two_hardware_cannot_claim_one_mac_or_ip() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    s.create(hw("a", "aa:bb:cc:00:00:01", "10.0.0.1"))
        .await
        .unwrap();
    let rev = s.revision();
    match s
        .create(hw("b", "AA:BB:CC:00:00:01", "10.0.0.2"))
        .await
        .unwrap_err()
    {
        StoreError::Duplicate { field, owner, .. } => {
            assert_eq!(field, "spec.interfaces[0].dhcp.mac");
            assert_eq!(owner, "default/a");
        }
        other => panic!("{other}"),
    }
    match s
        .create(hw("c", "aa:bb:cc:00:00:03", "10.0.0.1"))
        .await
        .unwrap_err()
    {
        StoreError::Duplicate { field, .. } => {
            assert_eq!(field, "spec.interfaces[0].dhcp.ip.address")
        }
        other => panic!("{other}"),
    }
    assert_eq!(s.revision(), rev, "nothing written");
    // A bad MAC is refused with the field named.
    match s
        .create(hw("d", "not-a-mac", "10.0.0.4"))
        .await
        .unwrap_err()
    {
        StoreError::Invalid { field, .. } => assert_eq!(field, "spec.interfaces[0].dhcp.mac"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn apply_all_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    let batch = vec![
        hw("a", "aa:bb:cc:00:00:01", "10.0.0.1"),
        template("t", "x"),
        hw("b", "aa:bb:cc:00:00:01", "10.0.0.2"), // claims a's MAC
    ];
    assert!(matches!(
        s.apply_all(batch).await,
        Err(StoreError::Duplicate { .. })
    ));
    assert_eq!(s.len(), 0);
    assert_eq!(s.revision(), 0);
    assert!(
        s.hardware_by_mac("aa:bb:cc:00:00:01")
            .await
            .unwrap()
            .is_none()
    );

    let out = s
        .apply_all(vec![
            hw("a", "aa:bb:cc:00:00:01", "10.0.0.1"),
            template("t", "x"),
        ])
        .await
        .unwrap();
    assert_eq!(
        out.iter().map(|o| o.1).collect::<Vec<_>>(),
        vec![Applied::Created, Applied::Created]
    );
    // Re-applying the same is a no-op; a changed one is configured; status is preserved.
    let t = s.get(Kind::Template, "default", "t").await.unwrap();
    s.update_status(with_status(&t, json!({"state": "Ready"})))
        .await
        .unwrap();
    let out = s
        .apply_all(vec![
            hw("a", "aa:bb:cc:00:00:01", "10.0.0.1"),
            template("t", "y"),
        ])
        .await
        .unwrap();
    assert_eq!(out[0].1, Applied::Unchanged);
    assert_eq!(out[1].1, Applied::Configured);
    assert_eq!(out[1].0.status_json(), json!({"state": "Ready"}));
    // Swapping MACs between two Hardware inside one batch is fine: checked against the batch.
    s.apply_all(vec![hw("b", "aa:bb:cc:00:00:02", "10.0.0.2")])
        .await
        .unwrap();
    s.apply_all(vec![
        hw("a", "aa:bb:cc:00:00:03", "10.0.0.1"),
        hw("b", "aa:bb:cc:00:00:01", "10.0.0.2"),
    ])
    .await
    .unwrap();
    let b = s
        .hardware_by_mac("aa:bb:cc:00:00:01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.metadata.name.as_deref(), Some("b"));
}

#[tokio::test]
async fn watch_delivers_every_change_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    s.create(template("pre", "x")).await.unwrap();
    let list = s.list(Kind::Template, None).await.unwrap();

    // Unanchored: current objects as Added, then live.
    let mut all = s.watch(Kind::Template, None, None).await.unwrap();
    assert!(matches!(next(&mut all).await, WatchEvent::Added(o) if o.name() == "pre"));

    // Anchored at the list's rv: only what came after.
    let mut w = s
        .watch(
            Kind::Template,
            Some("default"),
            Some(&list.resource_version),
        )
        .await
        .unwrap();
    let mut expect = Vec::new();
    for i in 0..200 {
        let o = s.create(template(&format!("t{i}"), "x")).await.unwrap();
        expect.push(o.resource_version().unwrap().to_string());
    }
    s.create(hw("ignored", "aa:bb:cc:00:00:09", "10.0.0.9"))
        .await
        .unwrap();
    s.delete(Kind::Template, "default", "t0", None)
        .await
        .unwrap();
    for rv in &expect {
        let ev = next(&mut w).await;
        assert!(matches!(ev, WatchEvent::Added(_)));
        assert_eq!(ev.object().resource_version(), Some(rv.as_str()));
    }
    let ev = next(&mut w).await;
    assert!(
        matches!(ev, WatchEvent::Deleted(ref o) if o.name() == "t0"),
        "{ev:?}"
    );

    // Resume from the middle of history.
    let mut resumed = s
        .watch(Kind::Template, None, Some(&expect[198]))
        .await
        .unwrap();
    assert_eq!(next(&mut resumed).await.object().name(), "t199");
    assert!(matches!(next(&mut resumed).await, WatchEvent::Deleted(_)));
}

#[tokio::test]
async fn reopen_keeps_everything_and_expires_old_history() {
    let dir = tempfile::tempdir().unwrap();
    let rv = {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        s.create(hw("a", "aa:bb:cc:00:00:01", "10.0.0.1"))
            .await
            .unwrap();
        let t = s.create(template("t", "x")).await.unwrap();
        s.update_status(with_status(&t, json!({"state": "Ready"})))
            .await
            .unwrap();
        t.resource_version().unwrap().to_string()
    };
    let s = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.revision(), 3);
    let t = s.get(Kind::Template, "default", "t").await.unwrap();
    assert_eq!(t.status_json(), json!({"state": "Ready"}));
    assert!(
        s.hardware_by_mac("aa:bb:cc:00:00:01")
            .await
            .unwrap()
            .is_some()
    );
    // History before the restart is gone: the watcher is told to list again.
    match s.watch(Kind::Template, None, Some(&rv)).await {
        Err(StoreError::Expired { .. }) => {}
        Err(other) => panic!("expected Expired, got {other}"),
        Ok(_) => panic!("expected Expired, got a stream"),
    }
    // Watching from the current revision is fine.
    assert!(s.watch(Kind::Template, None, Some("3")).await.is_ok());
    let next_rv = s.create(template("u", "x")).await.unwrap();
    assert_eq!(
        next_rv.resource_version(),
        Some("4"),
        "revisions continue after reopen"
    );
}

/// The watch history is bounded in bytes, not only in count: 24 writes of a 4 MiB Template
/// (96 MiB) push the first ones out (a watch from before them must relist), while a watch from
/// a recent version still replays what followed it.
#[tokio::test]
async fn watch_history_is_capped_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    let big = "x".repeat(4 << 20);
    let first = s.create(template("t", &big)).await.unwrap();
    let mut last = first.clone();
    for i in 0..23 {
        let mut next = template("t", &format!("{i}{big}"));
        next.meta_mut().resource_version = last.resource_version().map(str::to_string);
        last = s.update(next).await.unwrap();
    }
    match s
        .watch(Kind::Template, None, first.resource_version())
        .await
    {
        Err(StoreError::Expired { .. }) => {}
        Err(other) => panic!("expected Expired, got {other}"),
        Ok(_) => panic!("the history still holds 96 MiB of old versions"),
    }
    let rv: u64 = last.resource_version().unwrap().parse().unwrap();
    let mut w = s
        .watch(Kind::Template, None, Some(&(rv - 2).to_string()))
        .await
        .expect("recent history is kept");
    for _ in 0..2 {
        assert!(matches!(next(&mut w).await, WatchEvent::Modified(_)));
    }
}

#[tokio::test]
async fn refuses_foreign_and_locked_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("store.redb"),
        b"this is not a database at all, just text\n".repeat(200),
    )
    .unwrap();
    match EmbeddedStore::open(dir.path()) {
        Err(e @ StoreError::NotOurs { .. }) => {
            assert!(e.to_string().contains("is not a tinkerbell-rs store"))
        }
        other => panic!("expected NotOurs, got {other:?}"),
    }
    // A valid redb file that is not ours.
    let dir2 = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir2.path().join("store.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx
                .open_table(redb::TableDefinition::<&str, &str>::new("other"))
                .unwrap();
            t.insert("k", "v").unwrap();
        }
        tx.commit().unwrap();
    }
    assert!(matches!(
        EmbeddedStore::open(dir2.path()),
        Err(StoreError::NotOurs { .. })
    ));

    let dir3 = tempfile::tempdir().unwrap();
    let _held = EmbeddedStore::open(dir3.path()).unwrap();
    assert!(matches!(
        EmbeddedStore::open(dir3.path()),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn debug_output_never_shows_secret_values() {
    let secret = Object::from_typed_json(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bmc-auth", "namespace": "default"},
        "type": "kubernetes.io/basic-auth",
        "data": {"username": "YWRtaW4=", "password": "czNjcmV0LXB3"}
    }))
    .unwrap();
    let dbg = format!("{secret:?}");
    assert!(
        dbg.contains("bmc-auth") && dbg.contains("password"),
        "{dbg}"
    );
    // Neither the base64 text nor the decoded bytes appear.
    assert!(
        !dbg.contains("czNjcmV0LXB3") && !dbg.contains("s3cret"),
        "{dbg}"
    );
    assert!(!dbg.contains("115, 51, 99"), "raw bytes leaked: {dbg}");
}
