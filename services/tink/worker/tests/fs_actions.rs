//! The file-level actions against real ext4 filesystems on loop devices (root only): writefile
//! (mode, owner, new directories), archive2disk (tar.gz with checksum; mismatch FAILED), cexec
//! (a chrooted busybox), and kexec/reboot refusing when power actions are disabled.

mod common;

use std::path::Path;

use common::*;

/// An ext4 image of 32 MiB on a loop device (optionally populated from `root_dir`).
fn ext4(dir: &Path, root_dir: Option<&Path>) -> Loop {
    let img = dir.join("fs.img");
    let populate = root_dir
        .map(|r| format!("-d {}", r.display()))
        .unwrap_or_default();
    sh(&format!(
        "truncate -s 32M {0} && mkfs.ext4 -q -F {populate} {0}",
        img.display()
    ));
    Loop::attach(&img)
}

fn debugfs(dev: &Path, req: &str) -> String {
    sh(&format!("debugfs -R '{req}' {} 2>/dev/null", dev.display()))
}

fn ready(test: &str) -> bool {
    root_or_skip(test)
        && tool_or_skip(test, "losetup")
        && tool_or_skip(test, "mkfs.ext4")
        && tool_or_skip(test, "debugfs")
}

#[tokio::test]
async fn writefile_into_ext4() {
    if !ready("writefile_into_ext4") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lo = ext4(dir.path(), None);
    let o = run(&spec(
        "quay.io/tinkerbell/actions/writefile:latest",
        &[
            ("DEST_DISK", lo.dev.to_str().unwrap()),
            ("FS_TYPE", "ext4"),
            ("DEST_PATH", "/etc/netplan/config.yaml"),
            ("CONTENTS", "network:\n  version: 2\n"),
            ("MODE", "0600"),
            ("UID", "1000"),
            ("GID", "1001"),
            ("DIRMODE", "0750"),
        ],
    ))
    .await;
    assert_success(&o);
    assert_eq!(
        debugfs(&lo.dev, "cat /etc/netplan/config.yaml"),
        "network:\n  version: 2\n"
    );
    let st = debugfs(&lo.dev, "stat /etc/netplan/config.yaml");
    assert!(
        st.contains("Mode:  0600") && st.contains("User:  1000") && st.contains("Group:  1001"),
        "{st}"
    );
    let st = debugfs(&lo.dev, "stat /etc/netplan");
    assert!(st.contains("Mode:  0750"), "{st}");
    let m = failed_message(
        run(&spec(
            "writefile",
            &[
                ("DEST_DISK", lo.dev.to_str().unwrap()),
                ("FS_TYPE", "ext4"),
                ("DEST_PATH", "/../escape"),
            ],
        ))
        .await,
    );
    assert!(m.contains("'..'"), "{m}");
}

#[tokio::test]
async fn archive2disk_targz_with_checksum() {
    if !ready("archive2disk") {
        return;
    }
    let srv = Server::start().await;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, body, mode) in [
        ("etc/hostname", &b"node1\n"[..], 0o644),
        ("usr/bin/tool", &b"#!/bin/sh\n"[..], 0o755),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, path, body).unwrap();
    }
    let tgz = tar.into_inner().unwrap().finish().unwrap();
    srv.put("root.tar.gz", &tgz);
    let sum = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&tgz))
    };
    let dir = tempfile::tempdir().unwrap();
    let lo = ext4(dir.path(), None);
    let env = |checksum: String| {
        spec(
            "quay.io/tinkerbell/actions/archive2disk:latest",
            &[
                ("ARCHIVE_URL", &srv.url("f", "root.tar.gz")),
                ("ARCHIVE_TYPE", "targz"),
                ("DEST_DISK", lo.dev.to_str().unwrap()),
                ("FS_TYPE", "ext4"),
                ("DEST_PATH", "/"),
                ("TARFILE_CHECKSUM", &checksum),
            ],
        )
    };
    assert_success(&run(&env(format!("sha256:{sum}"))).await);
    assert_eq!(debugfs(&lo.dev, "cat /etc/hostname"), "node1\n");
    assert!(debugfs(&lo.dev, "stat /usr/bin/tool").contains("Mode:  0755"));
    let m = failed_message(run(&env(format!("sha256:{}", "1".repeat(64)))).await);
    assert!(m.contains("sha256 mismatch"), "{m}");
}

#[tokio::test]
async fn cexec_runs_chrooted() {
    if !ready("cexec_runs_chrooted") || !tool_or_skip("cexec_runs_chrooted", "busybox") {
        return;
    }
    let busybox = sh("command -v busybox").trim().to_string();
    if !sh(&format!("ldd {busybox} 2>&1 || true")).contains("not a dynamic") {
        assert!(
            std::env::var_os("CI").is_none(),
            "busybox must be static (busybox-static) under CI"
        );
        eprintln!("SKIP cexec_runs_chrooted: busybox is not static");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let lo = ext4(dir.path(), Some(&root));
    let o = run(&spec(
        "quay.io/tinkerbell/actions/cexec:latest",
        &[
            ("BLOCK_DEVICE", lo.dev.to_str().unwrap()),
            ("FS_TYPE", "ext4"),
            ("CHROOT", "y"),
            ("DEFAULT_INTERPRETER", "/bin/sh -c"),
            (
                "CMD_LINE",
                "echo chrooted > /marker && test -x /bin/busybox",
            ),
        ],
    ))
    .await;
    assert_success(&o);
    assert_eq!(debugfs(&lo.dev, "cat /marker"), "chrooted\n");
    let m = failed_message(
        run(&spec(
            "cexec",
            &[
                ("BLOCK_DEVICE", lo.dev.to_str().unwrap()),
                ("FS_TYPE", "ext4"),
                ("DEFAULT_INTERPRETER", "/bin/sh -c"),
                ("CMD_LINE", "echo boom >&2; exit 3"),
            ],
        ))
        .await,
    );
    assert!(m.contains("boom") && m.contains('3'), "{m}");
}

#[tokio::test]
async fn power_actions_refuse_when_disabled() {
    let m = failed_message(run(&spec("127.0.0.1/embedded/reboot", &[])).await);
    assert!(m.contains("power actions are disabled"), "{m}");
    if !ready("kexec_refuses") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("boot/vmlinuz"), b"not a kernel").unwrap();
    let lo = ext4(dir.path(), Some(&root));
    let base = [
        ("BLOCK_DEVICE", lo.dev.to_str().unwrap()),
        ("FS_TYPE", "ext4"),
    ];
    let mut env = base.to_vec();
    env.push(("KERNEL_PATH", "/boot/missing"));
    let m = failed_message(run(&spec("kexec", &env)).await);
    assert!(m.contains("/boot/missing"), "{m}");
    let mut env = base.to_vec();
    env.push(("KERNEL_PATH", "/boot/vmlinuz"));
    let m = failed_message(run(&spec("kexec", &env)).await);
    assert!(m.contains("power actions are disabled"), "{m}");
}
