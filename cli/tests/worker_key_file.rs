//! `serve --worker-token-key-file` (TINKERBELL_WORKER_TOKEN_KEY_FILE, as boots' and
//! tink-server's): the all-in-one in a cluster reads the key from a mounted Secret, so every
//! replica and restart issues and accepts the same tokens. A key that is too short is refused
//! by name before serving; a good one is used, and no key is created in the data directory.

use std::time::{Duration, Instant};

mod common;

fn serve(data: &std::path::Path, key: &std::path::Path) -> std::process::Child {
    common::serve_on_loopback(data)
        .arg("--enable-rufio-controller=false")
        .env("TINKERBELL_WORKER_TOKEN_KEY_FILE", key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve")
}

#[test]
fn serve_takes_the_worker_token_key_from_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key = tmp.path().join("key");

    std::fs::write(&key, "too-short\n").unwrap();
    let out = serve(&data, &key).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("worker token key file {}", key.display()))
            && err.contains("at least 32"),
        "{err}"
    );

    std::fs::write(&key, format!("{}\n", "k".repeat(40))).unwrap();
    let mut child = serve(&data, &key);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("tink-grpc-url").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited with a good key file"
        );
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !data.join("worker-token-key").exists(),
        "serve created a key of its own although one was given"
    );
}
