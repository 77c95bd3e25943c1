//! The crate layering docs/ARCHITECTURE.md draws, checked over `cargo metadata`: each crate
//! depends (normal dependencies; tests may use anything) only on the layers below it, and no
//! service on another service.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The layer of every workspace crate, lowest first. A crate may depend on crates of a lower
/// layer only.
const LAYERS: &[(&str, u8)] = &[
    // Below everything: no tinkerbell dependency at all. The model has no IO and no runtime.
    ("tinkerbell-model", 0),
    ("tinkerbell-edge", 0),
    ("tinkerbell-tink-proto", 0),
    // The store (on the model and the HTTP edge), and pure workflow logic on the model.
    ("tinkerbell-core", 1),
    ("tinkerbell-tink-workflow", 1),
    // On the store: operator input (apply, csv, move), and what binaries do around a service.
    ("tinkerbell-admin", 2),
    ("tinkerbell-process", 2),
    // The services: side by side, never one on another.
    ("tinkerbell-boots", 3),
    ("tinkerbell-hegel", 3),
    ("tinkerbell-rufio", 3),
    ("tinkerbell-tink-server", 3),
    ("tinkerbell-tink-controller", 3),
    ("tinkerbell-tink-worker", 3),
    // The all-in-one binary composes them.
    ("tinkerbell", 4),
];

/// `cargo ARGS --offline --manifest-path <workspace>`'s standard output; panics on failure.
fn cargo(args: &[&str]) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(args)
        .arg("--offline")
        .arg("--manifest-path")
        .arg(&root)
        .output()
        .expect("cargo");
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn every_crate_depends_only_on_lower_layers() {
    let meta = cargo(&["metadata", "--format-version", "1", "--no-deps"]);
    let meta: Value = serde_json::from_slice(&meta).unwrap();
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut members = Vec::new();
    let mut wrong = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap();
        members.push(name.to_string());
        let Some(&mine) = layer.get(name) else {
            wrong.push(format!(
                "{name} has no layer: add it to LAYERS and docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for dep in pkg["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            // Normal dependencies only (kind null); dev and build dependencies are free.
            if !dep["kind"].is_null() || !dep_name.starts_with("tinkerbell") {
                continue;
            }
            match layer.get(dep_name) {
                Some(&theirs) if theirs < mine => {}
                Some(&theirs) => wrong.push(format!(
                    "{name} (layer {mine}) depends on {dep_name} (layer {theirs})"
                )),
                None => wrong.push(format!("{name} depends on {dep_name}, which has no layer")),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    // The table names every member and nothing else.
    members.sort();
    let mut named: Vec<String> = LAYERS.iter().map(|(n, _)| n.to_string()).collect();
    named.sort();
    assert_eq!(members, named, "LAYERS and the workspace members differ");
}

/// What the fuzz targets and the workflow logic link: the model builds without an async
/// runtime, a Kubernetes client or a database.
#[test]
fn the_model_builds_without_io() {
    for krate in ["tinkerbell-model", "tinkerbell-tink-workflow"] {
        let tree = cargo(&["tree", "-e", "normal", "--prefix", "none", "-p", krate]);
        let tree = String::from_utf8_lossy(&tree);
        let io: Vec<&str> = tree
            .lines()
            .filter(|l| {
                [
                    "tokio ",
                    "hyper ",
                    "redb ",
                    "reqwest ",
                    "axum ",
                    "tinkerbell-core ",
                ]
                .iter()
                .any(|c| l.starts_with(c))
            })
            .collect();
        assert!(io.is_empty(), "{krate} links {io:?}");
    }
}
