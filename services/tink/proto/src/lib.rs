//! tink proto: our proto3 rendering of upstream's `proto.WorkflowService` (both generations),
//! and the `tinkerbell.v1.WorkerLogs` extension, shared by the tink server and the worker.
//!
//! Why our own schema: upstream's current protos use `edition = "2023"`, which protox and
//! prost cannot compile. `proto/workflow_current.proto` is a proto3 file with the same package,
//! message and field names, numbers and types, and `optional` on every singular field — the
//! wire equivalent of edition 2023's explicit presence. The legacy generation was proto3
//! upstream already.
//!
//! Both generations are the service `proto.WorkflowService` with different methods, and both
//! have a `ReportActionStatus` with different request types; a gRPC server can only register
//! the name once, so the tink server dispatches the one path to either generation (see
//! `tinkerbell-tink-server`). Clients just use the module of their generation.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The current (monorepo, tink-agent) generation: `GetAction` and `ReportActionStatus`.
pub mod current {
    include!(concat!(env!("OUT_DIR"), "/current/proto.rs"));
}

/// The legacy (standalone tink v0.8–v0.12, tink-worker) generation: `GetWorkflowContexts`,
/// `GetWorkflowActions` and `ReportActionStatus`.
pub mod legacy {
    include!(concat!(env!("OUT_DIR"), "/legacy/proto.rs"));
}

/// `tinkerbell.v1.WorkerLogs`: action logs pushed by workers, read by operators.
pub mod logs {
    include!(concat!(env!("OUT_DIR"), "/logs/tinkerbell.v1.rs"));
}

/// The full gRPC service name both generations use.
pub const WORKFLOW_SERVICE: &str = "proto.WorkflowService";

pub use prost_types::Timestamp;

#[cfg(test)]
mod tests {
    //! Wire compatibility with upstream's edition-2023 schema. The golden bytes were produced
    //! by libprotoc 35.1 (PyPI grpcio-tools) with `--encode` against an edition-2023 file of
    //! the same messages; prost must decode them with field presence intact and encode the
    //! same values back to the same bytes.

    use prost::Message;

    use super::current::{ActionMessage, ActionResponse, ActionStatusRequest, Namespaces};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn action_status_request_matches_edition_2023_bytes() {
        let golden = hex("0a0a64656661756c742f7766220261312a0030023a060880e2cfaa0652040a026869");
        let m = ActionStatusRequest::decode(golden.as_slice()).unwrap();
        assert_eq!(m.workflow_id.as_deref(), Some("default/wf"));
        assert_eq!(m.action_id.as_deref(), Some("a1"));
        assert_eq!(
            m.action_name.as_deref(),
            Some(""),
            "explicit presence of an empty string"
        );
        assert_eq!(m.agent_id, None);
        assert_eq!(m.action_state, Some(2), "RUNNING");
        assert_eq!(m.execution_start.map(|t| t.seconds), Some(1_700_000_000));
        assert_eq!(
            m.message,
            Some(ActionMessage {
                message: Some("hi".into())
            })
        );
        assert_eq!(m.encode_to_vec(), golden);
    }

    #[test]
    fn action_response_matches_edition_2023_bytes() {
        let golden = hex(concat!(
            "0a0a64656661756c742f77661201741a1135323a35343a30303a30303a30303a3061220261312a06",
            "73747265616d3203696d6738004202736842022d635203413d315a04686f737462061204686f7374"
        ));
        let m = ActionResponse {
            workflow_id: Some("default/wf".into()),
            task_id: Some("t".into()),
            agent_id: Some("52:54:00:00:00:0a".into()),
            action_id: Some("a1".into()),
            name: Some("stream".into()),
            image: Some("img".into()),
            timeout: Some(0),
            command: vec!["sh".into(), "-c".into()],
            volumes: vec![],
            environment: vec!["A=1".into()],
            pid: Some("host".into()),
            namespaces: Some(Namespaces {
                network: None,
                pid: Some("host".into()),
            }),
        };
        assert_eq!(
            m.encode_to_vec(),
            golden,
            "timeout 0 is sent, as edition 2023 does"
        );
        assert_eq!(ActionResponse::decode(golden.as_slice()).unwrap(), m);
    }
}
