//! The `tink-controller` binary on `--backend kube` with leader election, against a fake
//! Kubernetes API on loopback (no API server can run here): it takes the Lease in the
//! backend's namespace before it reads anything, lists and watches Workflows and bmc Jobs of
//! that namespace only, and hands the Lease back on SIGTERM.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};

type Log = Arc<Mutex<Vec<(String, Value)>>>;

fn json_resp(code: u16, v: &Value) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

/// Leases are stored (one), collections are empty, watches stay open.
async fn fake_api(
    State((log, lease)): State<(Log, Arc<Mutex<Option<Value>>>)>,
    req: Request,
) -> Response {
    let method = req.method().to_string();
    let uri = req.uri().clone();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    log.lock()
        .unwrap()
        .push((format!("{method} {}", uri.path()), body.clone()));
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    if path.contains("/leases") {
        let mut l = lease.lock().unwrap();
        return match method.as_str() {
            "GET" => match &*l {
                Some(v) => json_resp(200, v),
                None => json_resp(
                    404,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
            },
            _ => {
                let mut v = body;
                let rv = l
                    .as_ref()
                    .and_then(|c| {
                        c["metadata"]["resourceVersion"]
                            .as_str()?
                            .parse::<u64>()
                            .ok()
                    })
                    .unwrap_or(0);
                v["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
                *l = Some(v.clone());
                json_resp(if method == "POST" { 201 } else { 200 }, &v)
            }
        };
    }
    if query.contains("watch=true") {
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from_stream(futures::stream::pending::<
                Result<Vec<u8>, std::io::Error>,
            >()))
            .unwrap();
    }
    json_resp(
        200,
        &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_backend_with_leader_election() {
    let log: Log = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(fake_api)
        .with_state((log.clone(), Arc::new(Mutex::new(None))));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: \"http://{addr}\"}}}}]\n\
             users: [{{name: fake, user: {{token: t}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tink-controller"))
        .args(["--backend", "kube", "--backend-kube-namespace", "tink-ns"])
        .arg("--backend-kube-config")
        .arg(&kubeconfig)
        .arg("--tink-controller-enable-leader-election")
        .env("HOSTNAME", "tink-controller-7d9f")
        .env_remove("TINKERBELL_BACKEND")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let lines = || -> Vec<String> { log.lock().unwrap().iter().map(|(l, _)| l.clone()).collect() };
    let wanted = [
        "GET /apis/tinkerbell.org/v1alpha1/namespaces/tink-ns/workflows",
        "GET /apis/bmc.tinkerbell.org/v1alpha1/namespaces/tink-ns/jobs",
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wanted.iter().all(|w| lines().iter().any(|l| l == w)) {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "requests seen: {:#?}\nstderr: {}",
                lines(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = lines();
    let lease_post = seen
        .iter()
        .position(|l| l == "POST /apis/coordination.k8s.io/v1/namespaces/tink-ns/leases")
        .expect("the Lease is created in the backend's namespace");
    let first_read = seen.iter().position(|l| l.contains("/jobs")).unwrap();
    // The store's lookup index lists Hardware and Workflows as soon as it connects; the
    // controller's own reads (bmc Jobs are only read by it) wait for the Lease.
    assert!(lease_post < first_read, "read before leading: {seen:#?}");
    assert!(
        seen.iter()
            .all(|l| !l.contains("/apis/tinkerbell.org/v1alpha1/workflows")),
        "never reads every namespace: {seen:#?}"
    );
    let holder = {
        let log = log.lock().unwrap();
        log[lease_post].1["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(holder.starts_with("tink-controller-7d9f_"), "{holder}");

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "tink-controller did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    let log = log.lock().unwrap();
    let (last, body) = log
        .iter()
        .rev()
        .find(|(l, _)| l.contains("/leases/"))
        .unwrap();
    assert_eq!(
        last,
        "PUT /apis/coordination.k8s.io/v1/namespaces/tink-ns/leases/tink-controller"
    );
    assert!(
        body["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null),
        "released: {body}"
    );
}
