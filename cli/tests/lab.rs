//! `tinkerbell lab` as a user runs it: the lab script built into the binary brings up a
//! machine with its IPMI BMC and the appliance serving the lab's bridge with the lab's
//! hardware.csv imported; `run` reaches that appliance from inside the namespace; `ipmi`
//! reaches the BMC; `down --purge` leaves no namespace and no state behind. The machine stays
//! powered off (netbooting it is tests/lab/e2e.sh's job).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tinkerbell");

fn lab(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .arg("lab")
        .args(args)
        .output()
        .expect("run tinkerbell lab")
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = lab(data, args);
    assert!(
        out.status.success(),
        "tinkerbell lab {args:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Downs the lab however the test ends.
struct Down<'a>(&'a Path);
impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = lab(self.0, &["down", "--purge"]);
    }
}

#[test]
fn up_run_ipmi_status_down() {
    let root = nix_is_root();
    let missing: Vec<&str> = ["qemu-system-x86_64", "ipmi_sim", "ipmitool"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !root || !missing.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with scripts/install-deps.sh's tools (missing: {missing:?})"
        );
        eprintln!("skipped: needs root, QEMU, ipmi_sim and ipmitool");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let _down = Down(data);

    let up = ok(
        data,
        &[
            "up",
            "--machines",
            "1",
            "--firmware",
            "bios",
            "--no-redfish",
        ],
    );
    assert!(up.contains("imported 1 rows"), "{up}");
    assert!(up.contains("lab-m1"), "{up}");

    // The appliance answers from inside the namespace with the lab's inventory.
    let hw = ok(data, &["run", "--", "get", "hardware"]);
    assert!(
        hw.contains("lab-m1") && hw.contains("52:54:00:99:00:01") && hw.contains("10.99.0.101"),
        "{hw}"
    );
    // A failing command keeps its exit code.
    let bad = lab(data, &["run", "--", "get", "hardware", "no-such-machine"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");

    let power = ok(data, &["ipmi", "m1", "power", "status"]);
    assert!(power.contains("Chassis Power is off"), "{power}");

    let status = ok(data, &["status"]);
    assert!(status.contains("appliance: running"), "{status}");

    // Bad input is named.
    let out = lab(data, &["up", "--machines", "1"]);
    assert!(!out.status.success(), "a second `up` must refuse");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already up"),
        "{out:?}"
    );

    let env = ok(data, &["env"]);
    let ns = env
        .lines()
        .find_map(|l| l.strip_prefix("LAB_NS="))
        .expect("LAB_NS")
        .to_string();
    ok(data, &["down", "--purge"]);
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&ns),
        "namespace {ns} is left"
    );
    assert!(!data.join("lab").exists(), "state is left");
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
