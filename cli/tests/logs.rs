//! `tinkerbell logs HARDWARE` against a running `tinkerbell serve --syslog-enabled`: lines a
//! machine sends to the syslog port are shown under its Hardware name; an unknown name fails.

use std::net::UdpSocket;
use std::process::Stdio;

use common::{Killed, run, serve_on_loopback};
use std::time::{Duration, Instant};

mod common;

#[test]
fn logs_shows_what_a_machine_sent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A free UDP port for the receiver (serve prints, but does not write, the bound port).
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let _serve = Killed(
        serve_on_loopback(d)
            .args(["--syslog-enabled", "--syslog-bind-addr", "127.0.0.1"])
            .args(["--syslog-bind-port", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.join("http-url").exists() {
        assert!(Instant::now() < deadline, "serve did not write http-url");
        std::thread::sleep(Duration::from_millis(50));
    }
    let hw = d.join("hw.yaml");
    std::fs::write(
        &hw,
        "apiVersion: tinkerbell.org/v1alpha1\nkind: Hardware\nmetadata: {name: node1, namespace: default}\n\
         spec:\n  interfaces:\n  - dhcp: {mac: \"02:00:00:00:00:01\", ip: {address: 127.0.0.1, family: 4}}\n",
    )
    .unwrap();
    let out = run(d, &["apply", "-f", &hw.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = format!("127.0.0.1:{port}");
    s.send_to(
        b"<30>Nov 24 00:00:00 node1 tink-agent[7]: action 1 done",
        &to,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let stdout = loop {
        let out = run(d, &["logs", "node1"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.contains("action 1 done") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no line: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(stdout.contains("tink-agent[7]: action 1 done"), "{stdout}");

    let out = run(d, &["logs", "ghost"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no logs"));
}
