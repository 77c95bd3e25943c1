//! Server and worker over loopback: the real tink server (embedded store, worker tokens) and
//! the real agent loop running image2disk into files; both API generations; the server
//! restarted while an action runs, and the workflow still completes.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tinkerbell_core::model::{Workflow, WorkflowStatus};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_core::worker_token::WorkerTokenKey;
use tinkerbell_tink_server::{Auth, TinkServer};
use tinkerbell_tink_worker::config::{Config, Protocol, Secret};
use tokio_util::sync::CancellationToken;

const AGENT: &str = "52:54:00:00:00:0a";

struct Env {
    _dir: tempfile::TempDir,
    store: EmbeddedStore,
    key: WorkerTokenKey,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let key = WorkerTokenKey::from_bytes(*b"e2e-worker-token-key").unwrap();
        Env {
            _dir: dir,
            store,
            key,
        }
    }

    async fn start(&self, listen: SocketAddr) -> (TinkServer, CancellationToken) {
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
    async fn workflow(&self, name: &str, actions: &[(&str, serde_json::Value)]) {
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

    async fn status(&self, name: &str) -> WorkflowStatus {
        let o = self
            .store
            .get(Kind::Workflow, "default", name)
            .await
            .unwrap();
        o.as_workflow().unwrap().status.clone().unwrap()
    }

    async fn wait_for(
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

fn worker_config(addr: SocketAddr, token: String, protocol: Protocol) -> Config {
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

fn action_states(st: &WorkflowStatus) -> Vec<String> {
    st.tasks.as_ref().unwrap()[0]
        .actions
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.state.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn workflow_completes_with_both_generations() {
    let srv = Server::start().await;
    let data = image(16);
    srv.put("img.raw.zst", &zstd::encode_all(&data[..], 1).unwrap());
    let out = tempfile::tempdir().unwrap();
    for (name, protocol) in [
        ("wf-current", Protocol::Current),
        ("wf-legacy", Protocol::Legacy),
    ] {
        let env = Env::new();
        let d1 = out.path().join(format!("{name}-1"));
        let d2 = out.path().join(format!("{name}-2"));
        env.workflow(
            name,
            &[
                (
                    "disk-1",
                    json!({"IMG_URL": srv.url("f", "img.raw.zst"), "DEST_DISK": d1}),
                ),
                (
                    "disk-2",
                    json!({"IMG_URL": srv.url("f", "img.raw.zst"), "DEST_DISK": d2}),
                ),
            ],
        )
        .await;
        let (server, cancel) = env.start("127.0.0.1:0".parse().unwrap()).await;
        let stop = CancellationToken::new();
        let worker = tokio::spawn(tinkerbell_tink_worker::run(
            worker_config(server.local_addr(), env.key.token_for(AGENT), protocol),
            stop.clone(),
        ));
        let st = env
            .wait_for(name, "POST", |s| s.state.as_deref() == Some("POST"))
            .await;
        assert_eq!(action_states(&st), ["SUCCESS", "SUCCESS"], "{name}");
        assert!(
            std::fs::read(&d1).unwrap() == data && std::fs::read(&d2).unwrap() == data,
            "{name}"
        );
        stop.cancel();
        worker.await.unwrap().unwrap();
        cancel.cancel();
        server.join().await.unwrap();
    }
}

#[tokio::test]
async fn failed_action_fails_the_workflow_with_the_url() {
    let srv = Server::start().await;
    let env = Env::new();
    let out = tempfile::tempdir().unwrap();
    let missing = srv.url("f", "missing.raw.gz");
    env.workflow(
        "wf-f",
        &[(
            "disk",
            json!({"IMG_URL": missing, "DEST_DISK": out.path().join("d")}),
        )],
    )
    .await;
    let (server, cancel) = env.start("127.0.0.1:0".parse().unwrap()).await;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(tinkerbell_tink_worker::run(
        worker_config(
            server.local_addr(),
            env.key.token_for(AGENT),
            Protocol::Current,
        ),
        stop.clone(),
    ));
    let st = env
        .wait_for("wf-f", "FAILED", |s| s.state.as_deref() == Some("FAILED"))
        .await;
    let a = &st.tasks.unwrap()[0].actions.clone().unwrap()[0];
    assert!(
        a.message.as_deref().unwrap_or("").contains(&missing),
        "{a:?}"
    );
    assert!(
        !worker.is_finished(),
        "the worker keeps running after a failed action"
    );
    stop.cancel();
    worker.await.unwrap().unwrap();
    cancel.cancel();
    server.join().await.unwrap();
}

#[tokio::test]
async fn server_restarted_mid_action_workflow_completes() {
    let srv = Server::start().await;
    let data = image(24); // /slow/ sends 64 KiB per 100 ms: about 2.4 s
    srv.put("img.raw", &data);
    let env = Env::new();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("d");
    env.workflow("wf-r", &[(
        "disk",
        json!({"IMG_URL": srv.url("slow", "img.raw"), "DEST_DISK": dest, "COMPRESSED": "false"}),
    )])
    .await;
    let (server, cancel) = env.start("127.0.0.1:0".parse().unwrap()).await;
    let addr = server.local_addr();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(tinkerbell_tink_worker::run(
        worker_config(addr, env.key.token_for(AGENT), Protocol::Current),
        stop.clone(),
    ));
    env.wait_for("wf-r", "RUNNING", |s| action_states(s) == ["RUNNING"])
        .await;
    cancel.cancel();
    server.join().await.unwrap();
    let (server, cancel) = env.start(addr).await;
    let st = env
        .wait_for("wf-r", "POST", |s| s.state.as_deref() == Some("POST"))
        .await;
    assert_eq!(action_states(&st), ["SUCCESS"]);
    assert!(std::fs::read(&dest).unwrap() == data);
    stop.cancel();
    worker.await.unwrap().unwrap();
    cancel.cancel();
    server.join().await.unwrap();
}
