//! Shared test helpers: a loopback HTTP server over a directory (with Range support, a route
//! that cuts the body halfway and one that trickles), images, loop devices, and the gate for
//! tests that need root.
#![allow(dead_code)]

pub mod tink;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tinkerbell_tink_worker::actions::{ActionContext, ActionSpec, HttpSettings, Outcome};
use tokio_util::sync::CancellationToken;

/// A server on 127.0.0.1 serving `dir` at `/f/…`, `/cut/<name>` (Content-Length of the
/// whole file, then half of it and a dropped connection) and `/slow/<name>` (64 KiB every
/// 100 ms).
pub struct Server {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Server {
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root: Arc<PathBuf> = Arc::new(dir.path().to_path_buf());
        let app = Router::new()
            .nest_service("/f", tower_http::services::ServeDir::new(dir.path()))
            .route("/cut/{name}", get(cut))
            .route("/slow/{name}", get(slow))
            .with_state(root);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await
                .unwrap();
        });
        Server { addr, dir, stop }
    }

    pub fn put(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    pub fn url(&self, route: &str, name: &str) -> String {
        format!("http://{}/{route}/{name}", self.addr)
    }
}

async fn cut(State(root): State<Arc<PathBuf>>, UrlPath(name): UrlPath<String>) -> Response {
    let data = std::fs::read(root.join(&name)).unwrap();
    let half = bytes::Bytes::from(data[..data.len() / 2].to_vec());
    let stream = futures::stream::iter([
        Ok::<_, std::io::Error>(half),
        Err(std::io::Error::other("cut")),
    ]);
    (
        [(header::CONTENT_LENGTH, data.len().to_string())],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn slow(State(root): State<Arc<PathBuf>>, UrlPath(name): UrlPath<String>) -> Response {
    let Ok(data) = std::fs::read(root.join(&name)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let chunks: Vec<bytes::Bytes> = data
        .chunks(64 * 1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let stream = futures::StreamExt::then(futures::stream::iter(chunks), |c| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(c)
    });
    Body::from_stream(stream).into_response()
}

/// A deterministic image of `blocks` 64 KiB blocks: every third block zero, the rest
/// pseudo-random (xorshift), and a 1000-byte odd tail.
pub fn image(blocks: usize) -> Vec<u8> {
    let mut v = vec![0u8; blocks * 65536 + 1000];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for (i, chunk) in v.chunks_mut(65536).enumerate() {
        if i % 3 == 1 {
            continue;
        }
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    v
}

pub fn spec(image: &str, env: &[(&str, &str)]) -> ActionSpec {
    ActionSpec {
        name: "test".into(),
        image: image.into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        command: Vec::new(),
        timeout: Duration::from_secs(60),
    }
}

pub fn ctx() -> ActionContext {
    let mut c = ActionContext::new(HttpSettings::default());
    c.allow_power = false;
    c
}

pub async fn run(spec: &ActionSpec) -> Outcome {
    tinkerbell_tink_worker::actions::run(spec, &ctx(), &CancellationToken::new()).await
}

pub fn assert_success(o: &Outcome) {
    assert!(
        matches!(o, Outcome::Success { .. }),
        "expected SUCCESS, got {o:?}"
    );
}

pub fn failed_message(o: Outcome) -> String {
    match o {
        Outcome::Failed(m) => m,
        other => panic!("expected FAILED, got {other:?}"),
    }
}

/// Whether root-only tests (loop devices, mounts) can run: as root yes; otherwise skip, or
/// fail under CI=true.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (loop devices, mount) and CI is set");
    }
    eprintln!("SKIP {test}: needs root");
    false
}

/// `tool` on PATH (or fail under CI / skip otherwise).
pub fn tool_or_skip(test: &str, tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {tool} is missing (scripts/install-deps.sh installs it) and CI is set");
    }
    eprintln!("SKIP {test}: {tool} not installed");
    false
}

/// A loop device over a file, detached on drop.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(file: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop {
            dev: PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
