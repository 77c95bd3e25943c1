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

    /// The store file was written by a newer tinkerbell-rs, in a format this one cannot read.
    /// Nothing was changed.
    #[error(
        "{path} is store format version {found} (written by {writer}); this {binary} reads versions up to {supported}: run that version or newer, or restore a backup taken before the upgrade"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its format version.
        found: u32,
        /// The newest version this binary reads.
        supported: u32,
        /// The binary that last wrote the format ("an unknown version" when not recorded).
        writer: String,
        /// This binary.
        binary: String,
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
            | StoreError::TooNew { .. }
            | StoreError::Locked { .. }
            | StoreError::Database { .. }
            | StoreError::Kube(_)
            | StoreError::KubeCall { .. }
            | StoreError::KubeAccess { .. } => 500,
        }
    }

    /// The error a failure `Status` stands for, read the same way from Kubernetes and from
    /// the store API (which writes its errors as Kubernetes does, `api::status_details`):
    ///
    /// * 410, or reason `Expired`/`Gone`: [`StoreError::Expired`] (needs `kind`);
    /// * 404: [`StoreError::NotFound`]; 409 `AlreadyExists`: [`StoreError::AlreadyExists`];
    /// * 409 with `FieldValueDuplicate` and `ClaimedBy` causes: [`StoreError::Duplicate`];
    /// * any other 409: [`StoreError::Conflict`], the current resourceVersion from a
    ///   `ResourceVersionCurrent` cause or the message (`... ResourceVersion in record (6)`);
    /// * 422: [`StoreError::Invalid`] with the `FieldValueInvalid` cause (else the first one).
    ///
    /// `key` is the object of an object-level call, `given` the resourceVersion it carried.
    /// `None` when the status means nothing more specific (or, but for expiry, there is no
    /// key): the caller keeps its own error.
    pub fn from_status(
        status: &kube::core::Status,
        kind: Option<super::Kind>,
        key: Option<&ObjectKey>,
        given: Option<&str>,
    ) -> Option<StoreError> {
        let reason = status.reason.as_str();
        if status.code == 410 || reason == "Expired" || reason == "Gone" {
            return Some(StoreError::Expired {
                kind: kind.or(key.map(|k| k.kind))?,
                resource_version: given.unwrap_or("").to_string(),
            });
        }
        let key = key?.clone();
        let causes = status
            .details
            .as_ref()
            .map(|d| d.causes.as_slice())
            .unwrap_or_default();
        let cause = |r: &str| causes.iter().find(|c| c.reason == r);
        Some(match status.code {
            404 => StoreError::NotFound(key),
            409 if reason == "AlreadyExists" => StoreError::AlreadyExists(key),
            409 => match (cause("FieldValueDuplicate"), cause("ClaimedBy")) {
                (Some(dup), Some(owner)) => StoreError::Duplicate {
                    key,
                    field: dup.field.clone(),
                    value: dup.message.clone(),
                    owner: owner.message.clone(),
                },
                _ => StoreError::Conflict {
                    key,
                    current: cause("ResourceVersionCurrent")
                        .map(|c| c.message.clone())
                        .or_else(|| record_rv(&status.message))
                        .unwrap_or_default(),
                    given: cause("ResourceVersionGiven")
                        .map(|c| c.message.clone())
                        .or_else(|| given.map(str::to_string))
                        .unwrap_or_default(),
                },
            },
            422 => {
                let c = cause("FieldValueInvalid").or(causes.first());
                StoreError::Invalid {
                    key,
                    field: c.map(|c| c.field.clone()).unwrap_or_default(),
                    message: c
                        .map(|c| c.message.clone())
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| status.message.clone()),
                }
            }
            _ => return None,
        })
    }
}

/// The current resourceVersion from a failed precondition's message ("... does not match the
/// ResourceVersion in record (6) ...", as kube-apiserver words it).
fn record_rv(message: &str) -> Option<String> {
    let rest = message.split_once("ResourceVersion in record (")?.1;
    Some(rest.split_once(')')?.0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Kind;
    use kube::core::Status;
    use kube::core::response::{StatusCause, StatusDetails};

    fn status(code: u16, reason: &str, message: &str, causes: &[(&str, &str, &str)]) -> Status {
        Status {
            code,
            reason: reason.into(),
            message: message.into(),
            details: Some(StatusDetails {
                name: "m2".into(),
                group: String::new(),
                kind: "hardware".into(),
                uid: String::new(),
                causes: causes
                    .iter()
                    .map(|(r, f, m)| StatusCause {
                        reason: (*r).into(),
                        field: (*f).into(),
                        message: (*m).into(),
                    })
                    .collect(),
                retry_after_seconds: 0,
            }),
            ..Status::default()
        }
    }

    /// Kubernetes' and the store API's statuses mean the same errors.
    #[test]
    fn statuses_map_to_store_errors() {
        let key = ObjectKey::new(Kind::Hardware, "ns", "m2");
        let k = Some(&key);
        let map =
            |s: Status, key| StoreError::from_status(&s, Some(Kind::Hardware), key, Some("5"));
        assert!(matches!(
            map(status(404, "NotFound", "", &[]), k),
            Some(StoreError::NotFound(_))
        ));
        assert!(matches!(
            map(status(409, "AlreadyExists", "", &[]), k),
            Some(StoreError::AlreadyExists(_))
        ));
        let dup = status(
            409,
            "Conflict",
            "",
            &[
                (
                    "FieldValueDuplicate",
                    "spec.interfaces[0].dhcp.mac",
                    "aa:bb",
                ),
                ("ClaimedBy", "", "ns/m1"),
            ],
        );
        match map(dup, k) {
            Some(StoreError::Duplicate {
                field,
                value,
                owner,
                ..
            }) => {
                assert_eq!(
                    (field.as_str(), value.as_str(), owner.as_str()),
                    ("spec.interfaces[0].dhcp.mac", "aa:bb", "ns/m1")
                );
            }
            other => panic!("{other:?}"),
        }
        // kube-apiserver's precondition message, and the store API's causes.
        let msg = "Precondition failed: UID in precondition: x, the ResourceVersion in the precondition (5) does not match the ResourceVersion in record (6). The object might have been modified";
        match map(status(409, "Conflict", msg, &[]), k) {
            Some(StoreError::Conflict { current, given, .. }) => {
                assert_eq!((current.as_str(), given.as_str()), ("6", "5"))
            }
            other => panic!("{other:?}"),
        }
        let api = status(
            409,
            "Conflict",
            "stale",
            &[
                ("ResourceVersionCurrent", "", "9"),
                ("ResourceVersionGiven", "", "7"),
            ],
        );
        match map(api, k) {
            Some(StoreError::Conflict { current, given, .. }) => {
                assert_eq!((current.as_str(), given.as_str()), ("9", "7"))
            }
            other => panic!("{other:?}"),
        }
        match map(
            status(
                422,
                "Invalid",
                "bad",
                &[("FieldValueInvalid", "metadata.name", "not DNS-1123")],
            ),
            k,
        ) {
            Some(StoreError::Invalid { field, message, .. }) => assert_eq!(
                (field.as_str(), message.as_str()),
                ("metadata.name", "not DNS-1123")
            ),
            other => panic!("{other:?}"),
        }
        // Expiry needs no key; the rest do.
        assert!(matches!(
            map(status(410, "Expired", "too old", &[]), None),
            Some(StoreError::Expired { resource_version, .. }) if resource_version == "5"
        ));
        assert!(map(status(404, "NotFound", "", &[]), None).is_none());
        assert!(map(status(500, "InternalError", "", &[]), k).is_none());
    }
}
