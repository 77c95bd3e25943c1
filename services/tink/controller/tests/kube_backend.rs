//! The `tink-controller` binary on `--backend kube` with leader election, against the real
//! kube-apiserver of the test run (`TINKERBELL_TEST_KUBECONFIG`, see tinkerbell_core::testing):
//! it takes the Lease in the backend's namespace, reconciles Workflows of that namespace only
//! (one in another namespace is left alone), and hands the Lease back on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::{Kind, Object, Store};

/// A Template, Hardware and Workflow in `ns`.
async fn objects(store: &KubeStore, ns: &str, mac: &str) {
    let docs = [
        json!({"apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
               "metadata": {"name": "one-step", "namespace": ns},
               "spec": {"data": common::one_step(60)}}),
        json!({"apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
               "metadata": {"name": "m1", "namespace": ns},
               "spec": {"interfaces": [{"dhcp": {"mac": mac}}]}}),
        json!({"apiVersion": "tinkerbell.org/v1alpha1", "kind": "Workflow",
               "metadata": {"name": "wf1", "namespace": ns},
               "spec": {"templateRef": "one-step", "hardwareRef": "m1",
                        "hardwareMap": {"device_1": mac}}}),
    ];
    for d in docs {
        store
            .create(Object::from_typed_json(d).unwrap())
            .await
            .unwrap();
    }
}

async fn rendering(store: &KubeStore, ns: &str) -> Option<String> {
    let wf = store.get(Kind::Workflow, ns, "wf1").await.unwrap();
    wf.as_workflow()?
        .status
        .as_ref()?
        .template_rendering
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_backend_with_leader_election() {
    let Some(env) = tinkerbell_core::testing::test_kube("tink-controller-kube").await else {
        return;
    };
    let Some(other) = tinkerbell_core::testing::test_kube("tink-controller-other").await else {
        return;
    };
    let ns = env.namespace.clone();
    let store = KubeStore::new(env.client.clone(), &ns);
    let other_store = KubeStore::new(other.client.clone(), &other.namespace);
    objects(&store, &ns, "02:00:00:00:01:01").await;
    objects(&other_store, &other.namespace, "02:00:00:00:01:02").await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_tink-controller"))
        .args(["--backend", "kube", "--backend-kube-namespace", &ns])
        .arg("--backend-kube-config")
        .arg(&env.kubeconfig)
        .arg("--tink-controller-enable-leader-election")
        .env("HOSTNAME", "tink-controller-7d9f")
        .env_remove("TINKERBELL_BACKEND")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // It leads (the Lease in the backend's namespace names it) and renders its namespace's
    // Workflow.
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let holder = leases
            .get_opt("tink-controller")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity);
        let rendered = rendering(&store, &ns).await;
        if holder.is_some() && rendered.is_some() {
            assert!(
                holder
                    .as_deref()
                    .unwrap()
                    .starts_with("tink-controller-7d9f_"),
                "{holder:?}"
            );
            assert_eq!(rendered.as_deref(), Some("successful"));
            break;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "no lead and reconcile within 30 s (holder {holder:?}, rendering {rendered:?})\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The Workflow of another namespace is not its business.
    assert_eq!(rendering(&other_store, &other.namespace).await, None);

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
    // Released: no holder, so a standby takes over at its next try.
    let lease = leases.get("tink-controller").await.unwrap();
    assert!(
        lease.spec.and_then(|s| s.holder_identity).is_none(),
        "the Lease is handed back on SIGTERM"
    );
}
