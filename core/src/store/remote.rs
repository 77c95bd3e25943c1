//! A [`Store`] + [`HardwareLookup`] over an appliance's store API (`crate::api`).
//!
//! This is how the CLI, and services started as separate processes, reach the one embedded
//! store that `tinkerbell serve` owns (redb allows a single process per file).

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use super::embedded::async_stream;
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

/// Install the ring crypto provider for rustls once per process (reqwest and kube need one).
pub fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl RemoteStore {
    /// A client for the store API at `base_url` (e.g. `http://127.0.0.1:7080`).
    pub fn new(base_url: &str, token: &str) -> Result<RemoteStore, StoreError> {
        install_crypto_provider();
        let base = base_url.trim_end_matches('/').to_string();
        let unreachable = |source| StoreError::Unreachable {
            url: base.clone(),
            source,
        };
        // The platform verifier needs a CA bundle on disk; an empty root filesystem (initramfs,
        // FROM-scratch container) has none, and the store API is plain HTTP on loopback anyway.
        let http = match reqwest::Client::builder().build() {
            Ok(c) => c,
            Err(_) => reqwest::Client::builder()
                .tls_certs_only(Vec::new())
                .build()
                .map_err(unreachable)?,
        };
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

    async fn send(&self, rb: RequestBuilder) -> Result<reqwest::Response, StoreError> {
        let resp = rb.send().await.map_err(|source| StoreError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(remote_error(
            resp.status(),
            resp.text().await.unwrap_or_default(),
        ))
    }

    async fn json(&self, rb: RequestBuilder) -> Result<Value, StoreError> {
        let resp = self.send(rb).await?;
        resp.json::<Value>()
            .await
            .map_err(|source| StoreError::Unreachable {
                url: self.base.clone(),
                source,
            })
    }

    async fn object(&self, rb: RequestBuilder) -> Result<Object, StoreError> {
        Object::from_typed_json(self.json(rb).await?)
    }

    async fn lookup(&self, query: &[(&str, &str)]) -> Result<Option<Arc<Hardware>>, StoreError> {
        let rb = self
            .req(Method::GET, "/tinkerbell/v1/lookup/hardware")
            .query(query);
        match self.object(rb).await {
            Ok(Object::Hardware(h)) => Ok(Some(h)),
            Ok(other) => Err(StoreError::UnknownType {
                api_version: other.kind().api_version().into(),
                kind: other.kind().to_string(),
            }),
            Err(StoreError::Remote { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Turn an error answer (a Kubernetes `Status`, or anything else) into a [`StoreError`].
fn remote_error(status: StatusCode, body: String) -> StoreError {
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or(body);
    StoreError::Remote {
        status: status.as_u16(),
        message,
    }
}

fn decode_event(line: &[u8]) -> Result<WatchEvent, StoreError> {
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
        _ => Err(StoreError::Remote {
            status: obj.get("code").and_then(Value::as_u64).unwrap_or(500) as u16,
            message: obj
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("watch error")
                .to_string(),
        }),
    }
}

#[async_trait]
impl Store for RemoteStore {
    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, StoreError> {
        let path = Self::path(kind, Some(namespace), Some(name), false);
        match self.object(self.req(Method::GET, &path)).await {
            Err(StoreError::Remote { status: 404, .. }) => {
                Err(StoreError::NotFound(ObjectKey::new(kind, namespace, name)))
            }
            r => r,
        }
    }

    async fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        let path = Self::path(kind, namespace, None, false);
        let v = self.json(self.req(Method::GET, &path)).await?;
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
        let resp = self.send(self.req(Method::GET, &path).query(&q)).await?;
        let mut body = resp.bytes_stream();
        Ok(async_stream(move |tx| async move {
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
                    let ev = decode_event(&line[..line.len() - 1]);
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
        self.object(self.req(Method::POST, &path).json(&obj.to_json()))
            .await
    }

    async fn update(&self, obj: Object) -> Result<Object, StoreError> {
        let path = Self::path(obj.kind(), Some(obj.namespace()), Some(obj.name()), false);
        self.object(self.req(Method::PUT, &path).json(&obj.to_json()))
            .await
    }

    async fn update_status(&self, obj: Object) -> Result<Object, StoreError> {
        let path = Self::path(obj.kind(), Some(obj.namespace()), Some(obj.name()), true);
        self.object(self.req(Method::PUT, &path).json(&obj.to_json()))
            .await
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
        match self.object(rb).await {
            Err(StoreError::Remote { status: 404, .. }) => {
                Err(StoreError::NotFound(ObjectKey::new(kind, namespace, name)))
            }
            r => r,
        }
    }

    async fn apply_all(&self, objs: Vec<Object>) -> Result<Vec<(Object, Applied)>, StoreError> {
        let items: Vec<Value> = objs.iter().map(Object::to_json).collect();
        let v = self
            .json(
                self.req(Method::POST, "/tinkerbell/v1/apply")
                    .json(&json!({"items": items})),
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
    async fn hardware_by_mac(&self, mac: &str) -> Result<Option<Arc<Hardware>>, StoreError> {
        self.lookup(&[("mac", mac)]).await
    }
    async fn hardware_by_ip(&self, ip: &str) -> Result<Option<Arc<Hardware>>, StoreError> {
        self.lookup(&[("ip", ip)]).await
    }
    async fn hardware_by_agent_id(
        &self,
        agent_id: &str,
    ) -> Result<Option<Arc<Hardware>>, StoreError> {
        self.lookup(&[("agentID", agent_id)]).await
    }
    async fn hardware_by_instance_id(
        &self,
        instance_id: &str,
    ) -> Result<Option<Arc<Hardware>>, StoreError> {
        self.lookup(&[("instanceID", instance_id)]).await
    }
    async fn workflows_by_agent_id(
        &self,
        agent_id: &str,
    ) -> Result<Vec<Arc<Workflow>>, StoreError> {
        let rb = self
            .req(Method::GET, "/tinkerbell/v1/lookup/workflows")
            .query(&[("agentID", agent_id)]);
        let v = self.json(rb).await?;
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
