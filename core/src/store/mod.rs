//! The backend seam: a small, dynamically typed object store with Kubernetes semantics.
//!
//! Why dynamic (`Object`, `Kind`) rather than generic over the resource type: the seam must be
//! object-safe so a service can hold an `Arc<dyn Store>` chosen at start-up (embedded, kube or
//! remote), and the store API and CLI handle every kind through one code path. Typed access is a
//! `match` away (`Object::as_hardware`), and the hot lookups ([`HardwareLookup`]) return typed
//! `Arc`s directly.
//!
//! Semantics follow the Kubernetes API so the two main backends behave the same:
//! * every write bumps a store-wide, monotonically increasing `resourceVersion`;
//! * `update`/`update_status`/`delete` with a `resourceVersion` are conditional: a stale write is
//!   rejected with [`StoreError::Conflict`], never applied;
//! * `update` never changes status and `update_status` never changes anything but status;
//! * `watch` from a `resourceVersion` delivers every later change in order, or fails with
//!   [`StoreError::Expired`] when that history is gone (the caller lists again).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::model::{Hardware, Job, Machine, Secret, Task, Template, Workflow, WorkflowRuleSet};
use index::ClaimKind;

pub mod embedded;
mod error;
pub mod index;
pub mod kube;
pub mod kube_crds;
pub mod kube_lease;
pub mod remote;
pub mod shared;

pub use error::StoreError;

/// The kinds of object the appliance stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// tinkerbell.org/v1alpha1 Hardware.
    Hardware,
    /// tinkerbell.org/v1alpha1 Template.
    Template,
    /// tinkerbell.org/v1alpha1 Workflow.
    Workflow,
    /// tinkerbell.org/v1alpha1 WorkflowRuleSet.
    WorkflowRuleSet,
    /// bmc.tinkerbell.org/v1alpha1 Machine.
    Machine,
    /// bmc.tinkerbell.org/v1alpha1 Job.
    Job,
    /// bmc.tinkerbell.org/v1alpha1 Task.
    Task,
    /// core/v1 Secret (BMC credentials).
    Secret,
}

impl Kind {
    /// Every kind, in dependency order (what an import should create first comes first).
    pub const ALL: [Kind; 8] = [
        Kind::Secret,
        Kind::Machine,
        Kind::Hardware,
        Kind::Template,
        Kind::Workflow,
        Kind::WorkflowRuleSet,
        Kind::Job,
        Kind::Task,
    ];

    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hardware => "Hardware",
            Kind::Template => "Template",
            Kind::Workflow => "Workflow",
            Kind::WorkflowRuleSet => "WorkflowRuleSet",
            Kind::Machine => "Machine",
            Kind::Job => "Job",
            Kind::Task => "Task",
            Kind::Secret => "Secret",
        }
    }

    /// API group ("" for core).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Hardware | Kind::Template | Kind::Workflow | Kind::WorkflowRuleSet => {
                "tinkerbell.org"
            }
            Kind::Machine | Kind::Job | Kind::Task => "bmc.tinkerbell.org",
            Kind::Secret => "",
        }
    }

    /// The `apiVersion` string.
    pub fn api_version(self) -> &'static str {
        match self.group() {
            "" => "v1",
            "tinkerbell.org" => "tinkerbell.org/v1alpha1",
            _ => "bmc.tinkerbell.org/v1alpha1",
        }
    }

    /// The REST resource name (plural).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Hardware => "hardware",
            Kind::Template => "templates",
            Kind::Workflow => "workflows",
            Kind::WorkflowRuleSet => "workflowrulesets",
            Kind::Machine => "machines",
            Kind::Job => "jobs",
            Kind::Task => "tasks",
            Kind::Secret => "secrets",
        }
    }

    /// Parse what a user types on the command line: kind, plural or short name, any case,
    /// optionally qualified by group (`machine.bmc`, `jobs.bmc.tinkerbell.org`).
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.to_ascii_lowercase();
        let (name, group) = match s.split_once('.') {
            Some((n, g)) => (n.to_string(), Some(g.to_string())),
            None => (s, None),
        };
        let kind = match name.as_str() {
            "hardware" | "hardwares" | "hw" => Kind::Hardware,
            "template" | "templates" | "tpl" => Kind::Template,
            "workflow" | "workflows" | "wf" => Kind::Workflow,
            "workflowruleset" | "workflowrulesets" | "wrs" => Kind::WorkflowRuleSet,
            "machine" | "machines" => Kind::Machine,
            "job" | "jobs" | "j" => Kind::Job,
            "task" | "tasks" | "t" => Kind::Task,
            "secret" | "secrets" => Kind::Secret,
            _ => return None,
        };
        match group.as_deref() {
            None => Some(kind),
            Some(g) if kind.group().starts_with(g) && !g.is_empty() => Some(kind),
            Some(_) => None,
        }
    }

    /// Find the kind for an `apiVersion`/`kind` pair as written in a document.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored object of any kind. Cloning is cheap (the payload is shared).
///
/// `Debug` never shows a Secret's values (only its keys), so an object can be logged safely.
#[derive(Clone, PartialEq)]
pub enum Object {
    /// A Hardware.
    Hardware(Arc<Hardware>),
    /// A Template.
    Template(Arc<Template>),
    /// A Workflow.
    Workflow(Arc<Workflow>),
    /// A WorkflowRuleSet.
    WorkflowRuleSet(Arc<WorkflowRuleSet>),
    /// A bmc Machine.
    Machine(Arc<Machine>),
    /// A bmc Job.
    Job(Arc<Job>),
    /// A bmc Task.
    Task(Arc<Task>),
    /// A Secret.
    Secret(Arc<Secret>),
}

/// Apply `$body` to the payload of every variant.
macro_rules! each_variant {
    ($obj:expr, $inner:ident => $body:expr) => {
        match $obj {
            Object::Hardware($inner) => $body,
            Object::Template($inner) => $body,
            Object::Workflow($inner) => $body,
            Object::WorkflowRuleSet($inner) => $body,
            Object::Machine($inner) => $body,
            Object::Job($inner) => $body,
            Object::Task($inner) => $body,
            Object::Secret($inner) => $body,
        }
    };
}

/// Evaluate `$body` with the type alias `$K` bound to the model type of `$kind` (a
/// [`Kind`](crate::store::Kind)).
#[macro_export]
macro_rules! by_kind {
    ($kind:expr, $K:ident => $body:expr) => {
        $crate::by_kind!(@ $kind, $K, $body; Hardware Template Workflow WorkflowRuleSet Machine Job Task Secret)
    };
    (@ $kind:expr, $K:ident, $body:expr; $($t:ident)*) => {
        match $kind {
            $($crate::store::Kind::$t => {
                type $K = $crate::model::$t;
                $body
            })*
        }
    };
}

/// A model type stored as one [`Kind`] of [`Object`] (and a Kubernetes resource).
pub trait Typed:
    ::kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Its kind.
    const KIND: Kind;
    /// Wrap it.
    fn into_object(self) -> Object;
    /// Unwrap an object of its kind.
    fn from_object(obj: Object) -> Self;
}

/// `Typed` for model types named as their [`Kind`] and [`Object`] variants.
macro_rules! typed {
    ($($t:ident),*) => {$(
        impl Typed for $t {
            const KIND: Kind = Kind::$t;
            fn into_object(self) -> Object {
                Object::$t(Arc::new(self))
            }
            fn from_object(obj: Object) -> Self {
                match obj {
                    Object::$t(a) => Arc::unwrap_or_clone(a),
                    other => unreachable!("dispatched on kind, got {}", other.kind()),
                }
            }
        }
    )*};
}

typed!(
    Hardware,
    Template,
    Workflow,
    WorkflowRuleSet,
    Machine,
    Job,
    Task,
    Secret
);

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Secret(s) => {
                fn keys<V>(m: &Option<std::collections::BTreeMap<String, V>>) -> Vec<&str> {
                    m.iter()
                        .flat_map(|m| m.keys().map(String::as_str))
                        .collect()
                }
                f.debug_struct("Secret")
                    .field("metadata", &s.metadata)
                    .field("type", &s.type_)
                    .field("data_keys", &keys(&s.data))
                    .field("string_data_keys", &keys(&s.string_data))
                    .finish_non_exhaustive()
            }
            other => each_variant!(other, o => fmt::Debug::fmt(&**o, f)),
        }
    }
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        fn kind_of<T: Typed>(_: &Arc<T>) -> Kind {
            T::KIND
        }
        each_variant!(self, o => kind_of(o))
    }

    /// Object metadata.
    pub fn meta(&self) -> &ObjectMeta {
        each_variant!(self, o => &o.metadata)
    }

    /// Mutable object metadata (copies the payload if it is shared).
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        each_variant!(self, a => &mut Arc::make_mut(a).metadata)
    }

    /// `metadata.name`, or "" when unset.
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or("")
    }

    /// `metadata.namespace`, or "" when unset.
    pub fn namespace(&self) -> &str {
        self.meta().namespace.as_deref().unwrap_or("")
    }

    /// `metadata.resourceVersion`, when set.
    pub fn resource_version(&self) -> Option<&str> {
        self.meta().resource_version.as_deref()
    }

    /// The object's identity, for messages and maps.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(self.kind(), self.namespace(), self.name())
    }

    /// The payload as JSON, with `apiVersion` and `kind` set.
    pub fn to_json(&self) -> Value {
        let mut v = each_variant!(self, o => serde_json::to_value(&**o))
            .unwrap_or_else(|e| unreachable!("resource types always serialise: {e}"));
        if let Value::Object(map) = &mut v {
            map.insert(
                "apiVersion".into(),
                Value::String(self.kind().api_version().into()),
            );
            map.insert("kind".into(), Value::String(self.kind().as_str().into()));
        }
        v
    }

    /// Decode an object of a known kind from JSON.
    pub fn from_json(kind: Kind, v: Value) -> Result<Object, serde_json::Error> {
        Ok(by_kind!(kind, K => serde_json::from_value::<K>(v)?.into_object()))
    }

    /// Decode from JSON that carries `apiVersion` and `kind`.
    pub fn from_typed_json(v: Value) -> Result<Object, StoreError> {
        let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind_s = v.get("kind").and_then(Value::as_str).unwrap_or("");
        let kind = Kind::from_type(api_version, kind_s).ok_or_else(|| StoreError::UnknownType {
            api_version: api_version.to_string(),
            kind: kind_s.to_string(),
        })?;
        Object::from_json(kind, v).map_err(|e| StoreError::Decode {
            what: kind.to_string(),
            source: e,
        })
    }

    /// The Hardware payload, if this is one.
    pub fn as_hardware(&self) -> Option<&Arc<Hardware>> {
        match self {
            Object::Hardware(h) => Some(h),
            _ => None,
        }
    }

    /// The Workflow payload, if this is one.
    pub fn as_workflow(&self) -> Option<&Arc<Workflow>> {
        match self {
            Object::Workflow(w) => Some(w),
            _ => None,
        }
    }

    /// The JSON value of `status`, or Null. Used to tell spec writes from status writes.
    pub fn status_json(&self) -> Value {
        self.to_json().get("status").cloned().unwrap_or(Value::Null)
    }

    /// The object's JSON with `status` replaced by `status` (Null removes it).
    pub fn with_status_json(&self, status: Value) -> Result<Object, StoreError> {
        let mut v = self.to_json();
        if let Value::Object(map) = &mut v {
            if status.is_null() {
                map.remove("status");
            } else {
                map.insert("status".into(), status);
            }
        }
        Object::from_typed_json(v)
    }
}

/// kind/namespace/name: an object's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Build a key.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The result of a list: the items and the resourceVersion to watch from.
#[derive(Debug, Clone)]
pub struct ObjectList {
    /// The objects, ordered by namespace then name.
    pub items: Vec<Object>,
    /// Store revision the list was taken at.
    pub resource_version: String,
}

/// One change delivered by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// The object was created (or existed when an unanchored watch started).
    Added(Object),
    /// The object was changed.
    Modified(Object),
    /// The object was deleted; carries its last state.
    Deleted(Object),
}

impl WatchEvent {
    /// The object the event is about.
    pub fn object(&self) -> &Object {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
        }
    }

    /// The Kubernetes event type name.
    pub fn type_str(&self) -> &'static str {
        match self {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
        }
    }
}

/// A stream of changes. It ends with an error when the watcher fell behind or the history it
/// asked for is gone; the caller lists again.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StoreError>>;

/// What `apply_all` did with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It did not exist and was created.
    Created,
    /// It existed and its spec/metadata changed.
    Configured,
    /// It existed and was identical.
    Unchanged,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        })
    }
}

/// The generic object store every backend implements.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Get one object. Missing → [`StoreError::NotFound`].
    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, StoreError>;

    /// List objects of a kind, in one namespace or all (`None`).
    async fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError>;

    /// Watch a kind. With `since`, deliver every change after that resourceVersion; without,
    /// deliver every current object as `Added` and then every change.
    async fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        since: Option<&str>,
    ) -> Result<WatchStream, StoreError>;

    /// Create an object (its resourceVersion must be unset).
    async fn create(&self, obj: Object) -> Result<Object, StoreError>;

    /// Replace an object's metadata and spec; its status is kept. Conditional when the object
    /// carries a resourceVersion.
    async fn update(&self, obj: Object) -> Result<Object, StoreError>;

    /// Replace an object's status only. Conditional when the object carries a resourceVersion.
    async fn update_status(&self, obj: Object) -> Result<Object, StoreError>;

    /// Delete an object, conditionally on `resource_version` when given. Returns its last state.
    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Object, StoreError>;

    /// Create or update every object (including status, when given), all or nothing where the
    /// backend can promise it. Returns what happened to each, in order.
    async fn apply_all(&self, objs: Vec<Object>) -> Result<Vec<(Object, Applied)>, StoreError>;

    /// Whether writes work right now, for health checks and metrics: the embedded store says
    /// why its last commit failed (a full disk) until one succeeds. Backends whose failures are
    /// per request (the API servers answer each one) report healthy.
    fn write_health(&self) -> embedded::StoreHealth {
        embedded::StoreHealth::default()
    }
}

/// The lookups boots, hegel and the tink server make on every packet or request.
#[async_trait]
pub trait HardwareLookup: Send + Sync + 'static {
    /// The Hardware holding the identity `value` of kind `claim` (a MAC in any case or
    /// separator, an IP in any form).
    async fn hardware_by(
        &self,
        claim: ClaimKind,
        value: &str,
    ) -> Result<Option<Arc<Hardware>>, StoreError>;
    /// Workflows whose `status.agentID` is `agent_id`, by namespace and name.
    async fn workflows_by_agent_id(&self, agent_id: &str)
    -> Result<Vec<Arc<Workflow>>, StoreError>;

    /// The Hardware with an interface whose `dhcp.mac` is `mac` (any case).
    async fn hardware_by_mac(&self, mac: &str) -> Result<Option<Arc<Hardware>>, StoreError> {
        self.hardware_by(ClaimKind::Mac, mac).await
    }
    /// The Hardware with an interface whose `dhcp.ip.address` is `ip`.
    async fn hardware_by_ip(&self, ip: &str) -> Result<Option<Arc<Hardware>>, StoreError> {
        self.hardware_by(ClaimKind::Ip, ip).await
    }
    /// The Hardware whose `spec.agentID` is `agent_id`.
    async fn hardware_by_agent_id(
        &self,
        agent_id: &str,
    ) -> Result<Option<Arc<Hardware>>, StoreError> {
        self.hardware_by(ClaimKind::AgentId, agent_id).await
    }
    /// The Hardware whose `spec.metadata.instance.id` is `instance_id`.
    async fn hardware_by_instance_id(
        &self,
        instance_id: &str,
    ) -> Result<Option<Arc<Hardware>>, StoreError> {
        self.hardware_by(ClaimKind::InstanceId, instance_id).await
    }
}

/// A backend: both traits.
pub trait Backend: Store + HardwareLookup {}
impl<T: Store + HardwareLookup> Backend for T {}
