//! `tinkerbell serve --backend kube`: the whole appliance in one process on the Tinkerbell CRDs
//! of the test run's real kube-apiserver (`TINKERBELL_TEST_KUBECONFIG`). The CLI writes through
//! serve's store API into the cluster, serve's tink controller renders the Workflow there, and
//! its metadata service answers from the cluster's Hardware. rufio is off: nothing here has a
//! BMC.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Killed};
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::{Kind, Store};

mod common;

fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("TINKERBELL_BACKEND")
        .output()
        .unwrap()
}

fn http_get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_the_kube_backend() {
    let Some(env) = tinkerbell_core::testing::test_kube("serve-kube").await else {
        return;
    };
    let ns = env.namespace.clone();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data");
    let kubeconfig = env.kubeconfig.display().to_string();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["--backend", "kube", "--backend-kube-config", &kubeconfig])
        .args(["--backend-kube-namespace", &ns, "serve"])
        .args([
            "--store-api-addr",
            "127.0.0.1:0",
            "--bind-address",
            "127.0.0.1",
        ])
        .args(["--http-port", "0", "--tink-server-bind-port", "0"])
        .arg("--enable-rufio-controller=false")
        .env_remove("TINKERBELL_BACKEND")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("api-url").exists() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _serve = Killed(child);

    let docs = dir.parent().unwrap().join("objects.yaml");
    std::fs::write(
        &docs,
        format!(
            r#"apiVersion: tinkerbell.org/v1alpha1
kind: Hardware
metadata: {{name: m1, namespace: {ns}}}
spec:
  metadata: {{instance: {{id: i-serve-kube, hostname: m1}}}}
  interfaces:
    - dhcp: {{mac: "02:00:00:00:05:01", ip: {{address: 127.0.0.1, netmask: 255.0.0.0}}}}
---
apiVersion: tinkerbell.org/v1alpha1
kind: Template
metadata: {{name: one-step, namespace: {ns}}}
spec:
  data: |
    version: "0.1"
    name: one-step
    global_timeout: 600
    tasks:
      - name: install
        worker: "{{{{ .device_1 }}}}"
        actions:
          - name: image
            image: quay.io/tinkerbell/actions/image2disk:latest
            timeout: 60
---
apiVersion: tinkerbell.org/v1alpha1
kind: Workflow
metadata: {{name: wf1, namespace: {ns}}}
spec: {{templateRef: one-step, hardwareRef: m1, hardwareMap: {{device_1: "02:00:00:00:05:01"}}}}
"#
        ),
    )
    .unwrap();
    // Written through serve's store API...
    let out = cli(&dir, &["apply", "-f", &docs.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... they are in the cluster, where serve's tink controller renders the Workflow.
    let cluster = KubeStore::new(env.client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wf = cluster.get(Kind::Workflow, &ns, "wf1").await.unwrap();
        let rendering = wf
            .as_workflow()
            .and_then(|w| w.status.as_ref())
            .and_then(|s| s.template_rendering.clone());
        if rendering.as_deref() == Some("successful") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not rendered in the cluster: {wf:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The metadata service answers the Hardware whose IP asks (127.0.0.1) from the cluster.
    let http = std::fs::read_to_string(dir.join("http-url")).unwrap();
    let (status, body) = http_get(&format!("{}/2009-04-04/meta-data/instance-id", http.trim()));
    assert_eq!((status, body.as_str()), (200, "i-serve-kube"));
    // And the CLI reads the cluster back through serve.
    let out = cli(&dir, &["get", "hw", "-n", &ns]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("m1") && listed.contains("02:00:00:00:05:01"),
        "{listed}"
    );
}
