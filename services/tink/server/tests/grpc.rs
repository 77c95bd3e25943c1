//! The real server on 127.0.0.1:0 with the embedded store in a tempdir, driven by clients
//! generated from each proto generation: full workflows, a restart mid-action, and worker
//! authentication.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tinkerbell_core::model::{Workflow, WorkflowStatus};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_core::worker_token::WorkerTokenKey;
use tinkerbell_tink_proto::{current, legacy, logs};
use tinkerbell_tink_server::{Auth, Config, TinkServer};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const A: &str = "52:54:00:00:00:0a";
const B: &str = "52:54:00:00:00:0b";
const ADMIN: &str = "admin-token-for-tests";

struct Env {
    _dir: tempfile::TempDir,
    store: EmbeddedStore,
    key: WorkerTokenKey,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let key = WorkerTokenKey::from_bytes(*b"tests-worker-token-key").unwrap();
        Env {
            _dir: dir,
            store,
            key,
        }
    }

    async fn start(&self, auth: bool) -> (TinkServer, CancellationToken) {
        let cancel = CancellationToken::new();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            auth: Auth {
                key: auth.then(|| self.key.clone()),
                admin_token: Some(ADMIN.into()),
            },
            shutdown_grace: Duration::from_secs(1),
            ..Config::default()
        };
        let s = Arc::new(self.store.clone());
        let server = tinkerbell_tink_server::start(config, s.clone(), s, cancel.clone())
            .await
            .unwrap();
        (server, cancel)
    }

    /// A workflow as the controller leaves it: rendered tasks, every action PENDING, the
    /// workflow PENDING and bound to `agent`.
    async fn workflow(&self, name: &str, agent: &str, actions: &[&str]) {
        let wf: Workflow = serde_json::from_value(json!({
            "apiVersion": "tinkerbell.org/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"templateRef": "t", "hardwareRef": name, "hardwareMap": {"device_1": agent}},
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
            "agentID": agent,
            "environment": {"TASK": "1", "SHARED": "task"},
            "volumes": ["/dev:/dev"],
            "actions": actions.iter().enumerate().map(|(i, a)| json!({
                "id": format!("{name}-{i}"),
                "name": a,
                "image": format!("quay.io/tinkerbell/actions/{a}:latest"),
                "timeout": 600,
                "environment": {"SHARED": "action"},
                // Odd actions use `namespaces`, whose pid wins over the deprecated `pid`.
                "pid": if i % 2 == 0 { "host" } else { "legacy" },
                "namespaces": if i % 2 == 0 { json!(null) } else { json!({"pid": "host", "network": "host"}) },
            })).collect::<Vec<_>>(),
        }]))
        .unwrap();
        let mut status = WorkflowStatus::default();
        tinkerbell_tink_workflow::state::begin(&mut status, tasks, 3600, false).unwrap();
        status.agent_id = Some(agent.to_string());
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
}

type AddToken =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
type Authed = InterceptedService<Channel, AddToken>;

async fn channel(server: &TinkServer, token: Option<String>) -> Authed {
    let ch = Channel::from_shared(format!("http://{}", server.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let f: AddToken = Box::new(move |mut req: tonic::Request<()>| {
        if let Some(t) = &token {
            let v: MetadataValue<_> = format!("Bearer {t}").parse().unwrap();
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    });
    InterceptedService::new(ch, f)
}

fn current_client(ch: Authed) -> current::workflow_service_client::WorkflowServiceClient<Authed> {
    current::workflow_service_client::WorkflowServiceClient::new(ch)
}

fn legacy_client(ch: Authed) -> legacy::workflow_service_client::WorkflowServiceClient<Authed> {
    legacy::workflow_service_client::WorkflowServiceClient::new(ch)
}

fn logs_client(ch: Authed) -> logs::worker_logs_client::WorkerLogsClient<Authed> {
    logs::worker_logs_client::WorkerLogsClient::new(ch)
}

fn get(agent: &str) -> current::ActionRequest {
    current::ActionRequest {
        agent_id: Some(agent.into()),
        agent_attributes: None,
    }
}

fn report(
    a: &current::ActionResponse,
    state: current::action_status_request::StateType,
    msg: &str,
) -> current::ActionStatusRequest {
    current::ActionStatusRequest {
        workflow_id: a.workflow_id.clone(),
        agent_id: a.agent_id.clone(),
        task_id: a.task_id.clone(),
        action_id: a.action_id.clone(),
        action_name: a.name.clone(),
        action_state: Some(state as i32),
        execution_start: None,
        execution_stop: None,
        execution_duration: None,
        message: Some(current::ActionMessage {
            message: Some(msg.into()),
        }),
    }
}

use current::action_status_request::StateType;

#[tokio::test]
async fn current_generation_runs_a_workflow_and_keeps_logs() {
    let env = Env::new();
    env.workflow("wf-a", A, &["stream", "kexec", "reboot"])
        .await;
    let (server, cancel) = env.start(true).await;
    let token = env.key.token_for(A);
    let mut c = current_client(channel(&server, Some(token.clone())).await);
    let mut l = logs_client(channel(&server, Some(token)).await);
    let mut ran = Vec::new();
    loop {
        let a = match c.get_action(get(A)).await {
            Ok(r) => r.into_inner(),
            Err(e) => {
                assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
                break;
            }
        };
        assert_eq!(a.workflow_id.as_deref(), Some("default/wf-a"));
        assert_eq!(a.agent_id.as_deref(), Some(A));
        assert_eq!(a.timeout, Some(600));
        assert_eq!(a.volumes, ["/dev:/dev"]);
        assert_eq!(a.environment, ["SHARED=action", "TASK=1"]);
        assert_eq!(
            a.namespaces.as_ref().and_then(|n| n.pid.as_deref()),
            Some("host")
        );
        assert_eq!(a.pid.as_deref(), Some("host"));
        let odd = a
            .action_id
            .as_deref()
            .and_then(|id| id.rsplit('-').next())
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i % 2 == 1);
        assert_eq!(
            a.namespaces.as_ref().and_then(|n| n.network.as_deref()),
            odd.then_some("host")
        );
        let name = a.name.clone().unwrap();
        // While it runs, the same action is served again (idempotent GetAction).
        c.report_action_status(report(&a, StateType::Running, "started"))
            .await
            .unwrap();
        let again = c.get_action(get(A)).await.unwrap().into_inner();
        assert_eq!(again.action_id, a.action_id);
        let pushed = l
            .push_logs(logs::PushLogsRequest {
                workflow_id: "default/wf-a".into(),
                agent_id: A.into(),
                task_id: a.task_id.clone().unwrap(),
                action_id: a.action_id.clone().unwrap(),
                action_name: name.clone(),
                lines: vec![logs::LogLine {
                    time: None,
                    stream: "stdout".into(),
                    text: format!("hello from {name}"),
                }],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(pushed.accepted, 1);
        c.report_action_status(report(&a, StateType::Success, "done"))
            .await
            .unwrap();
        ran.push(name);
        assert!(ran.len() <= 3, "served more actions than the workflow has");
    }
    assert_eq!(ran, ["stream", "kexec", "reboot"]);
    let st = env.status("wf-a").await;
    assert_eq!(st.state.as_deref(), Some("POST"));
    for a in st.tasks.unwrap()[0].actions.as_ref().unwrap() {
        assert_eq!(a.state.as_deref(), Some("SUCCESS"));
        assert_eq!(a.message.as_deref(), Some("done"));
        let (start, stop) = (
            a.execution_start.clone().unwrap(),
            a.execution_stop.clone().unwrap(),
        );
        assert!(start.0 <= stop.0, "timeline recorded");
        assert!(a.execution_duration.is_some());
    }
    // Logs read back per action, in run order, with the admin token.
    let mut admin = logs_client(channel(&server, Some(ADMIN.into())).await);
    let r = admin
        .read_logs(logs::ReadLogsRequest {
            workflow_id: "default/wf-a".into(),
            action_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<_> = r
        .actions
        .iter()
        .map(|a| (a.action_name.as_str(), a.lines[0].text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("stream", "hello from stream"),
            ("kexec", "hello from kexec"),
            ("reboot", "hello from reboot")
        ]
    );
    cancel.cancel();
    server.join().await.unwrap();
}

#[tokio::test]
async fn legacy_generation_runs_a_workflow() {
    let env = Env::new();
    env.workflow("wf-l", A, &["disk-wipe", "image", "reboot"])
        .await;
    let (server, cancel) = env.start(false).await;
    let mut c = legacy_client(channel(&server, None).await);
    let mut ran = Vec::new();
    loop {
        let mut contexts = c
            .get_workflow_contexts(legacy::WorkflowContextRequest {
                worker_id: A.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let Some(ctx) = contexts.message().await.unwrap() else {
            break;
        };
        assert!(contexts.message().await.unwrap().is_none(), "one workflow");
        assert_eq!(ctx.workflow_id, "default/wf-l");
        assert_eq!(ctx.total_number_of_actions, 3);
        assert_eq!(ctx.current_action_state, legacy::State::Pending as i32);
        let actions = c
            .get_workflow_actions(legacy::WorkflowActionsRequest {
                workflow_id: ctx.workflow_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .action_list;
        assert_eq!(actions.len(), 3);
        let action = &actions[usize::try_from(ctx.current_action_index).unwrap()];
        assert_eq!(action.worker_id, A);
        assert_eq!(action.name, ctx.current_action);
        for (state, msg) in [
            (legacy::State::Running, "Started execution"),
            (legacy::State::Success, "finished execution successfully"),
        ] {
            c.report_action_status(legacy::WorkflowActionStatus {
                workflow_id: ctx.workflow_id.clone(),
                task_name: action.task_name.clone(),
                action_name: action.name.clone(),
                action_status: state as i32,
                seconds: 1,
                message: msg.into(),
                created_at: None,
                worker_id: A.into(),
            })
            .await
            .unwrap();
        }
        ran.push(action.name.clone());
        assert!(ran.len() <= 3);
    }
    assert_eq!(ran, ["disk-wipe", "image", "reboot"]);
    assert_eq!(env.status("wf-l").await.state.as_deref(), Some("POST"));
    // A report for an action that is not the current one is InvalidArgument (upstream).
    let e = c
        .report_action_status(legacy::WorkflowActionStatus {
            workflow_id: "default/wf-l".into(),
            task_name: "os-installation".into(),
            action_name: "nope".into(),
            action_status: legacy::State::Running as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    cancel.cancel();
    server.join().await.unwrap();
}

#[tokio::test]
async fn restart_mid_action_reserves_the_running_action() {
    let env = Env::new();
    env.workflow("wf-r", A, &["one", "two"]).await;
    let token = env.key.token_for(A);
    let (server, cancel) = env.start(true).await;
    let mut c = current_client(channel(&server, Some(token.clone())).await);
    let first = c.get_action(get(A)).await.unwrap().into_inner();
    c.report_action_status(report(&first, StateType::Running, "started"))
        .await
        .unwrap();
    drop(c);
    cancel.cancel();
    server.join().await.unwrap();

    let (server, cancel) = env.start(true).await;
    let mut c = current_client(channel(&server, Some(token)).await);
    let again = c.get_action(get(A)).await.unwrap().into_inner();
    assert_eq!(
        again.action_id, first.action_id,
        "the RUNNING action is served again"
    );
    // A repeated RUNNING report (the worker restarted it) is accepted.
    c.report_action_status(report(&again, StateType::Running, "started"))
        .await
        .unwrap();
    c.report_action_status(report(&again, StateType::Success, "ok"))
        .await
        .unwrap();
    let second = c.get_action(get(A)).await.unwrap().into_inner();
    assert_eq!(second.name.as_deref(), Some("two"));
    c.report_action_status(report(&second, StateType::Running, ""))
        .await
        .unwrap();
    c.report_action_status(report(&second, StateType::Success, ""))
        .await
        .unwrap();
    assert_eq!(env.status("wf-r").await.state.as_deref(), Some("POST"));
    cancel.cancel();
    server.join().await.unwrap();
}

/// Tokens expire, and an address-bound token (issued by boots to a machine without a
/// reservation) works only from the address it was issued to: the server checks the TCP peer.
#[tokio::test]
async fn expired_and_address_bound_tokens() {
    let env = Env::new();
    env.workflow("wf-a", A, &["x"]).await;
    let (server, cancel) = env.start(true).await;
    let far = tinkerbell_core::worker_token::unix_now() + 3600;
    let here = env.key.issue_bound(A, far, "127.0.0.1".parse().unwrap());
    let elsewhere = env.key.issue_bound(A, far, "127.0.0.2".parse().unwrap());
    let expired = env
        .key
        .issue(A, tinkerbell_core::worker_token::unix_now() - 1);

    let mut c = current_client(channel(&server, Some(here)).await);
    c.get_action(get(A))
        .await
        .expect("bound to the caller's address");
    let mut c = current_client(channel(&server, Some(elsewhere)).await);
    let e = c.get_action(get(A)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("bound to 127.0.0.2"), "{e:?}");
    let mut c = current_client(channel(&server, Some(expired)).await);
    let e = c.get_action(get(A)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"), "{e:?}");
    cancel.cancel();
    server.join().await.unwrap();
}

#[tokio::test]
async fn a_worker_token_only_opens_its_own_workflow() {
    let env = Env::new();
    env.workflow("wf-a", A, &["x"]).await;
    env.workflow("wf-b", B, &["y"]).await;
    let (server, cancel) = env.start(true).await;
    let ta = env.key.token_for(A);
    let tb = env.key.token_for(B);

    // No token: refused.
    let mut none = current_client(channel(&server, None).await);
    assert_eq!(
        none.get_action(get(A)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut none_legacy = legacy_client(channel(&server, None).await);
    let e = none_legacy
        .get_workflow_contexts(legacy::WorkflowContextRequest {
            worker_id: A.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // A's token cannot claim to be B.
    let mut a = current_client(channel(&server, Some(ta.clone())).await);
    assert_eq!(
        a.get_action(get(B)).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // B's own token works; A's token cannot report on B's workflow or read its actions/logs.
    let mut b = current_client(channel(&server, Some(tb)).await);
    let bact = b.get_action(get(B)).await.unwrap().into_inner();
    let e = a
        .report_action_status(report(&bact, StateType::Running, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut al = legacy_client(channel(&server, Some(ta.clone())).await);
    let e = al
        .get_workflow_actions(legacy::WorkflowActionsRequest {
            workflow_id: "default/wf-b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = al
        .report_action_status(legacy::WorkflowActionStatus {
            workflow_id: "default/wf-b".into(),
            task_name: "os-installation".into(),
            action_name: "y".into(),
            action_status: legacy::State::Running as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut alogs = logs_client(channel(&server, Some(ta.clone())).await);
    let e = alogs
        .read_logs(logs::ReadLogsRequest {
            workflow_id: "default/wf-b".into(),
            action_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = alogs
        .push_logs(logs::PushLogsRequest {
            workflow_id: "default/wf-b".into(),
            action_name: "y".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // B's workflow is untouched by A's attempts.
    let st = env.status("wf-b").await;
    assert_eq!(
        st.tasks.unwrap()[0].actions.as_ref().unwrap()[0]
            .state
            .as_deref(),
        Some("PENDING")
    );
    // A's own workflow still works.
    assert_eq!(
        a.get_action(get(A))
            .await
            .unwrap()
            .into_inner()
            .name
            .as_deref(),
        Some("x")
    );
    // Errors as upstream: empty agent → InvalidArgument, unknown agent → NotFound.
    assert_eq!(
        a.get_action(get("")).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    cancel.cancel();
    server.join().await.unwrap();

    let (server, cancel) = env.start(false).await;
    let mut open = current_client(channel(&server, None).await);
    let e = open.get_action(get("52:54:00:00:00:99")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    cancel.cancel();
    server.join().await.unwrap();
}

#[tokio::test]
async fn tls_serves_both_generations() {
    let env = Env::new();
    env.workflow("wf-t", A, &["x"]).await;
    let certs = tempfile::tempdir().unwrap();
    let pki = tinkerbell_edge::testing::TestPki::create(certs.path(), &["localhost", "127.0.0.1"]);
    let (cert, key, ca) = (pki.cert, pki.key, pki.ca);
    let cancel = CancellationToken::new();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(tinkerbell_tink_server::TlsFiles {
            cert: cert.clone(),
            key,
        }),
        shutdown_grace: Duration::from_secs(1),
        ..Config::default()
    };
    let s = Arc::new(env.store.clone());
    let server = tinkerbell_tink_server::start(config, s.clone(), s, cancel.clone())
        .await
        .unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(&ca).unwrap(),
        ))
        .domain_name("localhost");
    let ch = Channel::from_shared(format!("https://{}", server.local_addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = current::workflow_service_client::WorkflowServiceClient::new(ch.clone());
    let a = c.get_action(get(A)).await.unwrap().into_inner();
    assert_eq!(a.name.as_deref(), Some("x"));
    let mut l = legacy::workflow_service_client::WorkflowServiceClient::new(ch);
    let list = l
        .get_workflow_actions(legacy::WorkflowActionsRequest {
            workflow_id: "default/wf-t".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.action_list.len(), 1);
    // Plaintext is refused by a TLS server.
    let plain = Channel::from_shared(format!("http://{}", server.local_addr()))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        let mut c = current::workflow_service_client::WorkflowServiceClient::new(plain);
        assert!(c.get_action(get(A)).await.is_err());
    }
    cancel.cancel();
    server.join().await.unwrap();
}
