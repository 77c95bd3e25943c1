//! A QEMU machine (TCG, SeaBIOS + the `ipxe-qemu` virtio NIC ROM) network-boots from boots'
//! TFTP and HTTP servers on 127.0.0.1, reached through QEMU's user-mode network (the guest's
//! 10.0.2.2 is the host's loopback), until the Hook "kernel" runs:
//!
//! 1. QEMU's built-in DHCP hands out only the boot file name, `tftp://10.0.2.2:<tftp>/chain.ipxe`
//!    (DHCP is another boots module; this test is about TFTP and HTTP). QEMU's own TFTP server
//!    is not configured, so the transfer goes to ours.
//! 2. `chain.ipxe` fetches an iPXE binary over our TFTP under its MAC directory
//!    (`<mac>/undionly.kpxe`, iPXE negotiating blksize and tsize), then chains to
//!    `http://10.0.2.2:<http>/ipxe/script/<mac>/auto.ipxe` — our Hook script.
//! 3. The Hook script loads `vmlinuz-x86_64` and `initramfs-x86_64` from our `/hookos/` and
//!    boots. The "kernel" is Debian's `ipxe.lkrn` (a Linux-format bzImage), so a second iPXE
//!    banner on the console proves it was booted without needing a Linux kernel download.
//!
//! The servers' counters show every request; the console log is kept on failure.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tinkerbell_boots::http::{Config as HttpConfig, Http, Route, ScriptConfig};
use tinkerbell_boots::tftp::metrics::Outcome;
use tinkerbell_boots::tftp::{Config as TftpConfig, Tftp};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Object, Store};
use tokio_util::sync::CancellationToken;

const MAC: &str = "52:54:00:12:34:56";

struct Qemu(Option<tokio::process::Child>);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.start_kill();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_netboots_through_tftp_and_http() {
    let lkrn = Path::new("/usr/lib/ipxe/ipxe.lkrn");
    // QEMU loads this ROM (from ipxe-qemu) for virtio-net-pci by default.
    let rom = Path::new("/usr/lib/ipxe/qemu/efi-virtio.rom");
    if !common::have("qemu-system-x86_64") {
        return;
    }
    for p in [lkrn, rom] {
        if !p.exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{} missing (ipxe / ipxe-qemu packages)",
                p.display()
            );
            eprintln!("SKIP: {} missing", p.display());
            return;
        }
    }
    tinkerbell_edge::tls::install_crypto_provider();
    let work = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&work.path().join("store")).unwrap();
    store
        .create(
            Object::from_typed_json(json!({
                "apiVersion": "tinkerbell.org/v1alpha1",
                "kind": "Hardware",
                "metadata": {"name": "qemu-node", "namespace": "default"},
                "spec": {"interfaces": [{
                    "dhcp": {"mac": MAC, "ip": {"address": "10.0.2.15", "netmask": "255.255.255.0"}},
                    "netboot": {"allowPXE": true}
                }]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let hookos = work.path().join("hookos");
    let assets = work.path().join("tftp");
    std::fs::create_dir_all(&hookos).unwrap();
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::copy(lkrn, hookos.join("vmlinuz-x86_64")).unwrap();
    std::fs::write(hookos.join("initramfs-x86_64"), common::pattern(200_000, 3)).unwrap();

    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let tftp = Tftp::start(
        TftpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            asset_dir: Some(assets.clone()),
            ..TftpConfig::default()
        },
        None,
        cancel.child_token(),
    )
    .await
    .unwrap();
    let http = Http::start(
        &HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            hookos_dir: Some(hookos),
            script: ScriptConfig {
                tink_server: "10.0.2.2:42113".into(),
                ..ScriptConfig::default()
            },
            ..HttpConfig::default()
        },
        Arc::new(store),
        None,
        None,
        cancel.child_token(),
    )
    .await
    .unwrap();
    let tport = tftp.local_addr().port();
    let hport = http.local_addr().port();
    std::fs::write(
        assets.join("chain.ipxe"),
        format!(
            "#!ipxe\necho BOOTSTEST chain-loaded ${{net0/mac}}\n\
             imgfetch tftp://10.0.2.2:{tport}/${{net0/mac}}/undionly.kpxe && echo BOOTSTEST tftp-binary-ok || echo BOOTSTEST tftp-binary-FAIL\n\
             imgfree\n\
             chain http://10.0.2.2:{hport}/ipxe/script/${{net0/mac}}/auto.ipxe || echo BOOTSTEST chain-FAIL\n"
        ),
    )
    .unwrap();

    let console = work.path().join("console.log");
    let child = tokio::process::Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "256", "-nodefaults"])
        .args([
            "-display",
            "none",
            "-machine",
            "graphics=off",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-no-reboot")
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,bootfile=tftp://10.0.2.2:{tport}/chain.ipxe"
        ))
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=n0,mac={MAC},bootindex=1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut qemu = Qemu(Some(child));

    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    let mut log;
    let booted = loop {
        log = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
        // The Hook "kernel" (ipxe.lkrn) prints the iPXE banner a second time.
        if log.matches("iPXE initialising devices").count() >= 2 {
            break true;
        }
        if log.contains("BOOTSTEST tftp-binary-FAIL")
            || log.contains("BOOTSTEST chain-FAIL")
            || log.contains("No bootable device")
            || Instant::now() > deadline
        {
            break false;
        }
        if let Some(c) = qemu.0.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!("qemu exited early: {status}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let elapsed = start.elapsed();
    if let Some(mut c) = qemu.0.take() {
        let _ = c.kill().await;
    }
    let keep = std::env::temp_dir().join("boots-qemu-console.log");
    let _ = std::fs::write(&keep, &log);
    assert!(
        booted,
        "no boot after {elapsed:?}; console (also in {}):\n{log}",
        keep.display()
    );
    assert!(
        log.contains(&format!("BOOTSTEST chain-loaded {MAC}")),
        "{log}"
    );
    assert!(log.contains("BOOTSTEST tftp-binary-ok"), "{log}");
    let t = tftp.metrics();
    assert!(
        t.outcomes(Outcome::Completed) >= 2,
        "TFTP transfers: chain.ipxe and the binary"
    );
    let h = http.metrics();
    assert_eq!(h.get(Route::Script, 200), 1, "auto.ipxe fetched once");
    assert!(h.get(Route::Hookos, 200) >= 2, "kernel and initrd fetched");
    eprintln!("QEMU booted the Hook kernel from boots in {elapsed:?}");
}
