//! `tinkerbell apply` on fuzzed YAML (`apply::parse_documents`: the document splitter, the YAML
//! parser, kind resolution, typed decoding, the strict unknown-field check and the line
//! locator; then `apply::check_batch` across documents). Nothing may panic, and:
//! * every error names a line of the input and a 1-based document;
//! * every accepted object has a name and a namespace (defaulted), and decodes from its own
//!   JSON to the same JSON (what the store writes is what it reads back);
//! * what apply accepted, written back out (as JSON, escaped to be YAML), is accepted again with the
//!   same objects: the strict check never rejects the model's own output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinkerbell_admin::apply::{self, ApplyErrors};
use tinkerbell_core::store::Object;

/// Lines as YAML counts them: `\r\n`, `\n` and a bare `\r` each end one. (`apply` splits
/// documents and locates fields with `str::lines`, which does not break at a bare `\r`, while
/// the YAML parser's error positions do: a file with old-Mac line ends gets YAML error lines
/// past what `str::lines` counts. The bound here is the larger count, so that mismatch is not
/// reported on every input that has a `\r` in it; see fuzz/README.md.)
fn yaml_lines(text: &str) -> usize {
    text.replace("\r\n", "\n").split(['\n', '\r']).count()
}

fn check_lines(errors: &ApplyErrors, text: &str) {
    let lines = text.lines().count().max(yaml_lines(text)).max(1);
    for e in &errors.0 {
        assert!(e.document >= 1, "{e}");
        if let Some(l) = e.line {
            assert!(
                (1..=lines + 1).contains(&l),
                "line {l} of a {lines}-line input: {e}"
            );
        }
    }
}

/// JSON text as YAML reads it: YAML allows fewer raw characters than JSON (no DEL, no C1
/// controls, no U+FFFE/U+FFFF), so everything outside printable ASCII is escaped. Outside
/// strings JSON is ASCII, so this only touches string contents; `\U` is YAML's escape for
/// characters beyond the BMP (JSON's surrogate pairs are not valid YAML).
fn yaml_safe(json: &str) -> String {
    let mut s = String::with_capacity(json.len());
    for c in json.chars() {
        match c as u32 {
            0x20..=0x7e | 0x0a => s.push(c),
            n @ 0..=0xffff => s.push_str(&format!("\\u{n:04x}")),
            n => s.push_str(&format!("\\U{n:08x}")),
        }
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let docs = match apply::parse_documents("fuzz.yaml", &text, "default") {
        Ok(docs) => docs,
        Err(errors) => {
            assert!(!errors.0.is_empty());
            check_lines(&errors, &text);
            return;
        }
    };
    let _ = apply::check_batch(&docs);
    let mut out = String::new();
    for d in &docs {
        let o = &d.object;
        assert!(
            !o.name().is_empty() && !o.namespace().is_empty(),
            "{}",
            o.key()
        );
        let json = o.to_json();
        let again = Object::from_typed_json(json.clone())
            .unwrap_or_else(|e| panic!("applied {} does not decode from its JSON: {e}", o.key()));
        assert_eq!(
            again.to_json(),
            json,
            "{}: JSON round trip changed it",
            o.key()
        );
        out.push_str("---\n");
        out.push_str(&yaml_safe(&serde_json::to_string(&json).expect("JSON")));
        out.push('\n');
    }
    match apply::parse_documents("again.yaml", &out, "default") {
        Ok(again) => {
            assert_eq!(again.len(), docs.len());
            for (a, d) in again.iter().zip(&docs) {
                assert_eq!(
                    a.object.to_json(),
                    d.object.to_json(),
                    "{}: changed when applied again",
                    d.object.key()
                );
            }
        }
        Err(e) => panic!("apply refuses its own output:\n{e}\n{out}"),
    }
});
