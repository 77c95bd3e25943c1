//! tink controller: the controller that renders Templates into Workflows and drives the workflow state machine (PREPARING → PENDING → RUNNING → POST → SUCCESS / FAILED / TIMEOUT), creating bmc Jobs for netboot.
//!
//! This crate is a placeholder in the workspace layout: it has no code yet. See `README.md`
//! in this crate.
