//! The bmc.tinkerbell.org controllers: Machine, Job and Task reconcilers over any [`Store`].
//!
//! Why this shape (upstream Rufio runs three controller-runtime reconcilers; we keep their
//! observable behaviour, not their machinery):
//! * **Level-triggered.** A watch event (or a timer) only names an object; the reconciler
//!   re-reads it from the store and decides from what it finds, so a missed, duplicated or
//!   stale event cannot make it do the wrong thing. The three kinds run on the shared
//!   controller runtime (`tinkerbell_core::runtime`): one watcher per kind lists, then watches
//!   from the list's `resourceVersion`, and lists again when the watch ends or expires.
//! * **One work queue.** Keys are deduplicated; a key is never reconciled twice at once (an
//!   event during a reconcile runs it once more afterwards); a reconciler asks to run again
//!   after a delay (Machine power polling, Task power verification), and errors back off.
//! * **Status writes are conditional.** Every write goes through [`status::update`]: read,
//!   change, `update_status` with the read `resourceVersion`, and on a conflict read again and
//!   decide again. A Task's first write (its `startTime`) is therefore a claim: only the
//!   writer that wins it runs the action, so an action runs once even if two controllers race.
//! * **Exactly once across a failover.** With leader election (`--rufio-enable-leader-election`)
//!   one process reconciles at a time; a standby that takes the Lease over finds the Tasks the
//!   dead leader had claimed but not finished and, for power on/off/soft, asks the BMC before
//!   acting (see `task.rs`), so every power command reaches the BMC once.
//! * **BMCs are protected.** At most one operation at a time per BMC host, and at most
//!   [`Config::max_concurrent_bmc`] BMC operations overall; every operation is bounded by
//!   [`Config::bmc_timeout`].
//! * **Cancellation.** Every task this module spawns ends when the token is cancelled;
//!   [`Controllers::join`] returns after they have.
//!
//! Upstream semantics kept (rufio/internal/controller): Machine polls power and sets
//! `Contactable`; a Job sets `Running` and `startTime`, creates `<job>-task-<n>` (owned by
//! the Job) one at a time, fails at the first failed Task and completes when all did; a Task
//! records `startTime`, runs its action once, verifies `on`/`off`/`soft` every 3 s and fails
//! after 10 minutes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinkerbell_core::runtime::{Action, Controller as Runtime, Filter, Mapper, Watch};
use tinkerbell_core::store::{Kind, Object, ObjectKey, Store, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod bmcs;
mod job;
mod machine;
mod status;
mod task;

pub use bmcs::{Target, protocols};
pub use job::task_name;

/// Controller settings. Tests shorten the intervals; the defaults are upstream's.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace to reconcile; `None` for every namespace.
    pub namespace: Option<String>,
    /// How often a Machine's power state is read (upstream `--rufio-power-check-interval`,
    /// 30 minutes in the monorepo).
    pub power_check_interval: Duration,
    /// How often a Task waiting for a power state asks the BMC again (upstream: 3 s).
    pub power_verify_interval: Duration,
    /// How long a Task may take from its start to the power state it waits for (upstream:
    /// 10 minutes).
    pub task_timeout: Duration,
    /// Upper bound of one BMC operation, session set-up included (upstream
    /// `--rufio-bmc-connect-timeout`).
    pub bmc_timeout: Duration,
    /// BMC operations in flight at once, over all BMCs.
    pub max_concurrent_bmc: usize,
    /// How often every Job and Task is reconciled even without an event.
    pub resync_interval: Duration,
    /// Where power and boot-device changes are recorded, under the bmc Machine
    /// (`tinkerbell timeline`).
    pub timeline: Option<Arc<tinkerbell_core::timeline::Timeline>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespace: None,
            power_check_interval: Duration::from_secs(30 * 60),
            power_verify_interval: Duration::from_secs(3),
            task_timeout: Duration::from_secs(10 * 60),
            bmc_timeout: Duration::from_secs(60),
            max_concurrent_bmc: 32,
            resync_interval: Duration::from_secs(10 * 60),
            timeline: None,
        }
    }
}

impl Config {
    /// Check every value; all problems are reported at once.
    pub fn validate(&self) -> Result<(), ControllerError> {
        let mut problems = Vec::new();
        for (name, d) in [
            ("power check interval", self.power_check_interval),
            ("power verify interval", self.power_verify_interval),
            ("task timeout", self.task_timeout),
            ("BMC timeout", self.bmc_timeout),
            ("resync interval", self.resync_interval),
        ] {
            if d.is_zero() {
                problems.push(format!("{name} must be more than 0"));
            }
        }
        if self.max_concurrent_bmc == 0 {
            problems.push("max concurrent BMC operations must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ControllerError::Config(problems.join("; ")))
        }
    }
}

/// Errors of the controllers.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The configuration is invalid.
    #[error("invalid rufio configuration: {0}")]
    Config(String),
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
    /// A controller task panicked.
    #[error("controller task {0} failed")]
    Task(&'static str, #[source] tokio::task::JoinError),
}

impl ControllerError {
    /// A configuration problem (the caller's to fix), not a failure while running.
    pub fn is_config(&self) -> bool {
        matches!(self, ControllerError::Config(_))
    }
}

/// State shared by the reconcilers.
pub(crate) struct Ctx {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Config,
    pub(crate) bmcs: bmcs::Bmcs,
    /// Last BMC error seen while a Task verified its power state, for the timeout message.
    pub(crate) verify_errors: Mutex<HashMap<ObjectKey, String>>,
    /// Unfinished Tasks whose action this process ran (or decided not to need): a started Task
    /// missing here was started by a controller that stopped (see `task.rs`).
    pub(crate) acted: Mutex<HashSet<ObjectKey>>,
}

/// The running controllers.
#[derive(Debug)]
pub struct Controllers {
    /// The controller task (aborted when this is dropped).
    tasks: JoinSet<()>,
}

impl Controllers {
    /// Start the watchers and the work queue. Must be called within a tokio runtime. Nothing
    /// is bound; the first store calls happen in the background (errors there are logged and
    /// retried, as a controller must survive an API server restart).
    pub fn start(
        config: Config,
        store: Arc<dyn Store>,
        cancel: CancellationToken,
    ) -> Result<Controllers, ControllerError> {
        config.validate()?;
        let ctx = Arc::new(Ctx {
            store,
            bmcs: bmcs::Bmcs::new(config.max_concurrent_bmc, config.bmc_timeout),
            config,
            verify_errors: Mutex::new(HashMap::new()),
            acted: Mutex::new(HashSet::new()),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(run(ctx, cancel));
        Ok(Controllers { tasks })
    }

    /// Wait until the controllers stop (after the token is cancelled). An error means a task
    /// panicked.
    pub async fn join(mut self) -> Result<(), ControllerError> {
        match self.tasks.join_next().await {
            Some(Err(e)) => {
                tracing::error!(task = "controller", error = %e, "rufio controller task failed");
                Err(ControllerError::Task("controller", e))
            }
            _ => Ok(()),
        }
    }
}

/// What a reconcile returns: run again after this long, or wait for the next event.
pub(crate) type Requeue = Option<Duration>;

/// Reconcile `key` from `cached`, the object as the runtime's watch last saw it (`None`: gone).
async fn reconcile(
    ctx: &Ctx,
    key: &ObjectKey,
    cached: Option<Object>,
) -> Result<Requeue, ControllerError> {
    match key.kind {
        Kind::Machine => machine::reconcile(ctx, key, cached).await,
        Kind::Job => job::reconcile(ctx, key, cached).await,
        Kind::Task => task::reconcile(ctx, key, cached).await,
        _ => Ok(None),
    }
}

/// The object a reconcile acts on: `None`, without a read, when the watch's copy (`cached`)
/// says there is nothing to do (gone, being deleted, finished: not `pending`); else the object
/// as stored now, because a reconcile that drives a BMC must not act on a copy older than its
/// own last status write (it would repeat the step).
pub(crate) async fn live(
    ctx: &Ctx,
    key: &ObjectKey,
    cached: Option<Object>,
    pending: impl Fn(&Object) -> bool,
) -> Result<Option<Object>, ControllerError> {
    if !cached.as_ref().is_some_and(&pending) {
        return Ok(None);
    }
    match ctx.store.get(key.kind, &key.namespace, &key.name).await {
        Ok(o) if pending(&o) => Ok(Some(o)),
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Backoff after a failed reconcile: 0.5 s doubling to 60 s.
fn backoff(failures: u32) -> Duration {
    let ms = 500u64.saturating_mul(1 << failures.min(7));
    Duration::from_millis(ms.min(60_000))
}

/// The three controllers on the shared runtime, one queue. Machines are queued only when new
/// or when their spec changed (their own status writes must not make them poll their BMC
/// again; they requeue themselves every power check interval); Jobs and Tasks on every
/// change, a Task also queues its owning Job; every `resync_interval` every Job and Task.
async fn run(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let spec = |o: &Object| o.to_json().get("spec").cloned().unwrap_or_default();
    let spec_changed: Filter = Arc::new(move |prev: Option<&Object>, cur: &Object| {
        prev.is_none_or(|p| spec(p) != spec(cur))
    });
    let task_and_job: Mapper =
        Arc::new(|t: &Object| std::iter::once(t.key()).chain(owner_job(t)).collect());
    let runtime = Runtime::new(ctx.store.clone(), ctx.config.namespace.clone())
        .watch(Watch::own(Kind::Machine).filter(spec_changed).no_resync())
        .watch(Watch::own(Kind::Job))
        .watch(Watch::related(Kind::Task, task_and_job))
        .resync(ctx.config.resync_interval)
        // BMC operations are limited by `Config::max_concurrent_bmc` and one per BMC.
        .concurrency(usize::MAX);
    let reconciler = move |key: ObjectKey, cached: Option<Object>| {
        let ctx = ctx.clone();
        async move {
            match reconcile(&ctx, &key, cached).await {
                Ok(Some(after)) => Ok(Action::Requeue(after)),
                Ok(None) => Ok(Action::AwaitChange),
                Err(e) => Err(tinkerbell_core::error_chain(&e)),
            }
        }
    };
    runtime
        .run(reconciler, |_e: &String, n| backoff(n - 1), cancel)
        .await;
}

/// The Job that controls a Task (its controller owner reference of kind Job).
pub(crate) fn owner_job(obj: &Object) -> Option<ObjectKey> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| {
            o.controller == Some(true)
                && o.kind == "Job"
                && o.api_version == Kind::Job.api_version()
        })
        .map(|o| ObjectKey::new(Kind::Job, obj.namespace(), &o.name))
}

/// `now` as a Kubernetes time.
pub(crate) fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }

    #[test]
    fn config_problems_are_reported_together() {
        let c = Config {
            task_timeout: Duration::ZERO,
            max_concurrent_bmc: 0,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("task timeout") && e.contains("at least 1"),
            "{e}"
        );
        Config::default().validate().unwrap();
    }
}
