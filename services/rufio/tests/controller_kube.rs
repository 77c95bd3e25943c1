//! The Machine controller on the Kubernetes backend: a mocked API server (kube's
//! `tower-test`) serves the Machine, its Secret and empty Job/Task lists; the BMC is a real
//! `ipmi_sim`. The test asserts the status write the controller sends: a conditional `PUT` of
//! the Machine's `/status` subresource with the power state and the `Contactable` condition.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::IpmiSim;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_rufio::Controllers;
use tinkerbell_rufio::controller::Config;
use tokio_util::sync::CancellationToken;

const NS: &str = "tink";
const BMC: &str = "/apis/bmc.tinkerbell.org/v1alpha1/namespaces/tink";

fn json_resp(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).unwrap()))
        .unwrap()
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": format!("{kind}List"),
           "metadata": {"resourceVersion": "100"}, "items": items})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_status_is_written_to_the_status_subresource() {
    let sim = IpmiSim::start(4);
    sim.ready().await;
    let machine = json!({
        "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
        "metadata": {"name": "m1", "namespace": NS, "resourceVersion": "5", "uid": "u-1"},
        "spec": {"connection": {
            "host": "127.0.0.1", "port": sim.port, "insecureTLS": false,
            "authSecretRef": {"name": "bmc-auth", "namespace": NS},
            "providerOptions": {"preferredOrder": ["ipmitool"], "ipmitool": {"cipherSuite": "3"}}
        }}
    });
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "bmc-auth", "namespace": NS, "resourceVersion": "3"},
        "type": "kubernetes.io/basic-auth",
        // admin / password
        "data": {"username": "YWRtaW4=", "password": "cGFzc3dvcmQ="}
    });

    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let (writes_tx, mut writes) = tokio::sync::mpsc::unbounded_channel::<(String, String, Value)>();
    let spec = machine["spec"].clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, tx)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let path = parts.uri.path().to_string();
            let query = parts.uri.query().unwrap_or("").to_string();
            let method = parts.method.to_string();
            if query.contains("watch=true") {
                held.push(tx); // watches stay open and quiet
                continue;
            }
            let bytes = body.collect_bytes().await.unwrap();
            let resp = match (method.as_str(), path.as_str()) {
                ("GET", p) if p.ends_with("/hardware") || p.ends_with("/workflows") => {
                    json_resp(200, &list("X", vec![]))
                }
                ("GET", p) if p == format!("{BMC}/machines") => {
                    json_resp(200, &list("Machine", vec![machine.clone()]))
                }
                ("GET", p) if p == format!("{BMC}/jobs") || p == format!("{BMC}/tasks") => {
                    json_resp(200, &list("X", vec![]))
                }
                ("GET", p) if p == format!("{BMC}/machines/m1") => json_resp(200, &machine),
                ("GET", "/api/v1/namespaces/tink/secrets/bmc-auth") => json_resp(200, &secret),
                ("PUT", p) if p == format!("{BMC}/machines/m1/status") => {
                    let mut body: Value = serde_json::from_slice(&bytes).unwrap();
                    writes_tx
                        .send((method, path.clone(), body.clone()))
                        .unwrap();
                    body["metadata"]["resourceVersion"] = json!("6");
                    json_resp(200, &body)
                }
                _ => json_resp(
                    404,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "NotFound", "code": 404,
                            "message": format!("{method} {path} not mocked")}),
                ),
            };
            tx.send_response(resp);
        }
    });

    let store = KubeStore::new(client, NS);
    let cancel = CancellationToken::new();
    let controllers = Controllers::start(
        Config {
            namespace: Some(NS.into()),
            ..Config::default()
        },
        Arc::new(store),
        cancel.clone(),
    )
    .unwrap();

    let (method, path, body) = tokio::time::timeout(Duration::from_secs(30), writes.recv())
        .await
        .expect("a status write within 30 s")
        .unwrap();
    assert_eq!(method, "PUT");
    assert_eq!(path, format!("{BMC}/machines/m1/status"));
    // Conditional on the resourceVersion read, and only status changed.
    assert_eq!(body["metadata"]["resourceVersion"], "5", "{body}");
    assert_eq!(body["spec"], spec, "{body}");
    assert_eq!(body["status"]["powerState"], "off", "{body}");
    let cond = &body["status"]["conditions"][0];
    assert_eq!(cond["type"], "Contactable", "{body}");
    assert_eq!(cond["status"], "True", "{body}");
    assert!(cond["lastUpdateTime"].is_string(), "{body}");
    assert!(!body.to_string().contains("password"), "{body}");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), controllers.join())
        .await
        .expect("controllers stop after cancel")
        .unwrap();
    server.abort();
}
