//! Workflow templates: rendering `Template.spec.data` for one Workflow, parsing the result and
//! validating it as upstream does (§1.3.3), and turning it into the Workflow's `status.tasks`.
//!
//! Rendering uses gotmpl (a port of Go's text/template) with `missingkey=error`, so a typo in
//! a template is an error and not a silently empty field, and the function map of [`funcs`]
//! (sprig's hermetic subset plus upstream's four). Output is capped at [`MAX_OUTPUT`] bytes so
//! a template cannot blow up the store.
//!
//! Data visible to a template (as upstream):
//! * every `Workflow.spec.hardwareMap` key at the top level (`{{ .device_1 }}`);
//! * `.Hardware` (legacy shape): `Disks` (device strings), `Interfaces`, `UserData`,
//!   `Metadata`, `VendorData`; nested keys are given Go's exported field names
//!   (`.Hardware.Interfaces` → `DHCP.IP.Address`), as Go templates over upstream's structs see;
//! * `.hardware`: the whole Hardware object as JSON (`.hardware.spec.disks`);
//! * `.secret.<key>`: the keys of the Secret named by `Template.spec.secretRef`, when set.

use std::collections::BTreeMap;
use std::fmt;

use gotmpl::{MissingKey, Template, Value};
use serde::{Deserialize, Deserializer, Serialize};
use tinkerbell_model::{ActionNamespaces, Hardware, WorkflowAction, WorkflowTask};

pub mod funcs;

/// Maximum size of a rendered template, as upstream.
pub const MAX_OUTPUT: usize = 256 * 1024;

/// Names (template, task, action) must be shorter than this.
pub const MAX_NAME_LEN: usize = 200;

/// Bound on `{{range}}` iterations per render (gotmpl's budget), so a template cannot spin.
const MAX_RANGE_ITERS: u64 = 1_000_000;

/// Why a template could not be turned into tasks. The template's name is in every message.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Go-template syntax error (gotmpl gives line and column).
    #[error("template {template}: parse error: {message}")]
    Parse {
        /// Template name.
        template: String,
        /// gotmpl's message, `template: <name>:<line>:<col>: ...`.
        message: String,
    },
    /// Execution failed: a missing key, a function's error, a type mismatch.
    #[error("template {template}: render error: {message}")]
    Render {
        /// Template name.
        template: String,
        /// What failed (names the key or function).
        message: String,
    },
    /// The rendered text is larger than [`MAX_OUTPUT`].
    #[error("template {template}: rendered output exceeds {limit} bytes")]
    TooLarge {
        /// Template name.
        template: String,
        /// The limit.
        limit: usize,
    },
    /// The rendered text is not a workflow document.
    #[error("template {template}: rendered YAML is invalid: {message}")]
    Yaml {
        /// Template name.
        template: String,
        /// Parser message with its location in the rendered text.
        message: String,
    },
    /// The document breaks the validation rules; every problem is listed.
    #[error("template {template}: invalid: {}", problems.join("; "))]
    Invalid {
        /// Template name.
        template: String,
        /// Each problem found.
        problems: Vec<String>,
    },
    /// The data (Hardware) could not be converted for the template engine.
    #[error("template {template}: data: {message}")]
    Data {
        /// Template name.
        template: String,
        /// What failed.
        message: String,
    },
}

/// The rendered workflow document (`Template.spec.data` after rendering).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkflowDoc {
    /// Format version, "0.1".
    #[serde(deserialize_with = "scalar")]
    pub version: String,
    /// Template name.
    #[serde(deserialize_with = "scalar")]
    pub name: String,
    /// Template ID (free-form).
    #[serde(deserialize_with = "scalar")]
    pub id: String,
    /// Seconds the whole workflow may run, from the first action's start (0: no limit).
    pub global_timeout: i64,
    /// Tasks, in order.
    pub tasks: Vec<TaskDoc>,
}

/// A task of a [`WorkflowDoc`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskDoc {
    /// Task name (unique in the template).
    #[serde(deserialize_with = "scalar")]
    pub name: String,
    /// The worker (agent ID, normally a MAC) that runs the task.
    #[serde(deserialize_with = "scalar")]
    pub worker: String,
    /// Volumes for every action ("host:ctr[:ro]").
    pub volumes: Vec<String>,
    /// Environment for every action.
    #[serde(deserialize_with = "scalar_map")]
    pub environment: BTreeMap<String, String>,
    /// Actions, in order.
    pub actions: Vec<ActionDoc>,
}

/// An action of a [`TaskDoc`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActionDoc {
    /// Action name (unique in its task).
    #[serde(deserialize_with = "scalar")]
    pub name: String,
    /// Container image.
    #[serde(deserialize_with = "scalar")]
    pub image: String,
    /// Seconds the action may run (0: the worker's default).
    pub timeout: i64,
    /// Command (overrides the image's).
    pub command: Vec<String>,
    /// Commands run when the action times out (legacy worker).
    #[serde(rename = "on-timeout")]
    pub on_timeout: Vec<String>,
    /// Commands run when the action fails (legacy worker).
    #[serde(rename = "on-failure")]
    pub on_failure: Vec<String>,
    /// Volumes.
    pub volumes: Vec<String>,
    /// Environment.
    #[serde(deserialize_with = "scalar_map")]
    pub environment: BTreeMap<String, String>,
    /// PID namespace (`host`), deprecated in favour of `namespaces.pid`.
    #[serde(deserialize_with = "scalar")]
    pub pid: String,
    /// Namespaces.
    pub namespaces: Namespaces,
    /// How many times to run the action again after FAILED/TIMEOUT (tinkerbell-rs extension).
    pub retries: i64,
}

/// Namespaces of an action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Namespaces {
    /// Network namespace.
    #[serde(deserialize_with = "scalar")]
    pub network: String,
    /// PID namespace.
    #[serde(deserialize_with = "scalar")]
    pub pid: String,
}

/// A YAML scalar of any type as a string (`COMPRESSED: true` → "true"); null → "".
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    S(String),
    B(bool),
    I(i64),
    F(f64),
    N(()),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S(s) => f.write_str(s),
            Self::B(b) => write!(f, "{b}"),
            Self::I(i) => write!(f, "{i}"),
            Self::F(x) => write!(f, "{x}"),
            Self::N(()) => Ok(()),
        }
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?
        .map(|s| s.to_string())
        .unwrap_or_default())
}

fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m = Option::<BTreeMap<String, Scalar>>::deserialize(d)?.unwrap_or_default();
    Ok(m.into_iter().map(|(k, v)| (k, v.to_string())).collect())
}

/// Builds the data a template sees (see the module docs).
pub fn template_data(
    hardware: Option<&Hardware>,
    hardware_map: &BTreeMap<String, String>,
    secret: Option<&BTreeMap<String, String>>,
) -> Result<Value, String> {
    let mut top: BTreeMap<String, Value> = hardware_map
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    if let Some(hw) = hardware {
        let spec = &hw.spec;
        let disks: Vec<Value> = spec
            .disks
            .iter()
            .flatten()
            .map(|d| Value::from(d.device.clone().unwrap_or_default()))
            .collect();
        let json = |v: serde_json::Value| gotmpl::to_value(&go_names(v)).map_err(|e| e.to_string());
        let interfaces = json(
            serde_json::to_value(spec.interfaces.clone().unwrap_or_default())
                .map_err(|e| e.to_string())?,
        )?;
        let metadata = json(
            serde_json::to_value(spec.metadata.clone().unwrap_or_default())
                .map_err(|e| e.to_string())?,
        )?;
        let mut legacy = BTreeMap::new();
        legacy.insert("Disks".to_string(), Value::from(disks));
        legacy.insert("Interfaces".to_string(), interfaces);
        legacy.insert(
            "UserData".to_string(),
            Value::from(spec.user_data.clone().unwrap_or_default()),
        );
        legacy.insert(
            "VendorData".to_string(),
            Value::from(spec.vendor_data.clone().unwrap_or_default()),
        );
        legacy.insert("Metadata".to_string(), metadata);
        top.insert("Hardware".to_string(), Value::from(legacy));
        top.insert(
            "hardware".to_string(),
            gotmpl::to_value(hw).map_err(|e| e.to_string())?,
        );
    }
    if let Some(secret) = secret {
        let secret: BTreeMap<String, Value> = secret
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        top.insert("secret".to_string(), Value::from(secret));
    }
    Ok(Value::from(top))
}

/// Renames JSON keys to the exported Go field names upstream's structs have
/// (`dhcp` → `DHCP`, `ip` → `IP`, `name_servers` → `NameServers`, `allowPXE` → `AllowPXE`).
fn go_names(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Object(m) => J::Object(
            m.into_iter()
                .map(|(k, v)| (go_name(&k), go_names(v)))
                .collect(),
        ),
        J::Array(a) => J::Array(a.into_iter().map(go_names).collect()),
        other => other,
    }
}

fn go_name(key: &str) -> String {
    const ACRONYMS: &[&str] = &[
        "id", "ip", "mac", "uefi", "url", "dhcp", "vlan", "ssh", "ipxe", "pxe", "iso", "os",
        "tftp", "dns",
    ];
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        if ACRONYMS.contains(&lower.as_str()) {
            out.push_str(&lower.to_uppercase());
        } else {
            let mut c = word.chars();
            if let Some(first) = c.next() {
                out.extend(first.to_uppercase());
                out.push_str(c.as_str());
            }
        }
        word.clear();
    };
    let chars: Vec<char> = key.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' || c == '-' {
            flush(&mut word, &mut out);
        } else if c.is_uppercase()
            && !word.is_empty()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()))
        {
            flush(&mut word, &mut out);
            word.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A `fmt::Write` that fails once more than [`MAX_OUTPUT`] bytes were written.
struct Capped {
    out: String,
    overflow: bool,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.out.len() + s.len() > MAX_OUTPUT {
            self.overflow = true;
            return Err(fmt::Error);
        }
        self.out.push_str(s);
        Ok(())
    }
}

/// Renders template text `text` (named `name` in errors) against `data`.
pub fn render(name: &str, text: &str, data: &Value) -> Result<String, TemplateError> {
    let tmpl = Template::new(name)
        .missing_key(MissingKey::Error)
        .max_range_iters(MAX_RANGE_ITERS)
        .funcs(funcs::func_map())
        .parse(text)
        .map_err(|e| TemplateError::Parse {
            template: name.to_string(),
            message: e.to_string(),
        })?;
    let mut w = Capped {
        out: String::new(),
        overflow: false,
    };
    // Every function call checks the time budget; every value the byte budget (funcs.rs).
    let _clock = funcs::RenderClock::start(funcs::MAX_RENDER_TIME);
    match tmpl.execute_fmt(&mut w, data) {
        Ok(()) => Ok(w.out),
        Err(_) if w.overflow => Err(TemplateError::TooLarge {
            template: name.to_string(),
            limit: MAX_OUTPUT,
        }),
        Err(e) => Err(TemplateError::Render {
            template: name.to_string(),
            message: e.to_string(),
        }),
    }
}

/// Parses rendered text into a [`WorkflowDoc`] (no validation).
pub fn parse(name: &str, rendered: &str) -> Result<WorkflowDoc, TemplateError> {
    serde_saphyr::from_str(rendered).map_err(|e| TemplateError::Yaml {
        template: name.to_string(),
        message: e.to_string(),
    })
}

/// Upstream's validation rules; returns every problem found.
pub fn validate(doc: &WorkflowDoc) -> Vec<String> {
    let mut problems = Vec::new();
    let check_name = |what: &str, name: &str, problems: &mut Vec<String>| {
        if name.trim().is_empty() {
            problems.push(format!("{what} name cannot be empty"));
        } else if name.len() >= MAX_NAME_LEN {
            problems.push(format!(
                "{what} name {name:?} must be shorter than {MAX_NAME_LEN} characters"
            ));
        }
    };
    check_name("template", &doc.name, &mut problems);
    if doc.global_timeout < 0 {
        problems.push(format!("global_timeout {} is negative", doc.global_timeout));
    }
    if doc.tasks.is_empty() {
        problems.push("template must have at least one task defined".into());
    }
    let mut task_names = std::collections::BTreeSet::new();
    for task in &doc.tasks {
        check_name("task", &task.name, &mut problems);
        if !task_names.insert(task.name.as_str()) {
            problems.push(format!(
                "two tasks in a template cannot have the same name ({})",
                task.name
            ));
        }
        if task.worker.trim().is_empty() {
            problems.push(format!("task {:?} has no worker", task.name));
        }
        if task.actions.is_empty() {
            problems.push(format!("task {:?} has no actions", task.name));
        }
        let mut action_names = std::collections::BTreeSet::new();
        for action in &task.actions {
            check_name("action", &action.name, &mut problems);
            if !action_names.insert(action.name.as_str()) {
                problems.push(format!(
                    "two actions in a task cannot have the same name ({}/{})",
                    task.name, action.name
                ));
            }
            if let Err(e) = check_image(&action.image) {
                problems.push(format!(
                    "action {:?}: invalid image {:?}: {e}",
                    action.name, action.image
                ));
            }
            if action.timeout < 0 {
                problems.push(format!(
                    "action {:?}: timeout {} is negative",
                    action.name, action.timeout
                ));
            }
            if action.retries < 0 {
                problems.push(format!(
                    "action {:?}: retries {} is negative",
                    action.name, action.retries
                ));
            }
        }
    }
    problems
}

/// A docker image reference check (distribution/reference grammar, simplified):
/// `[host[:port]/]path[:tag][@algo:hex]`, path components lowercase `[a-z0-9]` separated by
/// `.`, `_`, `__` or `-`.
fn check_image(image: &str) -> Result<(), &'static str> {
    if image.is_empty() {
        return Err("empty");
    }
    if image.len() > 4096 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("bad characters");
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d.split_once(':').ok_or("digest needs algorithm:hex")?;
        if algo.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("bad digest");
        }
    }
    // A tag is after the last ':' unless that ':' is part of the host (followed by '/').
    let (path, tag) = match rest.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, Some(t)),
        _ => (rest, None),
    };
    if let Some(t) = tag
        && (t.is_empty()
            || t.len() > 128
            || t.starts_with(['.', '-'])
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
    {
        return Err("bad tag");
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return Err("bad registry host");
        }
    }
    for p in parts {
        let ok = !p.is_empty()
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !ok {
            return Err("bad repository path (lowercase letters, digits, '.', '_', '-')");
        }
    }
    Ok(())
}

/// Renders, parses and validates a template for one Workflow.
pub fn render_workflow(
    name: &str,
    text: &str,
    hardware: Option<&Hardware>,
    hardware_map: &BTreeMap<String, String>,
    secret: Option<&BTreeMap<String, String>>,
) -> Result<WorkflowDoc, TemplateError> {
    let data =
        template_data(hardware, hardware_map, secret).map_err(|message| TemplateError::Data {
            template: name.to_string(),
            message,
        })?;
    let rendered = render(name, text, &data)?;
    let doc = parse(name, &rendered)?;
    let problems = validate(&doc);
    if !problems.is_empty() {
        return Err(TemplateError::Invalid {
            template: name.to_string(),
            problems,
        });
    }
    Ok(doc)
}

impl WorkflowDoc {
    /// The Workflow `status.tasks` for this document; `new_id` makes task and action IDs.
    pub fn to_tasks(&self, mut new_id: impl FnMut() -> String) -> Vec<WorkflowTask> {
        let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let some_map = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
        self.tasks
            .iter()
            .map(|t| WorkflowTask {
                id: Some(new_id()),
                name: Some(t.name.clone()),
                agent_id: Some(t.worker.clone()),
                volumes: some_vec(&t.volumes),
                environment: some_map(&t.environment),
                actions: Some(
                    t.actions
                        .iter()
                        .map(|a| WorkflowAction {
                            id: Some(new_id()),
                            name: Some(a.name.clone()),
                            image: Some(a.image.clone()),
                            timeout: Some(a.timeout),
                            command: some_vec(&a.command),
                            volumes: some_vec(&a.volumes),
                            pid: (!a.pid.is_empty()).then(|| a.pid.clone()),
                            // Copied only when one of them is set, as upstream does.
                            namespaces: (!a.namespaces.network.is_empty()
                                || !a.namespaces.pid.is_empty())
                            .then(|| ActionNamespaces {
                                network: (!a.namespaces.network.is_empty())
                                    .then(|| a.namespaces.network.clone()),
                                pid: (!a.namespaces.pid.is_empty())
                                    .then(|| a.namespaces.pid.clone()),
                            }),
                            environment: some_map(&a.environment),
                            retries: (a.retries > 0).then_some(a.retries),
                            ..Default::default()
                        })
                        .collect(),
                ),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
