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

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use tinkerbell_core::store::{Kind, Object, Store, StoreError, WatchEvent, WatchStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub mod reconcile;

pub use reconcile::{ReconcileError, Reconciled, reconcile};

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

/// Convenience for callers that prefer a function: [`Controller::start`].
pub async fn start(
    config: Config,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
) -> Result<Controller, ControllerError> {
    Controller::start(config, store, cancel).await
}

async fn run(config: Config, store: Arc<dyn Store>, cancel: CancellationToken) {
    let ns = config.namespace.as_deref();
    let mut tick = tokio::time::interval(config.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // (Re)list everything and start watching from there.
        let (workflows, jobs) = match open_watches(&store, ns).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %tinkerbell_core::connect::error_chain(&e), "cannot watch the store, retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => continue,
                }
            }
        };
        let mut events = futures::stream::select(workflows, jobs);
        resync(&store, ns).await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => resync(&store, ns).await,
                event = events.next() => match event {
                    Some(Ok(event)) => on_event(&store, &event).await,
                    Some(Err(e)) => {
                        tracing::info!(error = %tinkerbell_core::connect::error_chain(&e), "watch ended, re-listing");
                        break;
                    }
                    None => {
                        tracing::info!("watch closed, re-listing");
                        break;
                    }
                },
            }
        }
    }
}

async fn open_watches(
    store: &Arc<dyn Store>,
    ns: Option<&str>,
) -> Result<(WatchStream, WatchStream), StoreError> {
    let wf_rv = store.list(Kind::Workflow, ns).await?.resource_version;
    let job_rv = store.list(Kind::Job, ns).await?.resource_version;
    let workflows = store.watch(Kind::Workflow, ns, Some(&wf_rv)).await?;
    let jobs = store.watch(Kind::Job, ns, Some(&job_rv)).await?;
    Ok((workflows, jobs))
}

async fn resync(store: &Arc<dyn Store>, ns: Option<&str>) {
    let list = match store.list(Kind::Workflow, ns).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %tinkerbell_core::connect::error_chain(&e), "listing workflows");
            return;
        }
    };
    for wf in &list.items {
        run_one(store, wf.namespace(), wf.name()).await;
    }
}

async fn on_event(store: &Arc<dyn Store>, event: &WatchEvent) {
    let obj = event.object();
    match (event, obj) {
        (WatchEvent::Deleted(_), Object::Workflow(_)) => {}
        (_, Object::Workflow(_)) => run_one(store, obj.namespace(), obj.name()).await,
        (_, Object::Job(job)) => {
            // A Job's owner Workflow reacts to the Job's progress.
            for owner in job.metadata.owner_references.iter().flatten() {
                if owner.kind == Kind::Workflow.as_str() {
                    run_one(store, obj.namespace(), &owner.name).await;
                }
            }
        }
        _ => {}
    }
}

async fn run_one(store: &Arc<dyn Store>, namespace: &str, name: &str) {
    let span = tracing::info_span!("reconcile", workflow = %format!("{namespace}/{name}"));
    match reconcile(store, namespace, name, Timestamp::now())
        .instrument(span)
        .await
    {
        Ok(r) => tracing::debug!(result = ?r, "reconciled"),
        Err(e) => {
            tracing::warn!(error = %tinkerbell_core::connect::error_chain(&e), "reconcile failed")
        }
    }
}
