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
