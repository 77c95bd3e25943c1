//! The bmc.tinkerbell.org controllers: Machine, Job and Task reconcilers over any [`Store`].
//!
//! Why this shape (upstream Rufio runs three controller-runtime reconcilers; we keep their
//! observable behaviour, not their machinery):
//! * **Level-triggered.** A watch event (or a timer) only names an object; the reconciler
//!   re-reads it from the store and decides from what it finds, so a missed, duplicated or
//!   stale event cannot make it do the wrong thing. One watcher per kind lists, then watches
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

use futures::StreamExt;
use tinkerbell_core::store::{Kind, Object, ObjectKey, Store, StoreError, WatchEvent};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
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
    /// Pause before listing again after a store error.
    pub store_retry: Duration,
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
            store_retry: Duration::from_secs(2),
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
            ("store retry", self.store_retry),
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
    tasks: JoinSet<()>,
    names: HashMap<tokio::task::Id, &'static str>,
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
        let (tx, rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let mut names = HashMap::new();
        let h = tasks.spawn(run_queue(ctx.clone(), rx, cancel.clone()));
        names.insert(h.id(), "work queue");
        for kind in [Kind::Machine, Kind::Job, Kind::Task] {
            let h = tasks.spawn(watch_kind(ctx.clone(), kind, tx.clone(), cancel.clone()));
            names.insert(h.id(), kind_task_name(kind));
        }
        Ok(Controllers { tasks, names })
    }

    /// Wait until the controllers stop (after the token is cancelled). An error means a task
    /// panicked.
    pub async fn join(mut self) -> Result<(), ControllerError> {
        let mut result = Ok(());
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                let name = self.names.get(&e.id()).copied().unwrap_or("?");
                tracing::error!(task = name, error = %e, "rufio controller task failed");
                if result.is_ok() {
                    result = Err(ControllerError::Task(name, e));
                }
            }
        }
        result
    }
}

fn kind_task_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Machine => "Machine watcher",
        Kind::Job => "Job watcher",
        _ => "Task watcher",
    }
}

/// A request to reconcile `key` at `at`.
type Request = (ObjectKey, Instant);

/// What a reconcile returns: run again after this long, or wait for the next event.
pub(crate) type Requeue = Option<Duration>;

async fn reconcile(ctx: &Ctx, key: &ObjectKey) -> Result<Requeue, ControllerError> {
    match key.kind {
        Kind::Machine => machine::reconcile(ctx, key).await,
        Kind::Job => job::reconcile(ctx, key).await,
        Kind::Task => task::reconcile(ctx, key).await,
        _ => Ok(None),
    }
}

/// Backoff after a failed reconcile: 0.5 s doubling to 60 s.
fn backoff(failures: u32) -> Duration {
    let ms = 500u64.saturating_mul(1 << failures.min(7));
    Duration::from_millis(ms.min(60_000))
}

/// The work queue: deduplicated keys with due times, at most one reconcile per key at once.
async fn run_queue(
    ctx: Arc<Ctx>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    cancel: CancellationToken,
) {
    let mut due: HashMap<ObjectKey, Instant> = HashMap::new();
    let mut running: HashMap<tokio::task::Id, ObjectKey> = HashMap::new();
    let mut busy: HashSet<ObjectKey> = HashSet::new();
    let mut failures: HashMap<ObjectKey, u32> = HashMap::new();
    let mut set: JoinSet<Result<Requeue, ControllerError>> = JoinSet::new();
    loop {
        let now = Instant::now();
        let ready: Vec<ObjectKey> = due
            .iter()
            .filter(|(k, at)| **at <= now && !busy.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in ready {
            due.remove(&key);
            busy.insert(key.clone());
            let ctx = ctx.clone();
            let k = key.clone();
            let span = tracing::info_span!("reconcile", kind = %key.kind, namespace = %key.namespace, name = %key.name);
            let h = set.spawn(tracing::Instrument::instrument(
                async move { reconcile(&ctx, &k).await },
                span,
            ));
            running.insert(h.id(), key);
        }
        let next = due
            .iter()
            .filter(|(k, _)| !busy.contains(*k))
            .map(|(_, at)| *at)
            .min();
        tokio::select! {
            _ = cancel.cancelled() => break,
            msg = rx.recv() => match msg {
                Some((key, at)) => {
                    let e = due.entry(key).or_insert(at);
                    *e = (*e).min(at);
                }
                None => break,
            },
            Some(joined) = set.join_next_with_id(), if !set.is_empty() => {
                let (id, result) = match joined {
                    Ok((id, r)) => (id, r.map_err(Some)),
                    Err(e) => (e.id(), Err(None)),
                };
                let Some(key) = running.remove(&id) else { continue };
                busy.remove(&key);
                let again = match result {
                    Ok(requeue) => {
                        failures.remove(&key);
                        requeue
                    }
                    Err(e) => {
                        let n = failures.entry(key.clone()).or_insert(0);
                        *n += 1;
                        let wait = backoff(*n - 1);
                        match e {
                            Some(e) => tracing::warn!(object = %key, error = %tinkerbell_core::connect::error_chain(&e), retry_in = ?wait, "reconcile failed"),
                            None => tracing::error!(object = %key, retry_in = ?wait, "reconcile panicked"),
                        }
                        Some(wait)
                    }
                };
                if let Some(d) = again {
                    let at = Instant::now() + d;
                    let e = due.entry(key).or_insert(at);
                    *e = (*e).min(at);
                }
            }
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
        }
    }
    set.shutdown().await;
}

/// List and watch one kind, turning changes into queue requests; list again when the watch
/// ends. Machines are queued only when new or when their spec changed (their own status
/// writes must not make them poll their BMC again); Jobs and Tasks on every change, Tasks also
/// queue their owning Job. Every `resync_interval` every known Job and Task is queued.
async fn watch_kind(
    ctx: Arc<Ctx>,
    kind: Kind,
    tx: mpsc::UnboundedSender<Request>,
    cancel: CancellationToken,
) {
    let ns = ctx.config.namespace.clone();
    // What the watcher last saw: the spec JSON of each object (for Machines' spec filter).
    let mut seen: HashMap<ObjectKey, serde_json::Value> = HashMap::new();
    let mut resync = tokio::time::interval_at(
        Instant::now() + ctx.config.resync_interval,
        ctx.config.resync_interval,
    );
    let send = |key: ObjectKey| {
        let _ = tx.send((key, Instant::now()));
    };
    'relist: loop {
        if cancel.is_cancelled() {
            return;
        }
        let list = tokio::select! {
            _ = cancel.cancelled() => return,
            r = ctx.store.list(kind, ns.as_deref()) => r,
        };
        let list = match list {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%kind, error = %tinkerbell_core::connect::error_chain(&e), "listing failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(ctx.config.store_retry) => continue 'relist,
                }
            }
        };
        let mut present = HashSet::new();
        for obj in &list.items {
            present.insert(obj.key());
            on_change(kind, &WatchEvent::Added(obj.clone()), &mut seen, &send);
        }
        // Objects deleted while we were not watching.
        let gone: Vec<ObjectKey> = seen
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            seen.remove(&k);
            send(k);
        }
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = ctx.store.watch(kind, ns.as_deref(), Some(&list.resource_version)) => r,
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%kind, error = %tinkerbell_core::connect::error_chain(&e), "watch failed; listing again");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(ctx.config.store_retry) => continue 'relist,
                }
            }
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = resync.tick() => {
                    if kind != Kind::Machine {
                        for k in seen.keys() {
                            send(k.clone());
                        }
                    }
                }
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => on_change(kind, &ev, &mut seen, &send),
                    Some(Err(StoreError::Expired { .. })) | None => {
                        tracing::debug!(%kind, "watch ended; listing again");
                        continue 'relist;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(%kind, error = %tinkerbell_core::connect::error_chain(&e), "watch failed; listing again");
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(ctx.config.store_retry) => continue 'relist,
                        }
                    }
                },
            }
        }
    }
}

fn on_change(
    kind: Kind,
    ev: &WatchEvent,
    seen: &mut HashMap<ObjectKey, serde_json::Value>,
    send: &impl Fn(ObjectKey),
) {
    let obj = ev.object();
    let key = obj.key();
    if let WatchEvent::Deleted(_) = ev {
        seen.remove(&key);
        send(key);
        return;
    }
    let spec = obj.to_json().get("spec").cloned().unwrap_or_default();
    let changed = seen.get(&key) != Some(&spec);
    seen.insert(key.clone(), spec);
    match kind {
        Kind::Machine => {
            if changed {
                send(key);
            }
        }
        Kind::Task => {
            if let Some(job) = owner_job(obj) {
                send(job);
            }
            send(key);
        }
        _ => send(key),
    }
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
