//! Worker authentication, which upstream Tinkerbell lacks.
//!
//! Every worker ID has a token derived from the appliance's key
//! ([`tinkerbell_core::worker_token::WorkerTokenKey`]); boots puts it on the HookOS kernel
//! command line and the worker sends it as `authorization: Bearer <token>` gRPC metadata.
//! A request is allowed when its token belongs to the worker whose workflow it touches:
//! * asking for work (`GetAction`, `GetWorkflowContexts`) proves the claimed worker ID, so a
//!   machine cannot fetch another's actions by claiming its ID → `Unauthenticated`;
//! * reporting, reading actions and pushing logs name a workflow: the token must belong to the
//!   workflow's agent (`status.agentID`, else the agent of the action's task) →
//!   `PermissionDenied`.
//!
//! Operators read logs with the admin token (the store API token under `tinkerbell serve`).
//! With authentication disabled (for stock upstream workers, which send no token) every
//! request is allowed.

use std::fmt;
use std::net::IpAddr;

use tinkerbell_core::worker_token::{self, WorkerTokenKey};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// Who sent a request: its metadata (the bearer token) and its peer address (address-bound
/// worker tokens are accepted from that address only).
#[derive(Debug, Default)]
pub struct Caller {
    /// The request's gRPC metadata.
    pub meta: MetadataMap,
    /// The TCP peer's address, when the transport knows it.
    pub peer: Option<IpAddr>,
}

/// Splits a request into who sent it and its message.
pub fn caller<T>(request: Request<T>) -> (Caller, T) {
    let peer = request.remote_addr().map(|a| a.ip());
    let (meta, _, msg) = request.into_parts();
    (Caller { meta, peer }, msg)
}

/// How requests are authenticated.
#[derive(Clone, Default)]
pub struct Auth {
    /// Worker token key; None disables worker authentication.
    pub key: Option<WorkerTokenKey>,
    /// Token that may read every workflow's logs (None: only workers, or anyone when worker
    /// authentication is disabled).
    pub admin_token: Option<String>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("workers", &self.key.is_some())
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The bearer token of a request, if any.
pub fn bearer(meta: &MetadataMap) -> Option<&str> {
    let v = meta.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Auth {
    /// Whether worker authentication is on.
    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// The request proves it is `worker_id`: its token is that worker's, unexpired, and (when
    /// address-bound) sent from the address it was issued to.
    pub fn check_identity(&self, caller: &Caller, worker_id: &str) -> Result<(), Status> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let token = bearer(&caller.meta).ok_or_else(missing)?;
        key.check(worker_id, token, caller.peer, worker_token::unix_now())
            .map_err(|e| Status::unauthenticated(e.to_string()))
    }

    /// The request may act on a workflow owned by `owner`.
    pub fn check_owner(&self, caller: &Caller, owner: &str) -> Result<(), Status> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let token = bearer(&caller.meta).ok_or_else(missing)?;
        if owner.is_empty() {
            return Err(not_owner());
        }
        match key.check(owner, token, caller.peer, worker_token::unix_now()) {
            Ok(()) => Ok(()),
            Err(worker_token::TokenRejected::Invalid(_)) => Err(not_owner()),
            // The owner's own token, but expired or from elsewhere: say which.
            Err(e) => Err(Status::permission_denied(e.to_string())),
        }
    }

    /// The request may read the logs of a workflow owned by `owner`: the admin token, the
    /// owner's token, or anything when worker authentication is off and no admin token is set.
    pub fn check_reader(&self, caller: &Caller, owner: &str) -> Result<(), Status> {
        let token = bearer(&caller.meta);
        if let (Some(admin), Some(t)) = (&self.admin_token, token)
            && tinkerbell_core::api::token::constant_time_eq(admin.as_bytes(), t.as_bytes())
        {
            return Ok(());
        }
        if self.key.is_none() && self.admin_token.is_none() {
            return Ok(());
        }
        if self.key.is_some() {
            return self.check_owner(caller, owner);
        }
        Err(match token {
            None => missing(),
            Some(_) => Status::permission_denied("the bearer token may not read logs"),
        })
    }
}

fn not_owner() -> Status {
    Status::permission_denied("the bearer token does not belong to this workflow's worker")
}

fn missing() -> Status {
    Status::unauthenticated("missing `authorization: Bearer <worker token>` metadata")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(token: Option<&str>) -> Caller {
        let mut m = MetadataMap::new();
        if let Some(t) = token {
            m.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Caller {
            meta: m,
            peer: Some("10.0.0.5".parse().unwrap()),
        }
    }

    #[test]
    fn identity_owner_and_reader() {
        let key = WorkerTokenKey::from_bytes(*b"0123456789abcdef").unwrap();
        let a = key.token_for("aa:aa:aa:aa:aa:aa");
        let auth = Auth {
            key: Some(key),
            admin_token: Some("admin".into()),
        };
        assert!(
            auth.check_identity(&meta(Some(&a)), "aa:aa:aa:aa:aa:aa")
                .is_ok()
        );
        let e = auth
            .check_identity(&meta(Some(&a)), "bb:bb:bb:bb:bb:bb")
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = auth
            .check_identity(&meta(None), "aa:aa:aa:aa:aa:aa")
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = auth
            .check_owner(&meta(Some(&a)), "bb:bb:bb:bb:bb:bb")
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = auth.check_owner(&meta(Some(&a)), "").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(auth.check_reader(&meta(Some("admin")), "bb").is_ok());
        assert!(
            auth.check_reader(&meta(Some(&a)), "aa:aa:aa:aa:aa:aa")
                .is_ok()
        );
        assert!(auth.check_reader(&meta(Some(&a)), "bb").is_err());
        assert!(!format!("{auth:?}").contains("admin\""));
        let open = Auth::default();
        assert!(open.check_owner(&meta(None), "x").is_ok());
        assert!(open.check_reader(&meta(None), "x").is_ok());
    }

    #[test]
    fn expired_and_misplaced_tokens_say_why() {
        let key = WorkerTokenKey::from_bytes(*b"0123456789abcdef").unwrap();
        let old = key.issue("w", 1);
        let elsewhere = key.issue_bound("w", u64::MAX, "10.0.0.9".parse().unwrap());
        let here = key.issue_bound("w", u64::MAX, "10.0.0.5".parse().unwrap());
        let auth = Auth {
            key: Some(key),
            admin_token: None,
        };
        let e = auth.check_identity(&meta(Some(&old)), "w").unwrap_err();
        assert!(e.message().contains("expired"), "{e:?}");
        let e = auth.check_owner(&meta(Some(&elsewhere)), "w").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("bound to 10.0.0.9"), "{e:?}");
        assert!(auth.check_owner(&meta(Some(&here)), "w").is_ok());
        assert!(auth.check_identity(&meta(Some(&here)), "w").is_ok());
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(&meta(Some("abc")).meta), Some("abc"));
        let mut m = MetadataMap::new();
        m.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&m), None);
    }
}
