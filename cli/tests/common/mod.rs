//! What the CLI tests share: the binary, its fixtures, and running it on a data directory.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_tinkerbell");

/// The path of `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tinkerbell --data-dir <dir> serve` on loopback with free ports (store API, HTTP, tink
/// gRPC); the caller adds flags and stdio, and spawns it.
pub fn serve_on_loopback(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(dir).args([
        "serve",
        "--store-api-addr",
        "127.0.0.1:0",
        "--bind-address",
        "127.0.0.1",
        "--http-port",
        "0",
        "--tink-server-bind-port",
        "0",
    ]);
    cmd
}

/// `tinkerbell --data-dir <dir> <args>`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run tinkerbell")
}

/// [`run`], which must succeed; its stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "tinkerbell {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
