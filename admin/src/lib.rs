//! tinkerbell-admin: what an operator hands the appliance, turned into objects — the input
//! side of the `tinkerbell` CLI.
//!
//! * [`apply`] — YAML documents and exports into validated objects, all or nothing, with
//!   errors that name the document, the line and the field (`tinkerbell apply`).
//! * [`csv`] — EKS Anywhere's hardware.csv into Hardware, Machines and Secrets, with errors
//!   that name the row and column (`tinkerbell import-csv`).
//! * [`mover`] — copying every object from one store to another and handing DHCP over
//!   (`tinkerbell move`).
//!
//! It sits on `tinkerbell-core`'s store traits and never on a concrete backend.

pub mod apply;
pub mod csv;
pub mod mover;
