//! `tinkerbell move` as a user runs it:
//! * between two data directories, `kill -9`'d at random points and re-run until it finishes:
//!   nothing lost, nothing duplicated, labels and annotations intact, DHCP handed over;
//! * between two running appliances in two network namespaces, through their store APIs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tinkerbell_core::model::{DHCP_HANDOFF_ANNOTATION, HANDOFF_MOVED_OUT};
use tinkerbell_core::mover::digest;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store};

const BIN: &str = env!("CARGO_BIN_EXE_tinkerbell");

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn tinkerbell(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run tinkerbell")
}

fn ok(args: &[&str]) -> String {
    let out = tinkerbell(args);
    assert!(
        out.status.success(),
        "tinkerbell {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn obj(v: Value) -> Object {
    Object::from_typed_json(v).unwrap()
}

/// A source store with `n` machines as EKS Anywhere leaves them after provisioning.
async fn fill(dir: &Path, n: u32) {
    let store = EmbeddedStore::open(dir).unwrap();
    let mut objs = Vec::new();
    for i in 0..n {
        let mac = format!(
            "52:54:00:{:02x}:{:02x}:{:02x}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        );
        objs.push(obj(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("bmc-n{i}-auth"), "namespace": "eksa-system",
                         "labels": {"clusterctl.cluster.x-k8s.io/move": "true"}},
            "data": {"username": "YWRtaW4=", "password": "c2VjcmV0"}
        })));
        objs.push(obj(json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
            "metadata": {"name": format!("bmc-n{i}"), "namespace": "eksa-system"},
            "spec": {"connection": {"host": format!("10.2.{}.{}", i / 250, i % 250 + 1), "port": 623, "insecureTLS": true,
                     "authSecretRef": {"name": format!("bmc-n{i}-auth"), "namespace": "eksa-system"}}}
        })));
        objs.push(obj(json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
            "metadata": {"name": format!("n{i}"), "namespace": "eksa-system",
                         "labels": {"v1alpha1.tinkerbell.org/ownerName": format!("c-{i}"),
                                    "v1alpha1.tinkerbell.org/ownerNamespace": "eksa-system"},
                         "annotations": {"v1alpha1.tinkerbell.org/provisioned": "true"}},
            "spec": {"userData": format!("#cloud-config\nhostname: n{i}\n"),
                     "bmcRef": {"kind": "Machine", "name": format!("bmc-n{i}")},
                     "metadata": {"instance": {"id": mac}},
                     "interfaces": [{"dhcp": {"mac": mac, "ip": {"address": format!("10.1.{}.{}", i / 250, i % 250 + 1)}},
                                     "netboot": {"allowPXE": false}}]},
            "status": {"state": "Ready"}
        })));
    }
    store.apply_all(objs).await.unwrap();
}

fn random_below(n: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos ^ (nanos >> 7).wrapping_mul(0x9e37_79b9)) % n.max(1)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_points_then_rerun_converges() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    fill(src_dir.path(), 400).await;
    let (src, dst) = (
        src_dir.path().display().to_string(),
        dst_dir.path().display().to_string(),
    );
    let args = ["move", "-A", "--from", &src, "--to", &dst];

    // How long an uninterrupted move takes here, measured on a scratch copy of the source, so
    // that the kills below land anywhere from process start to the last commit.
    let scratch_src = tempfile::tempdir().unwrap();
    let scratch_dst = tempfile::tempdir().unwrap();
    std::fs::copy(
        src_dir.path().join("store.redb"),
        scratch_src.path().join("store.redb"),
    )
    .unwrap();
    let (s1, s2) = (
        scratch_src.path().display().to_string(),
        scratch_dst.path().display().to_string(),
    );
    let t = Instant::now();
    ok(&["move", "-A", "--from", &s1, "--to", &s2]);
    let full = t.elapsed().as_millis() as u64 * 6 / 5;

    let mut killed = 0;
    for _ in 0..12 {
        let mut child: Child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = Duration::from_millis(random_below(full));
        let deadline = Instant::now() + at;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    eprintln!("{killed} of 12 runs were killed mid-move");
    let out = ok(&args);
    assert!(out.contains("content digest"), "{out}");

    let src = EmbeddedStore::open(src_dir.path()).unwrap();
    let dst = EmbeddedStore::open(dst_dir.path()).unwrap();
    for kind in [Kind::Secret, Kind::Machine, Kind::Hardware] {
        let a = src.list(kind, None).await.unwrap().items;
        let b = dst.list(kind, None).await.unwrap().items;
        assert_eq!(a.len(), 400, "{kind} on the source");
        assert_eq!(
            b.len(),
            400,
            "{kind} on the target: nothing lost, nothing duplicated"
        );
        for o in &a {
            let t = dst.get(kind, o.namespace(), o.name()).await.unwrap();
            assert_eq!(digest(o), digest(&t), "{}", o.key());
        }
    }
    for o in src.list(Kind::Hardware, None).await.unwrap().items {
        let a = o.meta().annotations.clone().unwrap_or_default();
        assert_eq!(
            a.get(DHCP_HANDOFF_ANNOTATION).map(String::as_str),
            Some(HANDOFF_MOVED_OUT)
        );
        assert_eq!(
            a.get("v1alpha1.tinkerbell.org/provisioned")
                .map(String::as_str),
            Some("true")
        );
    }
    for o in dst.list(Kind::Hardware, None).await.unwrap().items {
        let a = o.meta().annotations.clone().unwrap_or_default();
        assert!(
            !a.contains_key(DHCP_HANDOFF_ANNOTATION),
            "{} still held",
            o.key()
        );
        assert_eq!(
            a.get("v1alpha1.tinkerbell.org/provisioned")
                .map(String::as_str),
            Some("true")
        );
        let labels = o.meta().labels.clone().unwrap_or_default();
        assert!(labels.contains_key("v1alpha1.tinkerbell.org/ownerName"));
    }
}

#[test]
fn bad_sides_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let out = tinkerbell(&["move", "--from", &d, "--to", &d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("same store"));
    let out = tinkerbell(&[
        "move",
        "--from",
        &d,
        "--to",
        "/nonexistent-tinkerbell-target",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tinkerbell(&["move", "--from", "http://127.0.0.1:1", "--to", &d]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from-token-file"));
}

// --- two appliances in two network namespaces -------------------------------------------

struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?}");
}

struct Appliance(Child);

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_in(ns: &str, dir: &Path, api: &str) -> Appliance {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, BIN, "--data-dir"])
        .arg(dir)
        .args([
            "serve",
            "--store-api-addr",
            api,
            "--bind-address",
            "127.0.0.1",
            "--http-port",
            "0",
            // Nothing but the store matters here; the fixture's BMCs must not be contacted.
            "--enable-rufio-controller=false",
            "--enable-tink-controller=false",
            "--tink-server-bind-port",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("api-url").exists() {
        assert!(Instant::now() < deadline, "serve in {ns} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Appliance(child)
}

fn can_netns() -> bool {
    let probe = format!("tbmvprobe{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    }
    ok
}

#[test]
fn between_two_appliances_in_two_namespaces() {
    if !can_netns() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run as root with `ip netns`"
        );
        eprintln!("skipped: needs root and `ip netns`");
        return;
    }
    let pid = std::process::id() % 100_000;
    let (a, b) = (format!("tbmva{pid}"), format!("tbmvb{pid}"));
    let _guard = Netns(vec![a.clone(), b.clone()]);
    let octet = 100 + (pid % 100);
    for (i, ns) in [(1, &a), (2, &b)] {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", ns]);
        let host = format!("tbmv{i}h{pid}");
        let peer = format!("tbmv{i}p{pid}");
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", &peer, "netns", ns,
        ]);
        ip(&["addr", "add", &format!("10.{octet}.{i}.1/24"), "dev", &host]);
        ip(&["link", "set", &host, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("10.{octet}.{i}.2/24"),
            "dev",
            &peer,
        ]);
        ip(&["-n", ns, "link", "set", &peer, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (api_a, api_b) = (
        format!("10.{octet}.1.2:7081"),
        format!("10.{octet}.2.2:7081"),
    );
    let _sa = serve_in(&a, da.path(), &api_a);
    let _sb = serve_in(&b, db.path(), &api_b);
    let (url_a, url_b) = (format!("http://{api_a}"), format!("http://{api_b}"));
    let tok = |d: &Path| -> PathBuf { d.join("api-token") };
    let ta = tok(da.path()).display().to_string();
    let tb = tok(db.path()).display().to_string();

    ok(&[
        "--server",
        &url_a,
        "--token-file",
        &ta,
        "-n",
        "eksa-system",
        "hardware",
        "import",
        "--csv",
        &fixture("hardware.csv"),
    ]);
    let out = ok(&[
        "-n",
        "eksa-system",
        "move",
        "--from",
        &url_a,
        "--from-token-file",
        &ta,
        "--to",
        &url_b,
        "--to-token-file",
        &tb,
    ]);
    assert!(out.contains("moved Hardware"), "{out}");
    // The no-server window: two store commits over a veth, well under a second.
    let window: f64 = out
        .split("for at most ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no window in {out}"));
    assert!(window < 1000.0, "no-server window {window} ms");

    let get = |url: &str, t: &str| -> Value {
        serde_json::from_str(&ok(&[
            "--server",
            url,
            "--token-file",
            t,
            "get",
            "hw",
            "-A",
            "-o",
            "json",
        ]))
        .unwrap()
    };
    let (ha, hb) = (get(&url_a, &ta), get(&url_b, &tb));
    let items = |v: &Value| v["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items(&ha).len(), items(&hb).len());
    assert!(!items(&hb).is_empty());
    for h in items(&ha) {
        assert_eq!(
            h["metadata"]["annotations"][DHCP_HANDOFF_ANNOTATION],
            HANDOFF_MOVED_OUT
        );
    }
    for h in items(&hb) {
        assert!(
            h["metadata"]["annotations"]
                .get(DHCP_HANDOFF_ANNOTATION)
                .is_none()
        );
    }
    let secrets = ok(&[
        "--server",
        &url_b,
        "--token-file",
        &tb,
        "get",
        "secret",
        "-A",
    ]);
    assert!(secrets.contains("bmc-cp-0-auth"), "{secrets}");
}
