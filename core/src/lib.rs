//! tinkerbell-core: the one place that knows what a Tinkerbell resource is and where it is kept.
//!
//! * [`model`] — Rust types for `tinkerbell.org/v1alpha1` (Hardware, Template, Workflow) and
//!   `bmc.tinkerbell.org/v1alpha1` (Machine, Job, Task), field-for-field identical to upstream,
//!   plus core/v1 Secret. The CRDs in `deploy/crds/` are generated from these types.
//! * [`store`] — the backend seam every service consumes ([`store::Store`],
//!   [`store::HardwareLookup`]) and its implementations: the embedded store (the default, redb
//!   on local disk), the Kubernetes backend (the Tinkerbell CRDs on an API server) and the
//!   remote client that talks to an appliance's store API.
//! * [`api`] — the HTTP store API an appliance serves in embedded mode, so the CLI and
//!   separately started services share one store.
//! * [`apply`], [`csv`] — turning user input (YAML documents, exports, EKS Anywhere
//!   hardware.csv) into validated objects, all or nothing, with errors that name the document
//!   or row, the line and the field.
//! * [`duration`] — Go's durations, parsed and formatted once for every binary.
//! * [`timeline`] — when each provisioning phase of a machine happened, recorded by every
//!   service of the appliance into one shared in-memory [`timeline::Timeline`].
//!
//! Services never depend on a concrete backend: they take an `Arc<dyn Store>` or
//! `Arc<dyn HardwareLookup>` (the same shape as upstream's `BackendReader`).
//!
//! Everything but [`model`] is behind the default feature `store`; without it the crate is the
//! resource model alone, with no async runtime or Kubernetes client (what the fuzz targets
//! need).

pub mod duration;
pub mod model;

#[cfg(feature = "store")]
pub mod api;
#[cfg(feature = "store")]
pub mod apply;
#[cfg(feature = "store")]
pub mod connect;
#[cfg(feature = "store")]
pub mod csv;
#[cfg(feature = "store")]
pub mod mover;
#[cfg(feature = "store")]
pub mod private_files;
#[cfg(feature = "store")]
pub mod runtime;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "store")]
pub mod timeline;
#[cfg(feature = "store")]
pub mod worker_token;
