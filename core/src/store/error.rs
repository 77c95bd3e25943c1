//! Errors at the store boundary. Each variant says what the caller can do about it; the HTTP
//! API maps them to Kubernetes-style status codes in one place (`api::error`).

use std::path::PathBuf;

use super::{Kind, ObjectKey};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(ObjectKey),

    /// `create` of an object that exists.
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),

    /// A conditional write was based on an old resourceVersion.
    #[error(
        "conflict: {key} is at resourceVersion {current}, the write was based on {given}; read it again and retry"
    )]
    Conflict {
        /// The object.
        key: ObjectKey,
        /// Its current resourceVersion.
        current: String,
        /// The resourceVersion the write carried.
        given: String,
    },

    /// The object is not valid; `field` is a JSON path such as `spec.interfaces[0].dhcp.mac`.
    #[error("invalid {key}: {field}: {message}")]
    Invalid {
        /// The object.
        key: ObjectKey,
        /// Offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// Two Hardware would claim the same MAC, IP, agent ID or instance ID.
    #[error("{key}: {field} {value:?} is already claimed by Hardware {owner}")]
    Duplicate {
        /// The object being written.
        key: ObjectKey,
        /// Which identity (`mac`, `ip`, `agentID`, `instance id`) and where.
        field: String,
        /// The claimed value.
        value: String,
        /// `namespace/name` of the Hardware that holds it.
        owner: String,
    },

    /// An apiVersion/kind pair this appliance does not store.
    #[error("unknown type apiVersion {api_version:?} kind {kind:?}")]
    UnknownType {
        /// What the document said.
        api_version: String,
        /// What the document said.
        kind: String,
    },

    /// A stored or received object could not be decoded.
    #[error("cannot decode {what}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },

    /// A watch asked for history the store no longer has, or fell too far behind.
    #[error("watch of {kind} from resourceVersion {resource_version} expired: list again")]
    Expired {
        /// Kind watched.
        kind: Kind,
        /// Requested or last delivered resourceVersion.
        resource_version: String,
    },

    /// The resourceVersion is not one this backend issued.
    #[error("bad resourceVersion {0:?}")]
    BadResourceVersion(String),

    /// The store file exists but was not written by tinkerbell-rs (or by a newer format).
    #[error("{path} is not a tinkerbell-rs store: {reason}")]
    NotOurs {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },

    /// The store is held by another process.
    #[error("{path} is in use by another process (is `tinkerbell serve` already running?)")]
    Locked {
        /// The file.
        path: PathBuf,
    },

    /// The embedded database failed.
    #[error("embedded store at {path}")]
    Database {
        /// The file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::Error,
    },

    /// The Kubernetes API failed.
    #[error("kubernetes API")]
    Kube(#[source] kube::Error),

    /// A named Kubernetes API call failed (set-up calls: CRDs, namespaces, leases).
    #[error("kubernetes API: {what}")]
    KubeCall {
        /// What was being read or written.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },

    /// A service cannot work against this cluster: `what` it tried, and the `cause` in the
    /// operator's terms (unreachable, credentials refused, RBAC forbidden, no such namespace).
    #[error("kubernetes API: {what}: {cause}")]
    KubeAccess {
        /// What was tried.
        what: String,
        /// Why it failed.
        cause: String,
    },

    /// The cluster does not have (all of) the Tinkerbell CRDs.
    #[error(
        "the cluster lacks the Tinkerbell CRDs: {}; install them with `kubectl apply --server-side -f deploy/crds/` or the Helm chart",
        missing.join(", ")
    )]
    CrdsMissing {
        /// The missing CRDs' names, each with why when it exists but is not usable.
        missing: Vec<String>,
    },

    /// The remote store API answered with an error.
    #[error("store API answered {status}: {message}")]
    Remote {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },

    /// The remote store API could not be reached.
    #[error("cannot reach the store API at {url}")]
    Unreachable {
        /// Base URL.
        url: String,
        /// Transport error.
        #[source]
        source: reqwest::Error,
    },

    /// The backend is shutting down or its background task has stopped.
    #[error("store is shutting down")]
    Closed,
}

impl StoreError {
    /// The HTTP status code a Kubernetes API server would use for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::NotFound(_) => 404,
            StoreError::AlreadyExists(_) | StoreError::Conflict { .. } => 409,
            StoreError::Duplicate { .. } => 409,
            StoreError::Invalid { .. } | StoreError::UnknownType { .. } => 422,
            StoreError::Decode { .. } | StoreError::BadResourceVersion(_) => 400,
            StoreError::Expired { .. } => 410,
            StoreError::Remote { status, .. } => *status,
            StoreError::Closed | StoreError::Unreachable { .. } => 503,
            StoreError::Kube(kube::Error::Api(s))
            | StoreError::KubeCall {
                source: kube::Error::Api(s),
                ..
            } => s.code,
            StoreError::CrdsMissing { .. } => 503,
            StoreError::NotOurs { .. }
            | StoreError::Locked { .. }
            | StoreError::Database { .. }
            | StoreError::Kube(_)
            | StoreError::KubeCall { .. }
            | StoreError::KubeAccess { .. } => 500,
        }
    }
}
