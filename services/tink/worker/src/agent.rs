//! The agent loop: ask the server for the next action, report RUNNING, run it natively,
//! report SUCCESS/FAILED/TIMEOUT with start, stop and duration, repeat — forever.
//!
//! It never exits because an action failed or the server is away (upstream tink #463):
//! transport errors are retried with exponential backoff up to `backoff_max`; a final status
//! is retried until the server takes it (so a server restarted mid-action still gets the
//! result and the workflow completes); statuses the server rejects as permanent (NotFound,
//! InvalidArgument, FailedPrecondition, as upstream's agent classifies them) are logged and
//! dropped. Only cancellation (SIGTERM) ends the loop.
//!
//! The wire protocol is behind [`Transport`], so the loop is the same for the current and the
//! legacy API, and is tested with an in-memory transport.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::actions::{self, ActionContext, ActionSpec, AfterReport, Outcome};

/// An action the server assigned to this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Workflow ID (`namespace/name` or the server's ID).
    pub workflow_id: String,
    /// Task ID (current API) or task name (legacy).
    pub task_id: String,
    /// Action ID (current API) or action name (legacy).
    pub action_id: String,
    /// The action.
    pub action: ActionSpec,
}

/// Action states reported to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Started.
    Running,
    /// Finished successfully.
    Success,
    /// Finished with an error.
    Failed,
    /// Ran out of time.
    Timeout,
}

/// One status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The state.
    pub state: State,
    /// When the action started.
    pub started: SystemTime,
    /// When it stopped (None while running).
    pub stopped: Option<SystemTime>,
    /// How long it ran.
    pub duration: Duration,
    /// Human-readable message.
    pub message: String,
}

/// One line of an action's output, pushed to the server in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was produced.
    pub time: SystemTime,
    /// "stdout", "stderr" or "worker".
    pub stream: String,
    /// The text (no newline).
    pub text: String,
}

impl LogLine {
    /// A line of `stream` produced now.
    fn now(stream: &str, text: String) -> LogLine {
        LogLine {
            time: SystemTime::now(),
            stream: stream.to_string(),
            text,
        }
    }
}

/// Most lines per push; a push also happens every [`LOG_FLUSH`].
pub const LOG_BATCH: usize = 200;
/// Longest time a line waits before it is pushed.
pub const LOG_FLUSH: Duration = Duration::from_secs(1);

/// How a transport call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Worth retrying (connection refused, unavailable, deadline, …).
    #[error("transient: {0}")]
    Transient(String),
    /// The server rejected the request for good.
    #[error("rejected: {0}")]
    Permanent(String),
}

/// The server side of the protocol, as the loop needs it.
pub trait Transport: Send + Sync {
    /// The next action for this worker; `Ok(None)` when there is nothing to do now.
    fn next_action(
        &self,
    ) -> impl Future<Output = Result<Option<Assignment>, TransportError>> + Send;
    /// Report a status of `a`.
    fn report(
        &self,
        a: &Assignment,
        r: &Report,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Push output lines of `a` (best effort: failures are logged, never retried forever).
    fn push_logs(
        &self,
        a: &Assignment,
        lines: Vec<LogLine>,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// Loop settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Poll interval when idle.
    pub retry_interval: Duration,
    /// Longest backoff after transport errors.
    pub backoff_max: Duration,
    /// Timeout of actions that have none.
    pub default_timeout: Duration,
}

/// What the loop did, for callers that run it to a point (tests, one-shot mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An action finished and its final status was delivered (or dropped as rejected).
    Finished {
        /// Its assignment.
        assignment: Assignment,
        /// Its final state.
        state: State,
    },
}

/// Run the loop until `cancel`. `events` (if any) hears about every finished action. When an
/// action asks for a power action after its SUCCESS was delivered, `power` is called with it.
pub async fn run<T: Transport>(
    transport: &T,
    settings: &AgentSettings,
    ctx: &ActionContext,
    cancel: &CancellationToken,
    events: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    power: &(dyn Fn(AfterReport) + Send + Sync),
) {
    let mut backoff = Backoff::new(settings.retry_interval, settings.backoff_max);
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            n = transport.next_action() => n,
        };
        let a = match next {
            Ok(Some(a)) => a,
            Ok(None) => {
                backoff.reset();
                if !sleep(settings.retry_interval, cancel).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                let d = backoff.next();
                tracing::warn!(error = %e, retry_in = ?d, "getting the next action failed");
                if !sleep(d, cancel).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        let span = tracing::info_span!("action", workflow = %a.workflow_id, task = %a.task_id,
            action = %a.action.name, image = %a.action.image);
        let finished = run_one(transport, settings, ctx, cancel, a.clone())
            .instrument(span)
            .await;
        let Some((state, delivered, after)) = finished else {
            return;
        };
        if let Some(tx) = &events {
            let _ = tx.send(Event::Finished {
                assignment: a,
                state,
            });
        }
        if let (true, Some(p)) = (delivered, after) {
            tracing::info!(?p, "performing the power action");
            power(p);
        }
    }
}

/// Run one assignment; None when cancelled.
async fn run_one<T: Transport>(
    t: &T,
    settings: &AgentSettings,
    ctx: &ActionContext,
    cancel: &CancellationToken,
    mut a: Assignment,
) -> Option<(State, bool, Option<AfterReport>)> {
    if a.action.timeout.is_zero() {
        a.action.timeout = settings.default_timeout;
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let running = Report {
        state: State::Running,
        started,
        stopped: None,
        duration: Duration::ZERO,
        message: "Started execution".into(),
    };
    if !deliver(t, settings, &a, &running, cancel).await? {
        tracing::warn!("the server rejected RUNNING; not running the action");
        return Some((State::Failed, false, None));
    }
    tracing::info!(timeout = ?a.action.timeout, "running");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<LogLine>();
    let mut actx = ctx.clone();
    {
        let log_tx = tx.clone();
        actx.log = std::sync::Arc::new(move |stream: &str, text: &str| {
            let _ = log_tx.send(LogLine::now(stream, text.to_string()));
        });
        let tx = tx.clone();
        let inner = ctx.progress.clone();
        actx.progress = std::sync::Arc::new(move |name: &str, p: actions::Progress| {
            inner(name, p);
            let text = format!(
                "progress: read {} of {} bytes, wrote {} bytes ({} zero bytes skipped)",
                p.read,
                p.read_total.map_or("?".to_string(), |t| t.to_string()),
                p.written,
                p.zero_skipped
            );
            let _ = tx.send(LogLine::now("worker", text));
        });
    }
    let spec = a.action.clone();
    let action = async move {
        let o = actions::run(&spec, &actx, cancel).await;
        drop(actx);
        o
    };
    let final_line = tx.clone();
    drop(tx);
    let (outcome, ()) = tokio::join!(
        async move {
            let o = action.await;
            let text = match &o {
                Outcome::Success { message, .. } => format!("SUCCESS: {message}"),
                Outcome::Failed(m) => format!("FAILED: {m}"),
                Outcome::Timeout => "TIMEOUT".to_string(),
                Outcome::Cancelled => "cancelled".to_string(),
            };
            let _ = final_line.send(LogLine::now("worker", text));
            o
        },
        pump_logs(t, &a, rx)
    );
    let (state, message, after) = match outcome {
        Outcome::Success { message, after } => (State::Success, message, after),
        Outcome::Failed(m) => (State::Failed, m, None),
        Outcome::Timeout => (
            State::Timeout,
            format!("timed out after {}s", a.action.timeout.as_secs()),
            None,
        ),
        Outcome::Cancelled => return None,
    };
    let duration = clock.elapsed();
    tracing::info!(?state, secs = duration.as_secs_f64(), %message, "finished");
    let report = Report {
        state,
        started,
        stopped: Some(SystemTime::now()),
        duration,
        message,
    };
    let delivered = deliver(t, settings, &a, &report, cancel).await?;
    Some((state, delivered, after))
}

/// Forward log lines in batches until the channel closes (best effort).
async fn pump_logs<T: Transport>(
    t: &T,
    a: &Assignment,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<LogLine>,
) {
    let mut batch = Vec::new();
    let mut warned = false;
    loop {
        let more = tokio::select! {
            l = rx.recv() => match l {
                Some(l) => { batch.push(l); true }
                None => false,
            },
            () = tokio::time::sleep(LOG_FLUSH), if !batch.is_empty() => true,
        };
        let due = !more
            || batch.len() >= LOG_BATCH
            || batch
                .first()
                .is_some_and(|l| l.time.elapsed().unwrap_or_default() >= LOG_FLUSH);
        if due
            && !batch.is_empty()
            && let Err(e) = t.push_logs(a, std::mem::take(&mut batch)).await
            && !warned
        {
            warned = true;
            tracing::warn!(error = %e, "pushing action logs failed (further failures not logged)");
        }
        if !more {
            return;
        }
    }
}

/// Deliver a report, retrying transient errors until it lands; Some(false) when rejected,
/// None when cancelled.
async fn deliver<T: Transport>(
    t: &T,
    settings: &AgentSettings,
    a: &Assignment,
    r: &Report,
    cancel: &CancellationToken,
) -> Option<bool> {
    let mut backoff = Backoff::new(
        settings.retry_interval.min(Duration::from_secs(1)),
        settings.backoff_max,
    );
    loop {
        let res = tokio::select! {
            () = cancel.cancelled() => return None,
            res = t.report(a, r) => res,
        };
        match res {
            Ok(()) => return Some(true),
            Err(TransportError::Permanent(m)) => {
                tracing::warn!(state = ?r.state, error = %m, "the server rejected the status");
                return Some(false);
            }
            Err(TransportError::Transient(m)) => {
                let d = backoff.next();
                tracing::warn!(state = ?r.state, error = %m, retry_in = ?d, "reporting failed");
                if !sleep(d, cancel).await {
                    return None;
                }
            }
        }
    }
}

async fn sleep(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Exponential backoff with jitter-free doubling (the machines poll one server; spreading
/// comes from their different boot times).
#[derive(Debug)]
struct Backoff {
    first: Duration,
    cur: Duration,
    max: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Backoff {
        let first = first.max(Duration::from_millis(10));
        Backoff {
            first,
            cur: first,
            max: max.max(first),
        }
    }
    fn next(&mut self) -> Duration {
        let d = self.cur;
        self.cur = (self.cur * 2).min(self.max);
        d
    }
    fn reset(&mut self) {
        self.cur = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let v: Vec<_> = (0..5).map(|_| b.next().as_secs()).collect();
        assert_eq!(v, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next().as_secs(), 1);
    }
}
