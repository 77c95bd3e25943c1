//! tink controller: drives Workflows through their life outside of what workers report.
//!
//! * a new Workflow: find its Template and Hardware, render the template into `status.tasks`
//!   (a failure becomes the `TemplateRenderedSuccess=False` condition, the state stays "");
//! * PREPARING: `allowPXE` on (`bootOptions.toggleAllowNetboot`), the boot bmc Job
//!   (`bootMode: netboot` → off, one-time PXE, on; iso; customboot), waiting for the Job's
//!   Completed / Failed condition; then PENDING (or FAILED);
//! * RUNNING: the global and per-action timeouts;
//! * POST: the post Job (iso eject, customboot), `allowPXE` back off, then SUCCESS.
//!
//! Worker reports (PENDING → RUNNING → … → POST) are the tink server's job; both use the
//! transitions of `tinkerbell_tink_workflow::state`. The controller reconciles on every
//! Workflow and bmc Job change it watches and, because timeouts and missing Templates or
//! Hardware resolve with time rather than with an event, every [`Config::resync`] as well.
//! Reconciles are idempotent (see [`reconcile`]), so running more often only costs reads.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tinkerbell_core::runtime::{Action, Controller as Runtime, Mapper, Watch};
use tinkerbell_core::store::{Kind, Object, ObjectKey, Store, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod reconcile;

pub use reconcile::{ReconcileError, Reconciled, reconcile, reconcile_from};

/// The kinds the controller reads and writes (what a `--backend kube` start-up checks it may
/// list).
pub const STORE_KINDS: &[Kind] = &[Kind::Template, Kind::Hardware, Kind::Workflow, Kind::Job];

/// Controller configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Reconcile every Workflow this often (timeouts, retries after errors).
    pub resync: Duration,
    /// Only Workflows of this namespace (all when None).
    pub namespace: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(10),
            namespace: None,
        }
    }
}

/// Errors that stop the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The initial list from the store failed.
    #[error("listing workflows")]
    Store(#[source] StoreError),
    /// The controller task panicked.
    #[error("controller task failed")]
    Join(#[source] tokio::task::JoinError),
}

impl ControllerError {
    /// A configuration problem (the caller's to fix), not a failure while running.
    pub fn is_config(&self) -> bool {
        matches!(self, ControllerError::Config(_))
    }
}

/// A running controller.
#[derive(Debug)]
pub struct Controller {
    task: JoinHandle<()>,
}

impl Controller {
    /// Checks the config, lists the Workflows once (so a broken store fails here, not later)
    /// and starts the reconcile loop, which runs until `cancel`.
    pub async fn start(
        config: Config,
        store: Arc<dyn Store>,
        cancel: CancellationToken,
    ) -> Result<Self, ControllerError> {
        if config.resync.is_zero() {
            return Err(ControllerError::Config(
                "resync interval must be > 0".into(),
            ));
        }
        store
            .list(Kind::Workflow, config.namespace.as_deref())
            .await
            .map_err(ControllerError::Store)?;
        let task = tokio::spawn(run(config, store, cancel));
        Ok(Self { task })
    }

    /// Waits until the controller stopped (after its cancellation token fired).
    pub async fn join(self) -> Result<(), ControllerError> {
        self.task.await.map_err(ControllerError::Join)
    }
}

/// The Workflow controller on the shared runtime: Workflows, and the bmc Jobs they own
/// (a Job's progress reconciles its Workflow), every `resync` as well (timeouts, missing
/// Templates or Hardware resolve with time). A failed reconcile is retried with backoff.
async fn run(config: Config, store: Arc<dyn Store>, cancel: CancellationToken) {
    let owners: Mapper = Arc::new(|job: &Object| {
        job.meta()
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.kind == Kind::Workflow.as_str())
            .map(|o| ObjectKey::new(Kind::Workflow, job.namespace(), &o.name))
            .collect()
    });
    let reconciler = {
        let store = store.clone();
        move |key: ObjectKey, cached: Option<Object>| {
            let store = store.clone();
            let cached = match cached {
                Some(Object::Workflow(wf)) => Some(wf),
                _ => None,
            };
            async move {
                reconcile_from(
                    &store,
                    &key.namespace,
                    &key.name,
                    Some(cached),
                    Timestamp::now(),
                )
                .await
                .map(|r| {
                    tracing::debug!(result = ?r, "reconciled");
                    Action::AwaitChange
                })
                .map_err(|e| tinkerbell_core::error_chain(&e))
            }
        }
    };
    Runtime::new(store, config.namespace.clone())
        .watch(Watch::own(Kind::Workflow))
        .watch(Watch::related(Kind::Job, owners))
        .resync(config.resync)
        .run(reconciler, |_e: &String, n| backoff(n), cancel)
        .await;
}

/// After `n` failures in a row: 0.5 s doubling, at most the 60 s rufio also uses.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(
        500u64
            .saturating_mul(1 << n.saturating_sub(1).min(7))
            .min(60_000),
    )
}
