//! The Kubernetes backend against a mocked API server: the exact requests it sends (method,
//! path, query, body) and how it reads realistic API-server answers, including errors, watch
//! streams, the background lookup index and the dry-run phase of `apply_all`.
//!
//! The store's background index task sends its list/watch requests (GET on the Hardware and
//! Workflow collections of the store's namespace) to the same mock. A router task splits them
//! from the requests under test, so every test reads its own requests in a fixed order.

use std::time::Duration;

use futures::StreamExt;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::{
    Applied, HardwareLookup, Kind, Object, Store, StoreError, WatchEvent, WatchStream,
};
use tinkerbell_core::testing::{json_response, request_json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tower_test::mock::SendResponse;

type Resp = Response<Body>;
type Pending = (Request<Body>, SendResponse<Resp>);

/// How long any single expected step may take before the test fails.
const STEP: Duration = Duration::from_secs(5);

/// A request as the mock API server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    /// Everything after `?` ("" when there was no `?` or nothing after it).
    query: String,
    /// The full request target, e.g. `/apis/…/templates?`.
    target: String,
    /// The JSON body, or Null.
    body: Value,
}

async fn see(req: Request<Body>) -> Seen {
    let (parts, body) = request_json(req).await;
    Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        target: parts.uri.to_string(),
        body,
    }
}

/// The two request queues of one mocked API server.
struct Mock {
    /// Requests made by the calls under test.
    main: UnboundedReceiver<Pending>,
    /// Requests made by the store's index task.
    index: Option<UnboundedReceiver<Pending>>,
}

fn index_paths(ns: &str) -> [String; 2] {
    let base = if ns.is_empty() {
        "/apis/tinkerbell.org/v1alpha1".to_string()
    } else {
        format!("/apis/tinkerbell.org/v1alpha1/namespaces/{ns}")
    };
    [format!("{base}/hardware"), format!("{base}/workflows")]
}

/// A store scoped to `ns` on a mocked API server.
fn mock_store(ns: &str) -> (KubeStore, Mock) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Resp>();
    let client = kube::Client::new(svc, "default");
    let store = KubeStore::new(client, ns).with_sync_timeout(STEP);
    let (main_tx, main) = unbounded_channel();
    let (index_tx, index) = unbounded_channel::<Pending>();
    let paths = index_paths(ns);
    tokio::spawn(async move {
        while let Some((req, tx)) = handle.next_request().await {
            let is_index =
                req.method() == http::Method::GET && paths.iter().any(|p| p == req.uri().path());
            let to: &UnboundedSender<Pending> = if is_index { &index_tx } else { &main_tx };
            let _ = to.send((req, tx));
        }
    });
    (
        store,
        Mock {
            main,
            index: Some(index),
        },
    )
}

impl Mock {
    /// Answer the index task from a background task: lists get `hardware`/`workflows` (at
    /// resourceVersion 100), watches are held open and never answered.
    fn serve_index(&mut self, hardware: Vec<Value>, workflows: Vec<Value>) {
        self.serve_index_with(move |seen| {
            if seen.query.contains("watch=true") {
                return None;
            }
            let items = if seen.path.ends_with("/hardware") {
                hardware.clone()
            } else {
                workflows.clone()
            };
            Some(json_response(200, &list_json(&items, "100")))
        });
    }

    /// Answer the index task with `f`; `None` holds the request open.
    fn serve_index_with(&mut self, f: impl Fn(&Seen) -> Option<Resp> + Send + 'static) {
        let mut rx = self.index.take().expect("index queue not taken yet");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some((req, tx)) = rx.recv().await {
                let seen = see(req).await;
                match f(&seen) {
                    Some(resp) => tx.send_response(resp),
                    None => held.push(tx),
                }
            }
        });
    }

    /// The next request under test.
    async fn next(&mut self) -> (Seen, SendResponse<Resp>) {
        let (req, tx) = tokio::time::timeout(STEP, self.main.recv())
            .await
            .expect("a request within the step timeout")
            .expect("mock still running");
        (see(req).await, tx)
    }

    /// Answer the next request under test with `f`, and return what was seen.
    async fn answer(&mut self, f: impl FnOnce(&Seen) -> Resp) -> Seen {
        let (seen, tx) = self.next().await;
        tx.send_response(f(&seen));
        seen
    }

    /// The next index request.
    async fn next_index(&mut self) -> (Seen, SendResponse<Resp>) {
        let rx = self
            .index
            .as_mut()
            .expect("index queue not handed to a responder");
        let (req, tx) = tokio::time::timeout(STEP, rx.recv())
            .await
            .expect("an index request within the step timeout")
            .expect("mock still running");
        (see(req).await, tx)
    }

    /// Assert that no request under test is pending.
    async fn assert_idle(&mut self) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok((req, _)) = self.main.try_recv() {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

fn status_json(code: u16, reason: &str, message: &str, details: Value) -> Value {
    let mut v = tinkerbell_core::api::status_json(code, reason, message);
    v["details"] = details;
    v
}

fn status_resp(code: u16, reason: &str, message: &str, details: Value) -> Resp {
    json_response(code, &status_json(code, reason, message, details))
}

/// A watch response: one JSON event per line.
fn events_resp(events: &[Value]) -> Resp {
    let mut body = Vec::new();
    for ev in events {
        body.extend(serde_json::to_vec(ev).unwrap());
        body.push(b'\n');
    }
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn list_json(items: &[Value], rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items})
}

/// An object as the API server returns it.
fn served(mut v: Value, rv: &str) -> Value {
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    let meta = v["metadata"].as_object_mut().unwrap();
    meta.insert("resourceVersion".into(), json!(rv));
    meta.insert("uid".into(), json!(format!("uid-{name}")));
    meta.insert("generation".into(), json!(1));
    meta.insert("creationTimestamp".into(), json!("2025-01-02T03:04:05Z"));
    v
}

fn hardware(ns: &str, name: &str, mac: &str, ip: &str, agent: &str, instance: &str) -> Value {
    json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "agentID": agent,
            "metadata": {"instance": {"id": instance, "hostname": name}},
            "interfaces": [{"dhcp": {"mac": mac, "ip": {"address": ip, "netmask": "255.255.255.0"}}}]
        }
    })
}

fn template(ns: &str, name: &str, data: &str) -> Value {
    json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"data": data}
    })
}

fn workflow(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"templateRef": "t1", "hardwareRef": "n1"}
    })
}

fn obj(v: Value) -> Object {
    Object::from_typed_json(v).unwrap()
}

async fn next_event(stream: &mut WatchStream) -> Option<Result<WatchEvent, StoreError>> {
    tokio::time::timeout(STEP, stream.next())
        .await
        .expect("watch item within the step timeout")
}

#[tokio::test]
async fn get_hardware_and_not_found() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let hw = hardware(
        "eksa-system",
        "n1",
        "aa:bb:cc:00:00:01",
        "10.0.0.1",
        "a1",
        "i1",
    );

    let (got, seen) = tokio::join!(
        store.get(Kind::Hardware, "eksa-system", "n1"),
        mock.answer(|_| json_response(200, &served(hw.clone(), "5")))
    );
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.target,
        "/apis/tinkerbell.org/v1alpha1/namespaces/eksa-system/hardware/n1"
    );
    let got = got.unwrap();
    assert_eq!(got.kind(), Kind::Hardware);
    assert_eq!(got.resource_version(), Some("5"));
    assert_eq!(
        got.as_hardware().unwrap().spec.agent_id.as_deref(),
        Some("a1")
    );

    let (got, seen) = tokio::join!(
        store.get(Kind::Hardware, "eksa-system", "n2"),
        mock.answer(|_| status_resp(
            404,
            "NotFound",
            "hardware.tinkerbell.org \"n2\" not found",
            json!({"name": "n2", "group": "tinkerbell.org", "kind": "hardware"})
        ))
    );
    assert_eq!(
        seen.path,
        "/apis/tinkerbell.org/v1alpha1/namespaces/eksa-system/hardware/n2"
    );
    match got {
        Err(StoreError::NotFound(key)) => {
            assert_eq!(
                (key.kind, key.namespace.as_str(), key.name.as_str()),
                (Kind::Hardware, "eksa-system", "n2")
            );
        }
        other => panic!("want NotFound, got {other:?}"),
    }
    mock.assert_idle().await;
}

#[tokio::test]
async fn create_template_and_already_exists() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let t = template("ns", "t1", "version: 0.1");

    let (created, seen) = tokio::join!(
        store.create(obj(t.clone())),
        mock.answer(|seen| json_response(201, &served(seen.body.clone(), "7")))
    );
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.target,
        "/apis/tinkerbell.org/v1alpha1/namespaces/ns/templates?"
    );
    assert_eq!(seen.query, "", "no dryRun or other parameters");
    assert_eq!(seen.body["apiVersion"], "tinkerbell.org/v1alpha1");
    assert_eq!(seen.body["kind"], "Template");
    assert_eq!(seen.body["metadata"]["name"], "t1");
    assert_eq!(seen.body["metadata"]["namespace"], "ns");
    assert!(seen.body["metadata"].get("resourceVersion").is_none());
    assert_eq!(seen.body["spec"]["data"], "version: 0.1");
    let created = created.unwrap();
    assert_eq!(created.resource_version(), Some("7"));
    assert_eq!(created.meta().uid.as_deref(), Some("uid-t1"));

    let (again, _) = tokio::join!(
        store.create(obj(t)),
        mock.answer(|_| status_resp(
            409,
            "AlreadyExists",
            "templates.tinkerbell.org \"t1\" already exists",
            json!({"name": "t1", "group": "tinkerbell.org", "kind": "templates"})
        ))
    );
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "{again:?}"
    );

    // A resourceVersion on create is refused before any request.
    let mut with_rv = obj(template("ns", "t2", "x"));
    with_rv.meta_mut().resource_version = Some("3".into());
    let err = store.create(with_rv).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid { ref field, .. } if field == "metadata.resourceVersion"),
        "{err}"
    );
    mock.assert_idle().await;
}

#[tokio::test]
async fn update_with_stale_resource_version_conflicts() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let mut w = obj(workflow("ns", "w1"));
    w.meta_mut().resource_version = Some("5".into());

    let (res, seen) = tokio::join!(
        store.update(w),
        mock.answer(|_| status_resp(
            409,
            "Conflict",
            "Operation cannot be fulfilled on workflows.tinkerbell.org \"w1\": the object has been modified; please apply your changes to the latest version and try again",
            json!({"name": "w1", "group": "tinkerbell.org", "kind": "workflows"})
        ))
    );
    assert_eq!(seen.method, "PUT");
    assert_eq!(
        seen.path,
        "/apis/tinkerbell.org/v1alpha1/namespaces/ns/workflows/w1"
    );
    assert_eq!(seen.query, "");
    assert_eq!(seen.body["metadata"]["resourceVersion"], "5");
    assert_eq!(seen.body["spec"]["templateRef"], "t1");
    match res {
        Err(StoreError::Conflict {
            key,
            current,
            given,
        }) => {
            assert_eq!(key.name, "w1");
            assert_eq!(given, "5");
            assert_eq!(current, "");
        }
        other => panic!("want Conflict, got {other:?}"),
    }
    mock.assert_idle().await;
}

#[tokio::test]
async fn update_without_resource_version_reads_it_first() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let w = obj(workflow("ns", "w1"));

    let server = async {
        let get = mock
            .answer(|_| json_response(200, &served(workflow("ns", "w1"), "8")))
            .await;
        assert_eq!(
            (get.method.as_str(), get.path.as_str()),
            (
                "GET",
                "/apis/tinkerbell.org/v1alpha1/namespaces/ns/workflows/w1"
            )
        );
        let put = mock
            .answer(|seen| json_response(200, &served(seen.body.clone(), "9")))
            .await;
        assert_eq!(put.method, "PUT");
        assert_eq!(put.body["metadata"]["resourceVersion"], "8");
    };
    let (res, ()) = tokio::join!(store.update(w), server);
    assert_eq!(res.unwrap().resource_version(), Some("9"));
    mock.assert_idle().await;
}

#[tokio::test]
async fn update_status_puts_the_status_subresource() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let mut w = obj(workflow("ns", "w1"))
        .with_status_json(json!({"state": "STATE_RUNNING", "agentID": "agent-1"}))
        .unwrap();
    w.meta_mut().resource_version = Some("6".into());

    let (res, seen) = tokio::join!(
        store.update_status(w),
        mock.answer(|seen| json_response(200, &served(seen.body.clone(), "7")))
    );
    assert_eq!(seen.method, "PUT");
    assert_eq!(
        seen.target,
        "/apis/tinkerbell.org/v1alpha1/namespaces/ns/workflows/w1/status?"
    );
    assert_eq!(seen.body["metadata"]["resourceVersion"], "6");
    assert_eq!(seen.body["status"]["state"], "STATE_RUNNING");
    let res = res.unwrap();
    assert_eq!(res.resource_version(), Some("7"));
    assert_eq!(res.status_json()["agentID"], "agent-1");
    mock.assert_idle().await;
}

#[tokio::test]
async fn delete_machine_with_precondition() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let machine = json!({
        "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
        "metadata": {"name": "m1", "namespace": "ns"},
        "spec": {"connection": {"host": "10.1.1.1", "insecureTLS": true}}
    });
    let path = "/apis/bmc.tinkerbell.org/v1alpha1/namespaces/ns/machines/m1";
    let success = || {
        json_response(
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                   "details": {"name": "m1", "group": "bmc.tinkerbell.org", "kind": "machines"}}),
        )
    };

    // The object is read, then deleted on the caller's version. An API server answers a
    // custom resource's delete with a Status: the last state returned is the one read.
    let (res, (get, del)) =
        tokio::join!(store.delete(Kind::Machine, "ns", "m1", Some("3")), async {
            let get = mock
                .answer(|_| json_response(200, &served(machine.clone(), "3")))
                .await;
            let del = mock.answer(|_| success()).await;
            (get, del)
        });
    assert_eq!((get.method.as_str(), get.path.as_str()), ("GET", path));
    assert_eq!((del.method.as_str(), del.path.as_str()), ("DELETE", path));
    assert_eq!(del.body["preconditions"], json!({"resourceVersion": "3"}));
    let gone = res.unwrap();
    assert_eq!(gone.kind(), Kind::Machine);
    assert_eq!(gone.name(), "m1");
    assert_eq!(gone.resource_version(), Some("3"));
    assert_eq!(gone.to_json()["spec"]["connection"]["host"], "10.1.1.1");

    // A failed precondition names the current version; it becomes a Conflict carrying both.
    let (res, _) = tokio::join!(store.delete(Kind::Machine, "ns", "m1", Some("3")), async {
        mock.answer(|_| json_response(200, &served(machine.clone(), "6")))
            .await;
        mock.answer(|_| status_resp(
                409,
                "Conflict",
                "Operation cannot be fulfilled on machines.bmc.tinkerbell.org \"m1\": Precondition failed: UID in precondition: uid-m1, the ResourceVersion in the precondition (3) does not match the ResourceVersion in record (6). The object might have been modified",
                json!({"name": "m1", "group": "bmc.tinkerbell.org", "kind": "machines"})
            ))
            .await
    });
    match res {
        Err(StoreError::Conflict { current, given, .. }) => {
            assert_eq!((current.as_str(), given.as_str()), ("6", "3"));
        }
        other => panic!("want Conflict, got {other:?}"),
    }

    // Without a resourceVersion: conditional on the version read; a write in between makes it
    // read again and retry. A server that returns the object gets that object back.
    let (res, (first, second)) = tokio::join!(
        store.delete(Kind::Machine, "ns", "m1", None),
        async {
            mock.answer(|_| json_response(200, &served(machine.clone(), "7")))
                .await;
            let first = mock.answer(|_| status_resp(
                409,
                "Conflict",
                "Precondition failed: the ResourceVersion in the precondition (7) does not match the ResourceVersion in record (8).",
                json!({"name": "m1", "group": "bmc.tinkerbell.org", "kind": "machines"})
            ))
            .await;
            mock.answer(|_| json_response(200, &served(machine.clone(), "8")))
                .await;
            let second = mock
                .answer(|_| json_response(200, &served(machine.clone(), "8")))
                .await;
            (first, second)
        }
    );
    assert_eq!(first.body["preconditions"], json!({"resourceVersion": "7"}));
    assert_eq!(
        second.body["preconditions"],
        json!({"resourceVersion": "8"})
    );
    assert_eq!(res.unwrap().resource_version(), Some("8"));

    // Missing: NotFound from the read, nothing deleted.
    let (res, _) = tokio::join!(
        store.delete(Kind::Machine, "ns", "m1", None),
        mock.answer(|_| status_resp(
            404,
            "NotFound",
            "machines \"m1\" not found",
            json!({"name": "m1"})
        ))
    );
    assert!(matches!(res, Err(StoreError::NotFound(_))), "{res:?}");
    mock.assert_idle().await;
}

#[tokio::test]
async fn get_secret_uses_the_core_api() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let (res, seen) = tokio::join!(
        store.get(Kind::Secret, "ns", "s1"),
        mock.answer(|_| json_response(200, &json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s1", "namespace": "ns", "resourceVersion": "12", "uid": "u-s1"},
            "data": {"username": "YWRtaW4=", "password": "c2VjcmV0"}
        })))
    );
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/api/v1/namespaces/ns/secrets/s1");
    let s = res.unwrap();
    let Object::Secret(secret) = &s else {
        panic!("want a Secret, got {s:?}")
    };
    assert_eq!(secret.data.as_ref().unwrap()["username"].0, b"admin");
    mock.assert_idle().await;
}

#[tokio::test]
async fn list_returns_items_and_resource_version() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let items = vec![
        served(template("ns", "t2", "b"), "40"),
        served(template("ns", "t1", "a"), "41"),
    ];
    let (res, seen) = tokio::join!(
        store.list(Kind::Template, Some("ns")),
        mock.answer(|_| json_response(200, &list_json(&items, "42")))
    );
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.target,
        "/apis/tinkerbell.org/v1alpha1/namespaces/ns/templates?"
    );
    let list = res.unwrap();
    assert_eq!(list.resource_version, "42");
    let names: Vec<_> = list.items.iter().map(Object::name).collect();
    assert_eq!(names, ["t1", "t2"], "ordered by namespace then name");

    // No namespace: the store's scope.
    let (res, seen) = tokio::join!(
        store.list(Kind::Template, None),
        mock.answer(|_| json_response(200, &list_json(&[], "43")))
    );
    assert_eq!(
        seen.target,
        "/apis/tinkerbell.org/v1alpha1/namespaces/eksa-system/templates?"
    );
    assert_eq!(res.unwrap().resource_version, "43");
    mock.assert_idle().await;
}

#[tokio::test]
async fn list_in_an_all_namespaces_store() {
    let (store, mut mock) = mock_store("");
    mock.serve_index(vec![], vec![]);
    let (res, seen) = tokio::join!(
        store.list(Kind::Job, None),
        mock.answer(|_| json_response(200, &list_json(&[], "3")))
    );
    assert_eq!(seen.target, "/apis/bmc.tinkerbell.org/v1alpha1/jobs?");
    assert_eq!(res.unwrap().resource_version, "3");
    mock.assert_idle().await;
}

#[tokio::test]
async fn watch_from_a_resource_version() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let w1 = workflow("ns", "w1");
    let events = vec![
        json!({"type": "ADDED", "object": served(w1.clone(), "8")}),
        json!({"type": "MODIFIED", "object": served(w1.clone(), "9")}),
        json!({"type": "BOOKMARK", "object": {"apiVersion": "tinkerbell.org/v1alpha1", "kind": "Workflow", "metadata": {"resourceVersion": "10"}}}),
        json!({"type": "DELETED", "object": served(w1.clone(), "11")}),
    ];
    let (stream, seen) = tokio::join!(
        store.watch(Kind::Workflow, Some("ns"), Some("7")),
        mock.answer(|_| events_resp(&events))
    );
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.path,
        "/apis/tinkerbell.org/v1alpha1/namespaces/ns/workflows"
    );
    assert_eq!(
        seen.query,
        "&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=7"
    );
    let mut stream = stream.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let ev = next_event(&mut stream).await.expect("open").expect("event");
        got.push((
            ev.type_str(),
            ev.object().resource_version().unwrap().to_string(),
        ));
    }
    assert_eq!(
        got,
        [
            ("ADDED", "8".to_string()),
            ("MODIFIED", "9".to_string()),
            ("DELETED", "11".to_string())
        ]
    );

    // The server ended the watch: it is resumed from the last version seen, and a 410 there
    // ends the stream with Expired.
    let seen = mock
        .answer(|_| {
            events_resp(&[json!({"type": "ERROR", "object": status_json(
                410, "Expired", "too old resource version: 11 (20)", Value::Null)})])
        })
        .await;
    assert_eq!(
        seen.query,
        "&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=11"
    );
    match next_event(&mut stream).await {
        Some(Err(StoreError::Expired {
            kind,
            resource_version,
        })) => {
            assert_eq!((kind, resource_version.as_str()), (Kind::Workflow, "11"));
        }
        other => panic!("want Expired, got {other:?}"),
    }
    assert!(
        next_event(&mut stream).await.is_none(),
        "stream ends after Expired"
    );
    mock.assert_idle().await;
}

#[tokio::test]
async fn watch_without_resource_version_lists_first() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let server = async {
        let list = mock
            .answer(|_| json_response(200, &list_json(&[served(workflow("ns", "w1"), "15")], "20")))
            .await;
        assert_eq!(
            list.target,
            "/apis/tinkerbell.org/v1alpha1/namespaces/ns/workflows?"
        );
        let watch = mock
            .answer(|_| {
                events_resp(&[
                    json!({"type": "MODIFIED", "object": served(workflow("ns", "w1"), "21")}),
                ])
            })
            .await;
        assert_eq!(
            watch.query,
            "&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=20"
        );
    };
    let (stream, ()) = tokio::join!(store.watch(Kind::Workflow, Some("ns"), None), server);
    let mut stream = stream.unwrap();
    let first = next_event(&mut stream).await.unwrap().unwrap();
    assert!(
        matches!(&first, WatchEvent::Added(o) if o.resource_version() == Some("15")),
        "{first:?}"
    );
    let second = next_event(&mut stream).await.unwrap().unwrap();
    assert!(
        matches!(&second, WatchEvent::Modified(o) if o.resource_version() == Some("21")),
        "{second:?}"
    );
    // It resumes from 21; a watch that fails outright ends the stream with the error.
    let seen = mock
        .answer(|_| {
            status_resp(
                403,
                "Forbidden",
                "workflows.tinkerbell.org is forbidden",
                Value::Null,
            )
        })
        .await;
    assert!(seen.query.ends_with("resourceVersion=21"), "{}", seen.query);
    match next_event(&mut stream).await {
        Some(Err(StoreError::Kube(kube::Error::Api(s)))) => assert_eq!(s.code, 403),
        other => panic!("want the 403, got {other:?}"),
    }
    assert!(next_event(&mut stream).await.is_none());
}

/// Take the index task's two pending requests (Hardware and Workflow, in either order).
async fn index_pair(mock: &mut Mock) -> [(Seen, SendResponse<Resp>); 2] {
    let a = mock.next_index().await;
    let b = mock.next_index().await;
    if a.0.path.ends_with("/hardware") {
        [a, b]
    } else {
        [b, a]
    }
}

#[tokio::test]
async fn lookups_follow_the_index_watch() {
    let (store, mut mock) = mock_store("eksa-system");
    let ns = "eksa-system";

    // A lookup made before the first list waits for it.
    let early = {
        let store = store.clone();
        tokio::spawn(async move { store.hardware_by_mac("AA:BB:CC:00:00:01").await })
    };

    let [(hw_list, hw_tx), (wf_list, wf_tx)] = index_pair(&mut mock).await;
    assert_eq!(
        hw_list.target,
        format!("/apis/tinkerbell.org/v1alpha1/namespaces/{ns}/hardware?")
    );
    assert_eq!(
        wf_list.target,
        format!("/apis/tinkerbell.org/v1alpha1/namespaces/{ns}/workflows?")
    );
    let n1 = hardware(ns, "n1", "aa:bb:cc:00:00:01", "10.0.0.1", "agent-1", "i-1");
    let n2 = hardware(ns, "n2", "aa:bb:cc:00:00:02", "10.0.0.2", "agent-2", "i-2");
    hw_tx.send_response(json_response(
        200,
        &list_json(&[served(n1.clone(), "8"), served(n2.clone(), "9")], "10"),
    ));
    let mut w1 = served(workflow(ns, "w1"), "11");
    w1["status"] = json!({"agentID": "agent-1", "state": "STATE_PENDING"});
    wf_tx.send_response(json_response(200, &list_json(&[w1], "11")));

    let found = tokio::time::timeout(STEP, early)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(found.unwrap().metadata.name.as_deref(), Some("n1"));
    let name = |h: Option<std::sync::Arc<tinkerbell_core::model::Hardware>>| {
        h.and_then(|h| h.metadata.name.clone())
    };
    assert_eq!(
        name(store.hardware_by_ip("10.0.0.2").await.unwrap()).as_deref(),
        Some("n2")
    );
    assert_eq!(
        name(store.hardware_by_agent_id("agent-1").await.unwrap()).as_deref(),
        Some("n1")
    );
    assert_eq!(
        name(store.hardware_by_instance_id("i-2").await.unwrap()).as_deref(),
        Some("n2")
    );
    assert_eq!(
        name(store.hardware_by_mac("aa:bb:cc:00:00:99").await.unwrap()),
        None
    );
    let wfs = store.workflows_by_agent_id("agent-1").await.unwrap();
    assert_eq!(wfs.len(), 1);
    assert_eq!(wfs[0].metadata.name.as_deref(), Some("w1"));

    // Then both kinds are watched from their lists' versions.
    let [(hw_watch, hw_tx), (wf_watch, _wf_held)] = index_pair(&mut mock).await;
    assert_eq!(
        hw_watch.path,
        format!("/apis/tinkerbell.org/v1alpha1/namespaces/{ns}/hardware")
    );
    assert_eq!(
        hw_watch.query,
        "&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=10"
    );
    assert_eq!(
        wf_watch.query,
        "&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=11"
    );

    // n1's MAC changes, n2 is deleted.
    let n1_moved = hardware(ns, "n1", "aa:bb:cc:00:00:09", "10.0.0.1", "agent-1", "i-1");
    hw_tx.send_response(events_resp(&[
        json!({"type": "MODIFIED", "object": served(n1_moved.clone(), "12")}),
        json!({"type": "DELETED", "object": served(n2.clone(), "13")}),
        json!({"type": "BOOKMARK", "object": {"apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware", "metadata": {"resourceVersion": "14"}}}),
    ]));
    // The watch body ended, so the task re-watches from the bookmark: proof that it has
    // applied every event above.
    let (rewatch, rewatch_tx) = mock.next_index().await;
    assert_eq!(
        rewatch.path,
        format!("/apis/tinkerbell.org/v1alpha1/namespaces/{ns}/hardware")
    );
    assert_eq!(
        rewatch.query,
        "&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=14"
    );

    assert_eq!(
        name(store.hardware_by_mac("aa:bb:cc:00:00:01").await.unwrap()),
        None
    );
    assert_eq!(
        name(store.hardware_by_mac("AA:BB:CC:00:00:09").await.unwrap()).as_deref(),
        Some("n1")
    );
    assert_eq!(name(store.hardware_by_ip("10.0.0.2").await.unwrap()), None);
    assert_eq!(
        name(store.hardware_by_agent_id("agent-2").await.unwrap()),
        None
    );

    // Another Hardware claiming n1's MAC is refused before any request.
    let dup = obj(hardware(
        ns,
        "n3",
        "aa:bb:cc:00:00:09",
        "10.0.0.3",
        "agent-3",
        "i-3",
    ));
    match store.create(dup).await {
        Err(StoreError::Duplicate {
            field,
            value,
            owner,
            ..
        }) => {
            assert_eq!(field, "spec.interfaces[0].dhcp.mac");
            assert_eq!(value, "aa:bb:cc:00:00:09");
            assert_eq!(owner, "eksa-system/n1");
        }
        other => panic!("want Duplicate, got {other:?}"),
    }
    mock.assert_idle().await;

    // Dropping the last store clone stops the index task: ending its watch no longer makes it
    // watch again.
    drop(store);
    tokio::task::yield_now().await;
    rewatch_tx.send_response(events_resp(&[
        json!({"type": "MODIFIED", "object": served(n1_moved, "15")}),
    ]));
    let rx = mock.index.as_mut().unwrap();
    match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        // Nothing more, or the mock shut down because nothing holds the client any more.
        Err(_) | Ok(None) => {}
        Ok(Some((req, _))) => panic!(
            "index task still running after the store was dropped: {} {}",
            req.method(),
            req.uri()
        ),
    }
}

#[tokio::test]
async fn lookups_fail_clearly_when_the_index_cannot_load() {
    let (store, mut mock) = mock_store("eksa-system");
    let store = store.with_sync_timeout(Duration::from_millis(200));
    mock.serve_index_with(|_| {
        Some(status_resp(
            403,
            "Forbidden",
            "hardware.tinkerbell.org is forbidden: User \"system:serviceaccount:x:y\" cannot list resource \"hardware\"",
            Value::Null,
        ))
    });
    let err = store
        .hardware_by_mac("aa:bb:cc:00:00:01")
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 503);
    let msg = err.to_string();
    assert!(msg.contains("has not loaded Hardware"), "{msg}");
    assert!(msg.contains("forbidden"), "{msg}");
}

#[tokio::test]
async fn apply_all_dry_run_failure_writes_nothing() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let objs = vec![
        obj(template("ns", "t1", "new")),
        obj(template("ns", "t2", "changed")),
    ];

    let server = async {
        let get1 = mock
            .answer(|_| {
                status_resp(
                    404,
                    "NotFound",
                    "templates.tinkerbell.org \"t1\" not found",
                    Value::Null,
                )
            })
            .await;
        assert_eq!(
            (get1.method.as_str(), get1.target.as_str()),
            (
                "GET",
                "/apis/tinkerbell.org/v1alpha1/namespaces/ns/templates/t1"
            )
        );
        let dry_create = mock
            .answer(|seen| json_response(201, &served(seen.body.clone(), "1")))
            .await;
        assert_eq!(dry_create.method, "POST");
        assert_eq!(
            dry_create.target,
            "/apis/tinkerbell.org/v1alpha1/namespaces/ns/templates?&dryRun=All"
        );
        assert_eq!(dry_create.body["metadata"]["name"], "t1");
        let get2 = mock
            .answer(|_| json_response(200, &served(template("ns", "t2", "old"), "3")))
            .await;
        assert_eq!(
            get2.path,
            "/apis/tinkerbell.org/v1alpha1/namespaces/ns/templates/t2"
        );
        let dry_replace = mock
            .answer(|_| {
                status_resp(
                    422,
                    "Invalid",
                    "Template.tinkerbell.org \"t2\" is invalid: spec.data: Invalid value: \"changed\": not a template",
                    json!({"name": "t2", "group": "tinkerbell.org", "kind": "Template",
                           "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: \"changed\": not a template", "field": "spec.data"}]}),
                )
            })
            .await;
        assert_eq!(dry_replace.method, "PUT");
        assert_eq!(
            dry_replace.target,
            "/apis/tinkerbell.org/v1alpha1/namespaces/ns/templates/t2?&dryRun=All"
        );
        assert_eq!(dry_replace.body["metadata"]["resourceVersion"], "3");
    };
    let (res, ()) = tokio::join!(store.apply_all(objs), server);
    match res {
        Err(StoreError::Invalid {
            key,
            field,
            message,
        }) => {
            assert_eq!(key.name, "t2");
            assert_eq!(field, "spec.data");
            assert!(message.contains("not a template"), "{message}");
        }
        other => panic!("want Invalid, got {other:?}"),
    }
    // Nothing was written for real.
    mock.assert_idle().await;
}

#[tokio::test]
async fn apply_all_creates_sets_status_and_skips_unchanged() {
    let (store, mut mock) = mock_store("eksa-system");
    mock.serve_index(vec![], vec![]);
    let hw = obj(hardware(
        "ns",
        "h1",
        "aa:bb:cc:00:00:01",
        "10.0.0.1",
        "a1",
        "i1",
    ))
    .with_status_json(json!({"state": "Ready"}))
    .unwrap();
    let mut same = template("ns", "t2", "same");
    same["metadata"]["labels"] = json!({"team": "x"});
    let objs = vec![hw, obj(same.clone())];

    let server = async {
        // Phase 1.
        let s = mock
            .answer(|_| status_resp(404, "NotFound", "not found", Value::Null))
            .await;
        assert_eq!(
            s.target,
            "/apis/tinkerbell.org/v1alpha1/namespaces/ns/hardware/h1"
        );
        let s = mock
            .answer(|seen| json_response(201, &served(seen.body.clone(), "1")))
            .await;
        assert_eq!(
            s.target,
            "/apis/tinkerbell.org/v1alpha1/namespaces/ns/hardware?&dryRun=All"
        );
        let s = mock
            .answer(|_| json_response(200, &served(same.clone(), "4")))
            .await;
        assert_eq!(
            s.target,
            "/apis/tinkerbell.org/v1alpha1/namespaces/ns/templates/t2"
        );
        // Phase 2: the unchanged template is not written.
        let s = mock
            .answer(|seen| {
                let mut v = served(seen.body.clone(), "5");
                v.as_object_mut().unwrap().remove("status");
                json_response(201, &v)
            })
            .await;
        assert_eq!(
            s.target,
            "/apis/tinkerbell.org/v1alpha1/namespaces/ns/hardware?"
        );
        let s = mock
            .answer(|seen| json_response(200, &served(seen.body.clone(), "6")))
            .await;
        assert_eq!(s.method, "PUT");
        assert_eq!(
            s.target,
            "/apis/tinkerbell.org/v1alpha1/namespaces/ns/hardware/h1/status?"
        );
        assert_eq!(s.body["metadata"]["resourceVersion"], "5");
        assert_eq!(s.body["status"], json!({"state": "Ready"}));
    };
    let (res, ()) = tokio::join!(store.apply_all(objs), server);
    let res = res.unwrap();
    assert_eq!(res[0].1, Applied::Created);
    assert_eq!(res[0].0.resource_version(), Some("6"));
    assert_eq!(res[1].1, Applied::Unchanged);
    assert_eq!(res[1].0.resource_version(), Some("4"));
    mock.assert_idle().await;
}
