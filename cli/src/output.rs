//! Human output: tables like kubectl's, YAML/JSON, and Secret redaction.

use serde_json::Value;
use tinkerbell_core::store::{Kind, Object};

/// `hardware.tinkerbell.org/name`, as kubectl prints it.
pub fn qualified_name(o: &Object) -> String {
    let k = o.kind();
    if k.group().is_empty() {
        format!("{}/{}", k.as_str().to_ascii_lowercase(), o.name())
    } else {
        format!("{}.{}/{}", k.plural(), k.group(), o.name())
    }
}

/// Replace Secret values with `<redacted>`.
pub fn redact(o: &Object) -> Object {
    if o.kind() != Kind::Secret {
        return o.clone();
    }
    let mut v = o.to_json();
    for field in ["data", "stringData"] {
        if let Some(map) = v.get_mut(field).and_then(Value::as_object_mut) {
            for val in map.values_mut() {
                // "<redacted>" is not valid base64, so use a base64 rendering of it.
                *val = Value::String("PHJlZGFjdGVkPg==".into());
            }
        }
    }
    Object::from_typed_json(v).unwrap_or_else(|_| o.clone())
}

/// YAML text of a JSON value.
pub fn yaml(v: &Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(v)?)
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// A table of objects.
pub fn table(kind: Kind, items: &[Object], wide: bool, with_namespace: bool) -> String {
    let mut header: Vec<&str> = Vec::new();
    if with_namespace {
        header.push("NAMESPACE");
    }
    header.push("NAME");
    let cols: Vec<&str> = match (kind, wide) {
        (Kind::Hardware, false) => vec!["MAC", "IP", "ALLOWPXE"],
        (Kind::Hardware, true) => vec!["MAC", "IP", "ALLOWPXE", "HOSTNAME", "BMC", "STATE"],
        (Kind::Template, _) => vec!["STATE"],
        (Kind::Workflow, false) => vec!["TEMPLATE", "HARDWARE", "STATE"],
        (Kind::Workflow, true) => vec!["TEMPLATE", "HARDWARE", "STATE", "CURRENT-ACTION", "AGENT"],
        (Kind::WorkflowRuleSet, _) => vec!["TEMPLATE", "RULES"],
        (Kind::Machine, _) => vec!["HOST", "POWER", "CONTACTABLE"],
        (Kind::Job, _) => vec!["MACHINE", "TASKS", "STATE"],
        (Kind::Task, _) => vec!["STATE"],
        (Kind::Secret, _) => vec!["TYPE", "DATA"],
    };
    header.extend(cols);
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for o in items {
        let v = o.to_json();
        let mut row = Vec::new();
        if with_namespace {
            row.push(o.namespace().to_string());
        }
        row.push(o.name().to_string());
        let last_condition = |v: &Value| {
            v.pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().rev().find(|c| s(c, "/status") == "True"))
                .map(|c| s(c, "/type").to_string())
                .unwrap_or_default()
        };
        match kind {
            Kind::Hardware => {
                row.push(s(&v, "/spec/interfaces/0/dhcp/mac").to_string());
                row.push(s(&v, "/spec/interfaces/0/dhcp/ip/address").to_string());
                row.push(
                    v.pointer("/spec/interfaces/0/netboot/allowPXE")
                        .map(|b| b.to_string())
                        .unwrap_or_default(),
                );
                if wide {
                    row.push(s(&v, "/spec/metadata/instance/hostname").to_string());
                    row.push(s(&v, "/spec/bmcRef/name").to_string());
                    row.push(s(&v, "/status/state").to_string());
                }
            }
            Kind::Template | Kind::Task => {
                let st = s(&v, "/status/state").to_string();
                row.push(if st.is_empty() {
                    last_condition(&v)
                } else {
                    st
                });
            }
            Kind::Workflow => {
                row.push(s(&v, "/spec/templateRef").to_string());
                row.push(s(&v, "/spec/hardwareRef").to_string());
                row.push(s(&v, "/status/state").to_string());
                if wide {
                    row.push(s(&v, "/status/currentState/actionName").to_string());
                    row.push(s(&v, "/status/agentID").to_string());
                }
            }
            Kind::WorkflowRuleSet => {
                row.push(s(&v, "/spec/workflow/template/ref").to_string());
                row.push(
                    v.pointer("/spec/rules")
                        .and_then(Value::as_array)
                        .map(|r| r.len().to_string())
                        .unwrap_or_else(|| "0".into()),
                );
            }
            Kind::Machine => {
                row.push(s(&v, "/spec/connection/host").to_string());
                row.push(s(&v, "/status/powerState").to_string());
                let contactable = v
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| s(c, "/type") == "Contactable"))
                    .map(|c| s(c, "/status").to_string())
                    .unwrap_or_default();
                row.push(contactable);
            }
            Kind::Job => {
                row.push(s(&v, "/spec/machineRef/name").to_string());
                row.push(
                    v.pointer("/spec/tasks")
                        .and_then(Value::as_array)
                        .map(|t| t.len().to_string())
                        .unwrap_or_default(),
                );
                row.push(last_condition(&v));
            }
            Kind::Secret => {
                row.push(s(&v, "/type").to_string());
                row.push(
                    v.get("data")
                        .and_then(Value::as_object)
                        .map(|d| d.len().to_string())
                        .unwrap_or_else(|| "0".into()),
                );
            }
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}
