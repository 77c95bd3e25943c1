//! qemuimg2disk with qcow2 fixtures made by `qemu-img` (plain, zlib and zstd clusters, small
//! clusters spanning several L2 tables), from a local file and over HTTP Range requests:
//! byte-identical output. Backing files are refused.

mod common;

use common::*;

const IMAGE: &str = "quay.io/tinkerbell/actions/qemuimg2disk:latest";

#[tokio::test]
async fn qcow2_fixtures_convert_byte_identically() {
    if !tool_or_skip("qcow2_fixtures", "qemu-img") {
        return;
    }
    let srv = Server::start().await;
    let data = image(50); // 3.2 MB, odd tail
    // qemu-img wants whole sectors.
    let data = data[..data.len() / 512 * 512].to_vec();
    let raw = srv.put("src.raw", &data);
    let d = srv.dir.path().display().to_string();
    let variants = [
        ("plain.qcow2", "-o cluster_size=65536"),
        ("zlib.qcow2", "-c -o cluster_size=65536"),
        (
            "zstd.qcow2",
            "-c -o compression_type=zstd,cluster_size=65536",
        ),
        ("small.qcow2", "-c -o cluster_size=4096"), // 2 MiB per L2 table: two tables
        ("v2.qcow2", "-o compat=0.10,cluster_size=16384"),
    ];
    for (name, opts) in variants {
        sh(&format!(
            "qemu-img convert -q -f raw -O qcow2 {opts} {} {d}/{name}",
            raw.display()
        ));
    }
    let out = tempfile::tempdir().unwrap();
    for (name, _) in variants {
        for via in ["file", "http"] {
            let src = match via {
                "file" => format!("{d}/{name}"),
                _ => srv.url("f", name),
            };
            let dest = out.path().join(format!("{via}-{name}"));
            let o = run(&spec(
                IMAGE,
                &[("IMG_URL", &src), ("DEST_DISK", dest.to_str().unwrap())],
            ))
            .await;
            assert_success(&o);
            let back = std::fs::read(&dest).unwrap();
            assert_eq!(back.len(), data.len(), "{via} {name}: size");
            assert!(back == data, "{via} {name}: content differs");
        }
    }
    // A raw source is copied as is.
    let dest = out.path().join("raw");
    let o = run(&spec(
        IMAGE,
        &[
            ("IMG_URL", &srv.url("f", "src.raw")),
            ("DEST_DISK", dest.to_str().unwrap()),
        ],
    ))
    .await;
    assert_success(&o);
    assert!(std::fs::read(&dest).unwrap() == data);
}

#[tokio::test]
async fn backing_files_are_refused() {
    if !tool_or_skip("backing_files", "qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    sh(&format!(
        "qemu-img create -q -f qcow2 {d}/base.qcow2 1M && qemu-img create -q -f qcow2 -b {d}/base.qcow2 -F qcow2 {d}/top.qcow2"
    ));
    let m = failed_message(
        run(&spec(
            IMAGE,
            &[
                ("IMG_URL", &format!("{d}/top.qcow2")),
                ("DEST_DISK", &format!("{d}/out")),
            ],
        ))
        .await,
    );
    assert!(m.contains("backing file"), "{m}");
}
