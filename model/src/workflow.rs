//! `tinkerbell.org/v1alpha1` Workflow: a Template bound to a Hardware, and the execution state
//! of its rendered tasks and actions.
//!
//! Mirrors upstream `api/v1alpha1/tinkerbell/workflow.go`. Upstream's `Task`, `Action` and
//! `JobStatus` are named [`WorkflowTask`], [`WorkflowAction`] and [`WorkflowJobStatus`] here,
//! because the bmc group has types of the same names.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::bmc::Action as BmcAction;

/// Known values of `status.state`, `status.currentState.state` and action `state`.
pub mod workflow_state {
    /// Boot options are being applied before the workflow runs.
    pub const PREPARING: &str = "PREPARING";
    /// Waiting for an agent.
    pub const PENDING: &str = "PENDING";
    /// Running.
    pub const RUNNING: &str = "RUNNING";
    /// Post-workflow boot options are being applied.
    pub const POST: &str = "POST";
    /// Finished successfully.
    pub const SUCCESS: &str = "SUCCESS";
    /// Failed.
    pub const FAILED: &str = "FAILED";
    /// Timed out.
    pub const TIMEOUT: &str = "TIMEOUT";
    /// Every known value.
    pub const ALL: &[&str] = &[PREPARING, PENDING, RUNNING, POST, SUCCESS, FAILED, TIMEOUT];
}

/// Known values of `WorkflowCondition.type`.
pub mod workflow_condition_type {
    /// The boot job failed.
    pub const BOOT_JOB_FAILED: &str = "BootJobFailed";
    /// The boot job completed.
    pub const BOOT_JOB_COMPLETE: &str = "BootJobComplete";
    /// The boot job is running.
    pub const BOOT_JOB_RUNNING: &str = "BootJobRunning";
    /// Setting up the boot job failed.
    pub const BOOT_JOB_SETUP_FAILED: &str = "BootJobSetupFailed";
    /// The boot job was set up.
    pub const BOOT_JOB_SETUP_COMPLETE: &str = "BootJobSetupComplete";
    /// `allowPXE` was toggled to true on the Hardware.
    pub const ALLOW_NETBOOT_TRUE: &str = "AllowNetbootTrue";
    /// `allowPXE` was toggled to false on the Hardware.
    pub const ALLOW_NETBOOT_FALSE: &str = "AllowNetbootFalse";
    /// The template was rendered.
    pub const TEMPLATE_RENDERED_SUCCESS: &str = "TemplateRenderedSuccess";
    /// True while an older unfinished Workflow holds the same Hardware: this one waits (ours;
    /// upstream lets two Workflows fight over one machine).
    pub const HARDWARE_IN_USE: &str = "HardwareInUse";
    /// Every known value.
    pub const ALL: &[&str] = &[
        BOOT_JOB_FAILED,
        BOOT_JOB_COMPLETE,
        BOOT_JOB_RUNNING,
        BOOT_JOB_SETUP_FAILED,
        BOOT_JOB_SETUP_COMPLETE,
        ALLOW_NETBOOT_TRUE,
        ALLOW_NETBOOT_FALSE,
        TEMPLATE_RENDERED_SUCCESS,
        HARDWARE_IN_USE,
    ];
}

/// Known values of `status.templateRendering`.
pub mod template_rendering {
    /// The template rendered.
    pub const SUCCESSFUL: &str = "successful";
    /// Rendering failed.
    pub const FAILED: &str = "failed";
    /// Every known value.
    pub const ALL: &[&str] = &[SUCCESSFUL, FAILED];
}

/// Known values of `spec.bootOptions.bootMode`.
pub mod boot_mode {
    /// Network boot (PXE / iPXE).
    pub const NETBOOT: &str = "netboot";
    /// Boot the ISO at `isoURL` through BMC virtual media.
    pub const ISO: &str = "iso";
    /// Boot the OSIE ISO through BMC virtual media.
    pub const ISOBOOT: &str = "isoboot";
    /// Run the user-defined BMC actions of `custombootConfig`.
    pub const CUSTOMBOOT: &str = "customboot";
    /// Every known value.
    pub const ALL: &[&str] = &[NETBOOT, ISOBOOT, ISO, CUSTOMBOOT];
}

resource_spec! {
    /// Desired state of a Workflow (`spec`).
    #[kube(
        group = "tinkerbell.org",
        kind = "Workflow",
        singular = "workflow",
        plural = "workflows",
        shortname = "wf",
        status = "WorkflowStatus",
        doc = "Workflow runs a Template on a Hardware.",
        printcolumn(name = "Template", type_ = "string", json_path = ".spec.templateRef"),
        printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
        printcolumn(
            name = "Task",
            type_ = "string",
            json_path = ".status.currentState.taskName",
            priority = 1
        ),
        printcolumn(name = "Action", type_ = "string", json_path = ".status.currentState.actionName"),
        printcolumn(name = "Agent", type_ = "string", json_path = ".status.currentState.agentID"),
        printcolumn(name = "Hardware", type_ = "string", json_path = ".spec.hardwareRef"),
        printcolumn(
            name = "Template-Rendering",
            type_ = "string",
            json_path = ".status.templateRendering",
            priority = 1
        )
    )]
    #[serde(rename_all = "camelCase")]
    pub struct WorkflowSpec {
        /// Whether the Workflow is ignored by the controller.
        disabled: bool,
        /// Name of the Template.
        template_ref: String,
        /// Name of the Hardware.
        hardware_ref: String,
        /// Template variables (e.g. `device_1: <mac>`), exposed as top-level template values.
        hardware_map: BTreeMap<String, String>,
        /// How the Hardware is booted; requires `hardwareRef`.
        boot_options: BootOptions,
    }
}

model_struct! {
    /// Options controlling how the Hardware is booted for the Workflow.
    #[serde(rename_all = "camelCase")]
    pub struct BootOptions {
        /// Set `allowPXE` on the Hardware before the Workflow and clear it after success.
        toggle_allow_netboot: bool,
        /// URL of the ISO to boot once (`bootMode: iso` / `isoboot`).
        #[serde(rename = "isoURL")]
        #[schemars(extend("format" = "uri"))]
        iso_url: String,
        /// Boot mode: `netboot`, `isoboot`, `iso` or `customboot`.
        #[schemars(extend("enum" = ["netboot", "isoboot", "iso", "customboot"]))]
        boot_mode: String,
        /// BMC actions for `bootMode: customboot`.
        customboot_config: CustombootConfig,
    }
}

model_struct! {
    /// BMC actions run around a `customboot` Workflow.
    #[serde(rename_all = "camelCase")]
    pub struct CustombootConfig {
        /// Actions run before the Workflow's actions (should get an agent running).
        preparing_actions: Vec<BmcAction>,
        /// Actions run after all the Workflow's actions succeeded.
        post_actions: Vec<BmcAction>,
    }
}

model_struct! {
    /// Observed state of a Workflow (`status`).
    #[serde(rename_all = "camelCase")]
    pub struct WorkflowStatus {
        /// Agent the Workflow is bound to.
        #[serde(rename = "agentID")]
        agent_id: String,
        /// Overall state: `PREPARING`, `PENDING`, `RUNNING`, `POST`, `SUCCESS`, `FAILED` or
        /// `TIMEOUT`.
        state: String,
        /// State of the boot options.
        boot_options: BootOptionsStatus,
        /// Whether the template rendered: `successful` or `failed`.
        template_rendering: String,
        /// Maximum execution time in seconds.
        global_timeout: i64,
        /// When the Workflow times out.
        global_execution_stop: Time,
        /// Where execution is.
        current_state: CurrentState,
        /// Rendered tasks.
        tasks: Vec<WorkflowTask>,
        /// Conditions.
        #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
        conditions: Vec<WorkflowCondition>,
    }
}

model_struct! {
    /// State of the boot options of a Workflow.
    #[serde(rename_all = "camelCase")]
    pub struct BootOptionsStatus {
        /// What the controller did to the Hardware's `allowPXE`.
        allow_netboot: AllowNetbootStatus,
        /// bmc Jobs created for the Workflow, by name.
        jobs: BTreeMap<String, WorkflowJobStatus>,
    }
}

model_struct! {
    /// What the controller did to the Hardware's `allowPXE`.
    #[serde(rename_all = "camelCase")]
    pub struct AllowNetbootStatus {
        /// `allowPXE` was set to true.
        toggled_true: bool,
        /// `allowPXE` was set to false.
        toggled_false: bool,
    }
}

model_struct! {
    /// State of a bmc Job created for a Workflow (upstream `JobStatus`).
    #[serde(rename_all = "camelCase")]
    pub struct WorkflowJobStatus {
        /// UID of the Job.
        uid: String,
        /// Whether the Job reported completion.
        complete: bool,
        /// Whether a previous Job of the same name was deleted.
        existing_job_deleted: bool,
    }
}

model_struct! {
    /// Where a Workflow's execution is.
    #[serde(rename_all = "camelCase")]
    pub struct CurrentState {
        /// Agent running the current action.
        #[serde(rename = "agentID")]
        agent_id: String,
        /// Current task ID.
        #[serde(rename = "taskID")]
        task_id: String,
        /// Current action ID.
        #[serde(rename = "actionID")]
        action_id: String,
        /// State of the current action (same values as the Workflow state).
        state: String,
        /// Current action name.
        action_name: String,
        /// Current task name.
        task_name: String,
    }
}

model_struct! {
    /// A condition of a Workflow.
    #[schemars(extend("required" = ["status", "type"]))]
    pub struct WorkflowCondition {
        /// Condition type, e.g. `BootJobComplete`, `AllowNetbootTrue`, `TemplateRenderedSuccess`.
        #[serde(rename = "type")]
        type_: String,
        /// `True`, `False` or `Unknown`.
        status: String,
        /// Brief reason for the last transition.
        reason: String,
        /// Human readable details.
        message: String,
        /// When the condition was set.
        time: Time,
    }
}

model_struct! {
    /// A rendered task: actions run by one agent (upstream `Task`).
    #[schemars(extend("required" = ["actions", "agentID", "id", "name"]))]
    #[serde(rename_all = "camelCase")]
    pub struct WorkflowTask {
        /// Task ID.
        id: String,
        /// Task name.
        name: String,
        /// Agent running the task.
        #[serde(rename = "agentID")]
        agent_id: String,
        /// Actions, run in order.
        actions: Vec<WorkflowAction>,
        /// Volumes mounted into every action.
        volumes: Vec<String>,
        /// Environment of every action.
        environment: BTreeMap<String, String>,
    }
}

model_struct! {
    /// A rendered action and its execution state (upstream `Action`).
    #[schemars(extend("required" = ["id"]))]
    #[serde(rename_all = "camelCase")]
    pub struct WorkflowAction {
        /// Action ID.
        id: String,
        /// Action name.
        name: String,
        /// Container image.
        image: String,
        /// Timeout in seconds.
        timeout: i64,
        /// Command (overrides the image's).
        command: Vec<String>,
        /// Volumes.
        volumes: Vec<String>,
        /// PID namespace mode (e.g. `host`). Deprecated upstream in favour of `namespaces.pid`,
        /// which takes precedence.
        pid: String,
        /// Linux namespaces the action's container runs in (set when the Template gives one).
        namespaces: ActionNamespaces,
        /// Environment.
        environment: BTreeMap<String, String>,
        /// State (same values as the Workflow state).
        state: String,
        /// When execution started.
        execution_start: Time,
        /// When execution stopped.
        execution_stop: Time,
        /// Execution duration (Go duration string).
        execution_duration: String,
        /// Message reported with the state.
        message: String,
        /// How many times a FAILED or TIMEOUT action is run again (tinkerbell-rs extension;
        /// absent means 0, as upstream).
        retries: i64,
        /// How many runs of this action failed or timed out and were retried
        /// (tinkerbell-rs extension).
        attempts: i64,
    }
}

model_struct! {
    /// Linux namespaces of an action's container (upstream `ActionNamespaces`), passed to the
    /// container runtime as given.
    pub struct ActionNamespaces {
        /// Network namespace: `host` shares the host's.
        network: String,
        /// PID namespace: `host` shares the host's.
        pid: String,
    }
}

impl Workflow {
    /// `status.agentID` if set (and not empty), else None.
    pub fn agent_id(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.agent_id.as_deref())
            .filter(|a| !a.is_empty())
    }
}
