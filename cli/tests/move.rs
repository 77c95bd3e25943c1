//! `tinkerbell move` as a user runs it:
//! * between two data directories, `kill -9`'d at random points and re-run until it finishes:
//!   nothing lost, nothing duplicated, labels and annotations intact, DHCP handed over;
//! * between two running appliances in two network namespaces, through their store APIs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{BIN, Killed, fixture};
use serde_json::{Value, json};
use tinkerbell_admin::mover::digest;
use tinkerbell_core::model::{DHCP_HANDOFF_ANNOTATION, HANDOFF_MOVED_OUT};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_edge::testing::TestPki;

mod common;

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
    fill_ns(dir, n, "eksa-system").await;
}

/// [`fill`] in namespace `ns`.
async fn fill_ns(dir: &Path, n: u32, ns: &str) {
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
            "metadata": {"name": format!("bmc-n{i}-auth"), "namespace": ns,
                         "labels": {"clusterctl.cluster.x-k8s.io/move": "true"}},
            "data": {"username": "YWRtaW4=", "password": "c2VjcmV0"}
        })));
        objs.push(obj(json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
            "metadata": {"name": format!("bmc-n{i}"), "namespace": ns},
            "spec": {"connection": {"host": format!("10.2.{}.{}", i / 250, i % 250 + 1), "port": 623, "insecureTLS": true,
                     "authSecretRef": {"name": format!("bmc-n{i}-auth"), "namespace": ns}}}
        })));
        objs.push(obj(json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
            "metadata": {"name": format!("n{i}"), "namespace": ns,
                         "labels": {"v1alpha1.tinkerbell.org/ownerName": format!("c-{i}"),
                                    "v1alpha1.tinkerbell.org/ownerNamespace": ns},
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

/// Run `tinkerbell ARGS` `runs` times, each `kill -9`'d at a random point within `full_ms`
/// (a run that finishes first is not killed). Returns how many were killed.
fn kill_9_runs(args: &[&str], full_ms: u64, runs: u32) -> u32 {
    let mut killed = 0;
    for _ in 0..runs {
        let mut child: Child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = Duration::from_millis(random_below(full_ms));
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
    eprintln!("{killed} of {runs} runs were killed mid-move");
    killed
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

    let _ = kill_9_runs(&args, full, 12);
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

/// The pivot against the real kube-apiserver of the test run: embedded → Kubernetes, `kill -9`'d
/// at random points and re-run until it finishes (nothing lost or duplicated, the source's
/// machines marked moved-out), then back from Kubernetes into a new embedded store.
#[tokio::test(flavor = "multi_thread")]
async fn pivot_to_a_real_apiserver_and_back_survives_kill_9() {
    let Some(env) = tinkerbell_core::testing::test_kube("move-pivot").await else {
        return;
    };
    let Some(scratch_env) = tinkerbell_core::testing::test_kube("move-pivot-scratch").await else {
        return;
    };
    let ns = env.namespace.clone();
    let kubeconfig = env.kubeconfig.display().to_string();
    let n = 60;
    let src_dir = tempfile::tempdir().unwrap();
    fill_ns(src_dir.path(), n, &ns).await;
    let src = src_dir.path().display().to_string();
    let dst = format!("kube:{kubeconfig}#{ns}");
    let args = ["move", "-n", &ns, "--from", &src, "--to", &dst];

    // The time of an uninterrupted move, on copies (another namespace of the same server).
    let scratch_src = tempfile::tempdir().unwrap();
    fill_ns(scratch_src.path(), n, &scratch_env.namespace).await;
    let s1 = scratch_src.path().display().to_string();
    let s2 = format!("kube:{kubeconfig}#{}", scratch_env.namespace);
    let t = Instant::now();
    ok(&[
        "move",
        "-n",
        &scratch_env.namespace,
        "--from",
        &s1,
        "--to",
        &s2,
    ]);
    let full = t.elapsed().as_millis() as u64 * 6 / 5;

    // The first run is killed in the first half of a move; the first run that is not killed
    // finishes it. Runs go on until five were killed (re-runs of a finished move are killed in
    // their verification and marking).
    let mut killed = kill_9_runs(&args, full / 2, 1);
    for _ in 0..10 {
        killed += kill_9_runs(&args, full, 3);
        if killed >= 5 {
            break;
        }
    }
    assert!(killed >= 1, "no run was killed mid-move");
    let out = ok(&args);
    assert!(out.contains("content digest"), "{out}");

    let source = EmbeddedStore::open(src_dir.path()).unwrap();
    let cluster = tinkerbell_core::store::kube::KubeStore::new(env.client.clone(), &ns);
    for kind in [Kind::Secret, Kind::Machine, Kind::Hardware] {
        let a = source.list(kind, Some(&ns)).await.unwrap().items;
        let b = cluster.list(kind, Some(&ns)).await.unwrap().items;
        assert_eq!(a.len(), n as usize, "{kind} on the source");
        assert_eq!(
            b.len(),
            n as usize,
            "{kind} in the cluster: nothing lost or duplicated"
        );
        for o in &a {
            let t = cluster.get(kind, o.namespace(), o.name()).await.unwrap();
            assert_eq!(digest(o), digest(&t), "{}", o.key());
        }
    }
    for o in source.list(Kind::Hardware, None).await.unwrap().items {
        let a = o.meta().annotations.clone().unwrap_or_default();
        assert_eq!(
            a.get(DHCP_HANDOFF_ANNOTATION).map(String::as_str),
            Some(HANDOFF_MOVED_OUT),
            "{} is marked moved-out at the source",
            o.key()
        );
    }
    for o in cluster.list(Kind::Hardware, Some(&ns)).await.unwrap().items {
        let a = o.meta().annotations.clone().unwrap_or_default();
        assert!(
            !a.contains_key(DHCP_HANDOFF_ANNOTATION),
            "{} still held",
            o.key()
        );
        assert_eq!(o.status_json(), json!({"state": "Ready"}), "status moved");
    }
    drop(source);

    // And back, into a new embedded store (the cluster is the source now).
    let back_dir = tempfile::tempdir().unwrap();
    let back = back_dir.path().display().to_string();
    ok(&["move", "-n", &ns, "--from", &dst, "--to", &back]);
    let back_store = EmbeddedStore::open(back_dir.path()).unwrap();
    for kind in [Kind::Secret, Kind::Machine, Kind::Hardware] {
        let a = cluster.list(kind, Some(&ns)).await.unwrap().items;
        let b = back_store.list(kind, Some(&ns)).await.unwrap().items;
        assert_eq!(b.len(), n as usize, "{kind} back in an embedded store");
        for o in &a {
            let t = back_store.get(kind, o.namespace(), o.name()).await.unwrap();
            assert_eq!(digest(o), digest(&t), "{}", o.key());
        }
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

fn serve_in(ns: &str, dir: &Path, api: &str, pki: &TestPki) -> Killed {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, BIN, "--data-dir"])
        .arg(dir)
        .args(["serve", "--store-api-addr", api])
        // Off loopback the store API needs a certificate (or --store-api-allow-plaintext).
        .arg("--store-api-tls-cert-file")
        .arg(&pki.cert)
        .arg("--store-api-tls-key-file")
        .arg(&pki.key)
        .args([
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
    Killed(child)
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
    // A's certificate is signed by a CA for its address; B's is self-signed, for a name the
    // move does not use, and trusted as it is (pinned): its api-cert.pem.
    let certs = tempfile::tempdir().unwrap();
    let pki_a = TestPki::create(certs.path(), &[&format!("10.{octet}.1.2")]);
    let pki_b = TestPki::self_signed(certs.path(), &["appliance-b.test"]);
    let _sa = serve_in(&a, da.path(), &api_a, &pki_a);
    let _sb = serve_in(&b, db.path(), &api_b, &pki_b);
    let (url_a, url_b) = (format!("https://{api_a}"), format!("https://{api_b}"));
    let tok = |d: &Path| -> PathBuf { d.join("api-token") };
    let ta = tok(da.path()).display().to_string();
    let tb = tok(db.path()).display().to_string();
    let ca_a = pki_a.ca.display().to_string();
    let pin_b = db.path().join("api-cert.pem").display().to_string();
    assert_eq!(
        std::fs::read_to_string(&pin_b).unwrap().trim(),
        std::fs::read_to_string(&pki_b.cert).unwrap().trim()
    );
    // Trusting nothing in particular (the system's CAs): refused.
    let out = Command::new(BIN)
        .args(["--server", &url_a, "--token-file", &ta, "get", "hw", "-A"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Trusting B's certificate for A: refused.
    let out = Command::new(BIN)
        .args(["--server", &url_a, "--token-file", &ta, "--ca-file", &pin_b])
        .args(["get", "hw", "-A"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    ok(&[
        "--server",
        &url_a,
        "--token-file",
        &ta,
        "--ca-file",
        &ca_a,
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
        "--from-ca-file",
        &ca_a,
        "--to",
        &url_b,
        "--to-token-file",
        &tb,
        "--to-ca-file",
        &pin_b,
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

    let get = |url: &str, t: &str, ca: &str| -> Value {
        serde_json::from_str(&ok(&[
            "--server",
            url,
            "--token-file",
            t,
            "--ca-file",
            ca,
            "get",
            "hw",
            "-A",
            "-o",
            "json",
        ]))
        .unwrap()
    };
    let (ha, hb) = (get(&url_a, &ta, &ca_a), get(&url_b, &tb, &pin_b));
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
        "--ca-file",
        &pin_b,
        "get",
        "secret",
        "-A",
    ]);
    assert!(secrets.contains("bmc-cp-0-auth"), "{secrets}");
}
