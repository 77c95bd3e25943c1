//! Round-trip tests for the resource model: upstream-shaped YAML → typed object → JSON must give
//! back exactly the document (nothing lost, nothing added), and the fully populated fixtures
//! must exercise every field of the generated CRD schemas.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tinkerbell_core::model::{
    Hardware, Job, Machine, MetadataInstanceOperatingSystem, Secret, Task, Template, Workflow,
    WorkflowRuleSet, all_crds,
};
use tinkerbell_core::testing::strip_nulls;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Parse `yaml` as `T` and check that its JSON form equals the YAML read as plain JSON, and that
/// writing it back as YAML and reading that again gives the same object.
fn assert_roundtrip<T>(what: &str, yaml: &str) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let typed: T =
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{what}: typed parse failed: {e}"));
    let raw: Value =
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{what}: raw parse failed: {e}"));
    let expected = strip_nulls(raw);
    let got = serde_json::to_value(&typed).expect("serialise typed object");
    assert!(
        got == expected,
        "{what}: typed round trip changed the document\n--- expected (YAML as JSON)\n{}\n--- got (typed → JSON)\n{}",
        pretty(&expected),
        pretty(&got),
    );

    let again_yaml = serde_saphyr::to_string(&typed).expect("serialise typed object as YAML");
    let again: T = serde_saphyr::from_str(&again_yaml)
        .unwrap_or_else(|e| panic!("{what}: re-reading our own YAML failed: {e}\n{again_yaml}"));
    assert_eq!(again, typed, "{what}: YAML write/read changed the object");
    typed
}

fn roundtrip_fixture<T>(name: &str) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    assert_roundtrip(name, &fixture(name))
}

#[test]
fn hardware_full_roundtrip() {
    let hw: Hardware = roundtrip_fixture("hardware_full.yaml");

    let iface = &hw.interfaces()[0];
    let netboot = iface.netboot.as_ref().expect("netboot");
    assert_eq!(
        netboot.allow_pxe,
        Some(false),
        "explicit allowPXE: false kept"
    );
    assert_eq!(iface.disable_dhcp, Some(false));
    let dhcp = iface.dhcp.as_ref().expect("dhcp");
    assert_eq!(dhcp.lease_time, Some(0), "explicit lease_time: 0 kept");
    assert_eq!(dhcp.vlan_id.as_deref(), Some("100"));
    assert_eq!(
        hw.spec.user_data.as_deref(),
        Some(""),
        "explicit empty userData kept"
    );
    assert_eq!(hw.spec.tink_version, Some(0));
    let custom = hw.spec.metadata.as_ref().and_then(|m| m.custom.as_ref());
    assert_eq!(
        custom.and_then(|c| c.preinstalled_operating_system_version.clone()),
        Some(MetadataInstanceOperatingSystem::default()),
    );
    let resources = hw.spec.resources.as_ref().expect("resources");
    assert_eq!(
        resources["cpu"],
        serde_json::json!(16),
        "integer quantity stays an integer"
    );
    assert_eq!(resources["memory"], serde_json::json!("64Gi"));
}

#[test]
fn hardware_full_helpers() {
    let hw: Hardware = serde_saphyr::from_str(&fixture("hardware_full.yaml")).unwrap();
    // Second interface's MAC is upper-case in the document; the third has an empty MAC and
    // address, the fourth no dhcp section.
    assert_eq!(hw.macs(), ["3c:ec:ef:4c:4f:54", "3c:ec:ef:4c:4f:55"]);
    assert_eq!(hw.ips(), ["10.1.1.11", "fd00::11"]);
    assert_eq!(hw.agent_id(), Some("3c:ec:ef:4c:4f:54"));
    assert_eq!(hw.instance_id(), Some("3c:ec:ef:4c:4f:54"));
}

#[test]
fn hardware_eksa_roundtrip() {
    let hw: Hardware = roundtrip_fixture("hardware_eksa.yaml");
    assert_eq!(hw.metadata.name.as_deref(), Some("eksa-cp01"));
    assert_eq!(hw.metadata.namespace.as_deref(), Some("eksa-system"));
    assert_eq!(hw.metadata.creation_timestamp, None);
    assert!(hw.status.is_some(), "status: {{}} kept");

    let instance = hw
        .spec
        .metadata
        .as_ref()
        .and_then(|m| m.instance.as_ref())
        .unwrap();
    assert_eq!(
        instance.operating_system,
        Some(MetadataInstanceOperatingSystem::default()),
        "operating_system: {{}} (the Boots nil-deref workaround) kept"
    );
    let json = serde_json::to_value(&hw).unwrap();
    assert_eq!(
        json["spec"]["metadata"]["instance"]["operating_system"],
        serde_json::json!({})
    );
    assert_eq!(
        json["spec"]["interfaces"][0]["dhcp"]["lease_time"],
        serde_json::json!(4_294_967_294_i64)
    );

    assert_eq!(hw.macs(), ["88:e9:a4:58:5c:ac"]);
    assert_eq!(hw.ips(), ["10.80.30.21"]);
    assert_eq!(hw.agent_id(), None);
    assert_eq!(hw.instance_id(), Some("88:e9:a4:58:5c:ac"));
}

#[test]
fn hardware_helpers_treat_empty_as_unset() {
    let hw: Hardware = serde_saphyr::from_str(
        "apiVersion: tinkerbell.org/v1alpha1\nkind: Hardware\nmetadata:\n  name: x\nspec:\n  agentID: \"\"\n  metadata:\n    instance:\n      id: \"\"\n",
    )
    .unwrap();
    assert_eq!(hw.agent_id(), None);
    assert_eq!(hw.instance_id(), None);
    assert!(hw.macs().is_empty());
    assert!(hw.ips().is_empty());

    let empty: Hardware = serde_saphyr::from_str("metadata:\n  name: x\nspec: {}\n").unwrap();
    assert_eq!(empty.agent_id(), None);
    assert_eq!(empty.instance_id(), None);
    assert!(empty.interfaces().is_empty());
}

#[test]
fn template_roundtrip() {
    let tpl: Template = roundtrip_fixture("template.yaml");
    let data = tpl.spec.data.as_deref().expect("data");
    assert!(
        data.starts_with("version: \"0.1\"\nname: ubuntu\n"),
        "{data}"
    );
    assert!(data.contains("{{ index .Hardware.Disks 0 }}"));
    assert!(
        data.ends_with("command: [\"reboot\"]\n"),
        "block scalar keeps its final newline"
    );
}

#[test]
fn workflow_roundtrip() {
    let wf: Workflow = roundtrip_fixture("workflow.yaml");
    assert_eq!(wf.agent_id(), Some("3c:ec:ef:4c:4f:54"));
    let status = wf.status.as_ref().unwrap();
    let tasks = status.tasks.as_deref().unwrap();
    assert_eq!(tasks[0].actions.as_deref().unwrap().len(), 2);
    let jobs = status.boot_options.as_ref().unwrap().jobs.as_ref().unwrap();
    assert_eq!(jobs["customboot-preparing-sm01"].complete, Some(true));
}

#[test]
fn workflow_agent_id_unset() {
    let wf: Workflow =
        serde_saphyr::from_str("metadata:\n  name: x\nspec:\n  templateRef: t\n").unwrap();
    assert_eq!(wf.agent_id(), None);
    let wf: Workflow =
        serde_saphyr::from_str("metadata:\n  name: x\nspec: {}\nstatus:\n  agentID: \"\"\n")
            .unwrap();
    assert_eq!(wf.agent_id(), None);
}

#[test]
fn legacy_workflow_state_values_load() {
    // Standalone tink used STATE_* values; they must still load (and survive) as strings.
    let yaml = "apiVersion: tinkerbell.org/v1alpha1\nkind: Workflow\nmetadata:\n  name: old\nspec:\n  templateRef: t\nstatus:\n  state: STATE_PENDING\n";
    let wf: Workflow = assert_roundtrip("legacy workflow", yaml);
    assert_eq!(wf.status.unwrap().state.as_deref(), Some("STATE_PENDING"));
}

#[test]
fn workflowruleset_roundtrip() {
    let wrs: WorkflowRuleSet = roundtrip_fixture("workflowruleset.yaml");
    let wf = wrs.spec.workflow.as_ref().unwrap();
    let tpl = wf.template.as_ref().unwrap();
    assert_eq!(tpl.reference.as_deref(), Some("ubuntu"));
    assert_eq!(tpl.agent_value.as_deref(), Some("device_id"));
    assert_eq!(wrs.spec.rules.as_ref().map(Vec::len), Some(2));
}

#[test]
fn machine_roundtrip() {
    let m: Machine = roundtrip_fixture("machine.yaml");
    let opts = m
        .spec
        .connection
        .as_ref()
        .unwrap()
        .provider_options
        .as_ref()
        .unwrap();
    assert_eq!(
        opts.ipmitool.as_ref().unwrap().cipher_suite.as_deref(),
        Some("17")
    );
    assert_eq!(opts.redfish.as_ref().unwrap().use_basic_auth, Some(true));
    assert_eq!(m.status.unwrap().power_state.as_deref(), Some("on"));
}

#[test]
fn machine_eksa_roundtrip() {
    let m: Machine = roundtrip_fixture("machine_eksa.yaml");
    let conn = m.spec.connection.as_ref().unwrap();
    assert_eq!(conn.port, Some(0), "explicit port: 0 kept");
    assert_eq!(conn.insecure_tls, Some(true));
}

#[test]
fn job_roundtrip() {
    let job: Job = roundtrip_fixture("job.yaml");
    let tasks = job.spec.tasks.as_deref().unwrap();
    assert_eq!(tasks.len(), 9);
    assert_eq!(tasks[0].power_action.as_deref(), Some("off"));
    assert_eq!(
        tasks[1]
            .one_time_boot_device_action
            .as_ref()
            .unwrap()
            .devices
            .as_deref(),
        Some(&["pxe".to_string()][..])
    );
    assert_eq!(tasks[2].boot_device.as_ref().unwrap().efi_boot, Some(true));
    assert_eq!(
        tasks[3]
            .virtual_media_action
            .as_ref()
            .unwrap()
            .kind
            .as_deref(),
        Some("CD")
    );
}

#[test]
fn task_roundtrip() {
    let task: Task = roundtrip_fixture("task.yaml");
    assert_eq!(
        task.spec.task.as_ref().unwrap().power_action.as_deref(),
        Some("off")
    );
}

#[test]
fn secret_roundtrip() {
    let secret: Secret = roundtrip_fixture("secret.yaml");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    let data = secret.data.as_ref().unwrap();
    assert_eq!(data["username"].0, b"ADMIN");
    assert_eq!(data["password"].0, b"Passw0rd!");
}

/// Decision record: the typed layer tolerates unknown fields (objects from a newer upstream must
/// load) and silently drops them. Rejecting unknown fields in user input is the apply layer's
/// job, done by diffing the document against this round trip.
#[test]
fn unknown_fields_are_tolerated_and_dropped() {
    let yaml = "\
apiVersion: tinkerbell.org/v1alpha1
kind: Hardware
metadata:
  name: sm01
spec:
  futureField: {a: 1}
  interfaces:
    - dhcp:
        mac: \"3c:ec:ef:4c:4f:54\"
        bogus: 1
";
    let hw: Hardware = serde_saphyr::from_str(yaml).expect("unknown fields must not be rejected");
    let json = serde_json::to_value(&hw).unwrap();
    assert_eq!(
        json["spec"],
        serde_json::json!({"interfaces": [{"dhcp": {"mac": "3c:ec:ef:4c:4f:54"}}]})
    );
    assert_eq!(hw.macs(), ["3c:ec:ef:4c:4f:54"]);
}

// ---------------------------------------------------------------------------------------------
// Coverage: the fixtures set every field the CRD schemas describe.
//
// A field is identified by the schema of the object it belongs to (descriptions and nullability
// ignored) and its key, so a struct used in several places (e.g. `ComponentStatus`, or the in-band
// and out-of-band `Attributes`) counts as covered once any of its uses sets the field.

/// Identity of an object schema: its JSON without descriptions and nullability.
fn schema_id(schema: &Value) -> String {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| *k != "description" && *k != "nullable")
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    strip(schema).to_string()
}

/// Every field of an OpenAPI schema: (object schema id, key) → first path it appears at.
/// Map values count as the key `{}`; array items are descended into.
fn schema_fields(schema: &Value, path: &str, out: &mut BTreeMap<(String, String), String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let id = schema_id(schema);
        for (key, sub) in props {
            let p = format!("{path}.{key}");
            out.entry((id.clone(), key.clone()))
                .or_insert_with(|| p.clone());
            schema_fields(sub, &p, out);
        }
    }
    if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
        let p = format!("{path}.{{}}");
        out.entry((schema_id(schema), "{}".into()))
            .or_insert_with(|| p.clone());
        schema_fields(sub, &p, out);
    }
    if let Some(sub) = schema.get("items") {
        schema_fields(sub, &format!("{path}[]"), out);
    }
}

/// The fields (as in [`schema_fields`]) a document sets.
fn document_fields(schema: &Value, doc: &Value, out: &mut BTreeSet<(String, String)>) {
    match doc {
        Value::Object(map) => {
            let id = schema_id(schema);
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|s| s.is_object());
            for (key, value) in map {
                if let Some(sub) = props.and_then(|p| p.get(key)) {
                    out.insert((id.clone(), key.clone()));
                    document_fields(sub, value, out);
                } else if let Some(sub) = extra {
                    out.insert((id.clone(), "{}".into()));
                    document_fields(sub, value, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for item in items {
                    document_fields(sub, item, out);
                }
            }
        }
        _ => {}
    }
}

fn crd_schema(kind: &str) -> Value {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .unwrap()
}

#[test]
fn fixtures_set_every_modelled_field() {
    let fixtures = [
        ("Hardware", "hardware_full.yaml"),
        ("Hardware", "hardware_eksa.yaml"),
        ("Template", "template.yaml"),
        ("Workflow", "workflow.yaml"),
        ("WorkflowRuleSet", "workflowruleset.yaml"),
        ("Machine", "machine.yaml"),
        ("Machine", "machine_eksa.yaml"),
        ("Job", "job.yaml"),
        ("Task", "task.yaml"),
    ];
    // Fields are identified by schema content, so a type shared between kinds (the bmc Action,
    // Connection) is covered by any fixture that uses it.
    let mut seen = BTreeSet::new();
    for (kind, name) in fixtures {
        let doc: Value = serde_saphyr::from_str(&fixture(name)).unwrap();
        document_fields(&crd_schema(kind), &doc, &mut seen);
    }
    let mut missing = Vec::new();
    for kind in [
        "Hardware",
        "Template",
        "Workflow",
        "WorkflowRuleSet",
        "Machine",
        "Job",
        "Task",
    ] {
        let mut wanted = BTreeMap::new();
        schema_fields(&crd_schema(kind), "", &mut wanted);
        missing.extend(
            wanted
                .iter()
                .filter(|(field, _)| !seen.contains(*field))
                .map(|(_, path)| format!("{kind}{path}")),
        );
    }
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "CRD fields no fixture sets: {missing:#?}"
    );
}
