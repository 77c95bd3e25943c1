//! The `tink-controller` binary's usage errors: exit code 2 and a message naming the flag,
//! before any backend is contacted.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tink-controller"))
        .args(args)
        .env_remove("TINKERBELL_BACKEND")
        .output()
        .expect("run tink-controller");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    for (args, flag) in [
        (
            &["--tink-controller-enable-leader-election"][..],
            "--tink-controller-enable-leader-election",
        ),
        (&["--resync-seconds", "0"][..], "--resync-seconds"),
    ] {
        let mut args = args.to_vec();
        args.extend(["--data-dir", "/nonexistent"]);
        let (code, err) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    let (code, err) = run(&["--data-dir", "/nonexistent"]);
    assert_eq!(code, Some(1), "an unreachable store is a failure: {err}");
}
