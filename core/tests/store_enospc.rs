//! A full disk does not wedge the embedded store: on a small tmpfs filled until a commit fails,
//! the failing write is refused and nothing of it shows, the store reports itself failing
//! (health, store API `/healthz` 503 and `/metrics`), and once space is freed the next write
//! works again without a restart (redb refuses every write of a handle whose commit failed, so
//! the store reopens it). Everything acknowledged is on disk after a reopen.
//!
//! Needs root (mount). Without it the test fails when CI is set and is skipped otherwise.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::json;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store, StoreError};
use tinkerbell_core::testing::is_root;

/// A tmpfs of `size` mounted on a new directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs");
        Tmpfs(dir)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn bulk_secret(name: &str, kib: usize) -> Object {
    // A Secret: any kind works; this one carries bulk without schema checks.
    Object::from_json(
        Kind::Secret,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"},
            "type": "Opaque",
            "stringData": {"blob": "x".repeat(kib * 1024)}
        }),
    )
    .unwrap()
}

async fn get_json(url: &str) -> (u16, String) {
    tinkerbell_edge::tls::install_crypto_provider();
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_a_write_then_writes_work_again() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "store_enospc needs root under CI"
        );
        eprintln!("SKIP: store_enospc needs root (mount a tmpfs)");
        return;
    }
    let fs = Tmpfs::mount("8m");
    let data = fs.path().join("data");
    let store = EmbeddedStore::open(&data).unwrap();
    let api_store: Arc<dyn tinkerbell_core::store::Backend> = Arc::new(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tinkerbell_core::api::router(api_store, "t0ken", Default::default());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    assert_eq!(get_json(&format!("{base}/healthz")).await.0, 200);

    // Most of the space goes to a filler file, then writes until one fails.
    let filler = fs.path().join("filler");
    let st = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=5", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..200 {
        let name = format!("s{i}");
        match store.create(bulk_secret(&name, 64)).await {
            Ok(_) => acked.push(name),
            Err(e) => {
                failure = Some((name, e));
                break;
            }
        }
    }
    let (failed_name, e) = failure.expect("the tmpfs filled up");
    assert!(matches!(e, StoreError::Database { .. }), "{e:?}");
    assert!(!acked.is_empty(), "some writes fitted");
    // Nothing of the failed write shows; the store says it is failing.
    assert!(matches!(
        store.get(Kind::Secret, "default", &failed_name).await,
        Err(StoreError::NotFound(_))
    ));
    let h = store.health();
    assert!(h.failing.is_some() && h.write_failures >= 1, "{h:?}");
    let (code, body) = get_json(&format!("{base}/healthz")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("store writes failing"), "{body}");
    let (_, metrics) = get_json(&format!("{base}/metrics")).await;
    assert!(metrics.contains("tinkerbell_store_writable 0"), "{metrics}");

    // Space freed: the next write works (the old code answered PreviousIo forever).
    std::fs::remove_file(&filler).unwrap();
    store
        .create(bulk_secret(&failed_name, 64))
        .await
        .expect("writes work again once space is freed");
    acked.push(failed_name);
    assert_eq!(store.health().failing, None);
    assert_eq!(get_json(&format!("{base}/healthz")).await.0, 200);
    let (_, metrics) = get_json(&format!("{base}/metrics")).await;
    assert!(metrics.contains("tinkerbell_store_writable 1"), "{metrics}");

    // Everything acknowledged is durable.
    server.abort();
    let _ = server.await;
    drop(store);
    // The server's connection tasks (keep-alive) hold the router's store a little longer than
    // the aborted accept loop: the file stays locked until the last of them is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let again = loop {
        match EmbeddedStore::open(&data) {
            Ok(s) => break s,
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reopening: {e}"),
        }
    };
    let have = again
        .list(Kind::Secret, Some("default"))
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(have, acked.len());
}
