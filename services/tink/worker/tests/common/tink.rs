//! A real tink server (embedded store, worker tokens) on loopback with image2disk workflows,
//! for the tests that run a worker against it (`e2e_server.rs`, `static_root.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tinkerbell_core::model::{Workflow, WorkflowStatus};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_core::worker_token::WorkerTokenKey;
use tinkerbell_tink_server::{Auth, TinkServer};
use tinkerbell_tink_worker::config::{Config, Protocol, Secret};
use tokio_util::sync::CancellationToken;

pub const AGENT: &str = "52:54:00:00:00:0a";

pub struct Env {
    _dir: tempfile::TempDir,
    store: EmbeddedStore,
    pub key: WorkerTokenKey,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let key = WorkerTokenKey::from_bytes(*b"e2e-worker-token-key").unwrap();
        Env {
            _dir: dir,
            store,
            key,
        }
    }

    pub async fn start(&self, listen: SocketAddr) -> (TinkServer, CancellationToken) {
        let cancel = CancellationToken::new();
        let config = tinkerbell_tink_server::Config {
            listen,
            auth: Auth {
                key: Some(self.key.clone()),
                admin_token: None,
            },
            shutdown_grace: Duration::from_secs(1),
            ..tinkerbell_tink_server::Config::default()
        };
        let s = Arc::new(self.store.clone());
        let server = tinkerbell_tink_server::start(config, s.clone(), s, cancel.clone())
            .await
            .unwrap();
        (server, cancel)
    }

    /// A workflow as the controller leaves it, with image2disk actions (name, env).
    pub async fn workflow(&self, name: &str, actions: &[(&str, serde_json::Value)]) {
        let wf: Workflow = serde_json::from_value(json!({
            "apiVersion": "tinkerbell.org/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"templateRef": "t", "hardwareRef": name, "hardwareMap": {"device_1": AGENT}},
        }))
        .unwrap();
        let created = self
            .store
            .create(Object::Workflow(Arc::new(wf)))
            .await
            .unwrap();
        let tasks = serde_json::from_value(json!([{
            "id": format!("{name}-task"),
            "name": "os-installation",
            "agentID": AGENT,
            "environment": {"COMPRESSED": "true"},
            "actions": actions.iter().enumerate().map(|(i, (a, env))| json!({
                "id": format!("{name}-{i}"),
                "name": a,
                "image": "quay.io/tinkerbell/actions/image2disk:latest",
                "timeout": 120,
                "environment": env,
            })).collect::<Vec<_>>(),
        }]))
        .unwrap();
        let mut status = WorkflowStatus::default();
        tinkerbell_tink_workflow::state::begin(&mut status, tasks, 3600, false).unwrap();
        status.agent_id = Some(AGENT.to_string());
        let mut wf = created.as_workflow().unwrap().as_ref().clone();
        wf.status = Some(status);
        self.store
            .update_status(Object::Workflow(Arc::new(wf)))
            .await
            .unwrap();
    }

    pub async fn status(&self, name: &str) -> WorkflowStatus {
        let o = self
            .store
            .get(Kind::Workflow, "default", name)
            .await
            .unwrap();
        o.as_workflow().unwrap().status.clone().unwrap()
    }

    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&WorkflowStatus) -> bool,
    ) -> WorkflowStatus {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let st = self.status(name).await;
            if f(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn worker_config(addr: SocketAddr, token: String, protocol: Protocol) -> Config {
    let mut c = Config::defaults();
    c.worker_id = AGENT.into();
    c.grpc_authority = addr.to_string();
    c.tls = false;
    c.token = Some(Secret(token));
    c.protocol = protocol;
    c.retry_interval = Duration::from_millis(100);
    c.backoff_max = Duration::from_millis(400);
    c.allow_power = false;
    c
}

pub fn action_states(st: &WorkflowStatus) -> Vec<String> {
    st.tasks.as_ref().unwrap()[0]
        .actions
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.state.clone().unwrap_or_default())
        .collect()
}
