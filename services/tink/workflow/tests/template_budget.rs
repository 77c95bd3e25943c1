//! One Template cannot take the appliance down: every intermediate value has a byte budget and
//! a render a time budget, and a template that exceeds either fails with an error that says so
//! (the controller puts it in the Workflow's condition) instead of aborting the process — which
//! under `tinkerbell serve` renders again after every restart, a crash loop.
//!
//! Each hostile template renders in a child process limited to 1 GiB of address space
//! (`prlimit --as`, util-linux): before the budgets, `repeat` (which bounded its count, not the
//! size), `replace`, `indent` and `printf` doubling exhausted it and the child aborted.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use tinkerbell_tink_workflow::template;

const CHILD_ENV: &str = "TEMPLATE_BUDGET_CHILD";

fn doc(body: &str) -> String {
    format!(
        "version: \"0.1\"\nname: t\nglobal_timeout: 60\ntasks:\n  - name: t\n    worker: w\n    actions:\n      - name: a\n        image: alpine\n        timeout: 60\n        environment:\n          X: \"{body}\"\n"
    )
}

/// Runs in the child: render the template from the environment, print the outcome.
#[test]
fn child_render() {
    let Ok(text) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful as the child of `hostile_templates_fail_cleanly`.
    };
    match template::render_workflow("hostile", &text, None, &BTreeMap::new(), None) {
        Ok(_) => println!("RESULT: rendered"),
        Err(e) => println!("RESULT: error: {e}"),
    }
}

fn render_in_child(text: &str) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("prlimit")
        .arg(format!("--as={}", 1u64 << 30))
        .arg("--")
        .arg(exe)
        .args(["--exact", "child_render", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, text)
        .output()
        .expect("run prlimit (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), format!("{stdout}\n{stderr}"))
}

#[test]
fn hostile_templates_fail_cleanly() {
    let cases = [
        ("repeat", doc(r#"{{ repeat 100000000 "x" }}"#)),
        (
            "nested repeat",
            doc(r#"{{ repeat 100000 (repeat 100000 "x") }}"#),
        ),
        (
            "replace",
            doc(r#"{{ replace "a" (repeat 100000 "b") (repeat 200000 "a") }}"#),
        ),
        ("indent", doc(r#"{{ indent 1000 (repeat 200000 "\n") }}"#)),
        (
            "printf doubling",
            doc(
                r#"{{ $x := "0123456789abcdef" }}{{ range $i := splitList "," "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40" }}{{ $x = printf "%s%s" $x $x }}{{ end }}{{ len $x }}"#,
            ),
        ),
        (
            // Within the byte budget, but 11,000 deep: printing or serialising it recursed
            // until the stack overflowed (found by fuzz/template_render).
            "deep nesting",
            doc(
                r#"{{ $d := list }}{{ range $i := splitList "" (repeat 11000 "x") }}{{ $d = list $d }}{{ end }}x: {{ toJson $d | len }}"#,
            ),
        ),
        (
            "join doubling",
            doc(
                r#"{{ $x := list "0123456789abcdef" }}{{ range $i := splitList "," "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40" }}{{ $x = list (join "" $x) (join "" $x) }}{{ end }}{{ len $x }}"#,
            ),
        ),
    ];
    for (name, text) in cases {
        let (ok, out) = render_in_child(&text);
        assert!(ok, "{name}: the child died (it must fail cleanly):\n{out}");
        assert!(
            out.contains("RESULT: error:") && out.contains("render budget exceeded"),
            "{name}: want a budget error:\n{out}"
        );
    }
}

/// A template that would hash for minutes stops at the time budget.
#[test]
fn slow_template_stops_at_the_time_budget() {
    let text = doc(
        r#"{{ $s := repeat 100000 "x" }}{{ range $c := splitList "" $s }}{{ $h := sha256sum $s }}{{ end }}"#,
    );
    let t = Instant::now();
    let (ok, out) = render_in_child(&text);
    let took = t.elapsed();
    assert!(ok, "the child died:\n{out}");
    assert!(
        out.contains("longer than"),
        "want the time budget error:\n{out}"
    );
    assert!(
        took < template::funcs::MAX_RENDER_TIME * 3,
        "stopped after {took:?}"
    );
}

/// Ordinary templates are untouched by the budgets.
#[test]
fn ordinary_templates_still_render() {
    let text = doc(
        r#"{{ printf "%s-%d" "a" 7 }} {{ repeat 3 "ab" }} {{ replace "a" "b" "aaa" }} {{ indent 2 "x" }}"#,
    );
    let d = template::render_workflow("ok", &text, None, &BTreeMap::new(), None).unwrap();
    let env = &d.tasks[0].actions[0].environment;
    assert_eq!(env.get("X").map(String::as_str), Some("a-7 ababab bbb   x"));
}
