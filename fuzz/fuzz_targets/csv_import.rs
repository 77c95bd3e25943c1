//! `tinkerbell hardware import` on a fuzzed `hardware.csv` (`csv::parse_hardware_csv`: the CSV
//! reader, every row check, the generated Hardware, bmc Machines and Secrets). Nothing may
//! panic, and a file that imports must produce objects the rest of the appliance accepts:
//! * one Hardware per row, and a Machine and a Secret per row with BMC details;
//! * every object in the namespace asked for, decoding from its own JSON to the same JSON
//!   (what the store writes is what it reads back);
//! * the batch passes `apply::check_batch` (no two Hardware claiming one MAC, IP or instance ID:
//!   the store would refuse such an import half way);
//! and every error names a line of the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinkerbell_admin::apply::{self, ParsedDoc};
use tinkerbell_admin::csv::parse_hardware_csv;
use tinkerbell_core::store::{Kind, Object};

const NS: &str = "eksa-system";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_hardware_csv(&text, NS) {
        Ok(import) => {
            let count = |k: Kind| import.objects.iter().filter(|o| o.kind() == k).count();
            assert_eq!(count(Kind::Hardware), import.rows);
            assert_eq!(count(Kind::Machine), count(Kind::Secret));
            assert!(count(Kind::Machine) <= import.rows);
            assert_eq!(import.objects.len(), import.rows + 2 * count(Kind::Machine));
            let mut docs = Vec::new();
            for (i, o) in import.objects.iter().enumerate() {
                assert_eq!(o.namespace(), NS);
                assert!(!o.name().is_empty());
                let json = o.to_json();
                let again = Object::from_typed_json(json.clone()).unwrap_or_else(|e| {
                    panic!("imported {} does not decode from its JSON: {e}", o.key())
                });
                assert_eq!(
                    again.to_json(),
                    json,
                    "{}: JSON round trip changed it",
                    o.key()
                );
                docs.push(ParsedDoc {
                    object: o.clone(),
                    source: "hardware.csv".into(),
                    document: i + 1,
                    line: 1,
                });
            }
            if let Err(e) = apply::check_batch(&docs) {
                panic!("an imported file fails apply's batch checks:\n{e}");
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            let lines = text.lines().count().max(1);
            for e in &errors.0 {
                assert!(
                    e.line <= lines + 1,
                    "error on line {} of a {lines}-line file: {e}",
                    e.line
                );
            }
        }
    }
});
