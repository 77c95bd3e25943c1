//! The server over the other store paths it meets in production: the store API (what the
//! standalone `tink-server` binary uses) and a store where another writer races every status
//! write (the conflict-retry path).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tinkerbell_core::api::server::{ApiConfig, ApiServer};
use tinkerbell_core::model::{Workflow, WorkflowStatus};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::remote::RemoteStore;
use tinkerbell_core::store::{HardwareLookup, Kind, Object, Store, StoreError};
use tinkerbell_core::testing::{Intercepted, Interceptor, Write};
use tinkerbell_tink_proto::current::action_status_request::StateType;
use tinkerbell_tink_proto::current::workflow_service_client::WorkflowServiceClient;
use tinkerbell_tink_proto::current::{ActionRequest, ActionStatusRequest};
use tinkerbell_tink_server::Config;
use tokio_util::sync::CancellationToken;

const AGENT: &str = "52:54:00:00:00:0c";

async fn pending_workflow(store: &EmbeddedStore, name: &str) {
    let wf: Workflow = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"templateRef": "t", "hardwareRef": "h"},
    }))
    .unwrap();
    let created = store.create(Object::Workflow(Arc::new(wf))).await.unwrap();
    let tasks = serde_json::from_value(json!([{
        "id": "t", "name": "task", "agentID": AGENT,
        "actions": [
            {"id": "a1", "name": "one", "image": "i"},
            {"id": "a2", "name": "two", "image": "i"},
        ],
    }]))
    .unwrap();
    let mut status = WorkflowStatus::default();
    tinkerbell_tink_workflow::state::begin(&mut status, tasks, 0, false).unwrap();
    status.agent_id = Some(AGENT.into());
    let mut wf = created.as_workflow().unwrap().as_ref().clone();
    wf.status = Some(status);
    store
        .update_status(Object::Workflow(Arc::new(wf)))
        .await
        .unwrap();
}

/// Serve `store`/`lookup`, run the whole workflow with a current-generation client, and
/// return the final workflow state.
async fn run_workflow(store: Arc<dyn Store>, lookup: Arc<dyn HardwareLookup>) -> String {
    let cancel = CancellationToken::new();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_secs(1),
        ..Config::default()
    };
    let server = tinkerbell_tink_server::start(config, store.clone(), lookup, cancel.clone())
        .await
        .unwrap();
    let mut c = WorkflowServiceClient::connect(format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    for expected in ["one", "two"] {
        let a = c
            .get_action(ActionRequest {
                agent_id: Some(AGENT.into()),
                agent_attributes: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.name.as_deref(), Some(expected));
        for s in [StateType::Running, StateType::Success] {
            c.report_action_status(ActionStatusRequest {
                workflow_id: a.workflow_id.clone(),
                action_id: a.action_id.clone(),
                action_state: Some(s as i32),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    }
    cancel.cancel();
    server.join().await.unwrap();
    let o = store.get(Kind::Workflow, "default", "wf").await.unwrap();
    o.as_workflow()
        .unwrap()
        .status
        .clone()
        .unwrap()
        .state
        .unwrap()
}

#[tokio::test]
async fn over_the_store_api() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedStore::open(dir.path()).unwrap();
    pending_workflow(&embedded, "wf").await;
    let cancel = CancellationToken::new();
    let api = ApiServer::start(
        &ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            shutdown_grace: Duration::from_secs(1),
            tls: None,
            health: Default::default(),
        },
        Arc::new(embedded),
        "api-token",
        cancel.clone(),
    )
    .await
    .unwrap();
    let remote =
        Arc::new(RemoteStore::new(&format!("http://{}", api.local_addr()), "api-token").unwrap());
    assert_eq!(run_workflow(remote.clone(), remote).await, "POST");
    cancel.cancel();
    api.join().await.unwrap();
}

/// Before every other status write of a Workflow, makes a competing write (a condition the
/// controller might add), so the server's write is stale and must be retried on a fresh read.
#[derive(Default)]
struct Racing {
    writes: AtomicUsize,
    raced: AtomicUsize,
}

#[async_trait]
impl Interceptor for Racing {
    async fn before(&self, store: &dyn Store, write: Write<'_>) -> Result<(), StoreError> {
        let Write::UpdateStatus(obj) = write else {
            return Ok(());
        };
        if self.writes.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            let current = store
                .get(Kind::Workflow, obj.namespace(), obj.name())
                .await?;
            let mut wf = current.as_workflow().unwrap().as_ref().clone();
            let status = wf.status.get_or_insert_with(Default::default);
            status.global_timeout = Some(status.global_timeout.unwrap_or(0) + 1);
            store.update_status(Object::Workflow(Arc::new(wf))).await?;
            self.raced.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test]
async fn status_writes_are_retried_on_conflict_without_losing_the_other_write() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedStore::open(dir.path()).unwrap();
    pending_workflow(&embedded, "wf").await;
    let racing = Arc::new(Racing::default());
    let store = Arc::new(Intercepted {
        inner: Arc::new(embedded.clone()),
        hooks: racing.clone(),
    });
    let state = run_workflow(store, Arc::new(embedded.clone())).await;
    assert_eq!(state, "POST");
    let raced = racing.raced.load(Ordering::SeqCst);
    assert!(
        raced >= 3,
        "the race was exercised ({raced} competing writes)"
    );
    let o = embedded.get(Kind::Workflow, "default", "wf").await.unwrap();
    let st = o.as_workflow().unwrap().status.clone().unwrap();
    assert_eq!(
        st.global_timeout,
        Some(i64::try_from(raced).unwrap()),
        "every competing write survived"
    );
}
