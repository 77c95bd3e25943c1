//! image2disk against a loopback HTTP server: every compression byte-identical, checksum
//! verified, truncation/404/mislabelled data FAILED, timeout honoured, a loop device target.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tinkerbell_tink_worker::actions::{self, Outcome};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "quay.io/tinkerbell/actions/image2disk:latest";

fn compress(data: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 0);
    xz.write_all(data).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(data).unwrap();
    vec![
        ("img.raw.gz", gz.finish().unwrap()),
        ("img.raw.xz", xz.finish().unwrap()),
        ("img.raw.bz2", bz.finish().unwrap()),
        ("img.raw.zst", zstd::encode_all(data, 1).unwrap()),
    ]
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[tokio::test]
async fn every_compression_is_byte_identical() {
    let srv = Server::start().await;
    let data = image(40);
    let out = tempfile::tempdir().unwrap();
    for (name, bytes) in compress(&data) {
        srv.put(name, &bytes);
        let dest = out.path().join(name);
        let o = run(&spec(
            IMAGE,
            &[
                ("IMG_URL", &srv.url("f", name)),
                ("DEST_DISK", dest.to_str().unwrap()),
                ("COMPRESSED", "true"),
                ("IMG_SHA256", &sha256(&bytes)),
            ],
        ))
        .await;
        assert_success(&o);
        assert!(
            std::fs::read(&dest).unwrap() == data,
            "{name}: output differs"
        );
    }
}

#[tokio::test]
async fn raw_sparse_and_full_write_agree_and_progress_is_reported() {
    let srv = Server::start().await;
    let data = image(30);
    srv.put("img.raw", &data);
    let out = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut ctx = ctx();
    let s2 = seen.clone();
    ctx.progress = Arc::new(move |_, p| s2.lock().unwrap().push(p));
    ctx.progress_interval = Duration::ZERO;
    for sparse in ["true", "false"] {
        let dest = out.path().join(sparse);
        // A dirty target: sparse writing must still leave zeroes where the image has them.
        std::fs::write(&dest, vec![0xAAu8; data.len() + 4096]).unwrap();
        let o = actions::run(
            &spec(
                IMAGE,
                &[
                    ("IMG_URL", &srv.url("f", "img.raw")),
                    ("DEST_DISK", dest.to_str().unwrap()),
                    ("SPARSE", sparse),
                ],
            ),
            &ctx,
            &CancellationToken::new(),
        )
        .await;
        assert_success(&o);
        let back = std::fs::read(&dest).unwrap();
        assert!(back[..data.len()] == data[..], "sparse={sparse}");
        assert!(back[data.len()..].iter().all(|&b| b == 0xAA), "tail kept");
    }
    let seen = seen.lock().unwrap();
    let last = seen.last().expect("progress reported");
    assert_eq!(last.written, data.len() as u64);
    assert_eq!(last.read_total, Some(data.len() as u64));
    assert!(
        seen.iter().any(|p| p.zero_skipped == 10 * 65536),
        "{:?}",
        seen.last()
    );
}

#[tokio::test]
async fn checksum_mismatch_is_failed() {
    let srv = Server::start().await;
    let data = image(4);
    srv.put("img.raw", &data);
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("d");
    let m = failed_message(
        run(&spec(
            IMAGE,
            &[
                ("IMG_URL", &srv.url("f", "img.raw")),
                ("DEST_DISK", dest.to_str().unwrap()),
                ("IMG_CHECKSUM", &format!("sha256:{}", "0".repeat(64))),
            ],
        ))
        .await,
    );
    assert!(m.contains("sha256 mismatch"), "{m}");
    assert!(m.contains(&sha256(&data)), "{m}");
}

#[tokio::test]
async fn connection_cut_halfway_is_failed() {
    let srv = Server::start().await;
    let data = image(20);
    let out = tempfile::tempdir().unwrap();
    for (name, bytes) in [("img.raw", data.clone())].into_iter().chain(
        compress(&data)
            .into_iter()
            .filter(|(n, _)| n.ends_with(".zst") || n.ends_with(".gz")),
    ) {
        srv.put(name, &bytes);
        let dest = out.path().join(name);
        let m = failed_message(
            run(&spec(
                IMAGE,
                &[
                    ("IMG_URL", &srv.url("cut", name)),
                    ("DEST_DISK", dest.to_str().unwrap()),
                    (
                        "COMPRESSED",
                        if name == "img.raw" { "false" } else { "true" },
                    ),
                ],
            ))
            .await,
        );
        assert!(m.contains("/cut/"), "{name}: {m}");
    }
}

#[tokio::test]
async fn not_found_names_the_url() {
    let srv = Server::start().await;
    let url = srv.url("f", "missing.raw.gz");
    let m = failed_message(
        run(&spec(
            IMAGE,
            &[
                ("IMG_URL", &url),
                ("DEST_DISK", "/nonexistent/x"),
                ("COMPRESSED", "true"),
            ],
        ))
        .await,
    );
    assert!(m.contains(&url) && m.contains("404"), "{m}");
}

#[tokio::test]
async fn mislabelled_and_unknown_extensions_are_failed() {
    let srv = Server::start().await;
    let data = image(2);
    let gz = compress(&data).remove(0).1;
    srv.put("img.raw.zst", &gz);
    srv.put("img.raw.lz4", &gz);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("d");
    let m = failed_message(
        run(&spec(
            IMAGE,
            &[
                ("IMG_URL", &srv.url("f", "img.raw.zst")),
                ("DEST_DISK", dest.to_str().unwrap()),
                ("COMPRESSED", "true"),
            ],
        ))
        .await,
    );
    assert!(m.contains("expected zstd") && m.contains("gzip"), "{m}");
    let m = failed_message(
        run(&spec(
            IMAGE,
            &[
                ("IMG_URL", &srv.url("f", "img.raw.lz4")),
                ("DEST_DISK", dest.to_str().unwrap()),
                ("COMPRESSED", "true"),
            ],
        ))
        .await,
    );
    assert!(m.contains("no known extension"), "{m}");
    let m = failed_message(run(&spec(IMAGE, &[("DEST_DISK", "/x")])).await);
    assert!(m.contains("IMG_URL is required"), "{m}");
}

#[tokio::test]
async fn timeout_stops_the_action() {
    let srv = Server::start().await;
    srv.put("big.raw", &image(100)); // 100 chunks at 100 ms each: 10 s
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("d");
    let mut s = spec(
        IMAGE,
        &[
            ("IMG_URL", &srv.url("slow", "big.raw")),
            ("DEST_DISK", dest.to_str().unwrap()),
        ],
    );
    s.timeout = Duration::from_millis(700);
    let t = std::time::Instant::now();
    let o = run(&s).await;
    assert_eq!(o, Outcome::Timeout);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stopped promptly: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn loop_device_target() {
    if !root_or_skip("loop_device_target") || !tool_or_skip("loop_device_target", "losetup") {
        return;
    }
    let srv = Server::start().await;
    let data = image(60);
    let zst = zstd::encode_all(&data[..], 3).unwrap();
    srv.put("img.raw.zst", &zst);
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("disk");
    // Dirty disk: the zero blocks of the image must read back as zeroes (BLKZEROOUT).
    std::fs::write(&backing, vec![0x5Au8; 8 << 20]).unwrap();
    let lo = Loop::attach(&backing);
    let o = run(&spec(
        IMAGE,
        &[
            ("IMG_URL", &srv.url("f", "img.raw.zst")),
            ("DEST_DISK", lo.dev.to_str().unwrap()),
            ("COMPRESSED", "true"),
        ],
    ))
    .await;
    assert_success(&o);
    let mut back = vec![0u8; data.len()];
    let f = std::fs::File::open(&lo.dev).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut back, 0).unwrap();
    assert!(back == data, "loop device content differs");
}
