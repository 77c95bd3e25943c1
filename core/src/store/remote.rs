//! A [`Store`] + [`HardwareLookup`] over an appliance's store API (`crate::api`).
//!
//! This is how the CLI, and services started as separate processes, reach the one embedded
//! store that `tinkerbell serve` owns (redb allows a single process per file).

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use kube::core::Status;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use super::index::ClaimKind;
use super::shared::async_stream;
use super::{
    Applied, HardwareLookup, Kind, Object, ObjectKey, ObjectList, Store, StoreError, WatchEvent,
    WatchStream,
};
use crate::model::{Hardware, Workflow};

/// Client for the store API.
#[derive(Clone)]
pub struct RemoteStore {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("RemoteStore")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl RemoteStore {
    /// A client for the store API at `base_url` (e.g. `http://127.0.0.1:7081`); an https://
    /// one is verified against the system's CAs.
    pub fn new(base_url: &str, token: &str) -> Result<RemoteStore, StoreError> {
        tinkerbell_edge::tls::install_crypto_provider();
        // The platform verifier needs a CA bundle on disk; an empty root filesystem (initramfs,
        // FROM-scratch container) has none, and the store API is plain HTTP on loopback anyway.
        let http = match reqwest::Client::builder().build() {
            Ok(c) => Ok(c),
            Err(_) => reqwest::Client::builder()
                .tls_certs_only(Vec::new())
                .build(),
        };
        RemoteStore::build(base_url, token, http)
    }

    /// A client for an https:// store API whose certificate `tls` verifies (see
    /// [`tinkerbell_edge::tls::client_config`]: a CA, or the certificate itself).
    pub fn with_tls(
        base_url: &str,
        token: &str,
        tls: rustls::ClientConfig,
    ) -> Result<RemoteStore, StoreError> {
        tinkerbell_edge::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build();
        RemoteStore::build(base_url, token, http)
    }

    fn build(
        base_url: &str,
        token: &str,
        http: Result<reqwest::Client, reqwest::Error>,
    ) -> Result<RemoteStore, StoreError> {
        let base = base_url.trim_end_matches('/').to_string();
        let http = http.map_err(|source| StoreError::Unreachable {
            url: base.clone(),
            source,
        })?;
        Ok(RemoteStore {
            base,
            token: token.to_string(),
            http,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn path(kind: Kind, namespace: Option<&str>, name: Option<&str>, status: bool) -> String {
        let mut p = if kind.group().is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}", kind.api_version())
        };
        if let Some(ns) = namespace {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
        p.push('/');
        p.push_str(kind.plural());
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        if status {
            p.push_str("/status");
        }
        p
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
    }

    async fn send(
        &self,
        rb: RequestBuilder,
        call: &Call<'_>,
    ) -> Result<reqwest::Response, StoreError> {
        let resp = rb.send().await.map_err(|source| StoreError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        Err(remote_error(
            status,
            &resp.text().await.unwrap_or_default(),
            call,
        ))
    }

    async fn json(&self, rb: RequestBuilder, call: &Call<'_>) -> Result<Value, StoreError> {
        let resp = self.send(rb, call).await?;
        resp.json::<Value>()
            .await
            .map_err(|source| StoreError::Unreachable {
                url: self.base.clone(),
                source,
            })
    }

    /// PUT the object, or its status.
    async fn replace(&self, obj: Object, status: bool) -> Result<Object, StoreError> {
        let path = Self::path(obj.kind(), Some(obj.namespace()), Some(obj.name()), status);
        let call = Call::object(obj.key(), obj.resource_version());
        self.object(self.req(Method::PUT, &path).json(&obj.to_json()), &call)
            .await
    }

    async fn object(&self, rb: RequestBuilder, call: &Call<'_>) -> Result<Object, StoreError> {
        Object::from_typed_json(self.json(rb, call).await?)
    }
}

/// What a request was about, so a failure answer can become the same [`StoreError`] the
/// store behind the API returned (the contract is the same on every backend: a stale write is a
/// [`StoreError::Conflict`] here too, so callers' conflict retries work over the API).
#[derive(Debug, Default)]
struct Call<'a> {
    /// The kind listed, watched or written (None for the Tinkerbell routes).
    kind: Option<Kind>,
    /// The object, for object-level calls.
    key: Option<ObjectKey>,
    /// The resourceVersion the call carried.
    given: Option<&'a str>,
    /// An apply's objects: an error's `details` (kind, name) names one of them.
    batch: &'a [Object],
}

impl<'a> Call<'a> {
    fn object(key: ObjectKey, given: Option<&'a str>) -> Self {
        Call {
            kind: Some(key.kind),
            key: Some(key),
            given,
            batch: &[],
        }
    }

    fn collection(kind: Kind, given: Option<&'a str>) -> Self {
        Call {
            kind: Some(kind),
            given,
            ..Call::default()
        }
    }
}

/// Turn an error answer (a Kubernetes `Status`, or anything else) into a [`StoreError`]: the
/// specific variant [`StoreError::from_status`] finds, else [`StoreError::Remote`] with the
/// server's message.
fn remote_error(status: StatusCode, body: &str, call: &Call<'_>) -> StoreError {
    let mut parsed = serde_json::from_str::<Status>(body).unwrap_or_default();
    if parsed.code == 0 {
        parsed.code = status.as_u16();
    }
    if parsed.message.is_empty() {
        parsed.message = body.to_string();
    }
    status_error(&parsed, call)
}

/// The store error for a failure `Status`; a batch call's object is the one its details name.
fn status_error(status: &Status, call: &Call<'_>) -> StoreError {
    let batch_key = || {
        let d = status.details.as_ref()?;
        call.batch
            .iter()
            .find(|o| o.name() == d.name && o.kind().plural() == d.kind)
            .map(Object::key)
    };
    let key = call.key.clone().or_else(batch_key);
    StoreError::from_status(status, call.kind, key.as_ref(), call.given).unwrap_or_else(|| {
        StoreError::Remote {
            status: status.code,
            message: status.message.clone(),
        }
    })
}

fn decode_event(line: &[u8], call: &Call<'_>) -> Result<WatchEvent, StoreError> {
    let v: Value = serde_json::from_slice(line).map_err(|e| StoreError::Decode {
        what: "watch event".into(),
        source: e,
    })?;
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
    let obj = v.get("object").cloned().unwrap_or(Value::Null);
    match ty {
        "ADDED" => Ok(WatchEvent::Added(Object::from_typed_json(obj)?)),
        "MODIFIED" => Ok(WatchEvent::Modified(Object::from_typed_json(obj)?)),
        "DELETED" => Ok(WatchEvent::Deleted(Object::from_typed_json(obj)?)),
        _ => {
            let mut status: Status = serde_json::from_value(obj).unwrap_or_default();
            if status.code == 0 {
                status.code = 500;
            }
            if status.message.is_empty() {
                status.message = "watch error".into();
            }
            Err(status_error(&status, call))
        }
    }
}

#[async_trait]
impl Store for RemoteStore {
    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, StoreError> {
        let path = Self::path(kind, Some(namespace), Some(name), false);
        let call = Call::object(ObjectKey::new(kind, namespace, name), None);
        self.object(self.req(Method::GET, &path), &call).await
    }

    async fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        let path = Self::path(kind, namespace, None, false);
        let v = self
            .json(self.req(Method::GET, &path), &Call::collection(kind, None))
            .await?;
        let resource_version = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let items = match v.get("items") {
            Some(Value::Array(items)) => items
                .iter()
                .cloned()
                .map(Object::from_typed_json)
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        Ok(ObjectList {
            items,
            resource_version,
        })
    }

    async fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        since: Option<&str>,
    ) -> Result<WatchStream, StoreError> {
        let path = Self::path(kind, namespace, None, false);
        let mut q = vec![("watch", "true")];
        if let Some(rv) = since {
            q.push(("resourceVersion", rv));
        }
        let resp = self
            .send(
                self.req(Method::GET, &path).query(&q),
                &Call::collection(kind, since),
            )
            .await?;
        let mut body = resp.bytes_stream();
        let since = since.map(str::to_string);
        Ok(async_stream(move |tx| async move {
            let call = Call::collection(kind, since.as_deref());
            let mut buf: Vec<u8> = Vec::new();
            loop {
                let chunk = tokio::select! {
                    c = body.next() => c,
                    () = tx.closed() => return,
                };
                let Some(Ok(chunk)) = chunk else { return };
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    if line.len() <= 1 {
                        continue;
                    }
                    let ev = decode_event(&line[..line.len() - 1], &call);
                    let stop = ev.is_err();
                    if tx.send(ev).await.is_err() || stop {
                        return;
                    }
                }
            }
        }))
    }

    async fn create(&self, obj: Object) -> Result<Object, StoreError> {
        let path = Self::path(obj.kind(), Some(obj.namespace()), None, false);
        let call = Call::object(obj.key(), None);
        self.object(self.req(Method::POST, &path).json(&obj.to_json()), &call)
            .await
    }

    async fn update(&self, obj: Object) -> Result<Object, StoreError> {
        self.replace(obj, false).await
    }

    async fn update_status(&self, obj: Object) -> Result<Object, StoreError> {
        self.replace(obj, true).await
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Object, StoreError> {
        let path = Self::path(kind, Some(namespace), Some(name), false);
        let mut rb = self.req(Method::DELETE, &path);
        if let Some(rv) = resource_version {
            rb = rb.json(&json!({"preconditions": {"resourceVersion": rv}}));
        }
        let call = Call::object(ObjectKey::new(kind, namespace, name), resource_version);
        self.object(rb, &call).await
    }

    async fn apply_all(&self, objs: Vec<Object>) -> Result<Vec<(Object, Applied)>, StoreError> {
        let items: Vec<Value> = objs.iter().map(Object::to_json).collect();
        let call = Call {
            batch: &objs,
            ..Call::default()
        };
        let v = self
            .json(
                self.req(Method::POST, "/tinkerbell/v1/apply")
                    .json(&json!({"items": items})),
                &call,
            )
            .await?;
        let results = v
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        results
            .into_iter()
            .map(|r| {
                let applied = match r.get("result").and_then(Value::as_str) {
                    Some("created") => Applied::Created,
                    Some("configured") => Applied::Configured,
                    _ => Applied::Unchanged,
                };
                let obj = Object::from_typed_json(r.get("object").cloned().unwrap_or(Value::Null))?;
                Ok((obj, applied))
            })
            .collect()
    }
}

#[async_trait]
impl HardwareLookup for RemoteStore {
    async fn hardware_by(
        &self,
        claim: ClaimKind,
        value: &str,
    ) -> Result<Option<Arc<Hardware>>, StoreError> {
        let rb = self
            .req(Method::GET, "/tinkerbell/v1/lookup/hardware")
            .query(&[(claim.param(), value)]);
        match self.object(rb, &Call::default()).await {
            Ok(Object::Hardware(h)) => Ok(Some(h)),
            Ok(other) => Err(StoreError::UnknownType {
                api_version: other.kind().api_version().into(),
                kind: other.kind().to_string(),
            }),
            Err(StoreError::Remote { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn workflows_by_agent_id(
        &self,
        agent_id: &str,
    ) -> Result<Vec<Arc<Workflow>>, StoreError> {
        let rb = self
            .req(Method::GET, "/tinkerbell/v1/lookup/workflows")
            .query(&[("agentID", agent_id)]);
        let v = self.json(rb, &Call::default()).await?;
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        items
            .into_iter()
            .map(|i| match Object::from_typed_json(i)? {
                Object::Workflow(w) => Ok(w),
                other => Err(StoreError::UnknownType {
                    api_version: other.kind().api_version().into(),
                    kind: other.kind().to_string(),
                }),
            })
            .collect()
    }
}
