//! The tink controller's template rendering (`template::render_workflow`: gotmpl with the
//! appliance's function map and its budgets, then the YAML parse and upstream's validation)
//! on fuzzed `Template.spec.data`, against a fixed Hardware, hardware map and Secret. Nothing
//! may panic or exhaust memory (the budgets: 256 KiB per value and for the output, a million
//! `range` iterations, 5 s per render; `fuzz/run.sh` runs this target with libFuzzer's
//! `-rss_limit_mb=2048` and `-timeout=30`, so a render that escapes them is reported), and:
//! * every error names the template;
//! * an accepted document has no validation problems and turns into one Workflow task per
//!   task, with every action, each with a fresh ID.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tinkerbell_core::model::Hardware;
use tinkerbell_core::store::Object;
use tinkerbell_tink_workflow::template;

struct Fixture {
    hw: Arc<Hardware>,
    map: BTreeMap<String, String>,
    secret: BTreeMap<String, String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let v = json!({
            "apiVersion": "tinkerbell.org/v1alpha1",
            "kind": "Hardware",
            "metadata": {"name": "sm01", "namespace": "tink-system", "labels": {"type": "worker"}},
            "spec": {
                "disks": [{"device": "/dev/nvme0n1"}, {"device": "/dev/sda"}],
                "interfaces": [{
                    "dhcp": {"mac": "3c:ec:ef:4c:4f:54", "arch": "x86_64", "hostname": "sm01",
                             "name_servers": ["1.1.1.1", "8.8.8.8"], "uefi": true, "vlan_id": "100",
                             "ip": {"address": "10.1.1.11", "netmask": "255.255.255.0", "gateway": "10.1.1.1", "family": 4}},
                    "netboot": {"allowPXE": true, "allowWorkflow": true}
                }],
                "metadata": {
                    "facility": {"plan_slug": "c3.small.x86", "facility_code": "onprem"},
                    "instance": {"id": "3c:ec:ef:4c:4f:54", "hostname": "sm01",
                                 "operating_system": {"distro": "ubuntu", "version": "22.04"},
                                 "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample user@example"]}
                },
                "userData": "#cloud-config\nhostname: sm01\n"
            }
        });
        let hw = Object::from_typed_json(v).expect("fixture Hardware");
        Fixture {
            hw: hw.as_hardware().expect("a Hardware").clone(),
            map: [("device_1", "3c:ec:ef:4c:4f:54"), ("image", "jammy")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret: [("token", "s3cr3t"), ("registry_password", "hunter2")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let text = String::from_utf8_lossy(data);
    match template::render_workflow("fuzz", &text, Some(&f.hw), &f.map, Some(&f.secret)) {
        Ok(doc) => {
            assert!(template::validate(&doc).is_empty());
            let mut n = 0u64;
            let tasks = doc.to_tasks(|| {
                n += 1;
                format!("id-{n}")
            });
            assert_eq!(tasks.len(), doc.tasks.len());
            let actions: usize = doc.tasks.iter().map(|t| t.actions.len()).sum();
            let got: usize = tasks
                .iter()
                .map(|t| t.actions.as_ref().map_or(0, Vec::len))
                .sum();
            assert_eq!(got, actions);
            assert_eq!(
                n as usize,
                tasks.len() + actions,
                "one ID per task and action"
            );
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("template fuzz: "), "{msg}");
        }
    }
});
