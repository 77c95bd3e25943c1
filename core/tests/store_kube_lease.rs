//! Lease-based leader election against kube's tower-test mock: the exact Lease requests
//! (create when absent, renew at the read resourceVersion, release), waiting out another
//! holder by our own clock, and giving leadership up when renewing fails past the deadline.

use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tinkerbell_core::store::kube_lease::{LeaderElector, Leadership, LeaseConfig, LeaseError};
use tinkerbell_core::testing::{json_response, request_json, status_response};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_test::mock::{Handle, SendResponse};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/tinkerbell/leases";
const STEP: Duration = Duration::from_secs(5);

type Mock = Handle<Request<Body>, Response<Body>>;

struct Seen {
    method: String,
    path: String,
    body: Value,
}

async fn next(mock: &mut Mock) -> (Seen, SendResponse<Response<Body>>) {
    let (req, tx) = tokio::time::timeout(STEP, mock.next_request())
        .await
        .expect("a request within the step timeout")
        .expect("client alive");
    let (parts, body) = request_json(req).await;
    (
        Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            body,
        },
        tx,
    )
}

fn lease(rv: &str, holder: Option<&str>, seconds: i64, transitions: i64) -> Value {
    let mut spec = json!({
        "leaseDurationSeconds": seconds,
        "acquireTime": "2026-01-01T00:00:00.000000Z",
        "renewTime": "2026-01-01T00:00:00.000000Z",
        "leaseTransitions": transitions
    });
    if let Some(h) = holder {
        spec["holderIdentity"] = json!(h);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "tink-controller", "namespace": "tinkerbell", "resourceVersion": rv},
        "spec": spec
    })
}

/// Short timing so the tests run in about a second: lease 1 s, deadline 600 ms, retry 100 ms.
fn elector(identity: &str) -> (LeaderElector, Mock) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let cfg = LeaseConfig {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(600),
        retry_period: Duration::from_millis(100),
        ..LeaseConfig::new("tinkerbell", "tink-controller", identity)
    };
    (LeaderElector::new(client, cfg).unwrap(), handle)
}

fn spawn_acquire(
    e: &LeaderElector,
) -> tokio::task::JoinHandle<Result<Option<Leadership>, LeaseError>> {
    let e = e.clone();
    tokio::spawn(async move { e.acquire(&CancellationToken::new()).await })
}

#[tokio::test]
async fn creates_the_lease_renews_it_and_releases_it() {
    let (e, mut mock) = elector("pod-a_1");
    let acquiring = spawn_acquire(&e);

    let (seen, tx) = next(&mut mock).await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", &*format!("{LEASES}/tink-controller"))
    );
    tx.send_response(status_response(404, "NotFound", "NotFound"));

    let (seen, tx) = next(&mut mock).await;
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", LEASES));
    let spec = &seen.body["spec"];
    assert_eq!(spec["holderIdentity"], "pod-a_1");
    assert_eq!(spec["leaseDurationSeconds"], 1);
    assert_eq!(spec["leaseTransitions"], 0);
    assert!(spec["renewTime"].is_string() && spec["acquireTime"].is_string());
    assert!(seen.body["metadata"].get("resourceVersion").is_none());
    let mut created = seen.body.clone();
    created["metadata"]["resourceVersion"] = json!("1");
    tx.send_response(json_response(201, &created));

    let leadership = acquiring.await.unwrap().unwrap().expect("leader");
    assert!(!leadership.is_lost());

    // Renew: read, then PUT at the version read, same holder, same transitions.
    let (seen, tx) = next(&mut mock).await;
    assert_eq!(seen.method, "GET");
    tx.send_response(json_response(200, &created));
    let (seen, tx) = next(&mut mock).await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("PUT", &*format!("{LEASES}/tink-controller"))
    );
    assert_eq!(seen.body["metadata"]["resourceVersion"], "1");
    assert_eq!(seen.body["spec"]["holderIdentity"], "pod-a_1");
    assert_eq!(seen.body["spec"]["leaseTransitions"], 0);
    assert_eq!(
        seen.body["spec"]["acquireTime"],
        created["spec"]["acquireTime"]
    );
    let mut renewed = seen.body.clone();
    renewed["metadata"]["resourceVersion"] = json!("2");
    tx.send_response(json_response(200, &renewed));

    // Release: the holder is cleared so a standby need not wait out the lease.
    let releasing = tokio::spawn(leadership.release());
    let (seen, tx) = next(&mut mock).await;
    assert_eq!(seen.method, "GET");
    tx.send_response(json_response(200, &renewed));
    let (seen, tx) = next(&mut mock).await;
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.body["metadata"]["resourceVersion"], "2");
    assert!(
        seen.body["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null)
    );
    assert_eq!(seen.body["spec"]["leaseDurationSeconds"], 1);
    tx.send_response(json_response(200, &seen.body));
    tokio::time::timeout(STEP, releasing)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn waits_while_the_holder_renews_and_takes_over_once_it_stops() {
    let (e, mut mock) = elector("pod-b_2");
    let acquiring = spawn_acquire(&e);

    // The holder renews three times (a new resourceVersion each read), then stops.
    for rv in ["5", "6", "7"] {
        let (seen, tx) = next(&mut mock).await;
        assert_eq!(seen.method, "GET", "no write while the lease is held");
        tx.send_response(json_response(200, &lease(rv, Some("pod-a_1"), 1, 3)));
    }
    let stopped = Instant::now();
    loop {
        let (seen, tx) = next(&mut mock).await;
        if seen.method == "GET" {
            tx.send_response(json_response(200, &lease("7", Some("pod-a_1"), 1, 3)));
            continue;
        }
        assert_eq!(seen.method, "PUT");
        let waited = stopped.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "took over after {waited:?}, before the lease duration"
        );
        assert_eq!(seen.body["metadata"]["resourceVersion"], "7");
        assert_eq!(seen.body["spec"]["holderIdentity"], "pod-b_2");
        assert_eq!(seen.body["spec"]["leaseTransitions"], 4);
        assert_ne!(
            seen.body["spec"]["acquireTime"],
            "2026-01-01T00:00:00.000000Z"
        );
        let mut taken = seen.body.clone();
        taken["metadata"]["resourceVersion"] = json!("8");
        tx.send_response(json_response(200, &taken));
        break;
    }
    let l = acquiring.await.unwrap().unwrap().expect("leader");
    drop(l);
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once_and_a_lost_race_is_retried() {
    let (e, mut mock) = elector("pod-b_2");
    let acquiring = spawn_acquire(&e);
    let started = Instant::now();
    let (_, tx) = next(&mut mock).await;
    tx.send_response(json_response(200, &lease("9", None, 1, 1)));
    // Another candidate wrote first: 409, so read again.
    let (seen, tx) = next(&mut mock).await;
    assert_eq!(seen.method, "PUT");
    tx.send_response(status_response(409, "Conflict", "Conflict"));
    let (seen, tx) = next(&mut mock).await;
    assert_eq!(seen.method, "GET");
    tx.send_response(json_response(200, &lease("10", None, 1, 2)));
    let (seen, tx) = next(&mut mock).await;
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.body["metadata"]["resourceVersion"], "10");
    tx.send_response(json_response(200, &seen.body));
    acquiring.await.unwrap().unwrap().expect("leader");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "no wait for a released lease"
    );
}

#[tokio::test]
async fn leadership_is_lost_when_renewing_fails_past_the_deadline() {
    let (e, mut mock) = elector("pod-a_1");
    let acquiring = spawn_acquire(&e);
    let (_, tx) = next(&mut mock).await;
    tx.send_response(status_response(404, "NotFound", "NotFound"));
    let (seen, tx) = next(&mut mock).await;
    let mut created = seen.body.clone();
    created["metadata"]["resourceVersion"] = json!("1");
    tx.send_response(json_response(201, &created));
    let leadership = acquiring.await.unwrap().unwrap().unwrap();
    let since = Instant::now();

    // The API server answers every renew with 500.
    let failing = tokio::spawn(async move {
        while let Some((_, tx)) = mock.next_request().await {
            tx.send_response(status_response(500, "InternalError", "InternalError"));
        }
    });
    tokio::time::timeout(STEP, leadership.lost())
        .await
        .expect("leadership lost");
    let after = since.elapsed();
    assert!(
        after >= Duration::from_millis(600),
        "lost after {after:?}, before the deadline"
    );
    assert!(
        after < Duration::from_secs(1),
        "lost after {after:?}, after the lease expired"
    );
    assert!(leadership.is_lost());
    failing.abort();
}

#[tokio::test]
async fn another_holder_found_while_leading_is_lost_leadership() {
    let (e, mut mock) = elector("pod-a_1");
    let acquiring = spawn_acquire(&e);
    let (_, tx) = next(&mut mock).await;
    tx.send_response(json_response(200, &lease("3", Some("pod-a_1"), 1, 0)));
    let (seen, tx) = next(&mut mock).await;
    tx.send_response(json_response(200, &seen.body));
    let leadership = acquiring.await.unwrap().unwrap().unwrap();
    let (_, tx) = next(&mut mock).await;
    tx.send_response(json_response(200, &lease("4", Some("pod-z_9"), 1, 1)));
    tokio::time::timeout(STEP, leadership.lost())
        .await
        .expect("leadership lost");
}

#[test]
fn bad_timing_is_refused_with_every_problem() {
    let cfg = LeaseConfig {
        lease_duration: Duration::from_secs(5),
        renew_deadline: Duration::from_secs(10),
        ..LeaseConfig::new("", "tink-controller", "me")
    };
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("lease namespace is empty"), "{err}");
    assert!(
        err.contains("must be longer than the renew deadline"),
        "{err}"
    );
}
