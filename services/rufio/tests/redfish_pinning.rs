//! The Redfish client against a BMC that is not to be trusted: it points at another origin
//! (`@odata.id`, session `Location`, action targets), redirects there, or answers with a
//! body past the cap. A second server on another port (the trap) records every request
//! that reaches it; none may, and above all none carrying the session token or the
//! password. The fake BMC keeps the real contract otherwise (sessions, `X-Auth-Token` or
//! basic auth on every request, DELETE ends the session).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tinkerbell_rufio::redfish::{MAX_BODY_BYTES, RedfishClient, RedfishConfig};
use tinkerbell_rufio::{Bmc, BmcError, ErrorKind, PowerAction};

/// `admin:password`, base64.
const BASIC: &str = "Basic YWRtaW46cGFzc3dvcmQ=";

/// What the fake BMC does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing: absolute URLs on its own origin, a body just under the cap.
    Honest,
    /// The session `Location` is on the trap.
    ForeignLocation,
    /// The first `Systems` member is on the trap.
    ForeignMember,
    /// The `ComputerSystem.Reset` target is on the trap.
    ForeignResetTarget,
    /// The system's `VirtualMedia` collection is on the trap.
    ForeignVirtualMedia,
    /// GET `Systems` answers 302 to the trap.
    RedirectSystems,
    /// The Reset POST answers 307 to the trap (which would keep method and body).
    RedirectReset,
    /// The service root is a chunked body without end (up to [`HUGE`]).
    HugeRoot,
    /// GET `Systems` answers a `Content-Length` body twice the cap.
    HugeSystems,
}

/// How much the never-ending body sends at most, should the client read it all.
const HUGE: usize = 64 << 20;

struct Fake {
    mode: Mode,
    /// `http://127.0.0.1:port` of the fake itself and of the trap.
    me: String,
    trap: String,
    sessions: BTreeMap<String, String>, // id -> token
    next: u32,
    power: String,
    resets: Vec<String>,
    inserted: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

/// What the trap saw: method, URI and the credential headers.
#[derive(Debug, Clone)]
#[allow(dead_code)] // read through Debug in assertion messages
struct Seen {
    method: Method,
    uri: Uri,
    token: Option<String>,
    authorization: Option<String>,
}

/// Bytes of the never-ending body produced, and whether the server dropped it.
#[derive(Default)]
struct Stream {
    sent: AtomicUsize,
    dropped: AtomicBool,
}

struct DropFlag(Arc<Stream>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn authed(f: &Fake, h: &HeaderMap) -> bool {
    let token = h.get("X-Auth-Token").and_then(|v| v.to_str().ok());
    let basic = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    token.is_some_and(|t| f.sessions.values().any(|s| s == t)) || basic == Some(BASIC)
}

/// A URL the fake hands out: on the trap in `foreign` mode, else absolute on its own origin
/// when honest, else a path.
fn link(f: &Fake, foreign: Mode, path: &str) -> String {
    if f.mode == foreign {
        format!("{}{path}", f.trap)
    } else if f.mode == Mode::Honest {
        format!("{}{path}", f.me)
    } else {
        path.to_string()
    }
}

async fn bmc(
    State((s, stream)): State<(Shared, Arc<Stream>)>,
    method: Method,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut f = s.lock().unwrap();
    if method == Method::GET && path == "/redfish/v1/" {
        if f.mode == Mode::HugeRoot {
            let flag = DropFlag(stream);
            let chunks = futures::stream::unfold(flag, |flag| async move {
                let sent = flag.0.sent.fetch_add(64 << 10, Ordering::SeqCst);
                (sent < HUGE).then(|| {
                    (
                        Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 << 10])),
                        flag,
                    )
                })
            });
            return (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(chunks),
            )
                .into_response();
        }
        return json_response(
            StatusCode::OK,
            json!({
                "Vendor": "Contoso",
                "Systems": {"@odata.id": "/redfish/v1/Systems"},
                "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
                "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
            }),
        );
    }
    if method == Method::POST && path == "/redfish/v1/SessionService/Sessions" {
        let b: Value = serde_json::from_slice(&body).unwrap_or_default();
        if b["UserName"] != "admin" || b["Password"] != "password" {
            return json_response(StatusCode::UNAUTHORIZED, json!({}));
        }
        f.next += 1;
        let id = f.next.to_string();
        let token = format!("token-{id}");
        f.sessions.insert(id.clone(), token.clone());
        let loc = link(
            &f,
            Mode::ForeignLocation,
            &format!("/redfish/v1/SessionService/Sessions/{id}"),
        );
        return (
            StatusCode::CREATED,
            [("X-Auth-Token", token), ("Location", loc.clone())],
            axum::Json(json!({"@odata.id": loc, "Id": id})),
        )
            .into_response();
    }
    if !authed(&f, &h) {
        return json_response(StatusCode::UNAUTHORIZED, json!({}));
    }
    match (method, path.as_str()) {
        (Method::DELETE, p) if p.starts_with("/redfish/v1/SessionService/Sessions/") => {
            let id = p.rsplit('/').next().unwrap().to_string();
            f.sessions.remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::GET, "/redfish/v1/Systems") => match f.mode {
            Mode::RedirectSystems => (
                StatusCode::FOUND,
                [(header::LOCATION, format!("{}/redfish/v1/Systems", f.trap))],
            )
                .into_response(),
            Mode::HugeSystems => (
                [(header::CONTENT_TYPE, "application/json")],
                vec![b' '; 2 * MAX_BODY_BYTES],
            )
                .into_response(),
            _ => {
                let m = link(&f, Mode::ForeignMember, "/redfish/v1/Systems/1");
                json_response(StatusCode::OK, json!({"Members": [{"@odata.id": m}]}))
            }
        },
        (Method::GET, "/redfish/v1/Systems/1") => {
            let reset = link(
                &f,
                Mode::ForeignResetTarget,
                "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            );
            let vm = link(
                &f,
                Mode::ForeignVirtualMedia,
                "/redfish/v1/Systems/1/VirtualMedia",
            );
            let mut sys = json!({
                "Id": "1",
                "PowerState": f.power,
                "VirtualMedia": {"@odata.id": vm},
                "Actions": {"#ComputerSystem.Reset": {"target": reset}},
            });
            if f.mode == Mode::Honest {
                // Big, but under the cap: still read.
                let pad = MAX_BODY_BYTES - sys.to_string().len() - 64;
                sys["Description"] = json!("x".repeat(pad));
            }
            json_response(StatusCode::OK, sys)
        }
        (Method::POST, "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset") => {
            if f.mode == Mode::RedirectReset {
                return (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(
                        header::LOCATION,
                        format!(
                            "{}/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                            f.trap
                        ),
                    )],
                )
                    .into_response();
            }
            let b: Value = serde_json::from_slice(&body).unwrap_or_default();
            let t = b["ResetType"].as_str().unwrap_or_default().to_string();
            f.power = if t == "On" { "On" } else { "Off" }.into();
            f.resets.push(t);
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::GET, "/redfish/v1/Systems/1/VirtualMedia") => json_response(
            StatusCode::OK,
            json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1/VirtualMedia/Cd"}]}),
        ),
        (Method::GET, "/redfish/v1/Systems/1/VirtualMedia/Cd") => json_response(
            StatusCode::OK,
            json!({"MediaTypes": ["CD", "DVD"], "Inserted": false, "Image": ""}),
        ),
        (
            Method::POST,
            "/redfish/v1/Systems/1/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
        ) => {
            let b: Value = serde_json::from_slice(&body).unwrap_or_default();
            f.inserted
                .push(b["Image"].as_str().unwrap_or_default().to_string());
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The trap: records the request and answers as a BMC would, so that a client that came
/// here carries on as if nothing was wrong.
async fn trap(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    method: Method,
    uri: Uri,
    h: HeaderMap,
) -> Response {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        uri,
        token: get("X-Auth-Token"),
        authorization: get("Authorization"),
    });
    if method == Method::GET {
        json_response(
            StatusCode::OK,
            json!({
                "Id": "1",
                "PowerState": "Off",
                "Members": [{"@odata.id": "/redfish/v1/Systems/1"}],
                "MediaTypes": ["CD"],
            }),
        )
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

struct Bench {
    state: Shared,
    seen: Arc<Mutex<Vec<Seen>>>,
    stream: Arc<Stream>,
    cfg: RedfishConfig,
}

impl Bench {
    /// What reached the trap, checked: above all no credential.
    fn trap_untouched(&self) {
        let seen = self.seen.lock().unwrap();
        assert!(
            seen.iter()
                .all(|s| s.token.is_none() && s.authorization.is_none()),
            "credentials sent to another origin: {seen:?}"
        );
        assert!(seen.is_empty(), "requests reached another origin: {seen:?}");
    }
}

async fn bench(mode: Mode, basic: bool) -> Bench {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let trap_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_port = trap_listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(trap).with_state(seen.clone());
    tokio::spawn(async move { axum::serve(trap_listener, app).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state: Shared = Arc::new(Mutex::new(Fake {
        mode,
        me: format!("http://127.0.0.1:{port}"),
        trap: format!("http://127.0.0.1:{trap_port}"),
        sessions: BTreeMap::new(),
        next: 0,
        power: "Off".into(),
        resets: Vec::new(),
        inserted: Vec::new(),
    }));
    let stream = Arc::new(Stream::default());
    let app = axum::Router::new()
        .fallback(bmc)
        .with_state((state.clone(), stream.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut cfg = RedfishConfig::new("http://127.0.0.1", "admin", "password".into());
    cfg.port = Some(port);
    cfg.use_basic_auth = basic;
    Bench {
        state,
        seen,
        stream,
        cfg,
    }
}

/// Power on (Systems, the system, its Reset target), or insert a CD (the system's
/// VirtualMedia too).
async fn operate(b: &Bench, mode: Mode) -> Result<(), BmcError> {
    let c = RedfishClient::new(b.cfg.clone()).unwrap();
    if mode == Mode::ForeignVirtualMedia {
        c.virtual_media("http://boot.example/a.iso", "CD").await
    } else {
        c.power(PowerAction::On).await
    }
}

#[tokio::test]
async fn honest_absolute_urls_and_big_bodies_under_the_cap_work() {
    for basic in [false, true] {
        let b = bench(Mode::Honest, basic).await;
        operate(&b, Mode::Honest).await.unwrap();
        let c = RedfishClient::new(b.cfg.clone()).unwrap();
        c.virtual_media("http://boot.example/a.iso", "CD")
            .await
            .unwrap();
        b.trap_untouched();
        let f = b.state.lock().unwrap();
        assert_eq!(f.resets, ["On"]);
        assert_eq!(f.inserted, ["http://boot.example/a.iso"]);
        assert!(f.sessions.is_empty(), "sessions left: {:?}", f.sessions);
    }
}

/// `mode` points at the trap: the operation fails with [`BmcError::ForeignUrl`] naming the
/// URL, and the trap sees nothing.
async fn refused(mode: Mode, basic: bool) {
    let b = bench(mode, basic).await;
    let r = operate(&b, mode).await;
    b.trap_untouched();
    let e = r.unwrap_err();
    let trap = b.state.lock().unwrap().trap.clone();
    match &e {
        BmcError::ForeignUrl { url, .. } => assert!(url.starts_with(&trap), "{url}"),
        other => panic!("want ForeignUrl, got {other:?}"),
    }
    assert_eq!(e.kind(), ErrorKind::Failed);
    assert!(e.to_string().contains(&trap), "{e}");
    let f = b.state.lock().unwrap();
    assert!(f.resets.is_empty() && f.inserted.is_empty());
    if mode != Mode::ForeignLocation {
        // The session was on the BMC's own origin: still deleted.
        assert!(f.sessions.is_empty(), "sessions left: {:?}", f.sessions);
    }
}

#[tokio::test]
async fn foreign_session_location_is_refused() {
    refused(Mode::ForeignLocation, false).await;
}

#[tokio::test]
async fn foreign_system_member_is_refused() {
    refused(Mode::ForeignMember, false).await;
}

#[tokio::test]
async fn foreign_system_member_is_refused_with_basic_auth() {
    refused(Mode::ForeignMember, true).await;
}

#[tokio::test]
async fn foreign_reset_target_is_refused() {
    refused(Mode::ForeignResetTarget, false).await;
}

#[tokio::test]
async fn foreign_reset_target_is_refused_with_basic_auth() {
    refused(Mode::ForeignResetTarget, true).await;
}

#[tokio::test]
async fn foreign_virtual_media_is_refused() {
    refused(Mode::ForeignVirtualMedia, false).await;
}

/// `mode` redirects to the trap: the operation fails naming the redirect, and the trap sees
/// nothing.
async fn not_followed(mode: Mode, basic: bool) {
    let b = bench(mode, basic).await;
    let r = operate(&b, mode).await;
    b.trap_untouched();
    let e = r.unwrap_err();
    let trap = b.state.lock().unwrap().trap.clone();
    assert!(matches!(e, BmcError::Protocol { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("redirects are not followed") && msg.contains(&trap),
        "{msg}"
    );
    let f = b.state.lock().unwrap();
    assert!(f.resets.is_empty());
    assert!(f.sessions.is_empty(), "sessions left: {:?}", f.sessions);
}

#[tokio::test]
async fn redirect_302_to_another_origin_is_not_followed() {
    not_followed(Mode::RedirectSystems, false).await;
}

#[tokio::test]
async fn redirect_302_to_another_origin_is_not_followed_with_basic_auth() {
    not_followed(Mode::RedirectSystems, true).await;
}

#[tokio::test]
async fn redirect_307_of_a_post_is_not_followed() {
    not_followed(Mode::RedirectReset, false).await;
}

#[tokio::test]
async fn a_body_without_end_is_cut_at_the_cap() {
    let b = bench(Mode::HugeRoot, false).await;
    let e = operate(&b, Mode::HugeRoot).await.unwrap_err();
    match &e {
        BmcError::ResponseTooLarge { path, limit, .. } => {
            assert_eq!(path, "/redfish/v1/");
            assert_eq!(*limit, MAX_BODY_BYTES);
        }
        other => panic!("want ResponseTooLarge, got {other:?}"),
    }
    // The client hung up: the server stops, well short of the whole body (what it produced
    // past the cap sits in the kernel's socket buffers, a few MiB on loopback).
    common::wait_for(
        "the body stream to be dropped",
        Duration::from_secs(10),
        || {
            let done = b.stream.dropped.load(Ordering::SeqCst);
            async move { done.then_some(()) }
        },
    )
    .await;
    let sent = b.stream.sent.load(Ordering::SeqCst);
    assert!(
        sent < 32 << 20,
        "{sent} bytes produced before the client stopped"
    );
    b.trap_untouched();
}

#[tokio::test]
async fn a_body_announced_over_the_cap_is_refused_and_the_session_deleted() {
    let b = bench(Mode::HugeSystems, false).await;
    let e = operate(&b, Mode::HugeSystems).await.unwrap_err();
    match &e {
        BmcError::ResponseTooLarge { path, limit, .. } => {
            assert_eq!(path, "/redfish/v1/Systems");
            assert_eq!(*limit, MAX_BODY_BYTES);
        }
        other => panic!("want ResponseTooLarge, got {other:?}"),
    }
    assert!(e.to_string().contains(&MAX_BODY_BYTES.to_string()), "{e}");
    let f = b.state.lock().unwrap();
    assert!(f.sessions.is_empty(), "sessions left: {:?}", f.sessions);
    assert!(f.resets.is_empty());
}
