//! A service's start-up check against the real kube-apiserver (`TINKERBELL_TEST_KUBECONFIG`):
//! each way a cluster can be unusable is reported with its cause, not as a stack of retries.

use std::path::Path;

use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::{Kind, StoreError};

async fn preflight(kubeconfig: &Path, ns: &str, kinds: &[Kind]) -> Result<(), StoreError> {
    KubeStore::from_kubeconfig(Some(kubeconfig), ns)
        .await?
        .preflight(kinds)
        .await
}

fn cause(res: Result<(), StoreError>) -> String {
    match res {
        Err(e @ StoreError::KubeAccess { .. }) => e.to_string(),
        other => panic!("expected KubeAccess, got {other:?}"),
    }
}

/// The admin kubeconfig with its server or user replaced.
fn edited(
    from: &Path,
    dir: &Path,
    name: &str,
    edit: impl Fn(&str) -> String,
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(from).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, edit(&text)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_unusable_cluster_names_its_cause() {
    let Some(env) = tinkerbell_core::testing::test_kube("preflight").await else {
        return;
    };
    let all = Kind::ALL;
    // Usable: every kind listable in the namespace, and in every namespace.
    preflight(&env.kubeconfig, &env.namespace, &all)
        .await
        .unwrap();
    preflight(&env.kubeconfig, "", &all).await.unwrap();

    // Wrong namespace.
    let msg = cause(preflight(&env.kubeconfig, "no-such-namespace", &[Kind::Hardware]).await);
    assert!(
        msg.contains("\"no-such-namespace\"") && msg.contains("does not exist"),
        "{msg}"
    );

    // RBAC: a user without bindings; the server's message names the user and the resource.
    let nobody = env
        .nobody_kubeconfig()
        .expect("kube.sh writes kubeconfig-nobody");
    let msg = cause(preflight(&nobody, &env.namespace, &[Kind::Hardware]).await);
    assert!(msg.contains("RBAC forbids it"), "{msg}");
    assert!(
        msg.contains("\"nobody\"") && msg.contains("hardware"),
        "{msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    // Credentials the server refuses (an expired or revoked token looks the same to it).
    let bad_token = edited(&env.kubeconfig, dir.path(), "bad-token", |t| {
        let mut out = String::new();
        let mut skip = false;
        for line in t.lines() {
            if line.trim_start().starts_with("client-certificate-data:")
                || line.trim_start().starts_with("client-key-data:")
            {
                if !skip {
                    out.push_str("    token: not-a-valid-token\n");
                    skip = true;
                }
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    });
    let msg = cause(preflight(&bad_token, &env.namespace, &[Kind::Hardware]).await);
    assert!(msg.contains("refused the credentials"), "{msg}");

    // Unreachable: nothing listens on the port.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let unreachable = edited(&env.kubeconfig, dir.path(), "unreachable", |t| {
        t.lines()
            .map(|l| {
                if l.trim_start().starts_with("server:") {
                    format!("    server: https://127.0.0.1:{port}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let msg = cause(preflight(&unreachable, &env.namespace, &[Kind::Hardware]).await);
    assert!(
        msg.contains(&format!("cannot reach https://127.0.0.1:{port}")),
        "{msg}"
    );
}

/// A control plane of its own, without the Tinkerbell CRDs (the shared one has them installed):
/// `tests/kube/kube.sh up` in a temporary directory, `down` on drop.
struct BareCluster {
    dir: tempfile::TempDir,
}

impl BareCluster {
    fn up() -> BareCluster {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kube/kube.sh");
        let out = std::process::Command::new(&script)
            .arg("up")
            .arg(dir.path().join("cp"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kube.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        BareCluster { dir }
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("cp/kubeconfig")
    }
}

impl Drop for BareCluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kube/kube.sh");
        let _ = std::process::Command::new(script)
            .arg("down")
            .arg(self.dir.path().join("cp"))
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_crds_is_named_as_such() {
    // Only where the shared control plane runs (the same tools start this one).
    if tinkerbell_core::testing::test_kube("preflight-bare")
        .await
        .is_none()
    {
        return;
    }
    let bare = BareCluster::up();
    match preflight(&bare.kubeconfig(), "default", &Kind::ALL).await {
        Err(StoreError::CrdsMissing { missing }) => {
            assert_eq!(missing.len(), 7, "{missing:?}");
            assert!(
                missing.contains(&"hardware.tinkerbell.org".to_string()),
                "{missing:?}"
            );
            assert!(
                missing.contains(&"workflowrulesets.tinkerbell.org".to_string()),
                "{missing:?}"
            );
            assert!(
                missing.contains(&"jobs.bmc.tinkerbell.org".to_string()),
                "{missing:?}"
            );
        }
        other => panic!("expected CrdsMissing, got {other:?}"),
    }
    // Secrets are core/v1: always there.
    preflight(&bare.kubeconfig(), "default", &[Kind::Secret])
        .await
        .unwrap();
    let msg = preflight(&bare.kubeconfig(), "default", &[Kind::Hardware])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("lacks the Tinkerbell CRDs: hardware.tinkerbell.org")
            && msg.contains("kubectl apply --server-side -f deploy/crds/"),
        "{msg}"
    );
}
