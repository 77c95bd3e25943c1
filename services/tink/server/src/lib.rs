//! tink server: the gRPC server on port 42113 that workers poll for actions and report status to (both `proto.WorkflowService` generations), with per-Hardware worker authentication.
//!
//! This crate is a placeholder in the workspace layout: it has no code yet. See `README.md`
//! in this crate.
