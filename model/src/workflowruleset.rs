//! `tinkerbell.org/v1alpha1` WorkflowRuleSet: rules matched against what a machine's agent
//! reports about itself, and the Workflow to create for a machine that matches (upstream's
//! auto-enrollment).
//!
//! Mirrors upstream `api/v1alpha1/tinkerbell/workflowruleset.go`: no field is required and
//! nothing has a default; `status` is an empty object nothing writes. The controller that acts
//! on these objects belongs to the enrollment work; until then they are stored and served like
//! every other kind.

use std::collections::BTreeMap;

resource_spec! {
    /// Desired state of a WorkflowRuleSet (`spec`).
    #[kube(
        group = "tinkerbell.org",
        kind = "WorkflowRuleSet",
        singular = "workflowruleset",
        plural = "workflowrulesets",
        shortname = "wrs",
        status = "WorkflowRuleSetStatus",
        doc = "WorkflowRuleSet creates a Workflow for an agent whose attributes match one of its rules."
    )]
    #[serde(rename_all = "camelCase")]
    pub struct WorkflowRuleSetSpec {
        /// Quamina patterns (each a JSON object) matched against the agent's attributes; ORed.
        rules: Vec<String>,
        /// The Workflow created when a rule matches.
        workflow: WorkflowRuleSetWorkflow,
    }
}

model_struct! {
    /// How the created Workflow is configured.
    #[serde(rename_all = "camelCase")]
    pub struct WorkflowRuleSetWorkflow {
        /// Copied into the created Workflow's `spec.disabled`.
        disabled: bool,
        /// Namespace of the created Workflow.
        namespace: String,
        /// Whether the created Workflow gets the agent's attributes as the annotation
        /// `tinkerbell.org/agent-attributes`.
        add_attributes: bool,
        /// The Template the created Workflow runs.
        template: WorkflowRuleSetTemplate,
    }
}

model_struct! {
    /// The created Workflow's Template and its values.
    #[serde(rename_all = "camelCase")]
    pub struct WorkflowRuleSetTemplate {
        /// Name of an existing Template (the Workflow's `spec.templateRef`).
        #[serde(rename = "ref")]
        reference: String,
        /// The `hardwareMap` key that receives the agent ID (e.g. `device_id`); the Template's
        /// `tasks[].worker` uses `{{.<agentValue>}}`.
        agent_value: String,
        /// Further `hardwareMap` entries, written after the agent ID's.
        kvs: BTreeMap<String, String>,
    }
}

model_struct! {
    /// Observed state of a WorkflowRuleSet (`status`): empty, as upstream's.
    pub struct WorkflowRuleSetStatus {}
}
