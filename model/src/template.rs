//! `tinkerbell.org/v1alpha1` Template: the Go-template text of a workflow (tasks and actions),
//! rendered per Workflow against its Hardware.
//!
//! Mirrors upstream `api/v1alpha1/tinkerbell/template.go`.

/// Known values of `Template.status.state`.
pub mod template_state {
    /// The template is usable.
    pub const READY: &str = "Ready";
    /// The template is in an error state.
    pub const ERROR: &str = "Error";
    /// Every known value.
    pub const ALL: &[&str] = &[READY, ERROR];
}

resource_spec! {
    /// Desired state of a Template (`spec`).
    #[kube(
        group = "tinkerbell.org",
        kind = "Template",
        singular = "template",
        plural = "templates",
        shortname = "tpl",
        status = "TemplateStatus",
        doc = "Template is a workflow template (YAML with Go template directives).",
        printcolumn(name = "State", type_ = "string", json_path = ".status.state")
    )]
    #[serde(rename_all = "camelCase")]
    pub struct TemplateSpec {
        /// The template text.
        data: String,
        /// Secret (same namespace) whose keys are exposed to the template as `.secret.<key>`.
        secret_ref: TemplateSecretReference,
    }
}

model_struct! {
    /// Reference to a Secret in the Template's namespace.
    #[schemars(extend("required" = ["name"]))]
    pub struct TemplateSecretReference {
        /// Name of the Secret.
        #[schemars(extend("minLength" = 1))]
        name: String,
    }
}

model_struct! {
    /// Observed state of a Template (`status`).
    pub struct TemplateStatus {
        /// State: `Ready` or `Error`.
        state: String,
    }
}
