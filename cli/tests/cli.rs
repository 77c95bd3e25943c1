//! The README's promise, as a user runs it: serve on the embedded store, import a hardware.csv,
//! apply a Template and a Workflow, list them, `kill -9` the appliance, start it again, and
//! find everything. Plus the bad-input paths: nothing is half-applied.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{BIN, fixture, ok, run};
use std::time::{Duration, Instant};

mod common;

struct Appliance {
    child: Child,
}

impl Appliance {
    /// `serve` without the BMC controllers: the fixtures' Machines have real-looking BMC
    /// addresses, which tests must not contact.
    fn start(dir: &Path) -> Appliance {
        // These tests check the store and the CLI; the controllers would advance the fixture
        // Workflow (and create its bmc Job) and contact the fixtures' BMC addresses.
        Self::start_with(
            dir,
            &[
                "--enable-tink-controller=false",
                "--enable-rufio-controller=false",
            ],
        )
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Appliance {
        Self::start_on(dir, "127.0.0.1:0", extra)
    }

    fn start_on(dir: &Path, store_api_addr: &str, extra: &[&str]) -> Appliance {
        let url_file = dir.join("api-url");
        let _ = std::fs::remove_file(&url_file);
        let child = Command::new(BIN)
            .args([
                "--data-dir",
                &dir.display().to_string(),
                "serve",
                "--store-api-addr",
                store_api_addr,
                "--bind-address",
                "127.0.0.1",
                "--http-port",
                "0",
                "--tink-server-bind-port",
                "0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !url_file.exists() {
            assert!(
                Instant::now() < deadline,
                "serve did not write {}",
                url_file.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Appliance { child }
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "tinkerbell {args:?} should fail with 1"
    );
    String::from_utf8(out.stderr).unwrap()
}

fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("data");
    (d, p)
}

#[test]
fn import_apply_get_kill9_restart_finds_everything() {
    let (_t, dir) = temp_dir();
    let app = Appliance::start(&dir);

    let out = ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    assert!(out.contains("imported 2 rows"), "{out}");
    let out = ok(
        &dir,
        &[
            "apply",
            "-f",
            &fixture("template.yaml"),
            "-f",
            &fixture("workflow.yaml"),
        ],
    );
    assert!(
        out.contains("templates.tinkerbell.org/ubuntu created"),
        "{out}"
    );
    assert!(
        out.contains("workflows.tinkerbell.org/provision-cp-0 created"),
        "{out}"
    );
    // Applying again changes nothing.
    let out = ok(&dir, &["apply", "-f", &fixture("template.yaml")]);
    assert!(
        out.contains("templates.tinkerbell.org/ubuntu unchanged"),
        "{out}"
    );

    let before = (
        ok(&dir, &["get", "hardware", "-o", "yaml"]),
        ok(&dir, &["get", "wf", "-o", "json"]),
        ok(&dir, &["get", "tpl", "ubuntu", "-o", "yaml"]),
        ok(&dir, &["get", "machine", "-o", "yaml"]),
        ok(&dir, &["get", "secret", "-o", "yaml", "--show-secrets"]),
    );
    let table = ok(&dir, &["get", "hw"]);
    assert!(
        table.contains("cp-0")
            && table.contains("52:54:00:00:00:10")
            && table.contains("10.10.0.10"),
        "{table}"
    );

    app.kill_9();
    let _app = Appliance::start(&dir);
    let after = (
        ok(&dir, &["get", "hardware", "-o", "yaml"]),
        ok(&dir, &["get", "wf", "-o", "json"]),
        ok(&dir, &["get", "tpl", "ubuntu", "-o", "yaml"]),
        ok(&dir, &["get", "machine", "-o", "yaml"]),
        ok(&dir, &["get", "secret", "-o", "yaml", "--show-secrets"]),
    );
    assert_eq!(before, after, "everything survives kill -9, byte for byte");
}

#[test]
fn secrets_are_redacted_unless_asked() {
    let (_t, dir) = temp_dir();
    let _app = Appliance::start(&dir);
    ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    // base64("s3cret-pw") must not appear without --show-secrets.
    let secret_b64 = "czNjcmV0LXB3";
    let hidden = ok(&dir, &["get", "secret", "bmc-cp-0-auth", "-o", "yaml"]);
    assert!(!hidden.contains(secret_b64), "{hidden}");
    let shown = ok(
        &dir,
        &[
            "get",
            "secret",
            "bmc-cp-0-auth",
            "-o",
            "yaml",
            "--show-secrets",
        ],
    );
    assert!(shown.contains(secret_b64), "{shown}");
    let export = ok(&dir, &["export"]);
    assert!(
        !export.contains(secret_b64) && !export.contains("kind: Secret"),
        "{export}"
    );
}

#[test]
fn bad_input_applies_nothing() {
    let (t, dir) = temp_dir();
    let _app = Appliance::start(&dir);
    // One good document and one with a misspelt field: nothing lands.
    let bad = t.path().join("bad.yaml");
    let good = std::fs::read_to_string(fixture("template.yaml")).unwrap();
    std::fs::write(
        &bad,
        format!("{good}---\napiVersion: tinkerbell.org/v1alpha1\nkind: Hardware\nmetadata:\n  name: n1\nspec:\n  interfaces:\n  - netboot:\n      allowPxe: true\n"),
    )
    .unwrap();
    let err = fails(&dir, &["apply", "-f", &bad.display().to_string()]);
    assert!(
        err.contains(
            "document 2 (line 31): spec.interfaces[0].netboot.allowPxe: unknown field for Hardware"
        ),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    let templates = run(&dir, &["get", "tpl"]);
    assert!(
        String::from_utf8_lossy(&templates.stdout).trim().is_empty(),
        "nothing applied"
    );

    // A CSV with bad rows imports nothing and names every bad row.
    let csv = t.path().join("bad.csv");
    let mut rows = std::fs::read_to_string(fixture("hardware.csv")).unwrap();
    rows.push_str("Bad_Host,10.10.0.30,255.255.255.0,10.10.0.1,10.10.0.1,52:54:00:00:00:30,/dev/vda,type=worker,,,\n");
    rows.push_str("w-2,10.10.0.40,255.255.255.0,10.10.0.1,10.10.0.1,zz:54:00:00:00:40,/dev/vda,type=worker,,,\n");
    std::fs::write(&csv, rows).unwrap();
    let err = fails(
        &dir,
        &["hardware", "import", "--csv", &csv.display().to_string()],
    );
    assert!(err.contains("line 4") && err.contains("line 5"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    assert!(
        String::from_utf8_lossy(&run(&dir, &["get", "hw"]).stdout)
            .trim()
            .is_empty()
    );

    // A store conflict (a Hardware claiming an existing MAC) is refused whole.
    ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    let clash = t.path().join("clash.yaml");
    std::fs::write(
        &clash,
        format!("{good}---\napiVersion: tinkerbell.org/v1alpha1\nkind: Hardware\nmetadata:\n  name: other\nspec:\n  interfaces:\n  - dhcp:\n      mac: 52:54:00:00:00:10\n"),
    )
    .unwrap();
    let err = fails(&dir, &["apply", "-f", &clash.display().to_string()]);
    assert!(
        err.contains("already claimed by Hardware default/cp-0"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&run(&dir, &["get", "tpl"]).stdout)
            .trim()
            .is_empty()
    );

    // Unknown kinds and missing objects are clear.
    assert!(fails(&dir, &["get", "nodes"]).contains("unknown kind \"nodes\""));
    assert!(fails(&dir, &["delete", "hw", "ghost"]).contains("Hardware default/ghost not found"));
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The data directory 0700 and the store (every BMC password) 0600 whatever the umask; an
/// older appliance's 0755/0644 tightened at start; `export --show-secrets -o FILE` 0600 even
/// over an older world-readable file. They used to be 0755, 0644 and 0644.
#[test]
fn secrets_at_rest_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (t, dir) = temp_dir();
    let app = Appliance::start(&dir);
    ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    assert_eq!(mode(&dir), 0o700, "data dir");
    assert_eq!(mode(&dir.join("store.redb")), 0o600, "store");
    app.kill_9();

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("store.redb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let _app = Appliance::start(&dir);
    assert_eq!(mode(&dir), 0o700, "data dir tightened at start");
    assert_eq!(
        mode(&dir.join("store.redb")),
        0o600,
        "store tightened at start"
    );

    let file = t.path().join("export.yaml");
    std::fs::write(&file, "old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(
        &dir,
        &[
            "export",
            "--show-secrets",
            "-o",
            &file.display().to_string(),
        ],
    );
    assert_eq!(mode(&file), 0o600, "export with secrets");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("kind: Secret")
    );
}

/// A `get -o json` list, without the store-assigned resourceVersions (for comparing stores).
fn without_resource_versions(s: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
    for item in v["items"].as_array_mut().unwrap() {
        item["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
    }
    v
}

#[test]
fn export_import_round_trip_keeps_status() {
    let (t, dir) = temp_dir();
    let _app = Appliance::start(&dir);
    ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    ok(
        &dir,
        &[
            "apply",
            "-f",
            &fixture("template.yaml"),
            "-f",
            &fixture("workflow.yaml"),
        ],
    );
    let file = t.path().join("export.yaml");
    ok(
        &dir,
        &[
            "export",
            "--show-secrets",
            "-o",
            &file.display().to_string(),
        ],
    );

    let (_t2, dir2) = temp_dir();
    let _app2 = Appliance::start(&dir2);
    let out = ok(&dir2, &["import", "-f", &file.display().to_string()]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        6,
        "{out}"
    );
    for kind in ["hw", "tpl", "wf", "machine", "secret"] {
        let a = ok(&dir, &["get", kind, "-o", "json", "--show-secrets"]);
        let b = ok(&dir2, &["get", kind, "-o", "json", "--show-secrets"]);
        assert_eq!(
            without_resource_versions(&a),
            without_resource_versions(&b),
            "{kind} differs after export/import"
        );
    }
}

#[test]
fn client_without_server_explains() {
    let (_t, dir) = temp_dir();
    let err = fails(&dir, &["get", "hw"]);
    assert!(err.contains("is `tinkerbell serve --data-dir"), "{err}");
}

/// `serve` runs the BMC controllers in-process: a bmc Job is reconciled (here it fails at
/// once, its Machine does not exist; no BMC is contacted).
#[test]
fn serve_runs_the_bmc_controllers() {
    let (t, dir) = temp_dir();
    let _app = Appliance::start_with(&dir, &["--enable-tink-controller=false"]);
    let job = t.path().join("job.yaml");
    std::fs::write(
        &job,
        "apiVersion: bmc.tinkerbell.org/v1alpha1\nkind: Job\nmetadata:\n  name: j1\n  namespace: default\nspec:\n  machineRef: {name: ghost, namespace: default}\n  tasks:\n  - powerAction: \"on\"\n",
    )
    .unwrap();
    ok(&dir, &["apply", "-f", &job.display().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = ok(&dir, &["-n", "default", "get", "job", "j1", "-o", "json"]);
        if out.contains("machine default/ghost not found") {
            assert!(out.contains("\"Failed\""), "{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Job was not reconciled: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_runs_the_tink_controller() {
    let (_t, dir) = temp_dir();
    let _app = Appliance::start_with(&dir, &["--enable-rufio-controller=false"]);
    ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    ok(
        &dir,
        &[
            "apply",
            "-f",
            &fixture("template.yaml"),
            "-f",
            &fixture("workflow.yaml"),
        ],
    );
    // The controller renders the netboot Workflow into PREPARING and creates its bmc Job.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wf: serde_json::Value =
            serde_json::from_str(&ok(&dir, &["get", "wf", "provision-cp-0", "-o", "json"]))
                .unwrap();
        let job = run(&dir, &["get", "job", "netboot-cp-0", "-o", "json"]);
        if wf["status"]["state"] == "PREPARING" && job.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "controller did not prepare the workflow: {wf:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.0 GET: (status, body).
fn http_get(url: &str) -> (u16, Vec<u8>) {
    http_get_as(url, None)
}

/// GET `url`, with `Authorization: Bearer <token>` when given.
fn http_get_as(url: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n{auth}\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, out[split + 4..].to_vec())
}

/// The token that reads logs and timelines over the HTTP port (the provisioning network) is not
/// the store API's: each opens only its own door. serve used to give both the store API token.
#[test]
fn reader_and_store_api_tokens_are_separate() {
    let (_t, dir) = temp_dir();
    let _app = Appliance::start(&dir);
    ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let (api, reader) = (read("api-token"), read("reader-token"));
    assert_ne!(api, reader);
    assert_eq!(mode(&dir.join("reader-token")), 0o600);
    let http = read("http-url");
    let store = read("api-url");
    let timeline = format!("{http}/tinkerbell/v1/timeline/cp-0?namespace=default");
    assert_eq!(http_get_as(&timeline, Some(&reader)).0, 200);
    assert!(matches!(http_get_as(&timeline, Some(&api)).0, 401 | 403));
    let hw = format!("{store}/apis/tinkerbell.org/v1alpha1/namespaces/default/hardware");
    assert_eq!(http_get_as(&hw, Some(&api)).0, 200);
    assert_eq!(http_get_as(&hw, Some(&reader)).0, 401);
    // The CLI finds the reader token by itself.
    ok(&dir, &["timeline", "cp-0"]);
}

/// Without a certificate the store API is plain HTTP: serve refuses to open it off loopback
/// unless told the network is trusted (it used to bind any address silently).
#[test]
fn store_api_off_loopback_needs_an_explicit_flag() {
    let (_t, dir) = temp_dir();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--store-api-addr", "0.0.0.0:0", "--http-port", "0"])
        .args([
            "--tink-server-bind-port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--store-api-allow-plaintext"), "{err}");
    assert!(err.contains("--tls-cert-file"), "{err}");
    assert!(!dir.join("api-url").exists(), "nothing started");
}

/// With `--tls-cert-file`/`--tls-key-file` the store API serves HTTPS, off loopback too.
/// Clients on the machine trust the certificate `serve` leaves in the data directory, as it is
/// (pinned, so a self-signed certificate for any name works); others pass `--ca-file`.
#[test]
fn store_api_over_tls() {
    let (t, dir) = temp_dir();
    let certs = t.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let pki = tinkerbell_edge::testing::TestPki::self_signed(&certs, &["appliance.test"]);
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let other = tinkerbell_edge::testing::TestPki::self_signed(&other, &["appliance.test"]);
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let app = Appliance::start_on(
        &dir,
        "0.0.0.0:0",
        &[
            "--enable-tink-controller=false",
            "--enable-rufio-controller=false",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
        ],
    );
    let url_file = dir.join("api-url");
    let url = std::fs::read_to_string(&url_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(url.starts_with("https://0.0.0.0:"), "{url}");
    let pinned = std::fs::read_to_string(dir.join("api-cert.pem")).unwrap();
    assert_eq!(
        pinned.trim(),
        std::fs::read_to_string(&pki.cert).unwrap().trim()
    );

    // On the machine: through the data directory, nothing to pass.
    let out = ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    assert!(out.contains("imported 2 rows"), "{out}");
    let port = url.rsplit(':').next().unwrap();
    let local = format!("https://127.0.0.1:{port}");
    // Elsewhere: --ca-file names whom to trust; another certificate is refused.
    let ca = pki.ca.display().to_string();
    let table = ok(&dir, &["--server", &local, "--ca-file", &ca, "get", "hw"]);
    assert!(table.contains("cp-0"), "{table}");
    let wrong = other.ca.display().to_string();
    let err = fails(
        &dir,
        &["--server", &local, "--ca-file", &wrong, "get", "hw"],
    );
    assert!(err.contains(&local), "{err}");
    // Plain HTTP gets nothing from the TLS port.
    let plain = format!("http://127.0.0.1:{port}");
    fails(&dir, &["--server", &plain, "get", "hw"]);
    drop(app);

    // Without the certificate, serve (back on loopback) removes the pin it left.
    let _app = Appliance::start(&dir);
    assert!(!dir.join("api-cert.pem").exists());
    let url = std::fs::read_to_string(&url_file).unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let table = ok(&dir, &["get", "hw"]);
    assert!(table.contains("cp-0"), "{table}");
}

/// One process is enough to netboot: serve's HTTP port carries boots' iPXE routes, and the
/// Hook script points at this very process — its HookOS directory, its tink server's bound
/// port — with a `worker_token=` from the key the tink server checks.
#[test]
fn serve_scripts_point_at_itself() {
    let (t, dir) = temp_dir();
    let hookos = t.path().join("hookos");
    std::fs::create_dir(&hookos).unwrap();
    std::fs::write(hookos.join("vmlinuz-x86_64"), b"kernel").unwrap();
    std::fs::write(hookos.join("initramfs-x86_64"), b"initramfs").unwrap();
    let _app = Appliance::start_with(
        &dir,
        &[
            "--enable-tink-controller=false",
            "--enable-rufio-controller=false",
            "--hookos-dir",
            &hookos.display().to_string(),
        ],
    );
    ok(
        &dir,
        &["hardware", "import", "--csv", &fixture("hardware.csv")],
    );
    let http = std::fs::read_to_string(dir.join("http-url")).unwrap();
    let http = http.trim();
    let grpc = std::fs::read_to_string(dir.join("tink-grpc-url")).unwrap();
    let tink = grpc.trim().trim_start_matches("http://");
    let (status, body) = http_get(&format!("{http}/ipxe/script/52:54:00:00:00:10/auto.ipxe"));
    let script = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{script}");
    assert!(
        script.contains(&format!("set download-url {http}/hookos\n")),
        "{script}"
    );
    assert!(
        script.contains(&format!(" grpc_authority={tink} ")),
        "{tink}: {script}"
    );
    // This test is not cp-0 (10.10.0.10): its script carries no worker token.
    assert!(!script.contains("worker_token="), "{script}");
    // A machine asking from its own reserved address gets the token the tink server checks.
    let local = t.path().join("local.yaml");
    std::fs::write(
        &local,
        "apiVersion: tinkerbell.org/v1alpha1\nkind: Hardware\nmetadata:\n  name: local-0\n  namespace: default\nspec:\n  interfaces:\n    - dhcp:\n        mac: 52:54:00:00:00:99\n        ip:\n          address: 127.0.0.1\n          netmask: 255.0.0.0\n      netboot:\n        allowPXE: true\n",
    )
    .unwrap();
    ok(&dir, &["apply", "-f", &local.display().to_string()]);
    let (status, body) = http_get(&format!("{http}/ipxe/script/52:54:00:00:00:99/auto.ipxe"));
    let script = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{script}");
    let token = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("worker_token="))
        .unwrap_or_else(|| panic!("no worker token: {script}"));
    let key = tinkerbell_core::worker_token::WorkerTokenKey::load(&dir).unwrap();
    assert!(key.verify("52:54:00:00:00:99", token), "{token}");
    assert_eq!(
        http_get(&format!("{http}/hookos/vmlinuz-x86_64")),
        (200, b"kernel".to_vec())
    );
    let (_, metrics) = http_get(&format!("{http}/boots/metrics"));
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("boots_http_requests_total{route=\"Script\",status=\"200\"} 2"),
        "{metrics}"
    );
}

fn upgrade_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/upgrade")
        .join(name)
}

/// An appliance upgraded in place: `serve --dry-run-migrate` on the store an older build wrote
/// shows the step and writes nothing; `serve` then opens it with every object, the same as the
/// older build's `export --show-secrets` imported into a new appliance.
#[test]
fn an_older_builds_store_and_export_open_in_this_one() {
    let (_t, dir) = temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("store.redb");
    std::fs::copy(upgrade_fixture("store-v1.redb"), &file).unwrap();
    let before = std::fs::read(&file).unwrap();
    let out = ok(&dir, &["serve", "--dry-run-migrate"]);
    assert!(out.contains("format version 1;"), "{out}");
    assert!(out.contains("  1. "), "{out}");
    assert!(std::fs::read(&file).unwrap() == before, "the dry run wrote");
    let upgraded = Appliance::start(&dir);

    let (_t2, fresh) = temp_dir();
    let _app2 = Appliance::start(&fresh);
    let export = upgrade_fixture("export-v1.yaml").display().to_string();
    let out = ok(&fresh, &["import", "-f", &export]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        15,
        "{out}"
    );
    for kind in [
        "hw",
        "tpl",
        "wf",
        "workflowruleset",
        "machine",
        "job",
        "task",
        "secret",
    ] {
        let a = ok(&dir, &["get", kind, "-A", "-o", "json", "--show-secrets"]);
        let b = ok(&fresh, &["get", kind, "-A", "-o", "json", "--show-secrets"]);
        let a = without_resource_versions(&a);
        assert!(
            !a["items"].as_array().unwrap().is_empty(),
            "no {kind} in the old store"
        );
        assert_eq!(
            a,
            without_resource_versions(&b),
            "{kind}: the old store and the old export differ"
        );
    }
    drop(upgraded);
    let out = ok(&dir, &["serve", "--dry-run-migrate"]);
    assert!(out.contains("format version 2, current"), "{out}");
}
