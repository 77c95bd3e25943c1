//! One `proto.WorkflowService` for both generations.
//!
//! Upstream's two generations use the same service name with different methods, so a gRPC
//! server can register only one of them under that name. This router takes every
//! `/proto.WorkflowService/*` request and hands it to the generated server of the generation
//! that owns the method: `GetAction` → current, `GetWorkflowContexts` and
//! `GetWorkflowActions` → legacy. `ReportActionStatus` exists in both with different request
//! messages, so its (small, unary) body is buffered and the message is classified by the wire
//! types of its fields ([`classify_report`]) before it is passed on unchanged.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use tinkerbell_tink_proto::{current, legacy};
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

/// Largest `ReportActionStatus` request buffered for classification (held only while the
/// request is handled). A worker's message may use most of it; what the Workflow's status
/// keeps of it is cut to [`tinkerbell_tink_workflow::state::MAX_MESSAGE_BYTES`].
const MAX_REPORT: usize = 1 << 20;

/// Which generation a `ReportActionStatus` request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// `proto.ActionStatusRequest` (tink-agent).
    Current,
    /// `proto.WorkflowActionStatus` (tink-worker).
    Legacy,
}

/// Tell the two `ReportActionStatus` request messages apart by their fields' wire types.
///
/// Fields 4–6 differ: legacy `action_status=4` (enum, varint), `seconds=5` (int64, varint),
/// `message=6` (string); current `action_id=4` and `action_name=5` (strings), `action_state=6`
/// (enum, varint), plus fields 9 and 10 that legacy lacks. A legacy worker always sends
/// `action_status` unless it reports `STATE_PENDING` (0, which the server rejects anyway), and
/// current agents set fields explicitly, so real messages always carry a deciding field. A
/// message with none (or one that does not parse) is treated as current.
pub fn classify_report(msg: &[u8]) -> Generation {
    let mut rest = msg;
    while !rest.is_empty() {
        let Some(key) = read_varint(&mut rest) else {
            break;
        };
        let (field, wire) = (key >> 3, key & 7);
        match (field, wire) {
            (4 | 5, 0) | (6, 2) => return Generation::Legacy,
            (4 | 5 | 9 | 10, 2) | (6, 0) => return Generation::Current,
            _ => {}
        }
        let skipped = match wire {
            0 => read_varint(&mut rest).map(|_| ()),
            1 => skip(&mut rest, 8),
            2 => read_varint(&mut rest)
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| skip(&mut rest, n)),
            5 => skip(&mut rest, 4),
            _ => None,
        };
        if skipped.is_none() {
            break;
        }
    }
    Generation::Current
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn skip(buf: &mut &[u8], n: usize) -> Option<()> {
    *buf = buf.get(n..)?;
    Some(())
}

/// The combined `proto.WorkflowService`.
#[derive(Debug, Clone)]
pub struct WorkflowRouter<C, L> {
    current: current::workflow_service_server::WorkflowServiceServer<C>,
    legacy: legacy::workflow_service_server::WorkflowServiceServer<L>,
}

impl<C, L> WorkflowRouter<C, L>
where
    C: current::workflow_service_server::WorkflowService,
    L: legacy::workflow_service_server::WorkflowService,
{
    /// Route between the two generated servers.
    pub fn new(
        current: current::workflow_service_server::WorkflowServiceServer<C>,
        legacy: legacy::workflow_service_server::WorkflowServiceServer<L>,
    ) -> Self {
        WorkflowRouter { current, legacy }
    }
}

impl<C, L> NamedService for WorkflowRouter<C, L> {
    const NAME: &'static str = tinkerbell_tink_proto::WORKFLOW_SERVICE;
}

impl<C, L> Service<http::Request<Body>> for WorkflowRouter<C, L>
where
    C: current::workflow_service_server::WorkflowService,
    L: legacy::workflow_service_server::WorkflowService,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        let mut current = self.current.clone();
        let mut legacy = self.legacy.clone();
        Box::pin(async move {
            match method.as_str() {
                "GetWorkflowContexts" | "GetWorkflowActions" => legacy.call(req).await,
                "ReportActionStatus" => {
                    let (parts, body) = req.into_parts();
                    let bytes = match Limited::new(body, MAX_REPORT).collect().await {
                        Ok(c) => c.to_bytes(),
                        Err(e) => {
                            tracing::debug!(error = %e, "ReportActionStatus body");
                            return Ok(tonic::Status::invalid_argument(
                                "cannot read the ReportActionStatus request",
                            )
                            .into_http());
                        }
                    };
                    let generation = classify_frame(&bytes);
                    let req = http::Request::from_parts(parts, Body::new(Full::new(bytes)));
                    match generation {
                        Generation::Legacy => legacy.call(req).await,
                        Generation::Current => current.call(req).await,
                    }
                }
                _ => current.call(req).await,
            }
        })
    }
}

/// Classify the first gRPC frame of a body (5-byte header: compressed flag, length).
fn classify_frame(body: &Bytes) -> Generation {
    match body.first() {
        Some(0) if body.len() >= 5 => {
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            let end = (5 + len).min(body.len());
            classify_report(&body[5..end])
        }
        _ => Generation::Current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tinkerbell_tink_proto::current::{ActionMessage, ActionStatusRequest};
    use tinkerbell_tink_proto::legacy::{State, WorkflowActionStatus};

    #[test]
    fn reports_are_told_apart() {
        for s in [State::Running, State::Success, State::Failed] {
            let m = WorkflowActionStatus {
                workflow_id: "default/wf".into(),
                task_name: "t".into(),
                action_name: "a".into(),
                action_status: s as i32,
                ..Default::default()
            };
            assert_eq!(
                classify_report(&m.encode_to_vec()),
                Generation::Legacy,
                "{s:?}"
            );
        }
        let m = WorkflowActionStatus {
            workflow_id: "default/wf".into(),
            seconds: 3,
            message: "done".into(),
            ..Default::default()
        };
        assert_eq!(classify_report(&m.encode_to_vec()), Generation::Legacy);
        let m = ActionStatusRequest {
            workflow_id: Some("default/wf".into()),
            agent_id: Some("x".into()),
            task_id: Some("t".into()),
            action_id: Some("a".into()),
            action_state: Some(2),
            ..Default::default()
        };
        assert_eq!(classify_report(&m.encode_to_vec()), Generation::Current);
        let m = ActionStatusRequest {
            message: Some(ActionMessage {
                message: Some("m".into()),
            }),
            ..Default::default()
        };
        assert_eq!(classify_report(&m.encode_to_vec()), Generation::Current);
        assert_eq!(classify_report(&[0xff]), Generation::Current);
        assert_eq!(classify_report(&[]), Generation::Current);
    }
}
