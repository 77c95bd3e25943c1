//! The static `tink-worker` in an empty root filesystem, as in an initramfs that holds nothing
//! but the binary: the release binary built with `crt-static` is copied alone into an empty
//! directory and started there with `unshare --mount --root=DIR` (no /etc, no CA bundle, no
//! /proc, /dev, /sys or /tmp; an empty environment). It talks gRPC to a real tink server on
//! loopback and runs an image2disk workflow (zstd over http, sha256 checked) into `/disk.img`
//! inside that root; the workflow must reach POST and the disk must hold the image.
//!
//! What the worker needs from its root, as this test proves: nothing. The server and image
//! URLs are IP literals (a host name would need /etc/hosts or /etc/resolv.conf, which an
//! initramfs built by hookos/ has); without /proc it takes its identity from flags instead of
//! the kernel command line; without a CA bundle only http (or `--ca-file`) works.
//!
//! Building the static binary is a separate release build for another target, too slow for
//! every `cargo test`, so the test runs only when `TINK_WORKER_STATIC_BIN` names the binary.
//! scripts/test.sh builds it (as hookos/build.sh does) and sets the variable; without it the
//! test says SKIP. It needs root for `unshare --root`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tink::*;
use common::*;
use serde_json::json;
use sha2::Digest;

/// Env var naming the static binary under test.
const BIN_ENV: &str = "TINK_WORKER_STATIC_BIN";

/// Whether the ELF file has a PT_INTERP program header (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    assert!(
        elf.len() > 64 && elf.starts_with(b"\x7fELF") && elf[4] == 2,
        "not a 64-bit ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_worker_completes_a_workflow_in_an_empty_root() {
    let Some(bin) = std::env::var_os(BIN_ENV) else {
        eprintln!(
            "SKIP static_worker_completes_a_workflow_in_an_empty_root: set {BIN_ENV} to a \
             static tink-worker (scripts/test.sh does)"
        );
        return;
    };
    if !root_or_skip("static_root") || !tool_or_skip("static_root", "unshare") {
        return;
    }
    let elf = std::fs::read(&bin).unwrap_or_else(|e| panic!("{BIN_ENV}={bin:?}: {e}"));
    assert!(
        !has_interpreter(&elf),
        "{bin:?} is dynamically linked (it has an ELF interpreter): build it with \
         RUSTFLAGS='-C target-feature=+crt-static' --target x86_64-unknown-linux-gnu"
    );

    // The root: the binary and nothing else.
    let root = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("tink-worker"), &elf).unwrap();
    std::fs::set_permissions(
        root.path().join("tink-worker"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let srv = Server::start().await;
    let data = image(64); // 4 MiB, a third zero blocks
    srv.put("img.raw.zst", &zstd::encode_all(&data[..], 3).unwrap());
    let sha = hex::encode(sha2::Sha256::digest(
        std::fs::read(srv.dir.path().join("img.raw.zst")).unwrap(),
    ));
    let env = Env::new();
    env.workflow(
        "wf-static",
        &[(
            "disk",
            json!({"IMG_URL": srv.url("f", "img.raw.zst"), "DEST_DISK": "/disk.img",
                   "IMG_SHA256": sha}),
        )],
    )
    .await;
    let (server, cancel) = env.start("127.0.0.1:0".parse().unwrap()).await;

    let stderr = std::fs::File::create(logs.path().join("stderr")).unwrap();
    let mut worker = Worker(
        Command::new("unshare")
            .arg("--mount")
            .arg(format!("--root={}", root.path().display()))
            .arg("/tink-worker")
            .args(["--id", AGENT, "--tinkerbell-grpc-authority"])
            .arg(server.local_addr().to_string())
            .args(["--tinkerbell-tls", "false", "--worker-token"])
            .arg(env.key.token_for(AGENT))
            .args(["--retry-interval", "1s", "--backoff-max-interval", "2s"])
            .args(["--no-power", "--log-level", "debug"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting unshare"),
    );
    let log = || std::fs::read_to_string(logs.path().join("stderr")).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(90);
    let st = loop {
        let st = env.status("wf-static").await;
        if matches!(st.state.as_deref(), Some("POST" | "FAILED" | "TIMEOUT")) {
            break st;
        }
        if let Some(exit) = worker.0.try_wait().unwrap() {
            panic!("the worker exited ({exit}) in the empty root:\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "no POST within 90 s: {st:?}\nworker log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        st.state.as_deref(),
        Some("POST"),
        "{st:?}\nworker log:\n{}",
        log()
    );
    assert_eq!(action_states(&st), ["SUCCESS"]);
    assert!(
        std::fs::read(root.path().join("disk.img")).unwrap() == data,
        "/disk.img in the root differs from the image"
    );

    // SIGTERM: a clean exit, and the root holds only what the workflow wrote.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = worker.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < stopped, "no exit within 20 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit after SIGTERM: {exit}\n{}", log());
    let mut left: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["disk.img", "tink-worker"],
        "files the worker created"
    );
    cancel.cancel();
    server.join().await.unwrap();
}
