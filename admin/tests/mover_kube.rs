//! `mover::run` from an embedded store to Kubernetes, against a fake API server behind kube's
//! tower-test mock: the exact API calls in order, what the cluster ends up holding (labels,
//! annotations, userData, allowPXE, status through the status subresource), and that a move
//! interrupted at every single write converges when run again. And back, Kubernetes as the
//! source (a management cluster's objects into an appliance): the lists it reads and the one
//! write it gets, the DHCP handoff mark on its Hardware.
//!
//! The fake keeps objects by path and behaves as an API server does where the move depends on
//! it: resourceVersions and 409s (`AlreadyExists` on POST, `Conflict` on a stale PUT), `dryRun`
//! writes that persist nothing, status only through `/status` (dropped on create, kept on a
//! main-resource PUT), Secrets stored as `data` with `type` defaulted, and CRD schema defaults
//! (`deploy/crds/*.yaml`) applied on every write — so a content hash that ignores what the
//! server adds would fail here as it would on a real cluster.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tinkerbell_admin::mover::{self, MoveOptions, MoveReport};
use tinkerbell_core::model::{DHCP_HANDOFF_ANNOTATION, HANDOFF_MOVED_OUT};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::shared::apply_schema_defaults;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_core::testing::{json_response, request_json, status_response};

const NS: &str = "eksa-system";
const CORE: &str = "/api/v1";
const TINK: &str = "/apis/tinkerbell.org/v1alpha1";
const BMC: &str = "/apis/bmc.tinkerbell.org/v1alpha1";

/// The fake API server's state, shared with the test.
#[derive(Default)]
struct Cluster {
    /// Object path (`/apis/…/namespaces/NS/PLURAL/NAME`) → stored object.
    objects: BTreeMap<String, Value>,
    rv: u64,
    /// `METHOD path[?dryRun]` of every request but collection reads (lists and watches).
    log: Vec<String>,
    /// `LIST path` of every collection read (not watches).
    lists: Vec<String>,
    /// Real (non-dry-run) writes so far.
    writes: usize,
    /// Fail the n-th real write (1-based) with a 500 after persisting it: the response is lost.
    fail_write: Option<usize>,
    /// Paths a concurrent writer creates (same content) right after the move's dry run of them.
    race_create: Vec<String>,
    /// Plural → (Kind, CRD openAPIV3Schema, has a status subresource).
    schemas: HashMap<String, (String, Value, bool)>,
}

fn load_schemas() -> HashMap<String, (String, Value, bool)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let crd: Value = serde_saphyr::from_str(&text).unwrap();
        let version = &crd["spec"]["versions"][0];
        out.insert(
            crd["spec"]["names"]["plural"].as_str().unwrap().to_string(),
            (
                crd["spec"]["names"]["kind"].as_str().unwrap().to_string(),
                version["schema"]["openAPIV3Schema"].clone(),
                version["subresources"].get("status").is_some(),
            ),
        );
    }
    out.insert("secrets".into(), ("Secret".into(), Value::Null, false));
    out
}

/// A request path split: (`/api/v1` or `/apis/G/V`, namespace, plural, name, subresource).
fn split(
    path: &str,
) -> (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = if segs[0] == "api" {
        (format!("/{}/{}", segs[0], segs[1]), &segs[2..])
    } else {
        (format!("/{}/{}/{}", segs[0], segs[1], segs[2]), &segs[3..])
    };
    let (ns, rest) = if rest[0] == "namespaces" {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    (
        prefix,
        ns,
        rest[0].to_string(),
        rest.get(1).map(|s| s.to_string()),
        rest.get(2).map(|s| s.to_string()),
    )
}

impl Cluster {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// What the server stores for `body` written at `path`.
    fn normalise(&self, plural: &str, mut body: Value) -> Value {
        let (_, schema, _) = &self.schemas[plural];
        if plural == "secrets" {
            if let Some(Value::Object(sd)) = body.as_object_mut().unwrap().remove("stringData") {
                let data = body["data"].as_object_mut().map(std::mem::take);
                let mut data = data.unwrap_or_default();
                for (k, v) in sd {
                    // ByteString serialises as base64, as the server stores `data`.
                    let b = k8s_openapi::ByteString(v.as_str().unwrap().as_bytes().to_vec());
                    data.insert(k, serde_json::to_value(b).unwrap());
                }
                body["data"] = Value::Object(data);
            }
            if body.get("type").is_none() {
                body["type"] = json!("Opaque");
            }
        } else {
            apply_schema_defaults(schema, &mut body);
        }
        body
    }

    fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: Value,
    ) -> Option<Response<Body>> {
        let (prefix, ns, plural, name, sub) = split(path);
        let dry = query.contains("dryRun=All");
        if method == "GET" && name.is_none() {
            if query.contains("watch=true") {
                return None; // held open: nothing changes behind the index's back here
            }
            self.lists.push(format!("LIST {path}"));
            let (kind, _, _) = &self.schemas[&plural];
            let coll = match &ns {
                Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}/"),
                None => format!("{prefix}/namespaces/"),
            };
            let items: Vec<Value> = self
                .objects
                .iter()
                .filter(|(k, _)| k.starts_with(&coll) && k.contains(&format!("/{plural}/")))
                .map(|(_, v)| v.clone())
                .collect();
            return Some(json_response(
                200,
                &json!({"apiVersion": "v1", "kind": format!("{kind}List"),
                        "metadata": {"resourceVersion": self.rv.to_string()}, "items": items}),
            ));
        }
        self.log.push(format!(
            "{method} {path}{}",
            if dry { "?dryRun" } else { "" }
        ));
        let ns = ns.expect("object calls are namespaced");
        let (_, _, has_status) = self.schemas[&plural].clone();
        match (method, name, sub.as_deref()) {
            ("GET", Some(name), None) => {
                let key = format!("{prefix}/namespaces/{ns}/{plural}/{name}");
                Some(match self.objects.get(&key) {
                    Some(v) => json_response(200, v),
                    None => {
                        status_response(404, "NotFound", &format!("{plural} \"{name}\" not found"))
                    }
                })
            }
            ("POST", None, None) => {
                let name = body["metadata"]["name"].as_str().unwrap().to_string();
                let key = format!("{prefix}/namespaces/{ns}/{plural}/{name}");
                if self.objects.contains_key(&key) {
                    return Some(status_response(
                        409,
                        "AlreadyExists",
                        &format!("{plural} \"{name}\" already exists"),
                    ));
                }
                assert!(
                    body["metadata"].get("resourceVersion").is_none(),
                    "a create must not carry a resourceVersion"
                );
                let mut stored = self.normalise(&plural, body);
                if has_status {
                    stored.as_object_mut().unwrap().remove("status");
                }
                let rv = self.next_rv();
                let m = &mut stored["metadata"];
                m["namespace"] = json!(ns);
                m["uid"] = json!(format!("uid-{rv}"));
                m["resourceVersion"] = json!(rv);
                m["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                if plural != "secrets" {
                    m["generation"] = json!(1);
                }
                if dry {
                    if self.race_create.contains(&key) {
                        self.objects.insert(key, stored.clone());
                    }
                    return Some(json_response(201, &stored));
                }
                self.objects.insert(key, stored.clone());
                Some(self.written(201, &stored))
            }
            ("PUT", Some(name), sub) => {
                let key = format!("{prefix}/namespaces/{ns}/{plural}/{name}");
                let Some(cur) = self.objects.get(&key).cloned() else {
                    return Some(status_response(
                        404,
                        "NotFound",
                        &format!("{plural} \"{name}\" not found"),
                    ));
                };
                if body["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"] {
                    return Some(status_response(
                        409,
                        "Conflict",
                        "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
                let mut stored = if sub == Some("status") {
                    let mut s = cur.clone();
                    s["status"] = body["status"].clone();
                    s
                } else {
                    let mut s = self.normalise(&plural, body);
                    if has_status {
                        match cur.get("status") {
                            Some(st) => s["status"] = st.clone(),
                            None => {
                                s.as_object_mut().unwrap().remove("status");
                            }
                        }
                    }
                    for f in ["uid", "creationTimestamp", "generation"] {
                        if let Some(v) = cur["metadata"].get(f) {
                            s["metadata"][f] = v.clone();
                        }
                    }
                    s
                };
                if dry {
                    return Some(json_response(200, &stored));
                }
                stored["metadata"]["resourceVersion"] = json!(self.next_rv());
                self.objects.insert(key, stored.clone());
                Some(self.written(200, &stored))
            }
            other => panic!("the fake API server does not serve {other:?} {path}"),
        }
    }

    /// Count a real write; the chosen one "loses its response" (persisted, answered 500).
    fn written(&mut self, code: u16, stored: &Value) -> Response<Body> {
        self.writes += 1;
        if self.fail_write == Some(self.writes) {
            return status_response(500, "InternalError", "the connection was lost");
        }
        json_response(code, stored)
    }
}

/// A KubeStore scoped to [`NS`] on a fresh fake API server.
fn fake_cluster() -> (KubeStore, Arc<Mutex<Cluster>>) {
    let state = Arc::new(Mutex::new(Cluster {
        schemas: load_schemas(),
        ..Cluster::default()
    }));
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let st = state.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, tx)) = handle.next_request().await {
            let (parts, body) = request_json(req).await;
            let resp = st.lock().unwrap().handle(
                parts.method.as_str(),
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
                body,
            );
            match resp {
                Some(r) => tx.send_response(r),
                None => held.push(tx),
            }
        }
    });
    let client = kube::Client::new(svc, "default");
    let store = KubeStore::new(client, NS).with_sync_timeout(Duration::from_secs(5));
    (store, state)
}

fn obj(v: Value) -> Object {
    Object::from_typed_json(v).unwrap()
}

/// What EKS Anywhere leaves on the admin machine for one node, written the way users write it:
/// the Secret with `stringData`, the Machine without `port`, the interface without
/// `allowWorkflow` (the server fills in the CRD defaults: 623, false).
fn source_objects() -> Vec<Object> {
    vec![
        obj(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bmc-node-1-auth", "namespace": NS,
                         "labels": {"clusterctl.cluster.x-k8s.io/move": "true"}},
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": "admin", "password": "secret"}
        })),
        obj(json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
            "metadata": {"name": "bmc-node-1", "namespace": NS},
            "spec": {"connection": {
                "host": "10.2.0.1", "insecureTLS": true,
                "authSecretRef": {"name": "bmc-node-1-auth", "namespace": NS}
            }},
            "status": {"powerState": "on"}
        })),
        obj(json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
            "metadata": {
                "name": "node-1", "namespace": NS,
                "labels": {
                    "v1alpha1.tinkerbell.org/ownerName": "cluster-md-1",
                    "v1alpha1.tinkerbell.org/ownerNamespace": NS
                },
                "annotations": {"v1alpha1.tinkerbell.org/provisioned": "true"}
            },
            "spec": {
                "bmcRef": {"apiGroup": "bmc.tinkerbell.org", "kind": "Machine", "name": "bmc-node-1"},
                "userData": "#cloud-config\nhostname: node-1\n",
                "interfaces": [{
                    "dhcp": {"mac": "52:54:00:00:01:01", "ip": {"address": "10.1.0.1"}},
                    "netboot": {"allowPXE": true}
                }]
            },
            "status": {"state": "Ready"}
        })),
    ]
}

async fn source() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.apply_all(source_objects()).await.unwrap();
    (dir, store)
}

async fn run_move(src: &EmbeddedStore, dst: &KubeStore) -> Result<MoveReport, mover::MoveError> {
    let opts = MoveOptions {
        namespace: Some(NS.into()),
        ..MoveOptions::default()
    };
    mover::run(src, dst, &opts, &mut |_| {}).await
}

fn secret_path() -> String {
    format!("{CORE}/namespaces/{NS}/secrets")
}
fn machine_path() -> String {
    format!("{BMC}/namespaces/{NS}/machines")
}
fn hardware_path() -> String {
    format!("{TINK}/namespaces/{NS}/hardware")
}

#[tokio::test]
async fn embedded_to_kube_makes_exactly_these_calls_and_keeps_everything() {
    let (_d, src) = source().await;
    let (dst, cluster) = fake_cluster();
    let report = run_move(&src, &dst).await.unwrap();

    let (s, m, h) = (secret_path(), machine_path(), hardware_path());
    let expected = vec![
        // apply_all, phase 1: read each object, dry-run its create.
        format!("GET {s}/bmc-node-1-auth"),
        format!("POST {s}?dryRun"),
        format!("GET {m}/bmc-node-1"),
        format!("POST {m}?dryRun"),
        format!("GET {h}/node-1"),
        format!("POST {h}?dryRun"),
        // Phase 2: create for real; status goes through the subresource.
        format!("POST {s}"),
        format!("POST {m}"),
        format!("PUT {m}/bmc-node-1/status"),
        format!("POST {h}"),
        format!("PUT {h}/node-1/status"),
        // Verification: read every object back.
        format!("GET {s}/bmc-node-1-auth"),
        format!("GET {m}/bmc-node-1"),
        format!("GET {h}/node-1"),
        // DHCP handoff: the source is marked (embedded), then `incoming` is cleared here.
        format!("GET {h}/node-1"),
        format!("GET {h}/node-1"),
        format!("PUT {h}/node-1?dryRun"),
        format!("PUT {h}/node-1"),
    ];
    {
        let c = cluster.lock().unwrap();
        assert_eq!(c.log, expected);

        assert_eq!(report.source_digest, report.target_digest);
        assert_eq!(report.handed_over, 1);
        for kind in [Kind::Secret, Kind::Machine, Kind::Hardware] {
            assert_eq!(report.counts[&kind].created, 1, "{kind}");
        }

        let hw = &c.objects[&format!("{h}/node-1")];
        assert_eq!(
            hw["metadata"]["labels"]["v1alpha1.tinkerbell.org/ownerName"],
            "cluster-md-1"
        );
        assert_eq!(
            hw["metadata"]["labels"]["v1alpha1.tinkerbell.org/ownerNamespace"],
            NS
        );
        assert_eq!(
            hw["metadata"]["annotations"],
            json!({"v1alpha1.tinkerbell.org/provisioned": "true"})
        );
        assert_eq!(hw["spec"]["userData"], "#cloud-config\nhostname: node-1\n");
        assert_eq!(hw["spec"]["interfaces"][0]["netboot"]["allowPXE"], true);
        assert_eq!(hw["status"]["state"], "Ready");
        let bmc = &c.objects[&format!("{m}/bmc-node-1")];
        assert_eq!(bmc["status"]["powerState"], "on");
        assert_eq!(
            bmc["spec"]["connection"]["port"], 623,
            "the server's default"
        );
        let secret = &c.objects[&format!("{s}/bmc-node-1-auth")];
        assert_eq!(secret["data"]["password"], "c2VjcmV0");
        assert_eq!(secret["type"], "kubernetes.io/basic-auth");
        assert_eq!(c.objects.len(), 3);
    }

    // The source no longer answers DHCP for the moved machine.
    let on_src = src.get(Kind::Hardware, NS, "node-1").await.unwrap();
    assert_eq!(
        on_src.meta().annotations.as_ref().unwrap()[DHCP_HANDOFF_ANNOTATION],
        HANDOFF_MOVED_OUT
    );

    // A second run finds everything in place: reads and dry runs only, nothing written.
    let before = cluster.lock().unwrap().writes;
    let again = run_move(&src, &dst).await.unwrap();
    for kind in [Kind::Secret, Kind::Machine, Kind::Hardware] {
        assert_eq!(again.counts[&kind].unchanged, 1, "{kind}");
    }
    assert_eq!(again.target_digest, report.target_digest);
    assert_eq!(cluster.lock().unwrap().writes, before);
}

/// Lose the response of every write in turn (the write happened, the client saw an error):
/// the run fails, and a second run converges on exactly the uninterrupted result — nothing
/// missing, nothing duplicated, no 409 left unhandled.
#[tokio::test]
async fn a_move_interrupted_at_any_write_converges_on_rerun() {
    // The uninterrupted result, and how many writes it takes.
    let (_d, src) = source().await;
    let (dst, cluster) = fake_cluster();
    run_move(&src, &dst).await.unwrap();
    let total = cluster.lock().unwrap().writes;
    let want: BTreeMap<String, Value> = strip_server_fields(&cluster.lock().unwrap().objects);
    assert!(total >= 6, "{total} writes");

    for k in 1..=total {
        let (_d, src) = source().await;
        let (dst, cluster) = fake_cluster();
        cluster.lock().unwrap().fail_write = Some(k);
        let first = run_move(&src, &dst).await;
        assert!(
            first.is_err(),
            "write {k} failed but the move reported success"
        );
        let report = run_move(&src, &dst)
            .await
            .unwrap_or_else(|e| panic!("re-run after losing write {k}: {e}"));
        assert_eq!(report.source_digest, report.target_digest, "write {k}");
        let got = strip_server_fields(&cluster.lock().unwrap().objects);
        assert_eq!(got, want, "cluster state after losing write {k}");
        let hw = src.get(Kind::Hardware, NS, "node-1").await.unwrap();
        assert_eq!(
            hw.meta().annotations.as_ref().unwrap()[DHCP_HANDOFF_ANNOTATION],
            HANDOFF_MOVED_OUT,
            "write {k}"
        );
    }
}

/// Another writer creates the same object between the move's dry run and its create: the
/// create's 409 AlreadyExists is not an error when the content is the same.
#[tokio::test]
async fn already_exists_with_the_same_content_is_not_a_duplicate() {
    let (_d, src) = source().await;
    let (dst, cluster) = fake_cluster();
    cluster.lock().unwrap().race_create = vec![
        format!("{}/bmc-node-1-auth", secret_path()),
        format!("{}/bmc-node-1", machine_path()),
    ];
    let report = run_move(&src, &dst).await.unwrap();
    assert_eq!(report.source_digest, report.target_digest);
    let c = cluster.lock().unwrap();
    assert_eq!(c.objects.len(), 3);
    assert_eq!(
        c.objects[&format!("{}/bmc-node-1", machine_path())]["status"]["powerState"],
        "on",
        "the status is still written to the object the other writer created"
    );
}

/// Kubernetes as the source: a management cluster's Tinkerbell objects into an appliance's
/// embedded store. The cluster is read with one list per kind and written once: the DHCP
/// handoff mark on its Hardware (read, dry run, update; status kept). The embedded copy has the
/// same content, including what only the API server added (the CRD default `port: 623`,
/// Secret `data`), and answers DHCP once the move is done.
#[tokio::test]
async fn kube_to_embedded_reads_lists_and_writes_only_the_handoff_mark() {
    // The cluster as EKS Anywhere leaves it: seeded by a move from an embedded store.
    let (_seed_dir, seed) = source().await;
    let (kube, cluster) = fake_cluster();
    run_move(&seed, &kube).await.unwrap();
    let writes_before = {
        let mut c = cluster.lock().unwrap();
        c.log.clear();
        c.lists.clear();
        c.writes
    };

    let dir = tempfile::tempdir().unwrap();
    let dst = EmbeddedStore::open(dir.path()).unwrap();
    let opts = MoveOptions {
        namespace: Some(NS.into()),
        ..MoveOptions::default()
    };
    let report = mover::run(&kube, &dst, &opts, &mut |_| {}).await.unwrap();

    let (s, m, h) = (secret_path(), machine_path(), hardware_path());
    let c = {
        let c = cluster.lock().unwrap();
        Cluster {
            objects: c.objects.clone(),
            log: c.log.clone(),
            lists: c.lists.clone(),
            writes: c.writes,
            ..Cluster::default()
        }
    };
    // Machines first (their Secrets are wanted), then Secrets, then Hardware.
    assert_eq!(
        c.lists,
        vec![
            format!("LIST {m}"),
            format!("LIST {s}"),
            format!("LIST {h}")
        ]
    );
    // The mark reads the current version (its write is conditional on it), then apply_all
    // reads, dry-runs and writes.
    assert_eq!(
        c.log,
        vec![
            format!("GET {h}/node-1"),
            format!("GET {h}/node-1"),
            format!("PUT {h}/node-1?dryRun"),
            format!("PUT {h}/node-1"),
        ],
        "the source is only marked, nothing else is written to it"
    );
    assert_eq!(c.writes - writes_before, 1);
    assert_eq!(report.source_digest, report.target_digest);
    assert_eq!(report.handed_over, 1);
    for kind in [Kind::Secret, Kind::Machine, Kind::Hardware] {
        assert_eq!(report.counts[&kind].created, 1, "{kind}");
    }

    let hw = &c.objects[&format!("{h}/node-1")];
    assert_eq!(
        hw["metadata"]["annotations"],
        json!({"v1alpha1.tinkerbell.org/provisioned": "true",
               DHCP_HANDOFF_ANNOTATION: HANDOFF_MOVED_OUT})
    );
    assert_eq!(
        hw["status"]["state"], "Ready",
        "the mark's PUT keeps the status"
    );
    assert_eq!(c.objects.len(), 3, "nothing created on the source");

    // The appliance's copies: same content as the cluster's, DHCP released.
    for (kind, name) in [
        (Kind::Secret, "bmc-node-1-auth"),
        (Kind::Machine, "bmc-node-1"),
        (Kind::Hardware, "node-1"),
    ] {
        let here = dst.get(kind, NS, name).await.unwrap();
        let there = Object::from_typed_json(
            c.objects[&format!(
                "{}/{name}",
                match kind {
                    Kind::Secret => &s,
                    Kind::Machine => &m,
                    _ => &h,
                }
            )]
                .clone(),
        )
        .unwrap();
        assert_eq!(mover::digest(&here), mover::digest(&there), "{kind} {name}");
    }
    let hw = dst.get(Kind::Hardware, NS, "node-1").await.unwrap();
    let hw = hw.as_hardware().expect("a Hardware");
    assert!(!hw.dhcp_on_hold(), "the appliance answers DHCP for it");
    let labels = hw.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["v1alpha1.tinkerbell.org/ownerName"], "cluster-md-1");
    let v = dst
        .get(Kind::Machine, NS, "bmc-node-1")
        .await
        .unwrap()
        .to_json();
    assert_eq!(v["spec"]["connection"]["port"], 623);
    assert_eq!(v["status"]["powerState"], "on");
    let v = dst
        .get(Kind::Secret, NS, "bmc-node-1-auth")
        .await
        .unwrap()
        .to_json();
    assert_eq!(v["data"]["password"], "c2VjcmV0");
    assert_eq!(v["type"], "kubernetes.io/basic-auth");
}

/// Objects without what the server assigns (resourceVersion, uid, timestamps).
fn strip_server_fields(objects: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    objects
        .iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            let m = v["metadata"].as_object_mut().unwrap();
            for f in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
                m.remove(f);
            }
            (k.clone(), v)
        })
        .collect()
}

#[test]
fn the_fake_defaults_as_the_crd_schema_says() {
    let schemas = load_schemas();
    let mut m = json!({"spec": {"connection": {"host": "h"}}});
    apply_schema_defaults(&schemas["machines"].1, &mut m);
    assert_eq!(m["spec"]["connection"]["port"], 623);
    let _ = Object::from_typed_json(json!({
        "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
        "metadata": {"name": "x", "namespace": NS}, "spec": m["spec"].clone()
    }))
    .unwrap();
}
