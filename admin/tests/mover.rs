//! `mover::run` between two embedded stores: what moves, what is kept, how DHCP is handed over,
//! and that every interrupted state converges on a re-run.

use serde_json::json;
use tinkerbell_admin::mover::{self, MoveError, MoveOptions, digest};
use tinkerbell_core::model::{DHCP_HANDOFF_ANNOTATION, HANDOFF_INCOMING, HANDOFF_MOVED_OUT};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{HardwareLookup, Kind, Object, Store, StoreError};
use tinkerbell_core::testing::{Intercepted, Interceptor, Write};

fn obj(v: serde_json::Value) -> Object {
    Object::from_typed_json(v).unwrap()
}

fn hardware(i: u32) -> Object {
    obj(json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
        "metadata": {
            "name": format!("node-{i}"), "namespace": "eksa-system",
            "labels": {
                "v1alpha1.tinkerbell.org/ownerName": format!("cluster-md-{i}"),
                "v1alpha1.tinkerbell.org/ownerNamespace": "eksa-system",
                "type": "worker"
            },
            "annotations": {"v1alpha1.tinkerbell.org/provisioned": "true"}
        },
        "spec": {
            "bmcRef": {"apiGroup": "bmc.tinkerbell.org", "kind": "Machine", "name": format!("bmc-node-{i}")},
            "userData": format!("#cloud-config\nhostname: node-{i}\n"),
            "metadata": {"instance": {"id": format!("52:54:00:00:01:{i:02x}")}},
            "interfaces": [{
                "dhcp": {"mac": format!("52:54:00:00:01:{i:02x}"), "ip": {"address": format!("10.1.0.{i}")}},
                "netboot": {"allowPXE": false, "allowWorkflow": true}
            }]
        },
        "status": {"state": "Ready"}
    }))
}

fn machine(i: u32) -> Object {
    obj(json!({
        "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
        "metadata": {"name": format!("bmc-node-{i}"), "namespace": "eksa-system"},
        "spec": {"connection": {
            "host": format!("10.2.0.{i}"), "port": 623, "insecureTLS": true,
            "authSecretRef": {"name": format!("bmc-node-{i}-auth"), "namespace": "eksa-system"}
        }},
        "status": {"powerState": "on"}
    }))
}

fn secret(name: &str, labelled: bool) -> Object {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "eksa-system"},
        "type": "kubernetes.io/basic-auth",
        "data": {"username": "YWRtaW4=", "password": "c2VjcmV0"}
    });
    if labelled {
        v["metadata"]["labels"] = json!({"clusterctl.cluster.x-k8s.io/move": "true"});
    }
    obj(v)
}

fn template() -> Object {
    obj(json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
        "metadata": {"name": "ubuntu", "namespace": "eksa-system"},
        "spec": {"data": "version: \"0.1\"\nname: ubuntu\nglobal_timeout: 60\ntasks: []\n"}
    }))
}

async fn source_with(n: u32) -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut objs = vec![
        template(),
        secret("unrelated", false),
        secret("extra-moved", true),
    ];
    for i in 1..=n {
        objs.push(secret(&format!("bmc-node-{i}-auth"), false));
        objs.push(machine(i));
        objs.push(hardware(i));
    }
    store.apply_all(objs).await.unwrap();
    (dir, store)
}

fn empty_target() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    (dir, store)
}

fn all_ns() -> MoveOptions {
    MoveOptions::default()
}

async fn run(
    src: &EmbeddedStore,
    dst: &EmbeddedStore,
    opts: &MoveOptions,
) -> Result<mover::MoveReport, MoveError> {
    mover::run(src, dst, opts, &mut |_| {}).await
}

fn annotation(o: &Object) -> Option<String> {
    o.meta()
        .annotations
        .as_ref()?
        .get(DHCP_HANDOFF_ANNOTATION)
        .cloned()
}

/// Every object of the moved kinds on `src` is on `dst` with the same content, and nothing else.
async fn assert_same(src: &EmbeddedStore, dst: &EmbeddedStore) {
    for kind in [Kind::Hardware, Kind::Machine] {
        let a = src.list(kind, None).await.unwrap().items;
        let b = dst.list(kind, None).await.unwrap().items;
        assert_eq!(a.len(), b.len(), "{kind} count");
        for o in &a {
            let t = dst.get(kind, o.namespace(), o.name()).await.unwrap();
            assert_eq!(digest(o), digest(&t), "{} content", o.key());
        }
    }
}

#[tokio::test]
async fn moves_hardware_machines_and_their_secrets_with_everything_kept() {
    let (_s, src) = source_with(3).await;
    let (_d, dst) = empty_target();
    let report = run(&src, &dst, &all_ns()).await.unwrap();

    assert_eq!(report.counts[&Kind::Hardware].created, 3);
    assert_eq!(report.counts[&Kind::Machine].created, 3);
    // Three referenced Secrets and the labelled one; not the unrelated one.
    assert_eq!(report.counts[&Kind::Secret].created, 4);
    assert!(
        !report.counts.contains_key(&Kind::Template),
        "templates stay unless asked"
    );
    assert_eq!(report.source_digest, report.target_digest);
    assert_eq!(report.handed_over, 3);
    assert!(report.no_server_window.is_some());
    assert!(
        dst.get(Kind::Secret, "eksa-system", "unrelated")
            .await
            .is_err()
    );
    assert!(
        dst.get(Kind::Template, "eksa-system", "ubuntu")
            .await
            .is_err()
    );

    assert_same(&src, &dst).await;
    let hw = dst
        .get(Kind::Hardware, "eksa-system", "node-2")
        .await
        .unwrap();
    let v = hw.to_json();
    assert_eq!(
        v["metadata"]["labels"]["v1alpha1.tinkerbell.org/ownerName"],
        "cluster-md-2"
    );
    assert_eq!(
        v["metadata"]["annotations"]["v1alpha1.tinkerbell.org/provisioned"],
        "true"
    );
    assert_eq!(v["spec"]["interfaces"][0]["netboot"]["allowPXE"], false);
    assert_eq!(v["spec"]["userData"], "#cloud-config\nhostname: node-2\n");
    assert_eq!(v["status"]["state"], "Ready");
    let m = dst
        .get(Kind::Machine, "eksa-system", "bmc-node-2")
        .await
        .unwrap();
    assert_eq!(m.to_json()["status"]["powerState"], "on");
    let s = dst
        .get(Kind::Secret, "eksa-system", "bmc-node-2-auth")
        .await
        .unwrap();
    assert_eq!(s.to_json()["data"]["password"], "c2VjcmV0");

    // DHCP: the source is silent for the moved machines, the target answers.
    let on_src = src
        .hardware_by_mac("52:54:00:00:01:02")
        .await
        .unwrap()
        .unwrap();
    let on_dst = dst
        .hardware_by_mac("52:54:00:00:01:02")
        .await
        .unwrap()
        .unwrap();
    assert!(on_src.dhcp_on_hold());
    assert!(!on_dst.dhcp_on_hold());
    assert_eq!(
        annotation(
            &src.get(Kind::Hardware, "eksa-system", "node-1")
                .await
                .unwrap()
        )
        .as_deref(),
        Some(HANDOFF_MOVED_OUT)
    );

    // A second run changes nothing.
    let again = run(&src, &dst, &all_ns()).await.unwrap();
    assert_eq!(again.counts[&Kind::Hardware].unchanged, 3);
    assert_eq!(again.counts[&Kind::Secret].unchanged, 4);
    assert_eq!(again.handed_over, 0);
    assert!(again.no_server_window.is_none());
}

#[tokio::test]
async fn include_workflows_and_namespace_filter() {
    let (_s, src) = source_with(1).await;
    src.create(obj(json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
        "metadata": {"name": "elsewhere", "namespace": "other"},
        "spec": {"interfaces": [{"dhcp": {"mac": "52:54:00:00:09:09"}}]}
    })))
    .await
    .unwrap();
    let (_d, dst) = empty_target();
    let opts = MoveOptions {
        namespace: Some("eksa-system".into()),
        include_workflows: true,
        dry_run: false,
    };
    let report = run(&src, &dst, &opts).await.unwrap();
    assert_eq!(report.counts[&Kind::Template].created, 1);
    assert_eq!(report.counts[&Kind::Hardware].created, 1);
    assert!(dst.get(Kind::Hardware, "other", "elsewhere").await.is_err());
    let untouched = src.get(Kind::Hardware, "other", "elsewhere").await.unwrap();
    assert_eq!(annotation(&untouched), None, "not moved, not held");
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let (_s, src) = source_with(2).await;
    let (_d, dst) = empty_target();
    let before = src.list(Kind::Hardware, None).await.unwrap();
    let report = run(
        &src,
        &dst,
        &MoveOptions {
            dry_run: true,
            ..all_ns()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.counts[&Kind::Hardware].created, 2);
    assert!(
        dst.list(Kind::Hardware, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let after = src.list(Kind::Hardware, None).await.unwrap();
    assert_eq!(
        before.resource_version, after.resource_version,
        "source untouched"
    );
}

#[tokio::test]
async fn interrupted_after_copy_converges() {
    let (_s, src) = source_with(2).await;
    let (_d, dst) = empty_target();
    // The state a move leaves when killed right after the copy: the target holds the machines
    // `incoming`, the source still answers them.
    let copies: Vec<Object> = src
        .list(Kind::Hardware, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| {
            let mut v = o.to_json();
            v["metadata"]["annotations"][DHCP_HANDOFF_ANNOTATION] = json!(HANDOFF_INCOMING);
            v["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("resourceVersion");
            obj(v)
        })
        .collect();
    dst.apply_all(copies).await.unwrap();
    assert!(
        dst.hardware_by_mac("52:54:00:00:01:01")
            .await
            .unwrap()
            .unwrap()
            .dhcp_on_hold()
    );

    let report = run(&src, &dst, &all_ns()).await.unwrap();
    assert_eq!(
        report.counts[&Kind::Hardware].unchanged,
        2,
        "content equal, only the hold differs"
    );
    assert_eq!(report.handed_over, 2);
    assert_same(&src, &dst).await;
    assert!(
        !dst.hardware_by_mac("52:54:00:00:01:01")
            .await
            .unwrap()
            .unwrap()
            .dhcp_on_hold()
    );
    assert!(
        src.hardware_by_mac("52:54:00:00:01:01")
            .await
            .unwrap()
            .unwrap()
            .dhcp_on_hold()
    );
}

#[tokio::test]
async fn interrupted_after_source_marked_converges_without_a_new_hold() {
    let (_s, src) = source_with(2).await;
    let (_d, dst) = empty_target();
    run(&src, &dst, &all_ns()).await.unwrap();
    // Killed between the two handoff commits: the source is marked, the target still holds.
    let held: Vec<Object> = dst
        .list(Kind::Hardware, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| {
            let mut v = o.to_json();
            v["metadata"]["annotations"][DHCP_HANDOFF_ANNOTATION] = json!(HANDOFF_INCOMING);
            obj(v)
        })
        .collect();
    dst.apply_all(held).await.unwrap();

    let report = run(&src, &dst, &all_ns()).await.unwrap();
    assert_eq!(report.handed_over, 0, "the source was already silent");
    for o in dst.list(Kind::Hardware, None).await.unwrap().items {
        assert_eq!(annotation(&o), None, "{} released", o.key());
    }
}

#[tokio::test]
async fn a_target_conflict_stops_before_the_source_is_touched() {
    let (_s, src) = source_with(2).await;
    let (_d, dst) = empty_target();
    // The target already has another machine claiming node-1's MAC.
    dst.create(obj(json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
        "metadata": {"name": "squatter", "namespace": "eksa-system"},
        "spec": {"interfaces": [{"dhcp": {"mac": "52:54:00:00:01:01"}}]}
    })))
    .await
    .unwrap();
    let rv_before = src
        .list(Kind::Hardware, None)
        .await
        .unwrap()
        .resource_version;
    let err = run(&src, &dst, &all_ns()).await.unwrap_err();
    assert!(matches!(err, MoveError::Store { .. }), "{err}");
    assert_eq!(
        src.list(Kind::Hardware, None)
            .await
            .unwrap()
            .resource_version,
        rv_before
    );
    assert_eq!(
        dst.list(Kind::Hardware, None).await.unwrap().items.len(),
        1,
        "nothing half-applied"
    );
}

#[tokio::test]
async fn a_missing_secret_is_reported() {
    let (_s, src) = source_with(1).await;
    src.delete(Kind::Secret, "eksa-system", "bmc-node-1-auth", None)
        .await
        .unwrap();
    let (_d, dst) = empty_target();
    let report = run(&src, &dst, &all_ns()).await.unwrap();
    assert_eq!(
        report.missing_secrets,
        vec!["eksa-system/bmc-node-1-auth".to_string()]
    );
    assert!(report.to_string().contains("missing in the source"));
}

/// What the target's controller does to a copied bmc Machine right after the copy lands (a
/// running appliance's rufio: the BMC's power state and a condition), or — not a controller —
/// someone changing its spec.
async fn meddle(dst: &EmbeddedStore, spec_too: bool) {
    let m = dst
        .get(Kind::Machine, "eksa-system", "bmc-node-1")
        .await
        .unwrap();
    let m = m
        .with_status_json(json!({"powerState": "off", "conditions": [
            {"type": "Contactable", "status": "True", "lastUpdateTime": "2026-11-24T06:30:00Z"}]}))
        .unwrap();
    let m = dst.update_status(m).await.unwrap();
    if spec_too {
        let mut v = m.to_json();
        v["spec"]["connection"]["host"] = json!("10.9.9.9");
        dst.update(obj(v)).await.unwrap();
    }
}

/// A running target whose controller updates a copied Machine's status between the copy and
/// the read-back: the move succeeds (the copy was written right) and says so; a spec changed
/// in that gap is still a mismatch that stops the move before the source is touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_status_written_by_the_targets_controller_after_the_copy_is_not_a_mismatch() {
    for spec_too in [false, true] {
        let (_s, src) = source_with(2).await;
        let (_d, dst) = empty_target();
        let handle = tokio::runtime::Handle::current();
        let mut progress = |line: &str| {
            if line.starts_with("wrote ") {
                tokio::task::block_in_place(|| handle.block_on(meddle(&dst, spec_too)));
            }
        };
        let result = mover::run(&src, &dst, &all_ns(), &mut progress).await;
        let hw = src
            .get(Kind::Hardware, "eksa-system", "node-1")
            .await
            .unwrap();
        if spec_too {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, MoveError::Verify(m) if m.len() == 1 && m[0].contains("bmc-node-1")),
                "{err}"
            );
            assert_eq!(annotation(&hw), None, "the source was not touched");
        } else {
            let report = result.unwrap();
            assert_eq!(report.source_digest, report.target_digest);
            assert_eq!(
                report.status_changed_on_target,
                vec!["Machine eksa-system/bmc-node-1".to_string()]
            );
            assert!(
                report.to_string().contains("have updated its status"),
                "{report}"
            );
            assert_eq!(annotation(&hw).as_deref(), Some(HANDOFF_MOVED_OUT));
        }
    }
}

/// An operator edits `node-1` on the source just before the mover's handoff write lands (inside
/// its first `apply_all`): the write is conditional, so the edit is not overwritten.
#[derive(Default)]
struct EditDuringHandoff {
    edited: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Interceptor for EditDuringHandoff {
    async fn before(&self, store: &dyn Store, write: Write<'_>) -> Result<(), StoreError> {
        if matches!(write, Write::ApplyAll(_))
            && !self.edited.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let cur = store.get(Kind::Hardware, "eksa-system", "node-1").await?;
            let mut v = cur.to_json();
            v["metadata"]["labels"]["edited"] = json!("by-operator");
            store.update(obj(v)).await?;
        }
        Ok(())
    }
}

/// The handoff's writes are conditional: an edit on the source between the copy and the mark
/// is kept (the old mark wrote the start-of-move snapshot back over it), the changed Hardware
/// is not handed over (the source still answers it; the target holds its copy), and a re-run
/// carries the edit over and completes the handoff.
#[tokio::test]
async fn an_edit_on_the_source_during_the_handoff_is_kept() {
    let (_s, inner) = source_with(2).await;
    let src = Intercepted {
        inner: std::sync::Arc::new(inner.clone()),
        hooks: EditDuringHandoff::default(),
    };
    let (_d, dst) = empty_target();
    let e = mover::run(&src, &dst, &all_ns(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&e, MoveError::Changed(c) if c.iter().any(|x| x.contains("node-1"))),
        "{e}"
    );
    let node1 = inner
        .get(Kind::Hardware, "eksa-system", "node-1")
        .await
        .unwrap();
    assert_eq!(
        node1
            .meta()
            .labels
            .as_ref()
            .unwrap()
            .get("edited")
            .map(String::as_str),
        Some("by-operator"),
        "the edit survives"
    );
    assert_eq!(
        annotation(&node1),
        None,
        "node-1 still answered by the source"
    );
    let copy = dst
        .get(Kind::Hardware, "eksa-system", "node-1")
        .await
        .unwrap();
    assert_eq!(
        annotation(&copy).as_deref(),
        Some(HANDOFF_INCOMING),
        "held on the target"
    );

    let report = run(&inner, &dst, &all_ns()).await.unwrap();
    assert_eq!(report.handed_over, 2);
    let copy = dst
        .get(Kind::Hardware, "eksa-system", "node-1")
        .await
        .unwrap();
    assert_eq!(
        copy.meta()
            .labels
            .as_ref()
            .unwrap()
            .get("edited")
            .map(String::as_str),
        Some("by-operator")
    );
    assert_eq!(annotation(&copy), None);
    let node1 = inner
        .get(Kind::Hardware, "eksa-system", "node-1")
        .await
        .unwrap();
    assert_eq!(annotation(&node1).as_deref(), Some(HANDOFF_MOVED_OUT));
}

/// An applied object carrying a resourceVersion is conditional on it (server-side apply's
/// precondition): the store behind the mover's handoff.
#[tokio::test]
async fn apply_with_a_stale_resource_version_conflicts() {
    let (_s, store) = source_with(1).await;
    let cur = store
        .get(Kind::Hardware, "eksa-system", "node-1")
        .await
        .unwrap();
    let mut v = cur.to_json();
    v["metadata"]["labels"]["a"] = json!("1");
    store.apply_all(vec![obj(v.clone())]).await.unwrap();
    v["metadata"]["labels"]["a"] = json!("2");
    let e = store.apply_all(vec![obj(v)]).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
}
