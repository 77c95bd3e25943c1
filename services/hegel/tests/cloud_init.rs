//! Real peer: Debian's cloud-init (its Ec2 datasource) against hegel, in network namespaces.
//!
//! Topology (names carry the test's pid, so parallel runs do not collide; a Drop guard deletes
//! the namespaces, which removes their veths):
//!
//! ```text
//!   netns hgs<pid>: hegel on 169.254.169.254:80 (optional tokens) and :8080 (tokens required)
//!     ├─ veth 10.77.1.1/24 ── netns hgc<pid>: 10.77.1.2  (a Hardware holds this address)
//!     └─ veth 10.77.2.1/24 ── netns hgx<pid>: 10.77.2.2  (no Hardware holds this address)
//! ```
//!
//! hegel runs in this process on a thread that joined the server namespace (`setns`), over the
//! test's embedded store, so the test can change a Hardware and re-run cloud-init without
//! restarting anything. cloud-init runs with `ip netns exec <client> /usr/bin/python3
//! cloud_init.py`, which calls the datasource the way cloud-init's init stage does, and the test
//! asserts on what cloud-init concluded and on the instance-data.json it wrote.
//!
//! Needs root, iproute2 and Debian's cloud-init (`scripts/install-deps.sh`). Without them the
//! test fails at once with a message saying so (it never hangs and never silently passes); a
//! non-root developer skips it with `cargo test -- --skip cloud_init`.

#![allow(unsafe_code)] // one setns(2) call, see SAFETY below.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_hegel::{Config, Hegel};
use tokio_util::sync::CancellationToken;

const PYTHON: &str = "/usr/bin/python3";
const CLIENT_IP: &str = "10.77.1.2";
const STRANGER_IP: &str = "10.77.2.2";

fn preflight() -> Result<(), String> {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX);
    if uid != 0 {
        return Err("it must run as root (it creates network namespaces)".into());
    }
    let ip = Command::new("ip").arg("-V").output();
    if !ip.map(|o| o.status.success()).unwrap_or(false) {
        return Err("`ip` (iproute2) is missing".into());
    }
    let ci = Command::new(PYTHON)
        .args(["-c", "import cloudinit.sources.DataSourceEc2"])
        .output();
    if !ci.map(|o| o.status.success()).unwrap_or(false) {
        return Err(format!("Debian's cloud-init is not importable by {PYTHON}"));
    }
    Ok(())
}

/// Run `ip ARGS`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespaces (and with them the veths) however the test ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct Topology {
    server: String,
    client: String,
    stranger: String,
    _guard: Namespaces,
}

fn topology() -> Topology {
    let pid = std::process::id();
    let (s, c, x) = (
        format!("hgs{pid}"),
        format!("hgc{pid}"),
        format!("hgx{pid}"),
    );
    let guard = Namespaces(vec![s.clone(), c.clone(), x.clone()]);
    for ns in &guard.0 {
        // A stale run's (pids are reused), quietly.
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    ip(&["-n", &s, "addr", "add", "169.254.169.254/32", "dev", "lo"]);
    for (peer_ns, tag, net) in [(&c, "c", "10.77.1"), (&x, "x", "10.77.2")] {
        let (sv, cv) = (format!("hs{pid}{tag}"), format!("h{tag}{pid}"));
        ip(&[
            "link", "add", &sv, "netns", &s, "type", "veth", "peer", "name", &cv, "netns", peer_ns,
        ]);
        ip(&["-n", &s, "addr", "add", &format!("{net}.1/24"), "dev", &sv]);
        ip(&["-n", &s, "link", "set", &sv, "up"]);
        ip(&[
            "-n",
            peer_ns,
            "addr",
            "add",
            &format!("{net}.2/24"),
            "dev",
            &cv,
        ]);
        ip(&["-n", peer_ns, "link", "set", &cv, "up"]);
        ip(&[
            "-n",
            peer_ns,
            "route",
            "add",
            "169.254.169.254/32",
            "via",
            &format!("{net}.1"),
        ]);
    }
    Topology {
        server: s,
        client: c,
        stranger: x,
        _guard: guard,
    }
}

/// Two hegels (optional tokens on :80, required tokens on :8080) inside `ns`, on a thread of
/// their own. Returns when both sockets are bound.
fn start_hegel_in(
    ns: &str,
    store: EmbeddedStore,
    cancel: CancellationToken,
) -> std::thread::JoinHandle<()> {
    let path = format!("/run/netns/{ns}");
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns(2) with a valid, open namespace fd; it only changes the network
        // namespace of this thread, which is ours alone.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let backend = Arc::new(store);
            let optional = Config {
                listen: "169.254.169.254:80".parse().unwrap(),
                ..Config::default()
            };
            let required = Config {
                listen: "169.254.169.254:8080".parse().unwrap(),
                require_tokens: true,
                ..Config::default()
            };
            let a = Hegel::start(&optional, backend.clone(), cancel.child_token())
                .await
                .unwrap();
            let b = Hegel::start(&required, backend, cancel.child_token())
                .await
                .unwrap();
            tx.send(()).unwrap();
            let (ra, rb) = tokio::join!(a.join(), b.join());
            ra.unwrap();
            rb.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("hegel started in the namespace");
    handle
}

/// Run a command, killing it after `limit`; returns (success, stdout, stderr).
fn run_limited(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// cloud-init's Ec2 datasource inside `ns`; its conclusions as JSON.
fn cloud_init(ns: &str, url: &str, cloud: &str, max_wait: u32) -> Value {
    let started = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cloud_init.py");
    let tmp = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = run_limited(
        Command::new("ip")
            .args(["netns", "exec", ns, PYTHON])
            .arg(&script)
            .args([
                url,
                cloud,
                &max_wait.to_string(),
                &tmp.path().display().to_string(),
            ]),
        Duration::from_secs(60),
    );
    eprintln!(
        "cloud-init in {ns} against {url} ({cloud:?}): {:?}",
        started.elapsed()
    );
    assert!(ok, "cloud-init driver failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!("cloud-init driver output is not JSON ({e}):\n{stdout}\n{stderr}")
    })
}

/// A plain HTTP GET from inside `ns` (python urllib): (status, body).
fn http_get(ns: &str, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let code = r#"
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1])
for h in sys.argv[2:]:
    k, v = h.split(":", 1)
    req.add_header(k, v)
try:
    r = urllib.request.urlopen(req, timeout=5); print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
"#;
    let hs: Vec<String> = headers.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let (ok, stdout, stderr) = run_limited(
        Command::new("ip")
            .args(["netns", "exec", ns, PYTHON, "-c", code, url])
            .args(&hs),
        Duration::from_secs(20),
    );
    assert!(ok, "GET {url} from {ns}: {stderr}");
    let (status, body) = stdout.split_once('\n').unwrap_or((&stdout, ""));
    (status.trim().parse().unwrap(), body.to_string())
}

fn assert_node(v: &Value, hostname: &str) {
    assert_eq!(v["ok"], true, "cloud-init found no datasource: {v}");
    assert_eq!(v["instance_id"], "i-cloudinit", "{v}");
    assert_eq!(v["hostname"], hostname, "{v}");
    let mut keys = vec![KEY0, KEY1];
    keys.sort();
    assert_eq!(v["keys"], serde_json::json!(keys), "{v}");
    assert_eq!(v["userdata"], USER_DATA, "{v}");
    assert_eq!(v["api_version"], "2009-04-04", "{v}");
    // cloud-init's own record (instance-data.json, what `cloud-init query` reads).
    let v1 = &v["instance_data_v1"];
    assert_eq!(v1["instance_id"], "i-cloudinit", "{v1}");
    // cloud-init keeps the short name as the local hostname, the full one in the metadata.
    let short = hostname.split('.').next().unwrap();
    assert_eq!(v1["local_hostname"], short, "{v1}");
    let meta = &v["instance_data_meta"];
    assert_eq!(meta["local-hostname"], hostname, "{meta}");
    assert_eq!(meta["hostname"], hostname, "{meta}");
    assert_eq!(meta["instance-id"], "i-cloudinit", "{meta}");
    assert_eq!(v1["public_ssh_keys"], serde_json::json!(keys), "{v1}");
}

#[test]
fn cloud_init_ec2_datasource() {
    if let Err(why) = preflight() {
        panic!(
            "the cloud-init real-peer test cannot run: {why}. Run it as root after \
             scripts/install-deps.sh, or skip it with `cargo test -- --skip cloud_init`."
        );
    }
    let topo = topology();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    rt.block_on(create(
        &store,
        hardware("ci-node", CLIENT_IP, "i-cloudinit", "ci-node.lab"),
    ));
    let cancel = CancellationToken::new();
    let server = start_hegel_in(&topo.server, store.clone(), cancel.clone());
    let stop = scopeguard(cancel.clone());

    // 1. The machine that holds 10.77.1.2: cloud-init (IMDSv1) finds its instance.
    let v = cloud_init(&topo.client, "http://169.254.169.254", "", 10);
    assert_node(&v, "ci-node.lab");
    assert_eq!(v["token_used"], false);

    // 2. IMDSv2: cloud-init as on AWS asks for a session token and uses it; the server on :8080
    //    refuses reads without one.
    let v = cloud_init(&topo.client, "http://169.254.169.254:8080", "aws", 10);
    assert_node(&v, "ci-node.lab");
    assert_eq!(v["token_used"], true, "{v}");
    let (status, _) = http_get(
        &topo.client,
        "http://169.254.169.254:8080/latest/meta-data/instance-id",
        &[],
    );
    assert_eq!(status, 401);

    // 3. An address no Hardware holds: 404 with the reason, and cloud-init finds no datasource.
    let (status, body) = http_get(
        &topo.stranger,
        "http://169.254.169.254/2009-04-04/meta-data/instance-id",
        &[],
    );
    assert_eq!(
        (status, body.as_str()),
        (404, "no hardware found for source ip: 10.77.2.2")
    );
    let v = cloud_init(&topo.stranger, "http://169.254.169.254", "", 1);
    assert_eq!(v["ok"], false, "{v}");

    // 4. X-Forwarded-For from an untrusted peer changes nothing, either way round.
    let (status, body) = http_get(
        &topo.stranger,
        "http://169.254.169.254/2009-04-04/meta-data/instance-id",
        &[("X-Forwarded-For", CLIENT_IP)],
    );
    assert_eq!(
        (status, body.as_str()),
        (404, "no hardware found for source ip: 10.77.2.2")
    );
    let (status, body) = http_get(
        &topo.client,
        "http://169.254.169.254/2009-04-04/meta-data/instance-id",
        &[("X-Forwarded-For", STRANGER_IP)],
    );
    assert_eq!((status, body.as_str()), (200, "i-cloudinit"));

    // 5. Change the Hardware in the store: the next cloud-init run sees it, no restart.
    rt.block_on(set_hostname(&store, "ci-node", "renamed.lab"));
    let v = cloud_init(&topo.client, "http://169.254.169.254", "", 10);
    assert_node(&v, "renamed.lab");

    drop(stop);
    server.join().expect("hegel thread");
}

/// Cancels the servers when dropped (also when an assertion fails), so the thread ends.
struct CancelOnDrop(CancellationToken);
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
fn scopeguard(c: CancellationToken) -> CancelOnDrop {
    CancelOnDrop(c)
}
