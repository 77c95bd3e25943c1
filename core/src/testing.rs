//! Test support: the real Kubernetes API server the tests run against.
//!
//! `scripts/test.sh` starts one control plane for the whole run (`tests/kube/kube.sh up`: etcd
//! and kube-apiserver built from the Go module proxy, TLS on loopback) and exports its admin
//! kubeconfig as `TINKERBELL_TEST_KUBECONFIG` (and `TINKERBELL_TEST_KUBECONFIG_NOBODY`, a user
//! without any RBAC binding). Every test gets its own namespace, so tests run in parallel
//! against the one server. Without the variable a test is skipped with a message — except under
//! `CI=true`, where a missing API server is a failure.
//!
//! Built only with the feature `testing` (the crates' dev-dependencies turn it on).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::store::kube::client_from_kubeconfig;
use crate::store::kube_crds::install_crds;

/// The environment variable naming the admin kubeconfig of the test API server.
pub const KUBECONFIG_VAR: &str = "TINKERBELL_TEST_KUBECONFIG";
/// The environment variable naming a kubeconfig whose user has no RBAC binding.
pub const KUBECONFIG_NOBODY_VAR: &str = "TINKERBELL_TEST_KUBECONFIG_NOBODY";

/// A namespace of its own on the test API server.
pub struct TestKube {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// A client from it.
    pub client: Client,
    /// The test's namespace (created, with the CRDs installed).
    pub namespace: String,
}

impl std::fmt::Debug for TestKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKube")
            .field("kubeconfig", &self.kubeconfig)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl TestKube {
    /// The kubeconfig of a user without RBAC bindings, when the control plane provides one.
    pub fn nobody_kubeconfig(&self) -> Option<PathBuf> {
        std::env::var_os(KUBECONFIG_NOBODY_VAR).map(PathBuf::from)
    }
}

/// The test API server, or `None` (after saying SKIP) when there is none and this is not CI.
/// Panics under `CI=true` without one. `test` names the caller; its namespace is derived from
/// it (unique per process and call). The Tinkerbell CRDs are installed once per process.
pub async fn test_kube(test: &str) -> Option<TestKube> {
    let Some(kubeconfig) = std::env::var_os(KUBECONFIG_VAR).map(PathBuf::from) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{test}: {KUBECONFIG_VAR} is not set and CI=true: the real-apiserver tests need \
                 the control plane scripts/test.sh starts (tests/kube/kube.sh up DIR, then export \
                 the variables in DIR/env)"
            );
        }
        eprintln!(
            "SKIP {test}: no test API server ({KUBECONFIG_VAR} unset; scripts/test.sh starts one)"
        );
        return None;
    };
    let client = client_from_kubeconfig(Some(&kubeconfig))
        .await
        .unwrap_or_else(|e| panic!("{test}: client from {}: {e}", kubeconfig.display()));
    static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    CRDS.get_or_init(|| async {
        install_crds(&client, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("installing the CRDs on the test API server: {e}"));
    })
    .await;
    let namespace = unique_namespace(test);
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": namespace, "labels": {"tinkerbell.org/test": "true"}}
    }))
    .unwrap_or_else(|e| unreachable!("a literal Namespace decodes: {e}"));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("{test}: creating namespace {namespace}: {e}"));
    Some(TestKube {
        kubeconfig,
        client,
        namespace,
    })
}

/// `test`, made a DNS-1123 label and suffixed with the process id and a counter.
fn unique_namespace(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut base: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(40);
    let base = base.trim_matches('-');
    format!(
        "{base}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `v` without `null` values, recursively. Kubernetes treats an explicit `null` like an absent
/// field, and `sigs.k8s.io/yaml` output (EKS Anywhere's, `kubectl -o yaml` of a fresh object)
/// has `creationTimestamp: null`: comparisons of documents are "equal up to null-valued keys".
pub fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// One service binary running on the test API server (`--backend kube` in a namespace, with
/// `HOSTNAME` = `name`, which becomes its Lease identity), its output in `<dir>/<name>.log`.
/// Killed (SIGKILL) and reaped on drop, so a failed test leaves no process behind.
#[derive(Debug)]
pub struct Replica {
    /// The name it was started with.
    pub name: String,
    /// The process.
    pub child: std::process::Child,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Replica {
    /// Start `bin` with `--backend kube --backend-kube-config KUBECONFIG
    /// --backend-kube-namespace NS --log-level info` and `extra`.
    pub fn start(
        bin: &str,
        name: &str,
        kubeconfig: &std::path::Path,
        ns: &str,
        extra: &[&str],
        dir: &std::path::Path,
    ) -> Replica {
        use std::process::{Command, Stdio};
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("duplicating {}: {e}", log.display()));
        let child = Command::new(bin)
            .args(["--backend", "kube", "--backend-kube-namespace", ns])
            .arg("--backend-kube-config")
            .arg(kubeconfig)
            .args(["--log-level", "info"])
            .args(extra)
            .env("HOSTNAME", name)
            .env("NO_COLOR", "1")
            .env_remove("TINKERBELL_BACKEND")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        Replica {
            name: name.to_string(),
            child,
            log,
        }
    }
}

impl Replica {
    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every replica's log, headed by its name (for a failing assertion's message).
pub fn replica_logs(replicas: &[Replica]) -> String {
    replicas
        .iter()
        .map(|r| {
            format!(
                "--- {} ---\n{}",
                r.name,
                std::fs::read_to_string(&r.log).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
