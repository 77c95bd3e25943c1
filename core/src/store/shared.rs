//! Helpers every backend (and the mover) shares: the object as an API server stores it, and
//! the stream shape of a watch.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use serde_json::Value;

use super::{Kind, Object, StoreError, WatchEvent, WatchStream};

/// The object as an API server stores it, in JSON: Secrets with `stringData` folded into
/// `data` and `type` defaulted to `Opaque`; custom resources with their CRD's schema defaults
/// filled in (a Machine written without `port` reads back with 623). Comparing two objects
/// through this view tells whether writing one over the other would change anything, whichever
/// backend they came from (the mover's content hash and `apply_all`'s Unchanged both use it).
pub fn server_view(obj: &Object) -> Value {
    match obj {
        Object::Secret(s) => {
            let mut s = (**s).clone();
            if let Some(sd) = s.string_data.take() {
                let data = s.data.get_or_insert_with(Default::default);
                for (k, v) in sd {
                    data.insert(k, ByteString(v.into_bytes()));
                }
            }
            s.type_.get_or_insert_with(|| "Opaque".to_string());
            Object::Secret(Arc::new(s)).to_json()
        }
        other => with_schema_defaults(other.kind(), other.to_json()),
    }
}

/// `v` (an object of `kind` as JSON) with the defaults of `kind`'s CRD schema filled in, as the
/// API server fills them in on every write (Secrets have no schema and come back unchanged).
pub fn with_schema_defaults(kind: Kind, mut v: Value) -> Value {
    if let Some(schema) = crd_schema(kind) {
        apply_schema_defaults(schema, &mut v);
    }
    v
}

/// The openAPIV3Schema of `kind`'s CRD (None for Secrets).
fn crd_schema(kind: Kind) -> Option<&'static Value> {
    static SCHEMAS: std::sync::OnceLock<HashMap<String, Value>> = std::sync::OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            crate::model::all_crds()
                .into_iter()
                .filter_map(|crd| {
                    let schema = crd.spec.versions.first()?.schema.as_ref()?;
                    let v = serde_json::to_value(schema.open_api_v3_schema.as_ref()?).ok()?;
                    Some((crd.spec.names.kind, v))
                })
                .collect()
        })
        .get(kind.as_str())
}

/// Structural-schema defaulting as the API server does it on every write: inside each object
/// that is present, a missing property whose schema has a `default` gets it.
pub fn apply_schema_defaults(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (name, sub) in props {
                if !map.contains_key(name)
                    && let Some(d) = sub.get("default")
                {
                    map.insert(name.clone(), d.clone());
                }
                if let Some(child) = map.get_mut(name) {
                    apply_schema_defaults(sub, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for item in items {
                    apply_schema_defaults(sub, item);
                }
            }
        }
        _ => {}
    }
}

/// A stream fed by a spawned producer; the producer stops when the stream is dropped.
pub(crate) fn async_stream<F, Fut>(producer: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<WatchEvent, StoreError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(producer(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
