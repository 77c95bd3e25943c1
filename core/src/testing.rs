//! Test support: the real Kubernetes API server the tests run against, [`Intercepted`], a
//! store wrapper for fault injection and races, and [`have_peers`]/[`sh`] for tests that need
//! root and real tools (network namespaces, dnsmasq, perfdhcp, tmpfs).
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

/// Whether this process runs as root (effective UID 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether the real peers a test needs are here: root and every file of `tools`. When some
/// are missing the test fails under `CI` and is skipped, with a message, elsewhere.
pub fn have_peers(tools: &[&str]) -> bool {
    let mut missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !std::path::Path::new(t).exists())
        .collect();
    if !is_root() {
        missing.insert(0, "root");
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "missing {} (run scripts/install-deps.sh as root)",
        missing.join(", ")
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("skipping: {msg}");
    false
}

/// Run `args[0]` with the rest as arguments; panics, with its output, unless it succeeds.
pub fn sh(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

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

/// A request a fake API server got (from kube's tower-test mock): its parts and its JSON body
/// (Null when empty).
pub async fn request_json(
    req: http::Request<kube::client::Body>,
) -> (http::request::Parts, serde_json::Value) {
    let (parts, body) = req.into_parts();
    let bytes = body.collect_bytes().await.expect("request body");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON request body")
    };
    (parts, body)
}

/// A fake API server's JSON answer (to kube's tower-test mock).
pub fn json_response(code: u16, v: &serde_json::Value) -> http::Response<kube::client::Body> {
    http::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(v).expect("JSON values serialise"),
        ))
        .expect("static response parts")
}

/// A fake API server's failure `Status` answer.
pub fn status_response(
    code: u16,
    reason: &str,
    message: &str,
) -> http::Response<kube::client::Body> {
    json_response(code, &crate::api::status_json(code, reason, message))
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

/// A write on its way to the store [`Intercepted`] wraps.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// `create`.
    Create(&'a crate::store::Object),
    /// `update`.
    Update(&'a crate::store::Object),
    /// `update_status`.
    UpdateStatus(&'a crate::store::Object),
    /// `delete`.
    Delete {
        /// Its kind.
        kind: crate::store::Kind,
        /// Its namespace.
        namespace: &'a str,
        /// Its name.
        name: &'a str,
    },
    /// `apply_all`.
    ApplyAll(&'a [crate::store::Object]),
}

impl Write<'_> {
    /// The kind written (`None` for `apply_all`).
    pub fn kind(&self) -> Option<crate::store::Kind> {
        match self {
            Write::Create(o) | Write::Update(o) | Write::UpdateStatus(o) => Some(o.kind()),
            Write::Delete { kind, .. } => Some(*kind),
            Write::ApplyAll(_) => None,
        }
    }
}

/// What a test does around the writes of an [`Intercepted`] store: fault injection (fail a
/// write), races (another writer gets there first), counting.
#[async_trait::async_trait]
pub trait Interceptor: Send + Sync + 'static {
    /// Before `write` reaches `store` (the wrapped one, for competing writes); an error is
    /// returned instead of the write.
    async fn before(
        &self,
        store: &dyn crate::store::Store,
        write: Write<'_>,
    ) -> Result<(), crate::store::StoreError> {
        let _ = (store, write);
        Ok(())
    }

    /// After `write` succeeded.
    fn after(&self, write: Write<'_>) {
        let _ = write;
    }
}

/// A store that passes everything to `inner`, with `hooks` around every write.
pub struct Intercepted<I> {
    /// The store written to.
    pub inner: std::sync::Arc<dyn crate::store::Store>,
    /// What happens around each write.
    pub hooks: I,
}

impl<I> std::fmt::Debug for Intercepted<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Intercepted")
    }
}

impl<I: Interceptor> Intercepted<I> {
    async fn around<T>(
        &self,
        write: Write<'_>,
        op: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Result<T, crate::store::StoreError> {
        self.hooks.before(self.inner.as_ref(), write).await?;
        let r = op.await?;
        self.hooks.after(write);
        Ok(r)
    }
}

#[async_trait::async_trait]
impl<I: Interceptor> crate::store::Store for Intercepted<I> {
    async fn get(
        &self,
        kind: crate::store::Kind,
        namespace: &str,
        name: &str,
    ) -> Result<crate::store::Object, crate::store::StoreError> {
        self.inner.get(kind, namespace, name).await
    }
    async fn list(
        &self,
        kind: crate::store::Kind,
        namespace: Option<&str>,
    ) -> Result<crate::store::ObjectList, crate::store::StoreError> {
        self.inner.list(kind, namespace).await
    }
    async fn watch(
        &self,
        kind: crate::store::Kind,
        namespace: Option<&str>,
        since: Option<&str>,
    ) -> Result<crate::store::WatchStream, crate::store::StoreError> {
        self.inner.watch(kind, namespace, since).await
    }
    async fn create(
        &self,
        obj: crate::store::Object,
    ) -> Result<crate::store::Object, crate::store::StoreError> {
        self.around(Write::Create(&obj), self.inner.create(obj.clone()))
            .await
    }
    async fn update(
        &self,
        obj: crate::store::Object,
    ) -> Result<crate::store::Object, crate::store::StoreError> {
        self.around(Write::Update(&obj), self.inner.update(obj.clone()))
            .await
    }
    async fn update_status(
        &self,
        obj: crate::store::Object,
    ) -> Result<crate::store::Object, crate::store::StoreError> {
        self.around(
            Write::UpdateStatus(&obj),
            self.inner.update_status(obj.clone()),
        )
        .await
    }
    async fn delete(
        &self,
        kind: crate::store::Kind,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<crate::store::Object, crate::store::StoreError> {
        self.around(
            Write::Delete {
                kind,
                namespace,
                name,
            },
            self.inner.delete(kind, namespace, name, resource_version),
        )
        .await
    }
    async fn apply_all(
        &self,
        objs: Vec<crate::store::Object>,
    ) -> Result<Vec<(crate::store::Object, crate::store::Applied)>, crate::store::StoreError> {
        self.around(Write::ApplyAll(&objs), self.inner.apply_all(objs.clone()))
            .await
    }
}

/// Hooks shared with the test that reads their counters.
#[async_trait::async_trait]
impl<T: Interceptor> Interceptor for std::sync::Arc<T> {
    async fn before(
        &self,
        store: &dyn crate::store::Store,
        write: Write<'_>,
    ) -> Result<(), crate::store::StoreError> {
        self.as_ref().before(store, write).await
    }
    fn after(&self, write: Write<'_>) {
        self.as_ref().after(write);
    }
}
