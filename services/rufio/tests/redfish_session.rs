//! Redfish session login and logout, boot override fallback and reset mapping against a
//! small in-process Redfish service (sushy-tools has no SessionService). It keeps the real
//! contract: POST Sessions answers 201 with `X-Auth-Token` and `Location`, every other
//! request needs the token, DELETE ends the session, GET Sessions lists the live ones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tinkerbell_rufio::redfish::{RedfishClient, RedfishConfig};
use tinkerbell_rufio::{Bmc, BootDevice, ErrorKind, PowerAction, PowerState};

#[derive(Default)]
struct Fake {
    sessions: BTreeMap<String, String>, // id -> token
    next: u32,
    logins: u32,
    power: String,
    resets: Vec<String>,
    patches: Vec<Value>,
    requests_without_token: u32,
}

type Shared = Arc<Mutex<Fake>>;

fn authed(f: &mut Fake, h: &HeaderMap) -> bool {
    let ok = h
        .get("X-Auth-Token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| f.sessions.values().any(|s| s == t));
    if !ok {
        f.requests_without_token += 1;
    }
    ok
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"message": "no session"}})),
    )
        .into_response()
}

async fn root() -> Json<Value> {
    Json(json!({
        "Vendor": "Contoso",
        "Systems": {"@odata.id": "/redfish/v1/Systems"},
        "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
        "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
    }))
}

async fn login(State(s): State<Shared>, Json(b): Json<Value>) -> Response {
    if b["UserName"] != "admin" || b["Password"] != "password" {
        return unauthorized();
    }
    let mut f = s.lock().unwrap();
    f.next += 1;
    f.logins += 1;
    let id = f.next.to_string();
    let token = format!("token-{id}");
    f.sessions.insert(id.clone(), token.clone());
    let loc = format!("/redfish/v1/SessionService/Sessions/{id}");
    (
        StatusCode::CREATED,
        [("X-Auth-Token", token), ("Location", loc.clone())],
        Json(json!({"@odata.id": loc, "Id": id})),
    )
        .into_response()
}

async fn list_sessions(State(s): State<Shared>, h: HeaderMap) -> Response {
    let mut f = s.lock().unwrap();
    if !authed(&mut f, &h) {
        return unauthorized();
    }
    let members: Vec<Value> = f
        .sessions
        .keys()
        .map(|id| json!({"@odata.id": format!("/redfish/v1/SessionService/Sessions/{id}")}))
        .collect();
    Json(json!({"Members": members})).into_response()
}

async fn logout(State(s): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let mut f = s.lock().unwrap();
    if !authed(&mut f, &h) {
        return unauthorized();
    }
    f.sessions.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

async fn systems(State(s): State<Shared>, h: HeaderMap) -> Response {
    let mut f = s.lock().unwrap();
    if !authed(&mut f, &h) {
        return unauthorized();
    }
    Json(json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]})).into_response()
}

async fn system(State(s): State<Shared>, h: HeaderMap) -> Response {
    let mut f = s.lock().unwrap();
    if !authed(&mut f, &h) {
        return unauthorized();
    }
    Json(json!({
        "Id": "1",
        "Name": "server",
        "PowerState": f.power,
        "Actions": {"#ComputerSystem.Reset": {
            "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "GracefulShutdown", "PowerCycle", "ForceRestart"],
        }},
    }))
    .into_response()
}

/// Refuses BootSourceOverrideMode, as the HPE DL160 Gen10 does.
async fn patch_system(State(s): State<Shared>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    let mut f = s.lock().unwrap();
    if !authed(&mut f, &h) {
        return unauthorized();
    }
    f.patches.push(b.clone());
    if b["Boot"].get("BootSourceOverrideMode").is_some() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "PropertyUnknown", "@Message.ExtendedInfo": [{"Message": "BootSourceOverrideMode is not supported"}]}})),
        )
            .into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn reset(State(s): State<Shared>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    let mut f = s.lock().unwrap();
    if !authed(&mut f, &h) {
        return unauthorized();
    }
    let t = b["ResetType"].as_str().unwrap_or_default().to_string();
    f.power = match t.as_str() {
        "On" | "ForceRestart" | "PowerCycle" => "On".into(),
        _ => "Off".into(),
    };
    f.resets.push(t);
    StatusCode::NO_CONTENT.into_response()
}

async fn serve() -> (Shared, RedfishConfig) {
    let state: Shared = Arc::new(Mutex::new(Fake {
        power: "Off".into(),
        ..Default::default()
    }));
    let app = axum::Router::new()
        .route("/redfish/v1/", get(root))
        .route(
            "/redfish/v1/SessionService/Sessions",
            post(login).get(list_sessions),
        )
        .route(
            "/redfish/v1/SessionService/Sessions/{id}",
            axum::routing::delete(logout),
        )
        .route("/redfish/v1/Systems", get(systems))
        .route("/redfish/v1/Systems/1", get(system).patch(patch_system))
        .route(
            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            post(reset),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cfg = RedfishConfig::new("http://127.0.0.1", "admin", "password".into());
    cfg.port = Some(port);
    (state, cfg)
}

#[tokio::test]
async fn every_call_logs_in_and_out() {
    let (state, cfg) = serve().await;
    let c = RedfishClient::new(cfg).unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);
    for a in [
        PowerAction::On,
        PowerAction::On, // skipped: already on
        PowerAction::Cycle,
        PowerAction::Reset,
        PowerAction::Soft,
        PowerAction::Off,
    ] {
        c.power(a).await.unwrap();
    }
    c.boot_device(BootDevice::Pxe, true, true).await.unwrap();
    let f = state.lock().unwrap();
    assert_eq!(
        f.resets,
        [
            "On",
            "PowerCycle",
            "ForceRestart",
            "GracefulShutdown",
            "ForceOff"
        ]
    );
    // Mode refused, retried without it.
    assert_eq!(
        f.patches,
        [
            json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "UEFI"}}),
            json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Continuous"}}),
        ]
    );
    assert_eq!(f.logins, 8);
    assert!(f.sessions.is_empty(), "sessions left: {:?}", f.sessions);
    assert_eq!(f.requests_without_token, 0);
}

#[tokio::test]
async fn sessions_listed_while_open_and_gone_after() {
    let (state, cfg) = serve().await;
    let c = RedfishClient::new(cfg.clone()).unwrap();
    // Errors in the middle still log out.
    let e = c
        .boot_device(BootDevice::Safe, false, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    // Read the list as the BMC shows it, through a session of our own.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", cfg.port.unwrap());
    let r = http
        .post(format!("{base}/redfish/v1/SessionService/Sessions"))
        .json(&json!({"UserName": "admin", "Password": "password"}))
        .send()
        .await
        .unwrap();
    let token = r.headers()["X-Auth-Token"].to_str().unwrap().to_string();
    let list: Value = http
        .get(format!("{base}/redfish/v1/SessionService/Sessions"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["Members"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(state.lock().unwrap().logins, 2);

    // Wrong password: refused, classified.
    let mut bad = cfg.clone();
    bad.password = "nope".into();
    let e = RedfishClient::new(bad)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthenticationRefused, "{e}");

    // Basic auth on a service that only takes sessions: refused, no session made.
    let mut basic = cfg;
    basic.use_basic_auth = true;
    let e = RedfishClient::new(basic)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthenticationRefused, "{e}");
    assert_eq!(state.lock().unwrap().logins, 2);
}
