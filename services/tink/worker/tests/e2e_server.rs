//! Server and worker over loopback: the real tink server (embedded store, worker tokens) and
//! the real agent loop running image2disk into files; both API generations; the server
//! restarted while an action runs, and the workflow still completes.

mod common;

use common::tink::*;
use common::*;
use serde_json::json;
use tinkerbell_tink_worker::config::Protocol;
use tokio_util::sync::CancellationToken;

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
