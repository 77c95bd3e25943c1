//! tinkerbell-model: the Tinkerbell resource model and the value types every layer shares.
//! No IO and no async runtime: the store, the services, the workflow logic and the fuzz
//! targets all link it.
//!
//! Rust mirrors of the upstream Tinkerbell API objects (tinkerbell/tinkerbell, `api/v1alpha1`):
//!
//! * `tinkerbell.org/v1alpha1`: [`Hardware`], [`Template`], [`Workflow`];
//! * `bmc.tinkerbell.org/v1alpha1`: [`Machine`], [`Job`], [`Task`];
//! * core/v1 [`Secret`] (BMC credentials), re-exported from `k8s-openapi`.
//!
//! JSON field names, nesting and value types are the upstream ones, including upstream's mix
//! of `snake_case` (most of `Hardware.spec.interfaces[].dhcp` and `Hardware.spec.metadata`) and
//! `camelCase` keys.
//!
//! Two deliberate differences from the Go types:
//!
//! * **Every field is optional** (`Option<T>`, skipped when `None`). A document that is read and
//!   written back comes out exactly as it went in, including explicit `false`, `0`, `""`, `{}`
//!   and `[]`, which Go's `omitempty` would drop.
//! * **Unknown fields are ignored**, not rejected, so objects written by a newer upstream still
//!   load. Rejecting unknown fields in user input is the job of the apply layer, which diffs the
//!   document against its typed round trip.
//!
//! Upstream's string "enums" (power state, boot mode, workflow state, …) are plain `String`s
//! here so that unknown or legacy values (e.g. `STATE_PENDING` from standalone tink) still load;
//! the known values are `pub const`s in small modules such as [`workflow_state`].
//!
//! Shared value types: [`MacAddr`] (every MAC form upstream accepts), [`names`] (the DNS-1123
//! checks) and [`duration`] (Go's durations, parsed and formatted once for every binary).
//!
//! [`all_crds`] returns the CustomResourceDefinitions generated from these types; the copies
//! in `deploy/crds/` are checked against it by the `crd_golden` test.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Declares a model struct whose fields are all optional.
///
/// Every field `name: T` becomes `pub name: Option<T>` with
/// `#[serde(default, skip_serializing_if = "Option::is_none")]`, and the struct derives
/// `Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema`. Attributes on the
/// struct and on each field (doc comments, `serde(rename)`, `schemars(...)`) are kept.
macro_rules! model_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        #[derive(
            ::serde::Serialize,
            ::serde::Deserialize,
            Clone,
            Debug,
            Default,
            PartialEq,
            ::schemars::JsonSchema
        )]
        $(#[$meta])*
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

/// Declares the `spec` struct of a namespaced `v1alpha1` resource of the `tinkerbell` category
/// with [`model_struct!`], and the resource type itself with kube's `CustomResource` (deriving
/// `PartialEq` and `Default`); the `#[kube(...)]` attribute gives the rest (group, kind, names,
/// status, columns).
macro_rules! resource_spec {
    (
        $(#[doc = $doc:literal])*
        #[kube($($kube:tt)*)]
        $($rest:tt)*
    ) => {
        model_struct! {
            $(#[doc = $doc])*
            #[derive(::kube::CustomResource)]
            #[kube(
                version = "v1alpha1",
                category = "tinkerbell",
                namespaced,
                derive = "PartialEq",
                derive = "Default",
                $($kube)*
            )]
            $($rest)*
        }
    };
}

pub mod bmc;
pub mod duration;
pub mod hardware;
pub mod mac;
pub mod names;
pub mod template;
pub mod workflow;
pub mod workflowruleset;

pub use bmc::*;
pub use hardware::*;
pub use k8s_openapi::api::core::v1::Secret;
pub use mac::{MacAddr, MacAddrError};
pub use template::*;
pub use workflow::*;
pub use workflowruleset::*;

/// Label keys clusterctl uses to find the CRDs (and their objects) to move between clusters.
/// Upstream sets both, with empty values, on the Hardware and bmc Machine CRDs.
pub const CLUSTERCTL_CRD_LABELS: [&str; 2] = [
    "clusterctl.cluster.x-k8s.io",
    "clusterctl.cluster.x-k8s.io/move",
];

/// The seven CRDs of the model, in a fixed order: Hardware, Template, Workflow,
/// WorkflowRuleSet (tinkerbell.org), then Machine, Job, Task (bmc.tinkerbell.org).
///
/// The Hardware and Machine CRDs carry the clusterctl move labels (see
/// [`CLUSTERCTL_CRD_LABELS`]), as upstream's do; every CRD has `listKind` set to
/// `<Kind>List`.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut hardware = Hardware::crd();
    let mut machine = Machine::crd();
    for crd in [&mut hardware, &mut machine] {
        let labels = crd.metadata.labels.get_or_insert_with(Default::default);
        for key in CLUSTERCTL_CRD_LABELS {
            labels.insert(key.to_string(), String::new());
        }
    }
    let mut crds = vec![
        hardware,
        Template::crd(),
        Workflow::crd(),
        WorkflowRuleSet::crd(),
        machine,
        Job::crd(),
        Task::crd(),
    ];
    // kube-derive leaves listKind unset; upstream's CRDs spell it out.
    for crd in &mut crds {
        let names = &mut crd.spec.names;
        names.list_kind = Some(format!("{}List", names.kind));
    }
    crds.into_iter().map(kubernetes_formats).collect()
}

/// The CRD with schemars' unsigned integer formats (`uint32`, `uint64`, ...), which Kubernetes
/// does not know (the API server warns about each on every write of the CRD), made `int64`
/// with the type's bounds as `minimum`/`maximum`.
fn kubernetes_formats(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                let max = match map.get("format").and_then(serde_json::Value::as_str) {
                    Some("uint8") => Some(u64::from(u8::MAX)),
                    Some("uint16") => Some(u64::from(u16::MAX)),
                    Some("uint32") => Some(u64::from(u32::MAX)),
                    Some("uint64" | "uint") => Some(i64::MAX.unsigned_abs()),
                    _ => None,
                };
                if let Some(max) = max {
                    map.insert("format".into(), "int64".into());
                    map.insert("minimum".into(), serde_json::json!(0.0));
                    map.insert("maximum".into(), serde_json::json!(max as f64));
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(&crd)
        .unwrap_or_else(|e| unreachable!("a generated CRD always serialises: {e}"));
    walk(&mut v);
    serde_json::from_value(v).unwrap_or_else(|e| unreachable!("formats only changed: {e}"))
}

/// Schema for a map whose values are Kubernetes quantities (integer or string), such as
/// `Hardware.spec.resources`.
pub(crate) fn quantity_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "x-kubernetes-int-or-string": true },
    })
}
