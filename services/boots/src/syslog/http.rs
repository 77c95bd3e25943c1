//! Reading stored logs over HTTP: a router the appliance mounts on a listener of its choice.
//!
//! * `GET /tinkerbell/v1/logs` — machines with stored lines: `[{"machine": "ns/name", "lines": N}]`
//! * `GET /tinkerbell/v1/logs/{name}?namespace=NS&limit=N` — that machine's lines, oldest
//!   first, as a JSON array of [`LogEntry`](super::LogEntry); `name` may also be a sender IP.
//!
//! Boot logs can carry secrets (kernel command lines with registry credentials), so when a
//! token is given every request needs `Authorization: Bearer <token>`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::store::LogStore;

/// Route prefix.
pub const LOGS_PATH: &str = "/tinkerbell/v1/logs";

struct RouterState {
    store: Arc<LogStore>,
    token: Option<String>,
}

type Shared = Arc<RouterState>;

#[derive(Debug, Deserialize)]
struct LinesQuery {
    namespace: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct MachineSummary {
    machine: String,
    lines: usize,
}

/// The logs router; `token`: require this bearer token.
pub fn router(store: Arc<LogStore>, token: Option<String>) -> Router {
    let state: Shared = Arc::new(RouterState { store, token });
    Router::new()
        .route(LOGS_PATH, get(list))
        .route(&format!("{LOGS_PATH}/{{name}}"), get(lines))
        .with_state(state)
}

fn authorized(state: &RouterState, headers: &HeaderMap) -> bool {
    let Some(want) = &state.token else {
        return true;
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Length first, then every byte, so the comparison time does not depend on where they differ.
    got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn list(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let v: Vec<MachineSummary> = s
        .store
        .machines()
        .into_iter()
        .map(|(k, n)| MachineSummary {
            machine: k.to_string(),
            lines: n,
        })
        .collect();
    Json(v).into_response()
}

async fn lines(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<LinesQuery>,
) -> Response {
    if !authorized(&s, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let Some(key) = s.store.resolve(&name, q.namespace.as_deref()) else {
        return error(StatusCode::NOT_FOUND, "no logs for this machine");
    };
    let lines: Vec<_> = s
        .store
        .lines(&key, q.limit)
        .iter()
        .map(|e| (**e).clone())
        .collect();
    Json(lines).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::store::{MachineKey, parse};
    use axum::body::Body;
    use axum::http::Request;
    use std::net::{IpAddr, Ipv4Addr};
    use tower::ServiceExt;

    async fn get(r: &Router, uri: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut b = Request::get(uri);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let resp = r
            .clone()
            .oneshot(b.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn serves_lines_with_token() {
        let store = Arc::new(LogStore::new(crate::syslog::Config::default().budget()));
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
        let key = MachineKey::Hardware {
            namespace: "default".into(),
            name: "node1".into(),
        };
        store.push(key, parse(b"<14>1 - node1 hook - - - hello", src, 1000));
        store.push(key_ip(), parse(b"stranger", src, 1000));
        let r = router(store, Some("s3cret".into()));
        assert_eq!(
            get(&r, "/tinkerbell/v1/logs/node1", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&r, "/tinkerbell/v1/logs/node1", Some("wrong!")).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (st, v) = get(&r, "/tinkerbell/v1/logs/node1", Some("s3cret")).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v[0]["message"], "hello");
        assert_eq!(v[0]["app"], "hook");
        let (st, v) = get(&r, "/tinkerbell/v1/logs/10.9.9.9", Some("s3cret")).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v[0]["message"], "stranger");
        assert_eq!(
            get(&r, "/tinkerbell/v1/logs/ghost", Some("s3cret")).await.0,
            StatusCode::NOT_FOUND
        );
        let (st, v) = get(&r, "/tinkerbell/v1/logs", Some("s3cret")).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v.as_array().unwrap().len(), 2);
    }

    fn key_ip() -> MachineKey {
        MachineKey::Address(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)))
    }
}
