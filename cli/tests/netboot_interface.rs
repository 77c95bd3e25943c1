//! `tinkerbell serve --netboot-interface IF` on links this test builds (two network
//! namespaces joined by a veth): it refuses an interface that does not exist or has no IPv4
//! address (exit 2, naming it), refuses a link where a real DHCP server (dnsmasq) answers
//! (exit 2, naming the server) unless `--dhcp-mode proxy` or `--force`, and otherwise starts
//! with its listeners on the interface's address. The full netboot through the flag is the
//! lab e2e's (tests/lab/e2e.sh).
//!
//! Needs root, `ip` and dnsmasq (scripts/install-deps.sh): missing, the tests fail under CI and
//! are skipped (with a message) elsewhere.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tinkerbell_core::testing::{have_peers, sh};

const BIN: &str = env!("CARGO_BIN_EXE_tinkerbell");
static COUNTER: AtomicU32 = AtomicU32::new(0);
const PEERS: &[&str] = &["/usr/sbin/ip", "/usr/sbin/dnsmasq"];

/// `app` (the appliance, interface a0) and `peer` (p0, 10.78.0.2/24) joined by a veth; a0
/// gets 10.78.0.1/24 when `with_ipv4`. Both deleted on drop.
struct Link {
    app: String,
    peer: String,
    dnsmasq: Option<Child>,
    dir: tempfile::TempDir,
}

impl Link {
    fn new(with_ipv4: bool) -> Link {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("tbn{}-{n}", std::process::id());
        let link = Link {
            app: format!("{base}-a"),
            peer: format!("{base}-p"),
            dnsmasq: None,
            dir: tempfile::tempdir().unwrap(),
        };
        sh(&["ip", "netns", "add", &link.app]);
        sh(&["ip", "netns", "add", &link.peer]);
        sh(&[
            "ip", "-n", &link.app, "link", "add", "a0", "type", "veth", "peer", "name", "p0",
            "netns", &link.peer,
        ]);
        if with_ipv4 {
            sh(&[
                "ip",
                "-n",
                &link.app,
                "addr",
                "add",
                "10.78.0.1/24",
                "dev",
                "a0",
            ]);
        }
        sh(&[
            "ip",
            "-n",
            &link.peer,
            "addr",
            "add",
            "10.78.0.2/24",
            "dev",
            "p0",
        ]);
        for (ns, dev) in [(&link.app, "a0"), (&link.peer, "p0")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        link
    }

    /// A DHCP server for any client on the peer side.
    fn with_dnsmasq(mut self) -> Link {
        let leases = self.dir.path().join("leases");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.peer,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
            ])
            .args(["--port=0", "--interface=p0", "--bind-interfaces"])
            .args([
                "--dhcp-range=10.78.0.50,10.78.0.99,1h",
                "--dhcp-authoritative",
            ])
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dnsmasq");
        self.dnsmasq = Some(child);
        // dnsmasq binds at once; give it a moment to be listening.
        std::thread::sleep(Duration::from_millis(300));
        self
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `serve --netboot-interface IF` in the appliance namespace, with the controllers off.
    fn serve(&self, interface: &str, extra: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.app, BIN, "--data-dir"])
            .arg(self.data())
            .args([
                "serve",
                "--netboot-interface",
                interface,
                "--http-port",
                "0",
            ])
            .args([
                "--store-api-addr",
                "127.0.0.1:0",
                "--tink-server-bind-port",
                "0",
            ])
            .args([
                "--enable-rufio-controller=false",
                "--enable-tink-controller=false",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve")
    }

    /// Exits with 2, and says `what` on stderr.
    fn refused(&self, interface: &str, extra: &[&str], what: &[&str]) {
        let mut child = self.serve(interface, extra);
        // A serve that starts instead of refusing must not hang the test.
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "serve --netboot-interface {interface} {extra:?} did not refuse: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out: Output = child.wait_with_output().expect("serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "stderr: {err}");
        for w in what {
            assert!(err.contains(w), "{w:?} not in: {err}");
        }
    }

    /// Starts (writes `http-url`); returns the URL.
    fn starts(&self, interface: &str, extra: &[&str]) -> String {
        let mut child = self.serve(interface, extra);
        let url = self.data().join("http-url");
        let deadline = Instant::now() + Duration::from_secs(30);
        let found = loop {
            if let Ok(u) = std::fs::read_to_string(&url) {
                break Some(u);
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(&url);
        found.unwrap_or_else(|| {
            panic!(
                "serve did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.app, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn a_missing_interface_or_address_is_named() {
    if !have_peers(PEERS) {
        return;
    }
    let link = Link::new(false);
    link.refused("nosuch0", &[], &["--netboot-interface", "\"nosuch0\""]);
    link.refused("a0", &[], &["\"a0\"", "no IPv4 address"]);
}

#[test]
fn another_dhcp_server_on_the_link_is_refused_by_address() {
    if !have_peers(PEERS) {
        return;
    }
    let link = Link::new(true).with_dnsmasq();
    link.refused(
        "a0",
        &[],
        &[
            "another DHCP server (10.78.0.2)",
            "--dhcp-mode proxy",
            "--force",
        ],
    );
    // Proxy mode exists for such links, and --force overrides.
    assert!(
        link.starts("a0", &["--dhcp-mode", "proxy"])
            .contains("10.78.0.1")
    );
    assert!(link.starts("a0", &["--force"]).contains("10.78.0.1"));
}

#[test]
fn a_quiet_link_gets_every_netboot_service_on_its_address() {
    if !have_peers(PEERS) {
        return;
    }
    let link = Link::new(true);
    let url = link.starts("a0", &[]);
    assert!(
        url.contains("10.78.0.1"),
        "HTTP not on the interface's address: {url}"
    );
}
