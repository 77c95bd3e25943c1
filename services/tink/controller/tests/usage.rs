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

/// A cluster the controller cannot work on stops it at start-up with the cause (exit 1), on
/// the real kube-apiserver of the test run: a user RBAC gives nothing, a namespace that does
/// not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_cluster_is_one_message_and_exit_1() {
    let Some(env) = tinkerbell_core::testing::test_kube("tink-controller-unusable").await else {
        return;
    };
    let nobody = env
        .nobody_kubeconfig()
        .expect("kube.sh writes kubeconfig-nobody");
    let kube = |config: &std::path::Path, ns: &str| {
        run(&[
            "--backend",
            "kube",
            "--backend-kube-config",
            config.to_str().unwrap(),
            "--backend-kube-namespace",
            ns,
        ])
    };
    let (code, err) = kube(&nobody, &env.namespace);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("RBAC forbids it") && err.contains("\"nobody\""),
        "{err}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "one message, not a stack of retries: {err}"
    );
    let (code, err) = kube(&env.kubeconfig, "no-such-namespace");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}
