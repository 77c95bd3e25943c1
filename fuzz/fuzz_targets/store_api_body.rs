//! The store API router (`tinkerbell_core::api::router`, what `tinkerbell serve` answers the CLI
//! and separately started services with) on fuzzed requests: resource paths and queries, and
//! the bodies of `POST/PUT` (one object, checked against the path) and of
//! `POST /tinkerbell/v1/apply` (a list of typed objects). The backend behind it is a stand-in
//! that accepts every write and echoes it, so what is fuzzed is the API layer's own parsing
//! and error mapping. Nothing may panic, and:
//! * no request gets a 500 (with a backend that never fails, every error is the client's);
//! * every successful answer (but `/healthz` and `/metrics`) is JSON;
//! * without the right bearer token, everything but `/healthz` and `/metrics` is a 401;
//! * every object the API hands to the store decodes from its own JSON again, to the same
//!   JSON (what the store writes is what it reads back).
//!
//! Input: a method byte (low three bits: GET, POST, PUT, DELETE, PATCH, GET, POST, POST; bit 3
//! sends a wrong bearer token), the URI up to the first `\n` (empty: `/tinkerbell/v1/apply`),
//! then the body.
#![no_main]

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use tinkerbell_core::model::{Hardware, Workflow};
use tinkerbell_core::store::{
    Applied, HardwareLookup, Kind, Object, ObjectKey, ObjectList, Store, StoreError, WatchStream,
};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";

/// Accepts every write and returns it; holds nothing.
struct Echo;

/// The round trip every stored object goes through: to JSON and back.
fn stored(o: Object) -> Object {
    let json = o.to_json();
    let again = Object::from_typed_json(json.clone()).unwrap_or_else(|e| {
        panic!(
            "an accepted {} does not decode from its own JSON: {e}\n{json}",
            o.kind()
        )
    });
    assert_eq!(
        again.to_json(),
        json,
        "{}: JSON round trip changed the object",
        o.kind()
    );
    o
}

#[async_trait]
impl Store for Echo {
    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, StoreError> {
        Err(StoreError::NotFound(ObjectKey::new(kind, namespace, name)))
    }
    async fn list(&self, _kind: Kind, _namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        Ok(ObjectList {
            items: Vec::new(),
            resource_version: "1".into(),
        })
    }
    async fn watch(
        &self,
        _: Kind,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<WatchStream, StoreError> {
        Ok(futures::stream::empty().boxed())
    }
    async fn create(&self, obj: Object) -> Result<Object, StoreError> {
        Ok(stored(obj))
    }
    async fn update(&self, obj: Object) -> Result<Object, StoreError> {
        Ok(stored(obj))
    }
    async fn update_status(&self, obj: Object) -> Result<Object, StoreError> {
        Ok(stored(obj))
    }
    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        _: Option<&str>,
    ) -> Result<Object, StoreError> {
        Err(StoreError::NotFound(ObjectKey::new(kind, namespace, name)))
    }
    async fn apply_all(&self, objs: Vec<Object>) -> Result<Vec<(Object, Applied)>, StoreError> {
        Ok(objs
            .into_iter()
            .map(|o| (stored(o), Applied::Created))
            .collect())
    }
}

#[async_trait]
impl HardwareLookup for Echo {
    async fn hardware_by_mac(&self, _: &str) -> Result<Option<Arc<Hardware>>, StoreError> {
        Ok(None)
    }
    async fn hardware_by_ip(&self, _: &str) -> Result<Option<Arc<Hardware>>, StoreError> {
        Ok(None)
    }
    async fn hardware_by_agent_id(&self, _: &str) -> Result<Option<Arc<Hardware>>, StoreError> {
        Ok(None)
    }
    async fn hardware_by_instance_id(&self, _: &str) -> Result<Option<Arc<Hardware>>, StoreError> {
        Ok(None)
    }
    async fn workflows_by_agent_id(&self, _: &str) -> Result<Vec<Arc<Workflow>>, StoreError> {
        Ok(Vec::new())
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: Router,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        router: tinkerbell_core::api::router(Arc::new(Echo), TOKEN, Default::default()),
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let method = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::GET,
        Method::POST,
        Method::POST,
    ][usize::from(sel & 7)]
    .clone();
    let (uri, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let uri: &[u8] = if uri.is_empty() {
        b"/tinkerbell/v1/apply"
    } else {
        uri
    };
    let token = if sel & 8 != 0 { "wrong" } else { TOKEN };
    let Ok(uri) = axum::http::Uri::try_from(uri) else {
        return;
    };
    let path = uri.path().to_string();
    let Ok(req) = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    let (status, json, bytes) = f.rt.block_on(async {
        let resp = f.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("response body");
        (status, json, bytes)
    });
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "500: {}",
        String::from_utf8_lossy(&bytes)
    );
    let open = matches!(path.as_str(), "/healthz" | "/metrics");
    if status.is_success() && !open {
        assert!(json, "{status} without a JSON content type");
        // A watch answers newline-delimited JSON (none here: the stand-in has no events).
        if !bytes.is_empty() {
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status} body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            });
        }
    }
    if sel & 8 != 0 && !open {
        // Everything but the health and metrics endpoints needs the token.
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} answered with a wrong token"
        );
    }
});
