//! What a worker sends cannot grow the server without bound: a report's message is cut in the
//! Workflow's status, and action logs under many worker-chosen action IDs stay within the log
//! caps. The real server on 127.0.0.1:0 with the embedded store, driven by generated clients.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tinkerbell_core::model::{Workflow, WorkflowStatus};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_tink_proto::{current, logs};
use tinkerbell_tink_server::{Config, LogLimits, TinkServer};
use tinkerbell_tink_workflow::state::{MAX_MESSAGE_BYTES, TRUNCATED_MARKER};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use current::action_status_request::StateType;

const AGENT: &str = "52:54:00:00:00:0c";

/// A PENDING workflow `default/wf` with one action, bound to [`AGENT`].
async fn workflow(store: &EmbeddedStore) {
    let wf: Workflow = serde_json::from_value(json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf", "namespace": "default"},
        "spec": {"templateRef": "t", "hardwareRef": "wf", "hardwareMap": {"device_1": AGENT}},
    }))
    .unwrap();
    let created = store.create(Object::Workflow(Arc::new(wf))).await.unwrap();
    let tasks = serde_json::from_value(json!([{
        "id": "task",
        "name": "os-installation",
        "agentID": AGENT,
        "actions": [{"id": "act", "name": "wipe", "image": "wipe:latest", "timeout": 600}],
    }]))
    .unwrap();
    let mut status = WorkflowStatus::default();
    tinkerbell_tink_workflow::state::begin(&mut status, tasks, 3600, false).unwrap();
    let mut wf = created.as_workflow().unwrap().as_ref().clone();
    wf.status = Some(status);
    store
        .update_status(Object::Workflow(Arc::new(wf)))
        .await
        .unwrap();
}

async fn start(store: &EmbeddedStore, log_limits: LogLimits) -> (TinkServer, CancellationToken) {
    let cancel = CancellationToken::new();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        log_limits,
        shutdown_grace: Duration::from_secs(1),
        ..Config::default()
    };
    let s = Arc::new(store.clone());
    let server = tinkerbell_tink_server::start(config, s.clone(), s, cancel.clone())
        .await
        .unwrap();
    (server, cancel)
}

async fn channel(server: &TinkServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn report(state: StateType, msg: &str) -> current::ActionStatusRequest {
    current::ActionStatusRequest {
        workflow_id: Some("default/wf".into()),
        agent_id: Some(AGENT.into()),
        task_id: Some("task".into()),
        action_id: Some("act".into()),
        action_name: Some("wipe".into()),
        action_state: Some(state as i32),
        execution_start: None,
        execution_stop: None,
        execution_duration: None,
        message: Some(current::ActionMessage {
            message: Some(msg.into()),
        }),
    }
}

#[tokio::test]
async fn a_huge_report_message_is_cut_in_the_workflow_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    workflow(&store).await;
    let (server, cancel) = start(&store, LogLimits::default()).await;
    let mut c =
        current::workflow_service_client::WorkflowServiceClient::new(channel(&server).await);
    c.report_action_status(report(StateType::Running, "started"))
        .await
        .unwrap();
    // Close to the largest report the server buffers (1 MiB), in three-byte characters.
    let huge = "€".repeat(300_000);
    c.report_action_status(report(StateType::Failed, &huge))
        .await
        .unwrap();
    let o = store.get(Kind::Workflow, "default", "wf").await.unwrap();
    let status = o.as_workflow().unwrap().status.clone().unwrap();
    assert_eq!(status.state.as_deref(), Some("FAILED"));
    let action = &status.tasks.unwrap()[0].actions.clone().unwrap()[0];
    let m = action.message.clone().unwrap();
    assert!(
        m.len() <= MAX_MESSAGE_BYTES,
        "{} bytes in the status",
        m.len()
    );
    let head = m.strip_suffix(TRUNCATED_MARKER).expect("truncation marker");
    assert!(!head.is_empty() && huge.starts_with(head));
    cancel.cancel();
    server.join().await.unwrap();
}

#[tokio::test]
async fn many_worker_chosen_action_ids_stay_within_the_log_caps() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    workflow(&store).await;
    let limits = LogLimits {
        max_line_bytes: 1024,
        max_action_bytes: 16 << 10,
        max_total_bytes: 64 << 10,
    };
    let (server, cancel) = start(&store, limits).await;
    let mut l = logs::worker_logs_client::WorkerLogsClient::new(channel(&server).await);
    // Action IDs the workflow does not have, long ones, with and without lines.
    for i in 0..400 {
        let id = format!("{i}-{}", "x".repeat(2048));
        let lines = if i % 2 == 0 {
            vec![logs::LogLine {
                time: None,
                stream: "stdout".into(),
                text: "x".into(),
            }]
        } else {
            Vec::new()
        };
        l.push_logs(logs::PushLogsRequest {
            workflow_id: "default/wf".into(),
            agent_id: AGENT.into(),
            task_id: id.clone(),
            action_id: id.clone(),
            action_name: id,
            lines,
        })
        .await
        .unwrap();
    }
    let logs = server.logs();
    assert!(logs.total_bytes() <= limits.max_total_bytes);
    let names: usize = logs
        .read("default/wf", "")
        .iter()
        .map(|a| a.task_id.len() + a.action_id.len() + a.action_name.len())
        .sum();
    assert!(
        names <= limits.max_total_bytes,
        "{names} bytes of action names kept"
    );
    assert!(
        logs.action_count() < 20,
        "{} action logs",
        logs.action_count()
    );
    cancel.cancel();
    server.join().await.unwrap();
}
