//! The store API: the appliance's store over HTTP, so the CLI and separately started services
//! share one embedded store.
//!
//! Paths and payloads follow the Kubernetes REST conventions (`/apis/<group>/<version>/
//! namespaces/<ns>/<plural>/<name>[/status]`, `?watch=true&resourceVersion=N` streaming
//! newline-delimited `{"type":"ADDED","object":…}` events, `Status` objects for errors). Why:
//! every operator already knows this shape, the errors carry the same codes as on a cluster, and
//! one client type ([`crate::store::remote::RemoteStore`]) covers every kind.
//!
//! Two Tinkerbell-specific routes exist because Kubernetes has no equivalent:
//! * `POST /tinkerbell/v1/apply` — create-or-update a list of objects in one transaction
//!   (`tinkerbell apply` and `hardware import` are all or nothing);
//! * `GET /tinkerbell/v1/lookup/hardware?mac=|ip=|agentID=|instanceID=` and
//!   `GET /tinkerbell/v1/lookup/workflows?agentID=` — the indexed lookups.
//!
//! Every route but `/healthz` requires `Authorization: Bearer <token>` (see [`token`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::store::index::ClaimKind;
use crate::store::{Backend, Kind, Object, StoreError};

pub mod server;
pub mod token;

/// Largest request body: an apply of a 10,000-row hardware.csv is ~40 MiB of JSON. Only
/// authenticated clients get this far.
pub const MAX_BODY: usize = 256 << 20;

/// Requests and responses with at least this many objects are followed by
/// [`release_freed_memory`].
const TRIM_AFTER: usize = 1_000;

/// Hand memory freed by a large request back to the OS.
///
/// Parsing a 10,000-machine import allocates a few hundred MiB of short-lived, small objects;
/// glibc keeps such freed memory in its arenas, so the appliance's RSS would stay near the
/// peak for good. `malloc_trim` is glibc's call for exactly this; other targets skip it.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim takes no pointers, only inspects glibc's own heap under its
        // locks, and is documented as safe to call at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Shared handler state.
#[derive(Clone)]
struct App {
    store: Arc<dyn Backend>,
    token: Arc<str>,
}

/// A check `/healthz` runs besides the store's write health: `Err(why)` fails the probe.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The checks of `/healthz` beyond the store, each with a name for the logs.
#[derive(Clone, Default)]
pub struct HealthChecks(pub Vec<(&'static str, HealthCheck)>);

impl std::fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

/// Build the store API router over `store`, requiring `token`; `/healthz` also runs `checks`.
pub fn router(store: Arc<dyn Backend>, token: &str, checks: HealthChecks) -> Router {
    let health = store.clone();
    let metrics = store.clone();
    let app = App {
        store,
        token: Arc::from(token),
    };
    let protected = Router::new()
        .route("/tinkerbell/v1/apply", post(apply))
        .route("/tinkerbell/v1/lookup/hardware", get(lookup_hardware))
        .route("/tinkerbell/v1/lookup/workflows", get(lookup_workflows))
        .fallback(resource)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), require_token))
        .with_state(app);
    Router::new()
        .route(
            "/healthz",
            get(move || healthz(health.clone(), checks.clone())),
        )
        .route("/metrics", get(move || store_metrics(metrics.clone())))
        .merge(protected)
}

/// `/healthz`: 503 naming every cause while the store cannot write (a full disk) or a check
/// fails, else `ok`.
async fn healthz(store: Arc<dyn Backend>, checks: HealthChecks) -> Response {
    let mut failing: Vec<String> = store
        .write_health()
        .failing
        .map(|why| format!("store writes failing: {why}"))
        .into_iter()
        .collect();
    for (name, check) in &checks.0 {
        if let Err(why) = check() {
            tracing::debug!(check = name, %why, "healthz: failing");
            failing.push(why);
        }
    }
    if failing.is_empty() {
        return "ok\n".into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, failing.join("\n") + "\n").into_response()
}

/// `/metrics`: the store's write health in the Prometheus text format.
async fn store_metrics(store: Arc<dyn Backend>) -> Response {
    let h = store.write_health();
    let body = format!(
        "# HELP tinkerbell_store_write_failures_total Store commits that failed (nothing of them was applied).\n\
         # TYPE tinkerbell_store_write_failures_total counter\n\
         tinkerbell_store_write_failures_total {}\n\
         # HELP tinkerbell_store_writable Whether the last store commit succeeded.\n\
         # TYPE tinkerbell_store_writable gauge\n\
         tinkerbell_store_writable {}\n",
        h.write_failures,
        u8::from(h.failing.is_none())
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// An error answered as a Kubernetes `Status` object. Details go to the log, the body is terse.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
    /// Kubernetes `StatusDetails` (name, group, kind, causes), when the error is about one object.
    details: Option<Value>,
}

impl ApiError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn status_json(&self) -> Value {
        let mut v = status_json(self.status.as_u16(), self.reason, &self.message);
        if let (Some(d), Value::Object(map)) = (&self.details, &mut v) {
            map.insert("details".into(), d.clone());
        }
        v
    }
}

/// The `StatusDetails` of a store error about one object: the object's name, group and kind
/// (as an API server sends them) and, as `causes`, what a client needs to rebuild the error
/// exactly ([`crate::store::remote`] reads them back): the conflicting resourceVersions, the
/// duplicate identity and its owner, the invalid field.
fn status_details(e: &StoreError) -> Option<Value> {
    let cause = |reason: &str, field: &str, message: &str| json!({"reason": reason, "field": field, "message": message});
    let (key, causes) = match e {
        StoreError::NotFound(key) | StoreError::AlreadyExists(key) => (key, vec![]),
        StoreError::Conflict {
            key,
            current,
            given,
        } => (
            key,
            vec![
                cause(
                    "ResourceVersionCurrent",
                    "metadata.resourceVersion",
                    current,
                ),
                cause("ResourceVersionGiven", "metadata.resourceVersion", given),
            ],
        ),
        StoreError::Duplicate {
            key,
            field,
            value,
            owner,
        } => (
            key,
            vec![
                cause("FieldValueDuplicate", field, value),
                cause("ClaimedBy", field, owner),
            ],
        ),
        StoreError::Invalid {
            key,
            field,
            message,
        } => (key, vec![cause("FieldValueInvalid", field, message)]),
        _ => return None,
    };
    let mut d = json!({
        "name": key.name,
        "group": key.kind.group(),
        "kind": key.kind.plural(),
    });
    if !causes.is_empty() {
        d["causes"] = Value::Array(causes);
    }
    Some(d)
}

/// A Kubernetes `Status` failure object.
pub fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = e.http_status();
        let reason = match &e {
            StoreError::NotFound(_) => "NotFound",
            StoreError::AlreadyExists(_) => "AlreadyExists",
            StoreError::Conflict { .. } | StoreError::Duplicate { .. } => "Conflict",
            StoreError::Invalid { .. } | StoreError::UnknownType { .. } => "Invalid",
            StoreError::Decode { .. } | StoreError::BadResourceVersion(_) => "BadRequest",
            StoreError::Expired { .. } => "Expired",
            StoreError::Closed | StoreError::Unreachable { .. } => "ServiceUnavailable",
            _ => "InternalError",
        };
        // Internal errors: full chain to the log, a terse message to the client.
        let message = if code >= 500 {
            tracing::error!(error = %error_chain(&e), "store API request failed");
            e.to_string()
        } else {
            error_chain(&e)
        };
        let mut err = ApiError::new(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reason,
            message,
        );
        err.details = status_details(&e);
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.status_json())).into_response()
    }
}

/// `Display` of an error and all its sources, joined with ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

async fn require_token(State(app): State<App>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token::constant_time_eq(given.as_bytes(), app.token.as_bytes()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or wrong bearer token (see <data-dir>/api-token)",
        )
        .into_response();
    }
    next.run(req).await
}

/// Which resource a path names.
#[derive(Debug, PartialEq)]
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some(name.to_string()), false),
        [plural, name, "status"] => (*plural, Some(name.to_string()), true),
        _ => return None,
    };
    let kind = Kind::ALL.into_iter().find(|k| {
        k.group() == group && k.plural() == plural && k.api_version().ends_with(version)
    })?;
    if name.is_some() && namespace.is_none() {
        return None;
    }
    Some(Target {
        kind,
        namespace,
        name,
        status,
    })
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResourceQuery {
    watch: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<u64>,
}

async fn resource(
    State(app): State<App>,
    method: Method,
    uri: axum::http::Uri,
    Query(q): Query<ResourceQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = parse_path(uri.path()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no such resource path {}", uri.path()),
        )
    })?;
    let store = &app.store;
    let ns = target.namespace.as_deref();
    match (&method, target.name.as_deref(), target.status) {
        (&Method::GET, None, false) => {
            if matches!(q.watch.as_deref(), Some("true" | "1")) {
                return watch(app.store.clone(), &target, &q).await;
            }
            let list = store.list(target.kind, ns).await?;
            let body = ListBody {
                api_version: target.kind.api_version(),
                kind: format!("{}List", target.kind),
                metadata: json!({"resourceVersion": list.resource_version}),
                items: Lazy(&list.items, Object::to_json),
            };
            json_response(&body, list.items.len())
        }
        (&Method::POST, None, false) => {
            let ns = ns.ok_or_else(|| bad_request("create needs a namespaced path"))?;
            let obj = decode_body(&target, ns, None, &body)?;
            let created = store.create(obj).await?;
            Ok((StatusCode::CREATED, axum::Json(created.to_json())).into_response())
        }
        (&Method::GET, Some(name), false | true) => {
            let ns = ns.unwrap_or_default();
            Ok(axum::Json(store.get(target.kind, ns, name).await?.to_json()).into_response())
        }
        (&Method::PUT, Some(name), status) => {
            let ns = ns.unwrap_or_default();
            let obj = decode_body(&target, ns, Some(name), &body)?;
            let out = if status {
                store.update_status(obj).await?
            } else {
                store.update(obj).await?
            };
            Ok(axum::Json(out.to_json()).into_response())
        }
        (&Method::DELETE, Some(name), false) => {
            let ns = ns.unwrap_or_default();
            // Kubernetes DeleteOptions: {"preconditions": {"resourceVersion": "N"}}.
            let rv = if body.is_empty() {
                None
            } else {
                serde_json::from_slice::<Value>(&body)
                    .map_err(|e| bad_request(format!("DeleteOptions: {e}")))?
                    .pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let out = store.delete(target.kind, ns, name, rv.as_deref()).await?;
            Ok(axum::Json(out.to_json()).into_response())
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported on {}", uri.path()),
        )),
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", msg)
}

/// Decode a request body as an object of the path's kind, checking that its identity matches
/// the path (as the Kubernetes API does).
fn decode_body(
    target: &Target,
    ns: &str,
    name: Option<&str>,
    body: &[u8],
) -> Result<Object, ApiError> {
    let mut v: Value =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("request body: {e}")))?;
    let map = v
        .as_object_mut()
        .ok_or_else(|| bad_request("request body is not a JSON object"))?;
    let kind = target.kind;
    for (field, want) in [("apiVersion", kind.api_version()), ("kind", kind.as_str())] {
        match map.get(field).and_then(Value::as_str) {
            None => {
                map.insert(field.into(), Value::String(want.into()));
            }
            Some(got) if got == want => {}
            Some(got) => {
                return Err(bad_request(format!(
                    "{field} {got:?} does not match the path (want {want:?})"
                )));
            }
        }
    }
    let meta = map
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| bad_request("metadata is not an object"))?;
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), Value::String(ns.into()));
        }
        Some(got) if got == ns => {}
        Some(got) => {
            return Err(bad_request(format!(
                "metadata.namespace {got:?} does not match the path namespace {ns:?}"
            )));
        }
    }
    if let Some(name) = name {
        match meta.get("name").and_then(Value::as_str) {
            Some(got) if got == name => {}
            got => {
                return Err(bad_request(format!(
                    "metadata.name {got:?} does not match the path name {name:?}"
                )));
            }
        }
    }
    Object::from_json(kind, v).map_err(|e| bad_request(format!("{kind}: {e}")))
}

async fn watch(
    store: Arc<dyn Backend>,
    target: &Target,
    q: &ResourceQuery,
) -> Result<Response, ApiError> {
    let events = store
        .watch(
            target.kind,
            target.namespace.as_deref(),
            q.resource_version.as_deref(),
        )
        .await?;
    let lines = events.map(|ev| {
        let v = match ev {
            Ok(ev) => json!({"type": ev.type_str(), "object": ev.object().to_json()}),
            Err(e) => {
                let e = ApiError::from(e);
                json!({"type": "ERROR", "object": e.status_json()})
            }
        };
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let body = match q.timeout_seconds {
        Some(secs) => {
            let deadline = tokio::time::sleep(Duration::from_secs(secs));
            Body::from_stream(lines.take_until(deadline))
        }
        None => Body::from_stream(lines),
    };
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|e| unreachable!("static response parts: {e}")))
}

#[derive(Debug, Deserialize)]
struct ApplyBody {
    /// Kept raw and decoded one at a time: a 10,000-machine import is tens of MiB, and a
    /// `Value` tree of all of it at once would multiply the appliance's peak memory.
    items: Vec<Box<serde_json::value::RawValue>>,
}

/// A sequence serialised one element at a time through `f`, so a large response never exists
/// as one `Value` tree (10,000 Hardware would be a few hundred MiB of small allocations).
struct Lazy<'a, T, F>(&'a [T], F);

impl<T, F: Fn(&T) -> Value> serde::Serialize for Lazy<'_, T, F> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = ser.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&(self.1)(item))?;
        }
        seq.end()
    }
}

/// A Kubernetes list response.
#[derive(serde::Serialize)]
#[serde(bound = "F: Fn(&Object) -> Value")]
struct ListBody<'a, F> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: String,
    metadata: Value,
    items: Lazy<'a, Object, F>,
}

/// Serialise `body` into a JSON response; after large ones, give the garbage back to the OS.
fn json_response(body: &impl serde::Serialize, items: usize) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?;
    if items >= TRIM_AFTER {
        release_freed_memory();
    }
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .unwrap_or_else(|e| unreachable!("static response parts: {e}")))
}

async fn apply(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let parsed: ApplyBody =
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("apply body: {e}")))?;
    drop(body);
    let mut objs = Vec::with_capacity(parsed.items.len());
    for (i, raw) in parsed.items.into_iter().enumerate() {
        let v: Value =
            serde_json::from_str(raw.get()).map_err(|e| bad_request(format!("items[{i}]: {e}")))?;
        let o = Object::from_typed_json(v)
            .map_err(|e| bad_request(format!("items[{i}]: {}", error_chain(&e))))?;
        objs.push(o);
    }
    let results = app.store.apply_all(objs).await?;
    let items = Lazy(
        &results,
        |(o, a): &(Object, crate::store::Applied)| json!({"object": o.to_json(), "result": a.to_string()}),
    );
    #[derive(serde::Serialize)]
    struct ApplyResponse<T: serde::Serialize> {
        results: T,
    }
    json_response(&ApplyResponse { results: items }, results.len())
}

#[derive(Debug, Deserialize)]
struct LookupQuery {
    mac: Option<String>,
    ip: Option<String>,
    #[serde(rename = "agentID")]
    agent_id: Option<String>,
    #[serde(rename = "instanceID")]
    instance_id: Option<String>,
}

async fn lookup_hardware(
    State(app): State<App>,
    Query(q): Query<LookupQuery>,
) -> Result<Response, ApiError> {
    let given: Vec<(ClaimKind, &String)> = [
        (ClaimKind::Mac, &q.mac),
        (ClaimKind::Ip, &q.ip),
        (ClaimKind::AgentId, &q.agent_id),
        (ClaimKind::InstanceId, &q.instance_id),
    ]
    .into_iter()
    .filter_map(|(claim, v)| Some((claim, v.as_ref()?)))
    .collect();
    let [(claim, value)] = given[..] else {
        return Err(bad_request(
            "give exactly one of mac, ip, agentID, instanceID",
        ));
    };
    let hw = app.store.hardware_by(claim, value).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no Hardware with {} {value}", claim.param()),
        )
    })?;
    Ok(axum::Json(Object::Hardware(hw).to_json()).into_response())
}

async fn lookup_workflows(
    State(app): State<App>,
    Query(q): Query<LookupQuery>,
    _headers: HeaderMap,
) -> Result<Response, ApiError> {
    let agent = q
        .agent_id
        .ok_or_else(|| bad_request("agentID is required"))?;
    let wfs = app.store.workflows_by_agent_id(&agent).await?;
    let items: Vec<Value> = wfs
        .into_iter()
        .map(|w| Object::Workflow(w).to_json())
        .collect();
    Ok(axum::Json(json!({"items": items})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t =
            parse_path("/apis/tinkerbell.org/v1alpha1/namespaces/eksa-system/hardware/n1").unwrap();
        assert_eq!(t.kind, Kind::Hardware);
        assert_eq!(t.namespace.as_deref(), Some("eksa-system"));
        assert_eq!(t.name.as_deref(), Some("n1"));
        assert!(!t.status);
        let t =
            parse_path("/apis/bmc.tinkerbell.org/v1alpha1/namespaces/x/jobs/j1/status").unwrap();
        assert_eq!(t.kind, Kind::Job);
        assert!(t.status);
        let t = parse_path("/api/v1/secrets").unwrap();
        assert_eq!(t.kind, Kind::Secret);
        assert_eq!(t.namespace, None);
        assert_eq!(parse_path("/apis/tinkerbell.org/v1alpha1/secrets"), None);
        assert_eq!(
            parse_path("/apis/tinkerbell.org/v1alpha1/hardware/n1"),
            None
        );
        assert_eq!(parse_path("/apis/tinkerbell.org/v2/hardware"), None);
        assert_eq!(parse_path("/nope"), None);
    }
}
