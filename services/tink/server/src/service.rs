//! The gRPC handlers: both `proto.WorkflowService` generations and `tinkerbell.v1.WorkerLogs`.
//!
//! The handlers do IO and authorisation only. Which action is served next and what a report
//! does to a workflow are decided by the pure state machine in `tinkerbell-tink-workflow`
//! (shared with the controller); every write re-reads the Workflow, re-applies that pure
//! transition and writes the status conditionally on the resourceVersion it read, retrying on
//! a conflict, so concurrent writers (the controller, another report) never lose an update.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use tinkerbell_core::model::{Workflow, WorkflowStatus, workflow_state};
use tinkerbell_core::store::{HardwareLookup, Kind, Object, Store, StoreError};
use tinkerbell_core::timeline::{Phase, Subject, Timeline};
use tinkerbell_tink_proto::{current, legacy, logs};
use tinkerbell_tink_workflow::state::{
    self as machine, ActionKey, ActionRef, NoAction, Outcome, State, TransitionError,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::auth::{self, Auth};
use crate::logs::{ActionId, LogStore, NewLine};

/// How often a status write is retried after a conflict before giving up (Unavailable, so
/// the worker retries later).
const MAX_CONFLICT_RETRIES: usize = 16;

/// Shared state of every handler.
#[derive(Clone)]
pub struct Handler {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) lookup: Arc<dyn HardwareLookup>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) logs: Arc<LogStore>,
    pub(crate) cancel: CancellationToken,
    pub(crate) timeline: Option<Arc<Timeline>>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// `"<namespace>/<name>"`, the workflow ID both generations use.
pub fn workflow_id(wf: &Workflow) -> String {
    format!(
        "{}/{}",
        wf.metadata.namespace.as_deref().unwrap_or(""),
        wf.metadata.name.as_deref().unwrap_or("")
    )
}

fn parse_workflow_id(id: &str) -> Result<(&str, &str), Status> {
    match id.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok((ns, name)),
        _ => Err(Status::invalid_argument(format!(
            "workflow_id {id:?} is not <namespace>/<name>"
        ))),
    }
}

/// The agent a workflow belongs to: `status.agentID`, else the agent of its first task.
pub fn owner(wf: &Workflow) -> String {
    if let Some(a) = wf.agent_id() {
        return a.to_string();
    }
    wf.status
        .as_ref()
        .and_then(|s| s.tasks.as_ref())
        .and_then(|t| t.first())
        .and_then(|t| t.agent_id.clone())
        .unwrap_or_default()
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(key) => Status::not_found(format!("{key} not found")),
        other => {
            tracing::warn!(error = %other, "store error");
            Status::unavailable("the store is not available")
        }
    }
}

fn transition_status(e: TransitionError) -> Status {
    match e {
        TransitionError::UnknownAction(_) | TransitionError::NotCurrent { .. } => {
            Status::invalid_argument(e.to_string())
        }
        TransitionError::WrongWorkflowState { .. }
        | TransitionError::IllegalActionTransition { .. } => {
            Status::failed_precondition(e.to_string())
        }
    }
}

fn same_agent(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

impl Handler {
    fn check_running(&self) -> Result<(), Status> {
        if self.cancel.is_cancelled() {
            Err(Status::unavailable("the server is shutting down"))
        } else {
            Ok(())
        }
    }

    /// Workflows of an agent (as given, and lowercased: MACs come in either case).
    async fn workflows_for(&self, agent: &str) -> Result<Vec<Arc<Workflow>>, Status> {
        let lower = agent.to_ascii_lowercase();
        let mut wfs = Vec::new();
        for a in std::iter::once(agent).chain((lower != agent).then_some(lower.as_str())) {
            let found = self.lookup.workflows_by_agent_id(a).await;
            wfs.extend(found.map_err(store_status)?);
        }
        Ok(wfs)
    }

    async fn get_workflow(&self, ns: &str, name: &str) -> Result<Arc<Workflow>, Status> {
        let obj = self
            .store
            .get(Kind::Workflow, ns, name)
            .await
            .map_err(store_status)?;
        obj.as_workflow()
            .cloned()
            .ok_or_else(|| Status::internal("the store returned another kind"))
    }

    /// Re-read the workflow, apply `f` to it, and write the status it returns (if any)
    /// conditionally; retry on conflict. Returns the workflow as written (or read) and `f`'s
    /// value.
    async fn update_status<T>(
        &self,
        ns: &str,
        name: &str,
        mut f: impl FnMut(&Workflow) -> Result<(Option<WorkflowStatus>, T), Status>,
    ) -> Result<(Arc<Workflow>, T), Status> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let wf = self.get_workflow(ns, name).await?;
            let (status, value) = f(&wf)?;
            let Some(status) = status else {
                return Ok((wf, value));
            };
            let mut next = (*wf).clone();
            next.status = Some(status);
            match self
                .store
                .update_status(Object::Workflow(Arc::new(next)))
                .await
            {
                Ok(Object::Workflow(written)) => return Ok((written, value)),
                Ok(_) => return Err(Status::internal("the store returned another kind")),
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(workflow = %format!("{ns}/{name}"), "status write conflict; retrying");
                }
                Err(e) => return Err(store_status(e)),
            }
        }
        Err(Status::unavailable(
            "the workflow keeps changing; try again",
        ))
    }

    /// Choose the workflow and action to serve to `agent` (current: GetAction).
    async fn serve_action(&self, agent: &str) -> Result<(Arc<Workflow>, ActionRef), Status> {
        let wfs = self.workflows_for(agent).await?;
        let mut blocked: Option<String> = None;
        let mut chosen = None;
        for wf in wfs {
            match machine::next_action(&wf) {
                Ok(a) if same_agent(&a.agent_id, agent) => {
                    chosen = Some(wf);
                    break;
                }
                Ok(_) => {}
                Err(NoAction::Preparing) => {
                    blocked.get_or_insert_with(|| {
                        format!("workflow {} is PREPARING", workflow_id(&wf))
                    });
                }
                Err(NoAction::NotRunnable(s)) if s == workflow_state::POST => {
                    blocked
                        .get_or_insert_with(|| format!("workflow {} is in POST", workflow_id(&wf)));
                }
                Err(_) => {}
            }
        }
        let Some(wf) = chosen else {
            return Err(match blocked {
                Some(why) => Status::failed_precondition(why),
                None => Status::not_found(format!("no workflow to run for agent {agent:?}")),
            });
        };
        let ns = wf.metadata.namespace.clone().unwrap_or_default();
        let name = wf.metadata.name.clone().unwrap_or_default();
        self.update_status(&ns, &name, |wf| {
            let a =
                machine::next_action(wf).map_err(|e| Status::failed_precondition(e.to_string()))?;
            if !same_agent(&a.agent_id, agent) {
                return Err(Status::not_found(format!(
                    "the current task is assigned to {:?}",
                    a.agent_id
                )));
            }
            let old = wf.status.clone().unwrap_or_default();
            let mut status = old.clone();
            machine::mark_served(&mut status, &a, agent);
            Ok(((status != old).then_some(status), a))
        })
        .await
        .inspect(|(wf, a)| {
            // The first action handed out is the worker's arrival; later polls of a burst are
            // not (record_first).
            if a.flat_index == 0 && a.state == State::Pending {
                self.record(wf, Phase::WorkerConnected, format!("agent {agent}"), true);
            }
        })
    }

    /// Record a phase for the Hardware a workflow runs on.
    fn record(&self, wf: &Workflow, phase: Phase, detail: String, first_only: bool) {
        let Some(t) = &self.timeline else { return };
        let subject = Subject::hardware(
            wf.metadata.namespace.as_deref().unwrap_or("default"),
            wf.spec.hardware_ref.as_deref().unwrap_or(""),
        );
        if first_only {
            t.record_first(subject, phase, "tink-server", detail);
        } else {
            t.record(subject, phase, "tink-server", detail);
        }
    }

    /// Timeline entries for an applied report: the action's start or end, a reboot, the
    /// workflow's end.
    fn record_report(
        &self,
        wf: &Workflow,
        action: &ReportedAction,
        state: State,
        outcome: &Outcome,
    ) {
        match outcome {
            Outcome::Unchanged => {}
            Outcome::Started => {
                self.record(wf, Phase::ActionStarted, action.name.clone(), false);
            }
            Outcome::Advanced | Outcome::Post | Outcome::Retry { .. } | Outcome::Finished(_) => {
                self.record(
                    wf,
                    Phase::ActionFinished,
                    format!("{}: {state}", action.name),
                    false,
                );
                if state == State::Success && action.is_reboot() {
                    self.record(wf, Phase::Reboot, action.name.clone(), false);
                }
            }
        }
        let end = match outcome {
            Outcome::Post => Some(State::Post.to_string()),
            Outcome::Finished(s) => Some(s.to_string()),
            _ => None,
        };
        if let Some(end) = end {
            self.record(wf, Phase::WorkflowFinished, end, false);
        }
    }

    /// Apply a report to a workflow (both generations).
    async fn apply_report(
        &self,
        meta: &auth::Caller,
        id: &str,
        key: ActionKey<'_>,
        state: State,
        message: Option<&str>,
    ) -> Result<Outcome, Status> {
        let (ns, name) = parse_workflow_id(id)?;
        let wf = self.get_workflow(ns, name).await?;
        self.auth.check_owner(meta, &owner(&wf))?;
        let (wf, (outcome, action)) = self
            .update_status(ns, name, |wf| {
                let mut status = wf.status.clone().unwrap_or_default();
                // A report is about the current action (anything else is refused below).
                let action = machine::current_action(&status)
                    .map(|a| ReportedAction {
                        image: a
                            .action(&status)
                            .and_then(|x| x.image.clone())
                            .unwrap_or_default(),
                        name: a.action_name,
                    })
                    .unwrap_or_default();
                let outcome = machine::report(&mut status, key, state, message, Timestamp::now())
                    .map_err(transition_status)?;
                let changed = outcome != Outcome::Unchanged;
                Ok((changed.then_some(status), (outcome, action)))
            })
            .await?;
        self.record_report(&wf, &action, state, &outcome);
        tracing::info!(workflow = %id, action = %key, state = %state, outcome = ?outcome,
            workflow_state = wf.status.as_ref().and_then(|s| s.state.as_deref()).unwrap_or(""),
            "action status");
        Ok(outcome)
    }
}

/// The action a report was about, for the timeline.
#[derive(Debug, Default)]
struct ReportedAction {
    name: String,
    image: String,
}

impl ReportedAction {
    /// A reboot action (upstream's `reboot` image, or an action named so).
    fn is_reboot(&self) -> bool {
        let base = self.image.rsplit('/').next().unwrap_or("");
        let base = base.split([':', '@']).next().unwrap_or("");
        base == "reboot" || self.name.eq_ignore_ascii_case("reboot")
    }
}

/// `K=V` strings of the task environment overlaid with the action's.
fn environment(
    task: Option<&BTreeMap<String, String>>,
    action: Option<&BTreeMap<String, String>>,
) -> Vec<String> {
    let mut env = task.cloned().unwrap_or_default();
    env.extend(action.cloned().unwrap_or_default());
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn volumes(task: Option<&Vec<String>>, action: Option<&Vec<String>>) -> Vec<String> {
    task.into_iter()
        .flatten()
        .chain(action.into_iter().flatten())
        .cloned()
        .collect()
}

fn current_response(
    wf: &Workflow,
    a: &ActionRef,
    agent: &str,
) -> Result<current::ActionResponse, Status> {
    let status = wf
        .status
        .as_ref()
        .ok_or_else(|| Status::internal("workflow lost its status"))?;
    let task = a.task(status);
    let action = a
        .action(status)
        .ok_or_else(|| Status::internal("served action vanished"))?;
    // `namespaces.pid` wins over the deprecated `pid`; namespaces go out as the status has them
    // (a bare `pid` is sent as namespaces.pid too, for agents that read only that).
    let ns = action.namespaces.as_ref();
    let ns_pid = ns.and_then(|n| n.pid.clone()).filter(|p| !p.is_empty());
    let ns_network = ns.and_then(|n| n.network.clone()).filter(|n| !n.is_empty());
    let pid = ns_pid.or_else(|| action.pid.clone().filter(|p| !p.is_empty()));
    Ok(current::ActionResponse {
        workflow_id: Some(workflow_id(wf)),
        task_id: Some(a.task_id.clone()),
        agent_id: Some(agent.to_string()),
        action_id: Some(a.action_id.clone()),
        name: Some(a.action_name.clone()),
        image: action.image.clone(),
        timeout: Some(action.timeout.unwrap_or(0)),
        command: action.command.clone().unwrap_or_default(),
        volumes: volumes(
            task.and_then(|t| t.volumes.as_ref()),
            action.volumes.as_ref(),
        ),
        environment: environment(
            task.and_then(|t| t.environment.as_ref()),
            action.environment.as_ref(),
        ),
        pid: pid.clone(),
        namespaces: (pid.is_some() || ns_network.is_some()).then_some(current::Namespaces {
            network: ns_network,
            pid,
        }),
    })
}

fn legacy_state(s: State) -> legacy::State {
    match s {
        State::Running => legacy::State::Running,
        State::Success | State::Post => legacy::State::Success,
        State::Failed => legacy::State::Failed,
        State::Timeout => legacy::State::Timeout,
        State::Pending | State::Preparing => legacy::State::Pending,
    }
}

#[tonic::async_trait]
impl current::workflow_service_server::WorkflowService for Handler {
    async fn get_action(
        &self,
        request: Request<current::ActionRequest>,
    ) -> Result<Response<current::ActionResponse>, Status> {
        self.check_running()?;
        let (meta, req) = auth::caller(request);
        let agent = req.agent_id.unwrap_or_default();
        let agent = agent.trim();
        if agent.is_empty() {
            return Err(Status::invalid_argument("agent_id is required"));
        }
        self.auth.check_identity(&meta, agent)?;
        let (wf, a) = self.serve_action(agent).await?;
        tracing::debug!(workflow = %workflow_id(&wf), action = %a.action_name, agent, "serving action");
        Ok(Response::new(current_response(&wf, &a, agent)?))
    }

    async fn report_action_status(
        &self,
        request: Request<current::ActionStatusRequest>,
    ) -> Result<Response<current::ActionStatusResponse>, Status> {
        self.check_running()?;
        let (meta, req) = auth::caller(request);
        let id = req.workflow_id.clone().unwrap_or_default();
        let action_id = req.action_id.clone().unwrap_or_default();
        if action_id.is_empty() {
            return Err(Status::invalid_argument("action_id is required"));
        }
        use current::action_status_request::StateType;
        let state = match StateType::try_from(req.action_state.unwrap_or(0)) {
            Ok(StateType::Running) => State::Running,
            Ok(StateType::Success) => State::Success,
            Ok(StateType::Failed) => State::Failed,
            Ok(StateType::Timeout) => State::Timeout,
            Ok(StateType::Pending | StateType::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(
                    "action_state must be RUNNING, SUCCESS, FAILED or TIMEOUT",
                ));
            }
        };
        let message = req.message.as_ref().and_then(|m| m.message.as_deref());
        self.apply_report(&meta, &id, ActionKey::Id(&action_id), state, message)
            .await?;
        Ok(Response::new(current::ActionStatusResponse {}))
    }
}

#[tonic::async_trait]
impl legacy::workflow_service_server::WorkflowService for Handler {
    type GetWorkflowContextsStream =
        futures::stream::Iter<std::vec::IntoIter<Result<legacy::WorkflowContext, Status>>>;

    async fn get_workflow_contexts(
        &self,
        request: Request<legacy::WorkflowContextRequest>,
    ) -> Result<Response<Self::GetWorkflowContextsStream>, Status> {
        self.check_running()?;
        let (meta, req) = auth::caller(request);
        let worker = req.worker_id.trim();
        if worker.is_empty() {
            return Err(Status::invalid_argument("worker_id is required"));
        }
        self.auth.check_identity(&meta, worker)?;
        let mut contexts = Vec::new();
        for wf in self.workflows_for(worker).await? {
            // PENDING/RUNNING workflows whose current task is this worker's (PREPARING, POST
            // and finished ones are skipped, as upstream does).
            let Ok(a) = machine::next_action(&wf) else {
                continue;
            };
            if !same_agent(&a.agent_id, worker) {
                continue;
            }
            contexts.push(Ok(legacy::WorkflowContext {
                workflow_id: workflow_id(&wf),
                current_worker: a.agent_id.clone(),
                current_task: a.task_name.clone(),
                current_action: a.action_name.clone(),
                current_action_index: a.flat_index as i64,
                current_action_state: legacy_state(a.state) as i32,
                total_number_of_actions: a.total_actions as i64,
            }));
        }
        Ok(Response::new(futures::stream::iter(contexts)))
    }

    async fn get_workflow_actions(
        &self,
        request: Request<legacy::WorkflowActionsRequest>,
    ) -> Result<Response<legacy::WorkflowActionList>, Status> {
        self.check_running()?;
        let (meta, req) = auth::caller(request);
        let (ns, name) = parse_workflow_id(&req.workflow_id)?;
        let wf = self.get_workflow(ns, name).await?;
        self.auth.check_owner(&meta, &owner(&wf))?;
        let mut list = Vec::new();
        for task in wf.status.iter().flat_map(|s| s.tasks.iter().flatten()) {
            for action in task.actions.iter().flatten() {
                list.push(legacy::WorkflowAction {
                    task_name: task.name.clone().unwrap_or_default(),
                    name: action.name.clone().unwrap_or_default(),
                    image: action.image.clone().unwrap_or_default(),
                    timeout: action.timeout.unwrap_or(0),
                    command: action.command.clone().unwrap_or_default(),
                    on_timeout: Vec::new(),
                    on_failure: Vec::new(),
                    worker_id: task.agent_id.clone().unwrap_or_default(),
                    volumes: volumes(task.volumes.as_ref(), action.volumes.as_ref()),
                    environment: environment(
                        task.environment.as_ref(),
                        action.environment.as_ref(),
                    ),
                    pid: action.pid.clone().unwrap_or_default(),
                });
            }
        }
        Ok(Response::new(legacy::WorkflowActionList {
            action_list: list,
        }))
    }

    async fn report_action_status(
        &self,
        request: Request<legacy::WorkflowActionStatus>,
    ) -> Result<Response<legacy::Empty>, Status> {
        self.check_running()?;
        let (meta, req) = auth::caller(request);
        let state = match legacy::State::try_from(req.action_status) {
            Ok(legacy::State::Running) => State::Running,
            Ok(legacy::State::Success) => State::Success,
            Ok(legacy::State::Failed) => State::Failed,
            Ok(legacy::State::Timeout) => State::Timeout,
            Ok(legacy::State::Pending) | Err(_) => {
                return Err(Status::invalid_argument(
                    "action_status must be RUNNING, SUCCESS, FAILED or TIMEOUT",
                ));
            }
        };
        let message = (!req.message.is_empty()).then_some(req.message.as_str());
        let key = ActionKey::Names {
            task: &req.task_name,
            action: &req.action_name,
        };
        self.apply_report(&meta, &req.workflow_id, key, state, message)
            .await?;
        Ok(Response::new(legacy::Empty {}))
    }
}

fn proto_line(l: &crate::logs::Line) -> logs::LogLine {
    logs::LogLine {
        time: Some(l.time),
        stream: l.stream.clone(),
        text: l.text.clone(),
    }
}

#[tonic::async_trait]
impl logs::worker_logs_server::WorkerLogs for Handler {
    async fn push_logs(
        &self,
        request: Request<logs::PushLogsRequest>,
    ) -> Result<Response<logs::PushLogsResponse>, Status> {
        self.check_running()?;
        let (meta, req) = auth::caller(request);
        let (ns, name) = parse_workflow_id(&req.workflow_id)?;
        if req.action_id.is_empty() && req.action_name.is_empty() {
            return Err(Status::invalid_argument(
                "action_id or action_name is required",
            ));
        }
        let wf = self.get_workflow(ns, name).await?;
        self.auth.check_owner(&meta, &owner(&wf))?;
        let lines = req
            .lines
            .into_iter()
            .map(|l| NewLine {
                time: l.time,
                stream: l.stream,
                text: l.text,
            })
            .collect();
        let now = prost_types::Timestamp {
            seconds: Timestamp::now().as_second(),
            nanos: Timestamp::now().subsec_nanosecond(),
        };
        let r = self.logs.append(
            &req.workflow_id,
            ActionId {
                task_id: &req.task_id,
                action_id: &req.action_id,
                action_name: &req.action_name,
            },
            lines,
            now,
        );
        Ok(Response::new(logs::PushLogsResponse {
            accepted: r.accepted,
            dropped: r.dropped,
        }))
    }

    async fn read_logs(
        &self,
        request: Request<logs::ReadLogsRequest>,
    ) -> Result<Response<logs::ReadLogsResponse>, Status> {
        let (meta, req) = auth::caller(request);
        let (ns, name) = parse_workflow_id(&req.workflow_id)?;
        let owner = match self.get_workflow(ns, name).await {
            Ok(wf) => owner(&wf),
            Err(e) if e.code() == tonic::Code::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        self.auth.check_reader(&meta, &owner)?;
        let actions = self
            .logs
            .read(&req.workflow_id, &req.action_name)
            .into_iter()
            .map(|l| logs::ActionLog {
                task_id: l.task_id,
                action_id: l.action_id,
                action_name: l.action_name,
                lines: l.lines.iter().map(proto_line).collect(),
                dropped: l.dropped,
            })
            .collect();
        Ok(Response::new(logs::ReadLogsResponse { actions }))
    }
}
