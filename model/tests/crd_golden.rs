//! Golden test for the generated CRDs: `deploy/crds/<group>_<plural>.yaml` must be exactly what
//! `model::all_crds()` produces. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p tinkerbell-model --test crd_golden`.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use tinkerbell_model::{CLUSTERCTL_CRD_LABELS, all_crds};

const REGENERATE: &str = "run UPDATE_GOLDEN=1 cargo test -p tinkerbell-model --test crd_golden";

const HEADER: &str = "# Generated from model/src by \
`UPDATE_GOLDEN=1 cargo test -p tinkerbell-model --test crd_golden`. Do not edit.\n";

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds")
}

fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

fn render(crd: &CustomResourceDefinition) -> String {
    let yaml = serde_saphyr::to_string(crd).expect("serialise CRD");
    format!("{HEADER}{yaml}")
}

#[test]
fn crds_match_golden_files() {
    let dir = crds_dir();
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for crd in all_crds() {
        let path = dir.join(file_name(&crd));
        let want = render(&crd);
        if update {
            std::fs::create_dir_all(&dir).expect("create deploy/crds");
            std::fs::write(&path, &want)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(have) if have == want => {}
            Ok(_) => stale.push(format!("{} differs from the model", path.display())),
            Err(e) => stale.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "CRD golden files are out of date ({REGENERATE}):\n  {}",
        stale.join("\n  ")
    );
}

#[test]
fn golden_yaml_reads_back_as_the_same_crd() {
    for crd in all_crds() {
        let text = render(&crd);
        let back: CustomResourceDefinition =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file_name(&crd)));
        assert_eq!(back, crd, "{}", file_name(&crd));
    }
}

#[test]
fn clusterctl_labels_only_on_hardware_and_machine() {
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let labels = crd.metadata.labels.clone().unwrap_or_default();
        if matches!(
            name.as_str(),
            "hardware.tinkerbell.org" | "machines.bmc.tinkerbell.org"
        ) {
            for key in CLUSTERCTL_CRD_LABELS {
                assert_eq!(
                    labels.get(key).map(String::as_str),
                    Some(""),
                    "{name} must carry label {key}: \"\""
                );
            }
            assert_eq!(
                labels.len(),
                CLUSTERCTL_CRD_LABELS.len(),
                "{name}: {labels:?}"
            );
        } else {
            assert!(
                labels.is_empty(),
                "{name} must not carry labels: {labels:?}"
            );
        }
    }
}

/// A printer column: (name, JSON path, priority).
type Column = (&'static str, &'static str, i32);

/// What upstream's CRD says: (metadata.name, kind, plural, singular, short names, columns).
type Expected = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [Column],
);

#[test]
fn crd_names_match_upstream() {
    let want: [Expected; 7] = [
        (
            "hardware.tinkerbell.org",
            "Hardware",
            "hardware",
            "hardware",
            &["hw"],
            &[("State", ".status.state", 0)],
        ),
        (
            "templates.tinkerbell.org",
            "Template",
            "templates",
            "template",
            &["tpl"],
            &[("State", ".status.state", 0)],
        ),
        (
            "workflows.tinkerbell.org",
            "Workflow",
            "workflows",
            "workflow",
            &["wf"],
            &[
                ("Template", ".spec.templateRef", 0),
                ("State", ".status.state", 0),
                ("Task", ".status.currentState.taskName", 1),
                ("Action", ".status.currentState.actionName", 0),
                ("Agent", ".status.currentState.agentID", 0),
                ("Hardware", ".spec.hardwareRef", 0),
                ("Template-Rendering", ".status.templateRendering", 1),
            ],
        ),
        (
            "workflowrulesets.tinkerbell.org",
            "WorkflowRuleSet",
            "workflowrulesets",
            "workflowruleset",
            &["wrs"],
            &[],
        ),
        (
            "machines.bmc.tinkerbell.org",
            "Machine",
            "machines",
            "machine",
            &[],
            &[],
        ),
        ("jobs.bmc.tinkerbell.org", "Job", "jobs", "job", &["j"], &[]),
        (
            "tasks.bmc.tinkerbell.org",
            "Task",
            "tasks",
            "task",
            &["t"],
            &[],
        ),
    ];
    let crds = all_crds();
    assert_eq!(crds.len(), want.len());
    for (crd, (name, kind, plural, singular, short, columns)) in crds.iter().zip(want) {
        assert_eq!(crd.metadata.name.as_deref(), Some(name));
        let names = &crd.spec.names;
        assert_eq!(names.kind, kind);
        assert_eq!(names.plural, plural);
        assert_eq!(names.singular.as_deref(), Some(singular));
        assert_eq!(
            names.list_kind.as_deref(),
            Some(format!("{kind}List").as_str())
        );
        assert_eq!(names.short_names.clone().unwrap_or_default(), short);
        assert_eq!(names.categories.clone().unwrap_or_default(), ["tinkerbell"]);
        assert_eq!(crd.spec.scope, "Namespaced");

        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name}: status subresource"
        );
        let got: Vec<_> = version
            .additional_printer_columns
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.name, c.json_path, c.priority.unwrap_or(0)))
            .collect();
        let columns: Vec<_> = columns
            .iter()
            .map(|(n, p, prio)| (n.to_string(), p.to_string(), *prio))
            .collect();
        assert_eq!(got, columns, "{name}: printer columns");
    }
}
