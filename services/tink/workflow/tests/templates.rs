//! Template rendering: golden files for an EKS Anywhere-style template, one check per
//! supported function, and the error cases.
//!
//! Regenerate the golden files with
//! `UPDATE_GOLDEN=1 cargo test -p tinkerbell-tink-workflow --test templates`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tinkerbell_model::Hardware;
use tinkerbell_tink_workflow::template::{
    self, MAX_OUTPUT, TemplateError, funcs, render, render_workflow, template_data,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn hardware() -> Hardware {
    let text = std::fs::read_to_string(dir().join("fixtures/hardware.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn hw_map() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("device_1".to_string(), "52:54:00:12:34:56".to_string()),
        (
            "metadata_urls".to_string(),
            "http://10.10.0.2:50061,http://10.10.0.3:50061".to_string(),
        ),
    ])
}

fn golden(name: &str, actual: &str) {
    let path = dir().join("golden").join(name);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run UPDATE_GOLDEN=1 cargo test -p tinkerbell-tink-workflow --test templates)",
            path.display()
        )
    });
    assert_eq!(
        actual, want,
        "{name} differs from the golden file (UPDATE_GOLDEN=1 to regenerate after checking)"
    );
}

#[test]
fn eksa_template_golden() {
    let text = std::fs::read_to_string(dir().join("fixtures/eksa-ubuntu.tmpl")).unwrap();
    let hw = hardware();
    let data = template_data(Some(&hw), &hw_map(), None).unwrap();
    let rendered = render("eksa-ubuntu", &text, &data).unwrap();
    golden("eksa-ubuntu.yaml", &rendered);

    let doc = render_workflow("eksa-ubuntu", &text, Some(&hw), &hw_map(), None).unwrap();
    assert_eq!(doc.global_timeout, 6000);
    let task = &doc.tasks[0];
    assert_eq!(task.worker, "52:54:00:12:34:56");
    let names: Vec<&str> = task.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "stream image to disk",
            "write netplan config",
            "disable cloud-init network capabilities",
            "add tink cloud-init config",
            "add tink cloud-init ds-config",
            "reboot"
        ]
    );
    let image2disk = &task.actions[0].environment;
    assert_eq!(image2disk["DEST_DISK"], "/dev/nvme0n1");
    assert_eq!(image2disk["COMPRESSED"], "true");
    let netplan = &task.actions[1].environment;
    assert_eq!(netplan["DEST_DISK"], "/dev/nvme0n1p2");
    assert!(
        netplan["CONTENTS"].contains("- 10.10.0.11/24\n"),
        "{}",
        netplan["CONTENTS"]
    );
    assert_eq!(task.actions[5].pid, "host");

    // Into status tasks, with IDs.
    let mut n = 0;
    let tasks = doc.to_tasks(|| {
        n += 1;
        format!("id-{n}")
    });
    let yaml = serde_saphyr::to_string(&tasks).unwrap();
    golden("eksa-ubuntu.tasks.yaml", &yaml);
}

/// One case per function: (template, expected output).
const CASES: &[(&str, &str, &str)] = &[
    ("trim", r#"{{ trim "  a b  " }}"#, "a b"),
    ("trimAll", r#"{{ trimAll "$" "$5.00$" }}"#, "5.00"),
    (
        "trimPrefix",
        r#"{{ trimPrefix "/dev/" "/dev/sda" }}"#,
        "sda",
    ),
    (
        "trimSuffix",
        r#"{{ "image.raw.gz" | trimSuffix ".gz" }}"#,
        "image.raw",
    ),
    ("upper", r#"{{ upper "abc" }}"#, "ABC"),
    (
        "lower",
        r#"{{ .device_1 | upper | lower }}"#,
        "52:54:00:12:34:56",
    ),
    ("title", r#"{{ title "hello world" }}"#, "Hello World"),
    ("nospace", r#"{{ nospace " a b c " }}"#, "abc"),
    (
        "replace",
        r#"{{ .device_1 | replace ":" "-" }}"#,
        "52-54-00-12-34-56",
    ),
    (
        "contains",
        r#"{{ contains "nvme" "/dev/nvme0n1" }}"#,
        "true",
    ),
    (
        "hasPrefix",
        r#"{{ hasPrefix "/dev/sd" "/dev/nvme0n1" }}"#,
        "false",
    ),
    (
        "hasSuffix",
        r#"{{ hasSuffix "n1" "/dev/nvme0n1" }}"#,
        "true",
    ),
    ("repeat", r#"{{ repeat 3 "ab" }}"#, "ababab"),
    ("substr", r#"{{ substr 5 9 "/dev/nvme0n1" }}"#, "nvme"),
    (
        "trunc",
        r#"{{ trunc 4 "abcdef" }}/{{ trunc -2 "abcdef" }}"#,
        "abcd/ef",
    ),
    ("quote", r#"{{ quote "a\"b" 1 }}"#, r#""a\"b" "1""#),
    ("squote", r#"{{ squote "a" }}"#, "'a'"),
    ("cat", r#"{{ cat "a" 1 "b" }}"#, "a 1 b"),
    ("indent", "{{ indent 2 \"a\\nb\" }}", "  a\n  b"),
    ("nindent", "x:{{ nindent 2 \"a\" }}", "x:\n  a"),
    (
        "split",
        r#"{{ $p := split "." "10.0.0.1" }}{{ $p._3 }}"#,
        "1",
    ),
    ("splitList", r#"{{ index (splitList "," "a,b,c") 1 }}"#, "b"),
    ("join", r#"{{ join "-" (list "a" "b" 3) }}"#, "a-b-3"),
    ("toString", r#"{{ toString 42 | printf "%q" }}"#, r#""42""#),
    (
        "toStrings",
        r#"{{ toStrings (list 1 2) | join "+" }}"#,
        "1+2",
    ),
    ("atoi", r#"{{ add (atoi "41") 1 }}"#, "42"),
    ("int", r#"{{ int "7" }}/{{ int 7.9 }}"#, "7/7"),
    ("int64", r#"{{ int64 "8" }}"#, "8"),
    ("float64", r#"{{ float64 "1.5" }}"#, "1.5"),
    ("add", r#"{{ add 1 2 "3" }}"#, "6"),
    ("add1", r#"{{ add1 41 }}"#, "42"),
    ("sub", r#"{{ sub 10 3 }}"#, "7"),
    ("mul", r#"{{ mul 2 3 4 }}"#, "24"),
    ("div", r#"{{ div 10 3 }}"#, "3"),
    ("mod", r#"{{ mod 10 3 }}"#, "1"),
    ("max", r#"{{ max 1 5 3 }}"#, "5"),
    ("min", r#"{{ min 4 2 3 }}"#, "2"),
    ("list", r#"{{ len (list 1 2 3) }}"#, "3"),
    ("dict", r#"{{ $d := dict "a" 1 "b" 2 }}{{ $d.b }}"#, "2"),
    (
        "get",
        r#"{{ get (dict "a" "x") "a" }}[{{ get (dict) "zz" }}]"#,
        "x[]",
    ),
    ("set", r#"{{ $d := set (dict) "k" "v" }}{{ $d.k }}"#, "v"),
    (
        "hasKey",
        r#"{{ hasKey (dict "a" 1) "a" }} {{ hasKey (dict) "a" }}"#,
        "true false",
    ),
    ("keys", r#"{{ keys (dict "b" 1 "a" 2) | join "," }}"#, "a,b"),
    ("first", r#"{{ first .Hardware.Disks }}"#, "/dev/nvme0n1"),
    ("last", r#"{{ last (list 1 2 3) }}"#, "3"),
    ("rest", r#"{{ rest (list 1 2 3) }}"#, "[2 3]"),
    ("initial", r#"{{ initial (list 1 2 3) }}"#, "[1 2]"),
    ("append", r#"{{ append (list 1) 2 }}"#, "[1 2]"),
    ("push", r#"{{ push (list "a") "b" | join "" }}"#, "ab"),
    (
        "has",
        r#"{{ has 2 (list 1 2) }} {{ has "x" (list 1 2) }}"#,
        "true false",
    ),
    (
        "empty",
        r#"{{ empty "" }} {{ empty .Hardware.Disks }}"#,
        "true false",
    ),
    (
        "default",
        r#"{{ "" | default "fallback" }} {{ "set" | default "fallback" }}"#,
        "fallback set",
    ),
    ("coalesce", r#"{{ coalesce "" 0 "c" "d" }}"#, "c"),
    (
        "ternary",
        r#"{{ ternary "uefi" "bios" (index .Hardware.Interfaces 0).DHCP.UEFI }}"#,
        "uefi",
    ),
    (
        "kindOf",
        r#"{{ kindOf (list) }} {{ kindOf "s" }} {{ kindOf (dict) }}"#,
        "slice string map",
    ),
    ("b64enc", r#"{{ b64enc "hello" }}"#, "aGVsbG8="),
    ("b64dec", r#"{{ b64dec "aGVsbG8=" }}"#, "hello"),
    (
        "sha256sum",
        r#"{{ sha256sum "abc" }}"#,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ),
    (
        "toJson",
        r#"{{ toJson (dict "a" (list 1 "x")) }}"#,
        r#"{"a":[1,"x"]}"#,
    ),
    (
        "fromJson",
        r#"{{ (fromJson "{\"a\": {\"b\": 3}}").a.b }}"#,
        "3",
    ),
    (
        "toYaml",
        r#"{{ toYaml (dict "a" (list 1 2)) }}"#,
        "a:\n- 1\n- 2",
    ),
    (
        "fromYaml",
        "{{ $y := fromYaml \"a:\\n  b: [1, 2]\" }}{{ index $y.a.b 1 }}",
        "2",
    ),
    (
        "formatPartition",
        r#"{{ formatPartition "/dev/sda" 1 }} {{ formatPartition (index .Hardware.Disks 0) 3 }}"#,
        "/dev/sda1 /dev/nvme0n1p3",
    ),
    (
        "netmaskToPrefixLength",
        r#"{{ netmaskToPrefixLength "255.255.240.0" }}"#,
        "20",
    ),
    // gotmpl's own string builtins, wrapped for the value budget: unchanged results.
    ("print", r#"{{ print "a" 1 2 }}"#, "a1 2"),
    ("println", r#"{{ println "a" 1 }}"#, "a 1\n"),
    (
        "printf",
        r#"{{ printf "%s-%03d|%v" "x" 7 true }}"#,
        "x-007|true",
    ),
    (
        "html",
        r#"{{ html "<a href='x'>" }}"#,
        "&lt;a href=&#39;x&#39;&gt;",
    ),
    ("js", r#"{{ js "a'b" }}"#, "a\\'b"),
    ("urlquery", r#"{{ urlquery "a b&c" }}"#, "a+b%26c"),
];

#[test]
fn every_function() {
    let hw = hardware();
    let data = template_data(Some(&hw), &hw_map(), None).unwrap();
    let mut failures = Vec::new();
    for (func, text, want) in CASES {
        match render(func, text, &data) {
            Ok(got) if got == *want => {}
            Ok(got) => failures.push(format!("{func}: got {got:?}, want {want:?}")),
            Err(e) => failures.push(format!("{func}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let covered: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    for name in funcs::names() {
        assert!(covered.contains(&name.as_str()), "no test case for {name}");
    }
}

#[test]
fn legacy_hardware_fields() {
    let hw = hardware();
    let data = template_data(Some(&hw), &hw_map(), None).unwrap();
    let text = "{{ with index .Hardware.Interfaces 0 }}{{ .DHCP.Hostname }} {{ .Netboot.AllowWorkflow }} {{ index .DHCP.NameServers 1 }}{{ end }} {{ .Hardware.Metadata.Instance.OperatingSystem.Distro }} {{ .hardware.metadata.name }} {{ .hardware.spec.bmcRef.name }}|{{ .Hardware.UserData }}";
    assert_eq!(
        render("legacy", text, &data).unwrap(),
        "node-1 true 8.8.8.8 ubuntu node-1 bmc-node-1|#cloud-config\nusers: []\n"
    );
}

#[test]
fn errors_say_what_and_where() {
    let hw = hardware();
    let data = template_data(Some(&hw), &hw_map(), None).unwrap();

    let err = render("tpl-a", "worker: {{ .device_2 }}", &data).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TemplateError::Render { .. }), "{msg}");
    assert!(msg.contains("tpl-a") && msg.contains("device_2"), "{msg}");

    let err = render("tpl-b", "a\nb {{ .x ", &data)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tpl-b") && err.contains(":2:"),
        "line missing: {err}"
    );

    let err = render(
        "tpl-c",
        r#"{{ netmaskToPrefixLength "255.0.255.0" }}"#,
        &data,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("netmaskToPrefixLength"), "{err}");

    let err = render("tpl-d", "{{ nosuchfunc 1 }}", &data)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nosuchfunc"), "{err}");

    // Oversized output: 300 KiB through range.
    let err = render(
        "big",
        "{{ range 3000 }}{{ repeat 100 \"x\" }}{{ end }}",
        &data,
    )
    .unwrap_err();
    assert!(
        matches!(err, TemplateError::TooLarge { limit, .. } if limit == MAX_OUTPUT),
        "{err}"
    );
    assert!(err.to_string().contains("big") && err.to_string().contains("262144"));
    // Just under the cap is fine.
    let ok = render(
        "fits",
        "{{ range 2621 }}{{ repeat 100 \"x\" }}{{ end }}",
        &data,
    )
    .unwrap();
    assert_eq!(ok.len(), 262_100);
}

#[test]
fn validation_lists_every_problem() {
    let text = r#"
version: "0.1"
name: ""
global_timeout: -1
tasks:
  - name: t
    worker: "{{ .device_1 }}"
    actions:
      - name: a
        image: Quay.io/UPPER/Case
      - name: a
        image: ok/image:v1
        timeout: -5
  - name: t
    worker: ""
    actions: []
"#;
    let err = render_workflow("bad", text, None, &hw_map(), None).unwrap_err();
    let TemplateError::Invalid { template, problems } = &err else {
        panic!("{err}")
    };
    assert_eq!(template, "bad");
    let all = problems.join("\n");
    for needle in [
        "template name cannot be empty",
        "global_timeout -1",
        "same name (t)",
        "same name (t/a)",
        "invalid image \"Quay.io/UPPER/Case\"",
        "timeout -5",
        "task \"t\" has no worker",
        "task \"t\" has no actions",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }

    let err = render_workflow(
        "empty",
        "version: \"0.1\"\nname: x\n",
        None,
        &hw_map(),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("at least one task"), "{err}");

    let err = render_workflow("notyaml", "tasks: [", None, &hw_map(), None).unwrap_err();
    assert!(matches!(err, TemplateError::Yaml { .. }), "{err}");

    let long = "n".repeat(template::MAX_NAME_LEN);
    let text = format!(
        "name: {long}\ntasks:\n  - name: t\n    worker: w\n    actions:\n      - name: a\n        image: alpine\n"
    );
    let err = render_workflow("long", &text, None, &hw_map(), None).unwrap_err();
    assert!(err.to_string().contains("shorter than 200"), "{err}");
}

#[test]
fn secret_keys_are_visible() {
    let secret = BTreeMap::from([("token".to_string(), "s3cr3t".to_string())]);
    let data = template_data(None, &hw_map(), Some(&secret)).unwrap();
    assert_eq!(
        render("sec", "{{ .secret.token }}", &data).unwrap(),
        "s3cr3t"
    );
    let data = template_data(None, &hw_map(), None).unwrap();
    assert!(render("sec", "{{ .secret.token }}", &data).is_err());
}
