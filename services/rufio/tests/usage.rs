//! The `rufio` binary's usage errors: exit code 2 and a message naming the flag, before any
//! backend is contacted.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rufio"))
        .args(args)
        .env_remove("TINKERBELL_BACKEND")
        .output()
        .expect("run rufio");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn leader_election_without_kube_is_a_usage_error() {
    let (code, err) = run(&[
        "--rufio-enable-leader-election",
        "--data-dir",
        "/nonexistent",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--rufio-enable-leader-election") && err.contains("--backend kube"),
        "{err}"
    );
}

#[test]
fn bad_durations_and_log_levels_are_usage_errors() {
    let (code, err) = run(&[
        "--rufio-power-check-interval",
        "0s",
        "--data-dir",
        "/nonexistent",
    ]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["--log-level", "x=[", "--data-dir", "/nonexistent"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--log-level"), "{err}");
}

#[test]
fn an_unreachable_store_is_a_failure_not_a_usage_error() {
    let (code, err) = run(&["--data-dir", "/nonexistent"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("api-token"), "{err}");
}
