//! The `boots` binary with every UDP service off (a network with its own DHCP server and
//! iPXE elsewhere): it keeps serving HTTP — iPXE scripts, HookOS, logs, metrics — until
//! SIGTERM, then exits 0. (It used to return at once, as there was no UDP service to wait on.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn http_only_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_boots"))
        .args([
            "--dhcp-enabled=false",
            "--tftp-enabled=false",
            "--syslog-enabled=false",
            "--bind-address",
            "127.0.0.1",
            "--http-port",
            "0",
            // The store is only asked when a request needs a Hardware; /boots/metrics does not.
            "--server",
            "http://127.0.0.1:1",
        ])
        .arg("--token-file")
        .arg(&token)
        .env("TINKERBELL_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start boots");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line
            .trim()
            .strip_prefix("boots: iPXE, HookOS, logs and metrics on http://")
        {
            addr = Some(rest.to_string());
            break;
        }
        line.clear();
    }
    let addr = addr.unwrap_or_else(|| panic!("no HTTP address announced; last line {line:?}"));

    // Still up a moment later, and answering.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "boots exited on its own"
    );
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /boots/metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "boots did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
