//! The workflow state machine, as pure functions over a Workflow's `status`.
//!
//! Upstream Tinkerbell spreads these rules over the tink server (GetAction / ReportActionStatus)
//! and the tink controller (preparation, timeouts, post). Both of our services call into this
//! one module instead, so the two can never disagree about what a legal transition is, and the
//! rules can be tested without IO (see the proptest at the bottom).
//!
//! Workflow states (upstream §1.3.2):
//!
//! ```text
//! "" ──begin──▶ PREPARING ──prepared──▶ PENDING ──first RUNNING──▶ RUNNING ──last SUCCESS──▶ POST ──post_done──▶ SUCCESS
//!    ╰──begin (no boot options)────────▲        │                      │ FAILED/TIMEOUT report,
//!              PREPARING ──prepare_failed──▶ FAILED                    │ global or action timeout ──▶ FAILED / TIMEOUT
//! ```
//!
//! The *current action* is always the first action (tasks in order, then actions in order)
//! that has not succeeded. Everything before it is SUCCESS, everything after it is PENDING, and
//! it is PENDING, RUNNING, or (only once the workflow is FAILED/TIMEOUT) FAILED/TIMEOUT. This
//! derived definition, rather than a stored cursor, is what makes a restarted server re-serve
//! an in-progress action: nothing but the action states needs to survive the restart.
//!
//! Per-action `retries` is a tinkerbell-rs extension (default 0, as upstream): a FAILED or
//! TIMEOUT report, or an action timeout, with retries left resets the action to PENDING, counts
//! the run in `attempts`, and keeps the workflow RUNNING. A global timeout is never retried.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tinkerbell_model::{
    CurrentState, Workflow, WorkflowAction, WorkflowStatus, WorkflowTask, workflow_state,
};

/// A workflow or action state (upstream uses the same set for both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Boot options are being applied before the workflow runs.
    Preparing,
    /// Waiting for an agent (workflow) / not started (action).
    Pending,
    /// Running.
    Running,
    /// All actions succeeded; post-workflow boot options are being applied.
    Post,
    /// Finished successfully.
    Success,
    /// Failed.
    Failed,
    /// Timed out.
    Timeout,
}

impl State {
    /// Parses a state, accepting the legacy `STATE_*` spelling of standalone tink.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix("STATE_").unwrap_or(s);
        use State::*;
        [Preparing, Pending, Running, Post, Success, Failed, Timeout]
            .into_iter()
            .find(|state| state.as_str() == s)
    }

    /// The upstream spelling (`PENDING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preparing => workflow_state::PREPARING,
            Self::Pending => workflow_state::PENDING,
            Self::Running => workflow_state::RUNNING,
            Self::Post => workflow_state::POST,
            Self::Success => workflow_state::SUCCESS,
            Self::Failed => workflow_state::FAILED,
            Self::Timeout => workflow_state::TIMEOUT,
        }
    }

    /// SUCCESS, FAILED or TIMEOUT: nothing changes a workflow in these states.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Timeout)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a workflow's `status` (None when unset, empty or unknown).
pub fn workflow_state(status: &WorkflowStatus) -> Option<State> {
    status.state.as_deref().and_then(State::parse)
}

/// The state of an action; an unset or empty state counts as PENDING.
pub fn action_state(action: &WorkflowAction) -> State {
    match action.state.as_deref() {
        None | Some("") => State::Pending,
        Some(s) => State::parse(s).unwrap_or(State::Pending),
    }
}

/// Where an action is in a workflow, with the fields a server needs to serve or log it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRef {
    /// Index into `status.tasks`.
    pub task_index: usize,
    /// Index into the task's `actions`.
    pub action_index: usize,
    /// Index across all tasks' actions, flattened in order.
    pub flat_index: usize,
    /// Number of actions across all tasks.
    pub total_actions: usize,
    /// The task's ID.
    pub task_id: String,
    /// The task's name.
    pub task_name: String,
    /// The agent (rendered `worker`) the task is assigned to.
    pub agent_id: String,
    /// The action's ID.
    pub action_id: String,
    /// The action's name.
    pub action_name: String,
    /// The action's state (PENDING or RUNNING when served).
    pub state: State,
}

impl ActionRef {
    /// The task this refers to.
    pub fn task<'a>(&self, status: &'a WorkflowStatus) -> Option<&'a WorkflowTask> {
        status.tasks.as_ref()?.get(self.task_index)
    }

    /// The action this refers to.
    pub fn action<'a>(&self, status: &'a WorkflowStatus) -> Option<&'a WorkflowAction> {
        self.task(status)?.actions.as_ref()?.get(self.action_index)
    }

    /// Whether this is the last action of the last task.
    pub fn is_last(&self) -> bool {
        self.flat_index + 1 == self.total_actions
    }
}

/// How a worker names the action it reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKey<'a> {
    /// By action ID (current gRPC API; IDs are unique in a workflow).
    Id(&'a str),
    /// By task and action name (legacy gRPC API).
    Names {
        /// The task's name.
        task: &'a str,
        /// The action's name.
        action: &'a str,
    },
}

impl fmt::Display for ActionKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "action id {id:?}"),
            Self::Names { task, action } => write!(f, "task {task:?} action {action:?}"),
        }
    }
}

/// Why a workflow has no action to serve ([`next_action`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoAction {
    /// The workflow has no rendered tasks (or no actions) yet.
    #[error("workflow has no rendered actions")]
    NotRendered,
    /// `spec.disabled` is set.
    #[error("workflow is disabled")]
    Disabled,
    /// Boot options are still being applied (upstream skips these workflows).
    #[error("workflow is PREPARING")]
    Preparing,
    /// The workflow is in POST, a terminal state, or an unknown state.
    #[error("workflow is not runnable (state {0:?})")]
    NotRunnable(String),
}

/// An illegal transition, rejected without changing the status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// No action matches the key.
    #[error("no {0} in the workflow")]
    UnknownAction(String),
    /// The reported action exists but is not the current one.
    #[error("{reported} is not the current action ({current})")]
    NotCurrent {
        /// What was reported.
        reported: String,
        /// The current action (task/action names), or "none".
        current: String,
    },
    /// The workflow is not in a state that accepts this transition.
    #[error("workflow is {state}, expected {expected}")]
    WrongWorkflowState {
        /// The workflow's state ("" when unset).
        state: String,
        /// The state(s) the transition needs.
        expected: &'static str,
    },
    /// The action cannot move from its state to the reported one.
    #[error("action cannot go from {from} to {to}")]
    IllegalActionTransition {
        /// The action's state.
        from: State,
        /// The reported state.
        to: State,
    },
}

/// What a successful [`report`] or [`check_timeouts`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The report repeated the action's current state (a retried report): nothing changed.
    Unchanged,
    /// The action (and so the workflow) is RUNNING.
    Started,
    /// The action succeeded and another action is next.
    Advanced,
    /// The last action succeeded: the workflow is in POST.
    Post,
    /// The action failed or timed out and will run again (`attempt` runs so far failed).
    Retry {
        /// Value of `attempts` after this failure.
        attempt: i64,
    },
    /// The workflow ended FAILED or TIMEOUT.
    Finished(State),
}

/// The current action: the first one that has not succeeded (None when all succeeded or
/// there are no actions).
pub fn current_action(status: &WorkflowStatus) -> Option<ActionRef> {
    let tasks = status.tasks.as_deref().unwrap_or_default();
    let total = count_actions(status);
    let mut flat = 0;
    for (ti, task) in tasks.iter().enumerate() {
        for (ai, action) in task
            .actions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let state = action_state(action);
            if state != State::Success {
                return Some(ActionRef {
                    task_index: ti,
                    action_index: ai,
                    flat_index: flat,
                    total_actions: total,
                    task_id: task.id.clone().unwrap_or_default(),
                    task_name: task.name.clone().unwrap_or_default(),
                    agent_id: task.agent_id.clone().unwrap_or_default(),
                    action_id: action.id.clone().unwrap_or_default(),
                    action_name: action.name.clone().unwrap_or_default(),
                    state,
                });
            }
            flat += 1;
        }
    }
    None
}

fn count_actions(status: &WorkflowStatus) -> usize {
    status
        .tasks
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|t| t.actions.as_ref().map_or(0, Vec::len))
        .sum()
}

/// What a worker should run now: the current action, when the workflow is PENDING or RUNNING.
///
/// An action that is already RUNNING is returned again, so a restarted server or worker carries
/// on where it was (upstream re-serves the same way). The caller checks that
/// [`ActionRef::agent_id`] is the asking agent.
pub fn next_action(workflow: &Workflow) -> Result<ActionRef, NoAction> {
    if workflow.spec.disabled == Some(true) {
        return Err(NoAction::Disabled);
    }
    let Some(status) = workflow.status.as_ref() else {
        return Err(NoAction::NotRendered);
    };
    if count_actions(status) == 0 {
        return Err(NoAction::NotRendered);
    }
    match workflow_state(status) {
        Some(State::Pending | State::Running) => {}
        Some(State::Preparing) => return Err(NoAction::Preparing),
        _ => {
            return Err(NoAction::NotRunnable(
                status.state.clone().unwrap_or_default(),
            ));
        }
    }
    match current_action(status) {
        Some(current) if matches!(current.state, State::Pending | State::Running) => Ok(current),
        _ => Err(NoAction::NotRunnable(
            status.state.clone().unwrap_or_default(),
        )),
    }
}

/// Records that `action` was handed to `agent_id`: sets `status.currentState` (and
/// `status.agentID` when unset), as upstream's GetAction does before it replies.
pub fn mark_served(status: &mut WorkflowStatus, action: &ActionRef, agent_id: &str) {
    set_current_state(status, action, agent_id);
    if status.agent_id.as_deref().is_none_or(str::is_empty) {
        status.agent_id = Some(agent_id.to_string());
    }
}

fn set_current_state(status: &mut WorkflowStatus, action: &ActionRef, agent_id: &str) {
    status.current_state = Some(CurrentState {
        agent_id: Some(agent_id.to_string()),
        task_id: Some(action.task_id.clone()),
        action_id: Some(action.action_id.clone()),
        state: Some(action.state.as_str().to_string()),
        action_name: Some(action.action_name.clone()),
        task_name: Some(action.task_name.clone()),
    });
}

/// After the action `current` was at changed: `currentState` names the action now served
/// (that one in its new state, or the next), for the agent it was served to.
fn refresh_current_state(status: &mut WorkflowStatus, current: ActionRef) {
    let agent = status
        .current_state
        .as_ref()
        .and_then(|c| c.agent_id.clone())
        .unwrap_or_else(|| current.agent_id.clone());
    let (ti, ai) = (current.task_index, current.action_index);
    let mut served = current_action(status).unwrap_or(current);
    if served.task_index == ti && served.action_index == ai {
        served.state = action_state(action_at(status, ti, ai));
    }
    set_current_state(status, &served, &agent);
}

fn find(status: &WorkflowStatus, key: ActionKey<'_>) -> Option<(usize, usize)> {
    let tasks = status.tasks.as_deref().unwrap_or_default();
    for (ti, task) in tasks.iter().enumerate() {
        if let ActionKey::Names { task: name, .. } = key
            && task.name.as_deref() != Some(name)
        {
            continue;
        }
        for (ai, action) in task
            .actions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let hit = match key {
                ActionKey::Id(id) => action.id.as_deref() == Some(id),
                ActionKey::Names { action: name, .. } => action.name.as_deref() == Some(name),
            };
            if hit {
                return Some((ti, ai));
            }
        }
    }
    None
}

fn action_at(status: &WorkflowStatus, ti: usize, ai: usize) -> &WorkflowAction {
    // Indices come from `find`/`current_action` on the same status.
    &status.tasks.as_ref().expect("tasks")[ti]
        .actions
        .as_ref()
        .expect("actions")[ai]
}

fn action_mut(status: &mut WorkflowStatus, ti: usize, ai: usize) -> &mut WorkflowAction {
    // Indices come from `find`/`current_action` on the same status.
    &mut status.tasks.as_mut().expect("tasks")[ti]
        .actions
        .as_mut()
        .expect("actions")[ai]
}

/// Longest action `message` kept in a Workflow's status, in bytes, marker included.
///
/// The message is the worker's text (an error, a container's last words) and a worker may send
/// up to the request size limit (1 MiB); the status is stored with the Workflow (in Kubernetes
/// under etcd's object size limit) and read on every reconcile, so only its head is kept. The
/// full text belongs in the action's log (`tinkerbell.v1.WorkerLogs`), which has its own caps.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Appended to a message cut to [`MAX_MESSAGE_BYTES`].
pub const TRUNCATED_MARKER: &str = "… (truncated)";

/// `message` as stored in the status: at most [`MAX_MESSAGE_BYTES`] bytes, cut on a UTF-8
/// character boundary and ending in [`TRUNCATED_MARKER`] when it was longer.
pub fn status_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut cut = MAX_MESSAGE_BYTES - TRUNCATED_MARKER.len();
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + TRUNCATED_MARKER.len());
    out.push_str(&message[..cut]);
    out.push_str(TRUNCATED_MARKER);
    out
}

/// Applies a worker's report about an action.
///
/// Rules (upstream ReportActionStatus, made strict): the workflow must be PENDING or RUNNING;
/// the action must be the current one; PENDING and RUNNING → RUNNING, RUNNING → SUCCESS,
/// FAILED or TIMEOUT; anything else is an [`TransitionError::IllegalActionTransition`]. A
/// report that repeats the action's state is [`Outcome::Unchanged`] (a retried report), also
/// for an action that already succeeded. RUNNING sets `executionStart` and, on the first
/// action, `globalExecutionStop`; the end states set `executionStop`, `executionDuration` and
/// `message` (a report's message is kept, cut to [`MAX_MESSAGE_BYTES`]). SUCCESS of the last
/// action moves the workflow to POST; FAILED/TIMEOUT end it unless the action has retries left.
pub fn report(
    status: &mut WorkflowStatus,
    key: ActionKey<'_>,
    new: State,
    message: Option<&str>,
    now: Timestamp,
) -> Result<Outcome, TransitionError> {
    let Some((ti, ai)) = find(status, key) else {
        return Err(TransitionError::UnknownAction(key.to_string()));
    };
    let reported_state = action_state(action_at(status, ti, ai));
    if reported_state == new && matches!(new, State::Success | State::Running) {
        // A retried report (the reply to the first one was lost). A repeated FAILED/TIMEOUT
        // is handled below so a repeated report cannot consume a second retry.
        return Ok(Outcome::Unchanged);
    }
    let wf_state = workflow_state(status);
    if wf_state.is_some_and(State::is_terminal) && reported_state == new {
        return Ok(Outcome::Unchanged);
    }
    if !matches!(wf_state, Some(State::Pending | State::Running)) {
        return Err(wrong_state(status, "PENDING or RUNNING"));
    }
    let current = current_action(status);
    let Some(current) = current.filter(|c| c.task_index == ti && c.action_index == ai) else {
        return Err(TransitionError::NotCurrent {
            reported: key.to_string(),
            current: current_action(status).map_or_else(
                || "none".to_string(),
                |c| format!("task {:?} action {:?}", c.task_name, c.action_name),
            ),
        });
    };
    let from = current.state;
    let legal = matches!(
        (from, new),
        (State::Pending, State::Running)
            | (
                State::Running,
                State::Success | State::Failed | State::Timeout
            )
    );
    if !legal {
        return Err(TransitionError::IllegalActionTransition { from, to: new });
    }
    let global_timeout = status.global_timeout.unwrap_or(0);
    let first_start = status.global_execution_stop.is_none();
    let action = action_mut(status, ti, ai);
    if let Some(m) = message {
        action.message = Some(status_message(m));
    }
    let outcome = match new {
        State::Running => {
            action.state = Some(new.as_str().into());
            action.execution_start = Some(Time(now));
            action.execution_stop = None;
            action.execution_duration = None;
            if first_start && global_timeout > 0 {
                status.global_execution_stop = Some(Time(
                    now.saturating_add(SignedDuration::from_secs(global_timeout))
                        .unwrap_or(Timestamp::MAX),
                ));
            }
            status.state = Some(State::Running.as_str().into());
            Outcome::Started
        }
        State::Success => {
            finish_run(action, new, now);
            if current.is_last() {
                status.state = Some(State::Post.as_str().into());
                Outcome::Post
            } else {
                Outcome::Advanced
            }
        }
        _ => fail(status, ti, ai, new, now),
    };
    refresh_current_state(status, current);
    Ok(outcome)
}

fn finish_run(action: &mut WorkflowAction, state: State, now: Timestamp) {
    action.state = Some(state.as_str().into());
    action.execution_stop = Some(Time(now));
    let took = action
        .execution_start
        .as_ref()
        .map(|s| now.duration_since(s.0))
        .unwrap_or_default();
    action.execution_duration = Some(go_duration(took));
}

/// FAILED or TIMEOUT of the current action at (ti, ai): retry or end the workflow.
fn fail(status: &mut WorkflowStatus, ti: usize, ai: usize, new: State, now: Timestamp) -> Outcome {
    let action = action_mut(status, ti, ai);
    let retries = action.retries.unwrap_or(0).max(0);
    let attempts = action.attempts.unwrap_or(0).max(0);
    finish_run(action, new, now);
    if attempts < retries {
        action.state = Some(State::Pending.as_str().into());
        action.attempts = Some(attempts + 1);
        Outcome::Retry {
            attempt: attempts + 1,
        }
    } else {
        status.state = Some(new.as_str().into());
        Outcome::Finished(new)
    }
}

fn wrong_state(status: &WorkflowStatus, expected: &'static str) -> TransitionError {
    TransitionError::WrongWorkflowState {
        state: status.state.clone().unwrap_or_default(),
        expected,
    }
}

/// Times a RUNNING workflow out, given `now`.
///
/// * Global: `now` past `globalExecutionStop` (set when the first action starts, to its start
///   plus `globalTimeout`) → the workflow and its current action become TIMEOUT. Never retried.
/// * Per action: the current action RUNNING for longer than its `timeout` (> 0) → TIMEOUT, as
///   if the worker had reported it, so `retries` apply.
///
/// Returns None when nothing timed out.
pub fn check_timeouts(status: &mut WorkflowStatus, now: Timestamp) -> Option<Outcome> {
    if workflow_state(status) != Some(State::Running) {
        return None;
    }
    let current = current_action(status)?;
    let global_stop = status.global_execution_stop.as_ref().map(|t| t.0);
    let (ti, ai) = (current.task_index, current.action_index);
    let outcome = if global_stop.is_some_and(|stop| now > stop) {
        let action = action_mut(status, ti, ai);
        action.message = Some("global workflow timeout exceeded".into());
        finish_run(action, State::Timeout, now);
        status.state = Some(State::Timeout.as_str().into());
        Outcome::Finished(State::Timeout)
    } else {
        let action = action_mut(status, ti, ai);
        let timeout = action.timeout.unwrap_or(0);
        let start = action.execution_start.as_ref().map(|t| t.0)?;
        if current.state != State::Running
            || timeout <= 0
            || now.duration_since(start) <= SignedDuration::from_secs(timeout)
        {
            return None;
        }
        action.message = Some(format!("action timeout of {timeout}s exceeded"));
        fail(status, ti, ai, State::Timeout, now)
    };
    refresh_current_state(status, current);
    Some(outcome)
}

/// Starts a freshly rendered workflow: installs `tasks` (every action PENDING, `attempts` 0),
/// `globalTimeout`, and moves the state from "" to PREPARING (when boot options must be
/// applied first) or PENDING. Fails when the workflow already started.
pub fn begin(
    status: &mut WorkflowStatus,
    mut tasks: Vec<WorkflowTask>,
    global_timeout: i64,
    preparing: bool,
) -> Result<(), TransitionError> {
    if workflow_state(status).is_some() {
        return Err(wrong_state(status, "unset"));
    }
    for task in &mut tasks {
        for action in task.actions.iter_mut().flatten() {
            action.state = Some(State::Pending.as_str().into());
            action.attempts = Some(0);
            action.execution_start = None;
            action.execution_stop = None;
            action.execution_duration = None;
        }
    }
    status.tasks = Some(tasks);
    status.global_timeout = Some(global_timeout);
    status.global_execution_stop = None;
    status.state = Some(
        if preparing {
            State::Preparing
        } else {
            State::Pending
        }
        .as_str()
        .into(),
    );
    if let Some(first) = current_action(status) {
        let agent = first.agent_id.clone();
        set_current_state(status, &first, &agent);
        // The workflow belongs to its first task's worker (upstream's `status.agentID`): the
        // index the tink server finds a worker's workflows by.
        if status.agent_id.as_deref().is_none_or(str::is_empty) && !agent.is_empty() {
            status.agent_id = Some(agent);
        }
    }
    Ok(())
}

/// PREPARING → PENDING: boot options were applied.
pub fn prepared(status: &mut WorkflowStatus) -> Result<(), TransitionError> {
    move_state(status, State::Preparing, State::Pending, "PREPARING")
}

/// PREPARING → FAILED: applying boot options failed (e.g. the bmc Job failed).
pub fn prepare_failed(status: &mut WorkflowStatus) -> Result<(), TransitionError> {
    move_state(status, State::Preparing, State::Failed, "PREPARING")
}

/// POST → SUCCESS: the post-workflow steps are done.
pub fn post_done(status: &mut WorkflowStatus) -> Result<(), TransitionError> {
    move_state(status, State::Post, State::Success, "POST")
}

fn move_state(
    status: &mut WorkflowStatus,
    from: State,
    to: State,
    expected: &'static str,
) -> Result<(), TransitionError> {
    if workflow_state(status) != Some(from) {
        return Err(wrong_state(status, expected));
    }
    status.state = Some(to.as_str().into());
    Ok(())
}

/// Rewrites legacy `STATE_*` workflow and action states to the current spelling ("the legacy
/// strings are reprocessed"). Returns whether anything changed.
pub fn normalize_legacy(status: &mut WorkflowStatus) -> bool {
    fn fix(s: &mut Option<String>) -> bool {
        match s.as_deref() {
            Some(v) if v.starts_with("STATE_") => match State::parse(v) {
                Some(state) => {
                    *s = Some(state.as_str().into());
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
    let mut changed = fix(&mut status.state);
    if let Some(c) = status.current_state.as_mut() {
        changed |= fix(&mut c.state);
    }
    for task in status.tasks.iter_mut().flatten() {
        for action in task.actions.iter_mut().flatten() {
            changed |= fix(&mut action.state);
        }
    }
    changed
}

/// Checks the invariants every reachable status satisfies; the first violation is returned.
///
/// * actions before the current one are SUCCESS, actions after it PENDING;
/// * at most one action is RUNNING, and only while the workflow is RUNNING;
/// * POST and SUCCESS only when every action succeeded;
/// * an action is FAILED/TIMEOUT only as the current action of a workflow in that state.
pub fn check_invariants(status: &WorkflowStatus) -> Result<(), String> {
    let wf = workflow_state(status);
    let current = current_action(status);
    let mut flat = 0;
    let mut running = 0;
    for task in status.tasks.as_deref().unwrap_or_default() {
        for action in task.actions.as_deref().unwrap_or_default() {
            let state = action_state(action);
            let name = action.name.as_deref().unwrap_or_default();
            match &current {
                Some(c) if flat < c.flat_index && state != State::Success => {
                    return Err(format!("action {name} before the current one is {state}"));
                }
                Some(c) if flat > c.flat_index && state != State::Pending => {
                    return Err(format!("action {name} after the current one is {state}"));
                }
                Some(c) if flat != c.flat_index => {}
                Some(_) => match state {
                    State::Running => {
                        running += 1;
                        if wf != Some(State::Running) {
                            return Err(format!("action {name} RUNNING in workflow {wf:?}"));
                        }
                    }
                    State::Failed | State::Timeout if wf != Some(state) => {
                        return Err(format!("action {name} {state} in workflow {wf:?}"));
                    }
                    State::Pending | State::Failed | State::Timeout => {}
                    other => return Err(format!("current action {name} is {other}")),
                },
                None => {}
            }
            flat += 1;
        }
    }
    if running > 1 {
        return Err(format!("{running} actions RUNNING"));
    }
    if matches!(wf, Some(State::Post | State::Success)) && current.is_some() && flat > 0 {
        return Err(format!("workflow {wf:?} with an unfinished action"));
    }
    if matches!(wf, Some(State::Failed | State::Timeout))
        && let Some(c) = &current
        && c.state != State::Pending
        && c.state != wf.expect("matched")
    {
        return Err(format!("workflow {wf:?} but current action {}", c.state));
    }
    Ok(())
}

/// Formats a duration the way Go's `time.Duration.String` does (`1h2m3.5s`, `1.5s`, `250ms`,
/// `0s`, `-2s`), which is what upstream stores in `executionDuration`.
pub fn go_duration(d: SignedDuration) -> String {
    let s = tinkerbell_model::duration::format(d.unsigned_abs());
    if d.is_negative() { format!("-{s}") } else { s }
}

#[cfg(test)]
mod tests;
