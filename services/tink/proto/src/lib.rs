//! tink proto: our proto3 rendering of upstream's `proto.WorkflowService` (both generations),
//! shared by the tink server and the worker.
//!
//! Placeholder in the workspace layout: the schema and generated code land with the tink server.
