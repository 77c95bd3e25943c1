//! tink workflow: the pure logic of workflows, shared by the tink server and controller —
//! template validation and rendering, and the workflow state machine.
//!
//! Placeholder in the workspace layout: the code lands with the tink controller.
