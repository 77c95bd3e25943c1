//! tinkerbell-core: where Tinkerbell resources are kept, and what runs on that.
//!
//! * [`model`] — re-exported from `tinkerbell-model`: the resource types (Hardware, Template,
//!   Workflow, Machine, Job, Task, Secret) and the value types every layer shares.
//! * [`store`] — the backend seam every service consumes ([`store::Store`],
//!   [`store::HardwareLookup`]) and its implementations: the embedded store (the default, redb
//!   on local disk), the Kubernetes backend (the Tinkerbell CRDs on an API server) and the
//!   remote client that talks to an appliance's store API; [`store::error`] maps every
//!   backend's failures onto one [`store::StoreError`].
//! * [`api`] — the HTTP store API an appliance serves in embedded mode, so the CLI and
//!   separately started services share one store.
//! * [`runtime`] — the controller runtime (watcher, deduplicating queue, `Controller`) every
//!   controller and the Kubernetes backend's lookup index run on.
//! * [`timeline`] — when each provisioning phase of a machine happened, recorded by every
//!   service of the appliance into one shared in-memory [`timeline::Timeline`].
//! * [`worker_token`], [`private_files`] — the per-worker tokens and the 0600 files secrets
//!   are kept in.
//!
//! Services never depend on a concrete backend: they take an `Arc<dyn Store>` or
//! `Arc<dyn HardwareLookup>` (the same shape as upstream's `BackendReader`). User input
//! (apply, hardware.csv, move) is `tinkerbell-admin`'s; what binaries do around a service
//! (flags, signals, election) is `tinkerbell-process`'s.

pub use tinkerbell_model as model;
pub use tinkerbell_model::duration;

pub mod api;
pub mod private_files;
pub mod runtime;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timeline;
pub mod worker_token;

/// An error and its causes on one line, skipping a cause whose text is already included.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}
