//! `tinkerbell bmc` ad hoc against real emulators: OpenIPMI `ipmi_sim` and sushy-tools'
//! `sushy-emulator`. Failures exit 1 and say which class of failure it was.

#[path = "../../services/rufio/tests/common/mod.rs"]
mod common;

use std::process::Output;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tinkerbell");

fn bmc(args: &[&str], password: &str) -> Output {
    std::process::Command::new(BIN)
        .arg("bmc")
        .args(args)
        .env("TEST_BMC_PW", password)
        .output()
        .expect("run tinkerbell")
}

fn ok(args: &[&str]) -> String {
    let out = bmc(args, common::IPMI_PASSWORD);
    assert!(
        out.status.success(),
        "tinkerbell bmc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str], password: &str, class: &str) {
    let out = bmc(args, password);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        stderr.contains(&format!("error: {class}: ")),
        "{args:?}: wanted {class:?} in {stderr}"
    );
    assert!(!stderr.contains(password), "password in the message");
}

#[tokio::test]
async fn ipmi_power_and_bootdev() {
    let sim = common::IpmiSim::start(4);
    sim.ready().await;
    let port = sim.port.to_string();
    let target = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            "admin",
            "--password-env",
            "TEST_BMC_PW",
            "--protocol",
            "ipmi",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |pre: &[&str], extra: &[&'static str]| -> String {
        let mut a: Vec<String> = pre.iter().map(|s| s.to_string()).collect();
        a.extend(target(extra));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&refs)
    };
    assert_eq!(run(&["power", "status"], &[]).trim(), "off");
    run(&["power", "on"], &["--cipher-suite", "3"]);
    assert_eq!(run(&["power", "status"], &[]).trim(), "on");
    run(&["power", "cycle"], &[]);
    run(&["power", "off"], &[]);
    assert_eq!(run(&["power", "status"], &[]).trim(), "off");
    run(&["bootdev", "pxe"], &["--persistent", "--efi"]);
    assert_eq!(
        std::fs::read_to_string(sim.path("boot")).unwrap().trim(),
        "pxe"
    );
    run(&["bootdev", "disk"], &[]);
    assert_eq!(
        std::fs::read_to_string(sim.path("boot")).unwrap().trim(),
        "default"
    );

    // Failures, each named.
    let a = target(&[]);
    let mut args: Vec<&str> = vec!["power", "status"];
    args.extend(a.iter().map(String::as_str));
    fails(&args, "wrong-password", "authentication refused");
    let mut s17 = args.clone();
    s17.extend(["--cipher-suite", "17"]);
    fails(&s17, common::IPMI_PASSWORD, "unsupported");
}

#[tokio::test]
async fn unreachable_and_timed_out() {
    let closed = common::free_udp_port().to_string();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port().to_string();
    let base = |port: &str| -> Vec<String> {
        [
            "power",
            "status",
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--user",
            "admin",
            "--password-env",
            "TEST_BMC_PW",
            "--timeout",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let a = base(&closed);
    fails(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        "pw",
        "unreachable",
    );
    let a = base(&silent_port);
    let start = std::time::Instant::now();
    fails(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        "pw",
        "timed out",
    );
    assert!(start.elapsed() < Duration::from_secs(6));
    // No password in the environment: a usage problem, said plainly.
    let out = std::process::Command::new(BIN)
        .args([
            "bmc",
            "power",
            "status",
            "--host",
            "h",
            "--user",
            "u",
            "--password-env",
            "NO_SUCH_VAR_XYZ",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NO_SUCH_VAR_XYZ"));
}

#[tokio::test]
async fn redfish_power_and_bootdev() {
    let s = common::Sushy::start(false);
    s.ready().await;
    let port = s.port.to_string();
    let args = |pre: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = pre.iter().map(|s| s.to_string()).collect();
        v.extend(
            [
                "--host",
                "http://127.0.0.1",
                "--port",
                &port,
                "--user",
                "admin",
                "--password-env",
                "TEST_BMC_PW",
                "--protocol",
                "redfish",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        v
    };
    let run = |pre: &[&str]| {
        let a = args(pre);
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert_eq!(run(&["power", "status"]).trim(), "off");
    run(&["bootdev", "pxe", "--efi"]);
    run(&["power", "on"]);
    let a = args(&["power", "status"]);
    fails(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        "wrong",
        "authentication refused",
    );
}
