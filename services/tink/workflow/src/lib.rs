//! tink workflow: the pure logic of workflows, shared by the tink server and controller.
//!
//! * [`state`]: the workflow state machine (PREPARING → PENDING → RUNNING → POST → SUCCESS,
//!   FAILED, TIMEOUT) as functions over a Workflow's status: what to serve a worker, how a
//!   worker's report changes the status, timeouts, and the controller's transitions.
//! * [`template`]: rendering a Template for a Workflow (Go text/template via gotmpl, sprig's
//!   hermetic functions, upstream's helpers), validation, and the rendered tasks.
//!
//! No IO and no async: callers read the Workflow from the store, call these functions and
//! write the result back, so the rules are testable (and property-tested) on their own.

pub mod state;
pub mod template;
