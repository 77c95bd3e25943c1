//! `tinkerbell apply` input handling: every problem is reported with source, document, line
//! and field, and a bad document means nothing is returned for applying.

use tinkerbell_admin::apply::{check_batch, parse_documents};
use tinkerbell_core::store::Kind;

fn errors(input: &str) -> Vec<String> {
    match parse_documents("in.yaml", input, "default") {
        Ok(d) => match check_batch(&d) {
            Ok(()) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        },
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const HW: &str = "\
apiVersion: tinkerbell.org/v1alpha1
kind: Hardware
metadata:
  name: n1
spec:
  interfaces:
  - dhcp:
      mac: 52:54:00:00:00:01
      ip:
        address: 10.0.0.1
    netboot:
      allowPXE: true
";

#[test]
fn good_documents_parse_with_default_namespace() {
    let input = format!(
        "{HW}---\napiVersion: tinkerbell.org/v1alpha1\nkind: Template\nmetadata:\n  name: t\n  namespace: other\nspec:\n  data: x\n"
    );
    let docs = parse_documents("in.yaml", &input, "eksa-system").unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].object.kind(), Kind::Hardware);
    assert_eq!(docs[0].object.namespace(), "eksa-system");
    assert_eq!(docs[1].object.namespace(), "other");
    assert_eq!(docs[1].document, 2);
    assert_eq!(docs[1].line, 14);
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let input = HW.replace("      allowPXE: true", "      allowPxe: true");
    assert_eq!(
        errors(&input),
        vec![
            "in.yaml: document 1 (line 12): spec.interfaces[0].netboot.allowPxe: unknown field for Hardware"
        ]
    );
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let input = HW.replace("      allowPXE: true", "      allowPXE: \"yes please\"");
    let e = errors(&input);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(
            "in.yaml: document 1 (line 12): spec.interfaces[0].netboot.allowPXE: invalid type"
        ),
        "{}",
        e[0]
    );
}

#[test]
fn broken_yaml_names_the_line() {
    let input = format!(
        "{HW}---\napiVersion: tinkerbell.org/v1alpha1\nkind: Template\nmetadata:\n  name: [unclosed\n"
    );
    let e = errors(&input);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("in.yaml: document 2 (line 1"), "{}", e[0]);
    assert!(e[0].contains("invalid YAML"), "{}", e[0]);
}

#[test]
fn wrong_api_version_and_kind() {
    let e = errors("apiVersion: tinkerbell.org/v1beta9\nkind: Hardware\nmetadata:\n  name: x\n");
    assert_eq!(
        e,
        vec![
            "in.yaml: document 1 (line 1): apiVersion: \"tinkerbell.org/v1beta9\" is not the apiVersion of Hardware (want \"tinkerbell.org/v1alpha1\")"
        ]
    );
    let e = errors("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n");
    assert!(
        e[0].starts_with("in.yaml: document 1 (line 2): kind: unknown kind \"ConfigMap\""),
        "{}",
        e[0]
    );
    let e = errors("kind: Hardware\nmetadata:\n  name: x\n");
    assert_eq!(e, vec!["in.yaml: document 1 (line 1): apiVersion: missing"]);
}

#[test]
fn missing_name() {
    let e = errors(
        "apiVersion: tinkerbell.org/v1alpha1\nkind: Template\nmetadata:\n  namespace: x\nspec:\n  data: y\n",
    );
    assert_eq!(
        e,
        vec!["in.yaml: document 1 (line 3): metadata.name: missing"]
    );
}

#[test]
fn every_bad_document_is_reported() {
    let input = format!(
        "{}---\n{}---\n{}",
        HW.replace("allowPXE", "allowPxe"),
        "apiVersion: nope/v1\nkind: Template\nmetadata:\n  name: t\n",
        HW.replace("n1", "n2").replace(
            "      mac: 52:54:00:00:00:01",
            "      mac: 52:54:00:00:00:01\n      bogus: 1"
        )
    );
    let e = errors(&input);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].contains("document 1"));
    assert!(e[1].contains("document 2"));
    assert!(
        e[2].contains("document 3") && e[2].contains("spec.interfaces[0].dhcp.bogus"),
        "{}",
        e[2]
    );
}

#[test]
fn two_hardware_claiming_one_mac_or_ip_in_one_apply() {
    let input = format!("{HW}---\n{}", HW.replace("name: n1", "name: n2"));
    let e = errors(&input);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].contains("document 2")
            && e[0].contains("spec.interfaces[0].dhcp.mac")
            && e[0].contains("Hardware default/n1"),
        "{}",
        e[0]
    );
    assert!(
        e[1].contains("spec.interfaces[0].dhcp.ip.address"),
        "{}",
        e[1]
    );
}

#[test]
fn same_object_twice() {
    let input = format!("{HW}---\n{HW}");
    let e = errors(&input);
    assert!(
        e.iter()
            .any(|m| m.contains("Hardware default/n1 is also defined in document 1")),
        "{e:#?}"
    );
}

#[test]
fn json_documents_work_too() {
    let docs = parse_documents(
        "in.json",
        r#"{"apiVersion":"tinkerbell.org/v1alpha1","kind":"Template","metadata":{"name":"t"},"spec":{"data":"x"}}"#,
        "default",
    )
    .unwrap();
    assert_eq!(docs[0].object.name(), "t");
}
