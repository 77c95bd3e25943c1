//! The CRDs on a real kube-apiserver (`tests/kube/kube.sh`, through `TINKERBELL_TEST_KUBECONFIG`):
//! every kind is accepted, and upstream-shaped objects (the fixtures: EKS Anywhere Hardware with
//! `metadata.instance`, Templates, Workflows with a full status, bmc Machines, Jobs and Tasks)
//! round-trip through the API server unchanged — written as plain JSON (as kubectl or an upstream
//! controller would, without our types), read back both raw and through the kube backend.
//!
//! What this catches that the model round-trip cannot: a field our CRD schema lacks is
//! silently *pruned* by the API server (structural schemas drop unknown fields), a type or
//! format it disagrees with is refused, and a default it adds changes the object.

use std::path::PathBuf;

use k8s_openapi::ByteString;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::Value;
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::shared::with_schema_defaults;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_core::testing::strip_nulls;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {name}: {e}"))
}

/// The parts of an object the API server must keep as written: spec (or a Secret's data and
/// type), status, labels and annotations.
fn content(v: &Value) -> Value {
    let v = strip_nulls(v.clone());
    let mut out = serde_json::Map::new();
    for k in ["spec", "status", "data", "stringData", "type"] {
        if let Some(x) = v.get(k) {
            out.insert(k.into(), x.clone());
        }
    }
    for k in ["labels", "annotations"] {
        if let Some(x) = v.pointer(&format!("/metadata/{k}")) {
            out.insert(k.into(), x.clone());
        }
    }
    Value::Object(out)
}

fn diff(what: &str, want: &Value, got: &Value) {
    assert!(
        want == got,
        "{what}: the API server changed the object\nwritten:\n{}\nread back:\n{}",
        serde_json::to_string_pretty(want).unwrap(),
        serde_json::to_string_pretty(got).unwrap()
    );
}

fn api_resource(kind: Kind) -> ApiResource {
    let (group, version) = kind
        .api_version()
        .split_once('/')
        .unwrap_or(("", kind.api_version()));
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.as_str()),
        kind.plural(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_shaped_objects_round_trip_unchanged() {
    let Some(env) = tinkerbell_core::testing::test_kube("crd-roundtrip").await else {
        return;
    };
    let ns = env.namespace.clone();
    let store = KubeStore::new(env.client.clone(), &ns);
    // hardware_full.yaml is the every-field fixture; its third interface has `mac: ""`, which
    // the CRD's MAC pattern refuses (upstream's does too), so it is checked separately below.
    let fixtures = [
        "secret.yaml",
        "hardware_eksa.yaml",
        "machine.yaml",
        "machine_eksa.yaml",
        "template.yaml",
        "workflow.yaml",
        "workflowruleset.yaml",
        "job.yaml",
        "task.yaml",
    ];
    for name in fixtures {
        let mut doc = fixture(name);
        doc["metadata"]["namespace"] = Value::String(ns.clone());
        let kind = Kind::from_type(
            doc["apiVersion"].as_str().unwrap(),
            doc["kind"].as_str().unwrap(),
        )
        .unwrap_or_else(|| panic!("{name}: a kind we store"));
        let api: Api<DynamicObject> =
            Api::namespaced_with(env.client.clone(), &ns, &api_resource(kind));
        let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
        let created = api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{name}: the API server refused it: {e}"));
        let obj_name = created.metadata.name.clone().unwrap();
        // Status is a subresource: written separately, as a controller does.
        if let Some(status) = doc.get("status") {
            let mut with_status = serde_json::to_value(&created).unwrap();
            with_status["status"] = status.clone();
            api.replace_status(
                &obj_name,
                &PostParams::default(),
                &serde_json::from_value(with_status).unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: status refused: {e}"));
        }
        let raw = serde_json::to_value(api.get(&obj_name).await.unwrap()).unwrap();
        // What the server keeps: the document with its CRD's schema defaults filled in.
        let mut want = content(&with_schema_defaults(kind, doc.clone()));
        // A Secret's stringData is write-only: the server folds it into data (base64).
        if let Some(Value::Object(sd)) = want.as_object_mut().unwrap().remove("stringData") {
            let data = want["data"]
                .as_object_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut data: serde_json::Map<String, Value> = data;
            for (k, v) in sd {
                let bytes = ByteString(v.as_str().unwrap().as_bytes().to_vec());
                data.insert(k, serde_json::to_value(bytes).unwrap());
            }
            want["data"] = Value::Object(data);
        }
        diff(&format!("{name} (raw read)"), &want, &content(&raw));

        // Through the kube backend: our types read it and give the same JSON back.
        let typed = store.get(kind, &ns, &obj_name).await.unwrap();
        diff(
            &format!("{name} (kube backend)"),
            &want,
            &content(&typed.to_json()),
        );
        // ... and a write of what we read changes nothing on the server.
        let rewritten = store.update(typed.clone()).await.unwrap();
        diff(
            &format!("{name} (after our update)"),
            &want,
            &content(&rewritten.to_json()),
        );
    }

    // Every kind is listable in the namespace, and holds what was written.
    for kind in Kind::ALL {
        let list = store.list(kind, Some(&ns)).await.unwrap();
        assert!(!list.items.is_empty(), "{kind}: nothing listed");
    }

    // The every-field Hardware is accepted unchanged too (MACs made valid, see below).
    let mut full = fixture("hardware_full.yaml");
    full["metadata"]["namespace"] = Value::String(ns.clone());
    for (i, iface) in full["spec"]["interfaces"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        // The CRD (as upstream's) takes lower-case MACs only; the fixture has an upper-case and
        // an empty one to test that our store normalises and tolerates them.
        match iface.pointer("/dhcp/mac").and_then(Value::as_str) {
            Some("") => iface["dhcp"]["mac"] = Value::String(format!("02:00:00:00:00:{i:02x}")),
            Some(mac) => iface["dhcp"]["mac"] = Value::String(mac.to_ascii_lowercase()),
            None => {}
        }
    }
    let obj = Object::from_typed_json(full.clone()).unwrap();
    let created = store
        .create(obj.with_status_json(Value::Null).unwrap())
        .await
        .unwrap();
    let with_status = created
        .with_status_json(full.get("status").cloned().unwrap_or(Value::Null))
        .unwrap();
    store.update_status(with_status).await.unwrap();
    let api: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &ns, &api_resource(Kind::Hardware));
    let raw = serde_json::to_value(api.get(created.name()).await.unwrap()).unwrap();
    diff(
        "hardware_full.yaml (raw read)",
        &content(&with_schema_defaults(Kind::Hardware, full)),
        &content(&raw),
    );
}
