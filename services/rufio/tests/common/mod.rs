//! Real peers the integration tests start: OpenIPMI `ipmi_sim` and sushy-tools'
//! `sushy-emulator`, each on 127.0.0.1 with a free port and its own temporary directory.
//! A missing binary fails the test with the install hint; it never passes silently.

#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Find `bin` on PATH or fail with how to install it.
pub fn require(bin: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{bin}` is not installed; this test needs the real peer. Install {package} \
         (scripts/install-deps.sh does it, as root)"
    );
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` every 100 ms until it returns `Some`, or panic after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An `ipmi_sim` with one LAN channel on 127.0.0.1, user `admin`/`password` limited to
/// `max_sessions` sessions, and a chassis_control hook that records into files.
pub struct IpmiSim {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// ipmi_sim runs `hook <mc> get power|boot` and `hook <mc> set power 0|1 / reset 1 /
/// boot none|pxe|default / shutdown 1`; this one keeps the state in files beside it.
pub const DEFAULT_HOOK: &str = r#"#!/bin/sh
S=$(dirname "$0")
mc=$1; op=$2; shift 2; echo "$op $*" >> "$S/chassis.log"
case $op in
  get) for p in "$@"; do case $p in
         power) echo "power:$(cat "$S/power" 2>/dev/null || echo 0)" ;;
         boot) echo "boot:$(cat "$S/boot" 2>/dev/null || echo default)" ;;
         *) echo "bad parm $p"; exit 1 ;; esac; done ;;
  set) while [ $# -ge 2 ]; do p=$1 v=$2; shift 2; case $p in
         power) if [ "$v" = 1 ] && [ -f "$S/stuck" ]; then :; else echo "$v" > "$S/power"; fi ;;
         reset) echo 1 > "$S/power" ;;
         boot) echo "$v" > "$S/boot" ;;
         shutdown) echo 0 > "$S/power" ;;
         identify) ;;
         *) echo "bad parm $p"; exit 1 ;; esac; done ;;
  *) echo "bad op $op"; exit 1 ;;
esac
"#;

pub const IPMI_USER: &str = "admin";
pub const IPMI_PASSWORD: &str = "password";

impl IpmiSim {
    pub fn start(max_sessions: u32) -> IpmiSim {
        IpmiSim::start_on(free_udp_port(), max_sessions)
    }

    /// Stop the simulator now (it no longer answers).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Like [`IpmiSim::start`], on a given UDP port (to restart a stopped BMC in place).
    /// While the file `stuck` exists beside the hook, power-on requests are accepted but the
    /// power stays off (a BMC whose host never comes up).
    pub fn start_on(port: u16, max_sessions: u32) -> IpmiSim {
        IpmiSim::start_with_hook(port, max_sessions, DEFAULT_HOOK)
    }

    /// An `ipmi_sim` whose chassis_control hook is `hook_script` (a shell script, run as
    /// `hook <mc> get|set parm [val]...` in the simulator's directory).
    pub fn start_with_hook(port: u16, max_sessions: u32, hook_script: &str) -> IpmiSim {
        let bin = require("ipmi_sim", "Debian package `openipmi`");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hook = d.join("chassis.sh");
        std::fs::write(&hook, hook_script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            d.join("lan.conf"),
            format!(
                r#"name "testbmc"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{hook} 0x20"
  user 2 true "{IPMI_USER}" "{IPMI_PASSWORD}" admin {max_sessions} none md2 md5 straight
  user 3 true "viewer" "viewerpw" user {max_sessions} none md2 md5 straight
"#,
                hook = hook.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("lab.emu"),
            "mc_setbmc 0x20\n\
             mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
             sel_enable 0x20 1000 0x0a\n\
             mc_enable 0x20\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("state")).unwrap();
        let log = std::fs::File::create(d.join("ipmi_sim.log")).unwrap();
        let child = Command::new(bin)
            .args(["-c", "lan.conf", "-f", "lab.emu", "-s", "state", "-n"])
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting ipmi_sim");
        IpmiSim { port, dir, child }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// The lines the chassis_control hook logged.
    pub fn hook_log(&self) -> Vec<String> {
        read_lines(&self.path("chassis.log"))
    }

    pub fn config(&self) -> tinkerbell_rufio::ipmi::IpmiConfig {
        let mut c =
            tinkerbell_rufio::ipmi::IpmiConfig::new("127.0.0.1", IPMI_USER, IPMI_PASSWORD.into());
        c.port = self.port;
        c.cipher_suite = Some(3);
        c.timeout = Duration::from_millis(500);
        c.retries = 2;
        c
    }

    /// Wait until the simulator answers.
    pub async fn ready(&self) {
        let c = tinkerbell_rufio::ipmi::IpmiClient::new(self.config()).unwrap();
        let log = self.path("ipmi_sim.log");
        wait_for("ipmi_sim to answer", Duration::from_secs(10), || {
            let c = c.clone();
            let log = log.clone();
            async move {
                match c.device_id().await {
                    Ok(_) => Some(()),
                    Err(e) => {
                        eprintln!(
                            "ipmi_sim not ready: {e}; log: {}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        );
                        None
                    }
                }
            }
        })
        .await;
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

pub const REDFISH_USER: &str = "admin";
pub const REDFISH_PASSWORD: &str = "password";
/// bcrypt (cost 4) of "password", for sushy-emulator's htpasswd-style auth file.
const REDFISH_BCRYPT: &str = "$2b$04$d8Kh2D2/hzQ06eXA3MNjVuq66ZU0Cg74iYd6P0KefglCkEG3hNMG.";
pub const NODE1: &str = "11111111-2222-3333-4444-555555555555";
pub const NODE2: &str = "22222222-2222-3333-4444-555555555555";

/// A `sushy-emulator` with the fake driver (no libvirt), basic auth, and two systems:
/// node1 (off) and node2 (on). With `tls`, it serves HTTPS with a fresh self-signed
/// certificate.
pub struct Sushy {
    pub port: u16,
    pub tls: bool,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Sushy {
    pub fn start(tls: bool) -> Sushy {
        let bin = require("sushy-emulator", "PyPI package `sushy-tools`");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("htpasswd"),
            format!("{REDFISH_USER}:{REDFISH_BCRYPT}\n"),
        )
        .unwrap();
        let port = free_tcp_port();
        let mut conf = format!(
            r#"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'
SUSHY_EMULATOR_LISTEN_PORT = {port}
SUSHY_EMULATOR_FAKE_DRIVER = True
SUSHY_EMULATOR_AUTH_FILE = '{auth}'
SUSHY_EMULATOR_STATE_DIR = '{state}'
SUSHY_EMULATOR_FAKE_SYSTEMS = [
    {{'uuid': '{NODE1}', 'name': 'node1', 'power_state': 'Off',
     'nics': [{{'mac': '52:54:00:12:34:56', 'ip': '10.99.1.157'}}]}},
    {{'uuid': '{NODE2}', 'name': 'node2', 'power_state': 'On',
     'nics': [{{'mac': '52:54:00:12:34:57', 'ip': '10.99.1.158'}}]}},
]
"#,
            auth = d.join("htpasswd").display(),
            state = d.join("state").display(),
        );
        if tls {
            require("openssl", "Debian package `openssl`");
            let ok = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "cert.pem",
                ])
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "openssl could not make a certificate");
            conf.push_str(&format!(
                "SUSHY_EMULATOR_SSL_CERT = '{}'\nSUSHY_EMULATOR_SSL_KEY = '{}'\n",
                d.join("cert.pem").display(),
                d.join("key.pem").display()
            ));
        }
        std::fs::write(d.join("sushy.conf"), conf).unwrap();
        let log = std::fs::File::create(d.join("sushy.log")).unwrap();
        let child = Command::new(bin)
            .args(["--config", "sushy.conf"])
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting sushy-emulator");
        Sushy {
            port,
            tls,
            dir,
            child,
        }
    }

    pub fn config(&self) -> tinkerbell_rufio::redfish::RedfishConfig {
        let scheme = if self.tls { "https" } else { "http" };
        let mut c = tinkerbell_rufio::redfish::RedfishConfig::new(
            &format!("{scheme}://127.0.0.1"),
            REDFISH_USER,
            REDFISH_PASSWORD.into(),
        );
        c.port = Some(self.port);
        c.timeout = Duration::from_secs(10);
        c
    }

    /// Wait until the emulator accepts connections (and, over plain HTTP, answers one).
    ///
    /// A bare TCP connect is not proof: the port is an ephemeral one, and while nothing listens
    /// on it a connect from 127.0.0.1 can be given that same port as its source and connect to
    /// itself (TCP simultaneous open). CI once saw "ready" followed by connection refused.
    pub async fn ready(&self) {
        let port = self.port;
        let tls = self.tls;
        let log = self.dir.path().join("sushy.log");
        wait_for("sushy-emulator to listen", Duration::from_secs(20), || {
            let log = log.clone();
            async move {
                let answered = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(s) if s.local_addr().ok() == s.peer_addr().ok() => false,
                    Ok(s) if tls => {
                        drop(s);
                        true
                    }
                    Ok(mut s) => http_answers(&mut s).await,
                    Err(_) => false,
                };
                if answered {
                    return Some(());
                }
                let l = std::fs::read_to_string(&log).unwrap_or_default();
                if l.contains("Traceback") {
                    panic!("sushy-emulator failed: {l}");
                }
                None
            }
        })
        .await;
    }
}

/// Whether an HTTP server answers a request for the Redfish service root on `s`.
async fn http_answers(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = b"GET /redfish/v1/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if s.write_all(req).await.is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head)).await,
        Ok(Ok(_))
    ) && &head == b"HTTP/"
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
