//! `tinkerbell workflow create|watch|logs` against a real `tinkerbell serve`, with a gRPC
//! client standing in for the worker (and `import` standing in for the controller, which
//! renders the workflow and finishes POST).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Killed, fixture, ok, run, serve_on_loopback};
use serde_json::{Value, json};
use tinkerbell_core::worker_token::WorkerTokenKey;
use tinkerbell_tink_proto::current::action_status_request::StateType;
use tinkerbell_tink_proto::current::workflow_service_client::WorkflowServiceClient;
use tinkerbell_tink_proto::current::{ActionMessage, ActionRequest, ActionStatusRequest};
use tinkerbell_tink_proto::logs::worker_logs_client::WorkerLogsClient;
use tinkerbell_tink_proto::logs::{LogLine, PushLogsRequest};

mod common;

const CP_MAC: &str = "52:54:00:00:00:10";
const WORKER_MAC: &str = "52:54:00:00:00:20";

fn wait_for(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.trim().is_empty()
        {
            return s.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn serve(dir: &Path) -> (Killed, String) {
    let child = serve_on_loopback(dir)
        .args([
            // This test plays the controller's part by hand, and the fixture's BMCs must not
            // be contacted.
            "--enable-tink-controller=false",
            "--enable-rufio-controller=false",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let child = Killed(child);
    wait_for(&dir.join("api-url"));
    let grpc = wait_for(&dir.join("tink-grpc-url"));
    (child, grpc)
}

fn workflow_json(dir: &Path, name: &str) -> Value {
    serde_json::from_str(&ok(dir, &["get", "wf", name, "-o", "json"])).unwrap()
}

/// Write the status the controller would (or `state` only, when the workflow has one).
fn set_status(dir: &Path, name: &str, status: Value) {
    let mut wf = workflow_json(dir, name);
    wf["status"] = status;
    if let Some(m) = wf["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let file = dir.join(format!("{name}-status.json"));
    std::fs::write(&file, wf.to_string()).unwrap();
    ok(dir, &["import", "-f", &file.display().to_string()]);
}

fn rendered(mac: &str, action: &str) -> Value {
    json!({
        "state": "PENDING",
        "agentID": mac,
        "templateRendering": "successful",
        "tasks": [{"id": "t1", "name": "os-installation", "agentID": mac, "actions": [
            {"id": format!("{action}-id"), "name": action, "image": "quay.io/tinkerbell/actions/x", "timeout": 60, "state": "PENDING"},
        ]}],
    })
}

fn watch(dir: &Path, name: &str) -> Killed {
    Killed(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(["workflow", "watch", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watch"),
    )
}

/// Wait for a watch to exit; its exit code and stdout.
fn finished(mut w: Killed) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = w.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "watch did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    w.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    (status.code(), out)
}

async fn worker(
    grpc: &str,
    token: String,
) -> (
    WorkflowServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            impl tonic::service::Interceptor + Clone,
        >,
    >,
    WorkerLogsClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            impl tonic::service::Interceptor + Clone,
        >,
    >,
) {
    let ch = tonic::transport::Endpoint::from_shared(grpc.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let add = move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", auth.clone());
        Ok(r)
    };
    (
        WorkflowServiceClient::with_interceptor(ch.clone(), add.clone()),
        WorkerLogsClient::with_interceptor(ch, add),
    )
}

fn report(wf: &str, action_id: &str, state: StateType) -> ActionStatusRequest {
    ActionStatusRequest {
        workflow_id: Some(wf.into()),
        action_id: Some(action_id.into()),
        action_state: Some(state as i32),
        message: Some(ActionMessage {
            message: Some(format!("{state:?}")),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_watch_and_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (_app, grpc) = serve(&dir);
    ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    ok(&dir, &["apply", "-f", &fixture("template.yaml")]);

    // create: EKS-A's shape; --netboot adds the boot options.
    let out = ok(
        &dir,
        &[
            "workflow",
            "create",
            "--template",
            "ubuntu",
            "--hardware",
            "cp-0",
        ],
    );
    assert!(out.contains("cp-0 created"), "{out}");
    let wf = workflow_json(&dir, "cp-0");
    assert_eq!(wf["spec"]["templateRef"], "ubuntu");
    assert_eq!(wf["spec"]["hardwareRef"], "cp-0");
    assert_eq!(wf["spec"]["hardwareMap"]["device_1"], CP_MAC);
    assert!(wf["spec"].get("bootOptions").is_none(), "{wf}");
    ok(
        &dir,
        &[
            "workflow",
            "create",
            "--template",
            "ubuntu",
            "--hardware",
            "worker-0",
            "--netboot",
        ],
    );
    let wf = workflow_json(&dir, "worker-0");
    assert_eq!(wf["spec"]["bootOptions"]["toggleAllowNetboot"], true);
    assert_eq!(wf["spec"]["bootOptions"]["bootMode"], "netboot");
    let out = run(
        &dir,
        &[
            "workflow",
            "create",
            "--template",
            "nope",
            "--hardware",
            "cp-0",
            "--name",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));

    // The controller renders both.
    set_status(&dir, "cp-0", rendered(CP_MAC, "stream"));
    set_status(&dir, "worker-0", rendered(WORKER_MAC, "wipe"));
    let watch_ok = watch(&dir, "cp-0");
    let watch_fail = watch(&dir, "worker-0");

    // A worker runs cp-0's action and logs a line.
    let key = WorkerTokenKey::load(&dir).unwrap();
    let (mut c, mut l) = worker(&grpc, key.token_for(CP_MAC)).await;
    let a = c
        .get_action(ActionRequest {
            agent_id: Some(CP_MAC.into()),
            agent_attributes: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.name.as_deref(), Some("stream"));
    c.report_action_status(report("default/cp-0", "stream-id", StateType::Running))
        .await
        .unwrap();
    l.push_logs(PushLogsRequest {
        workflow_id: "default/cp-0".into(),
        action_id: "stream-id".into(),
        action_name: "stream".into(),
        lines: vec![LogLine {
            time: None,
            stream: "stdout".into(),
            text: "wrote 2 GiB".into(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    c.report_action_status(report("default/cp-0", "stream-id", StateType::Success))
        .await
        .unwrap();
    assert_eq!(workflow_json(&dir, "cp-0")["status"]["state"], "POST");
    // The controller finishes POST.
    let mut st = workflow_json(&dir, "cp-0")["status"].clone();
    st["state"] = json!("SUCCESS");
    set_status(&dir, "cp-0", st);
    let (code, out) = finished(watch_ok);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("os-installation/stream") && out.contains("SUCCESS"),
        "{out}"
    );
    // The watch may attach after RUNNING; it always sees the end.
    assert!(out.contains("workflow SUCCESS"), "{out}");

    // worker-0's action fails: the workflow ends FAILED and its watch exits 1.
    let (mut c, _) = worker(&grpc, key.token_for(WORKER_MAC)).await;
    c.get_action(ActionRequest {
        agent_id: Some(WORKER_MAC.into()),
        agent_attributes: None,
    })
    .await
    .unwrap();
    c.report_action_status(report("default/worker-0", "wipe-id", StateType::Running))
        .await
        .unwrap();
    c.report_action_status(report("default/worker-0", "wipe-id", StateType::Failed))
        .await
        .unwrap();
    let (code, out) = finished(watch_fail);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("workflow FAILED"), "{out}");

    // logs: read with the store API token.
    let out = ok(&dir, &["workflow", "logs", "cp-0"]);
    assert!(
        out.contains("==> stream") && out.contains("wrote 2 GiB"),
        "{out}"
    );

    // timeline: the tink server recorded the worker's arrival and each action, per Hardware.
    let out = ok(&dir, &["timeline", "cp-0"]);
    let phases: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(
        phases,
        [
            "worker-connected",
            "action-started",
            "action-finished",
            "workflow-finished"
        ],
        "{out}"
    );
    assert!(out.contains("stream: SUCCESS"), "{out}");
    let out = ok(&dir, &["timeline", "worker-0", "--json"]);
    let events: Value = serde_json::from_str(&out).unwrap();
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["phase"], "workflow-finished", "{out}");
    assert!(last["detail"].as_str().unwrap().contains("FAILED"), "{out}");
    let out = run(&dir, &["timeline", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no Hardware default/ghost"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
