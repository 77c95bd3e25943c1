//! Leader election on a real kube-apiserver (`TINKERBELL_TEST_KUBECONFIG`, see
//! `tinkerbell_core::testing`): two `rufio` processes with `--rufio-enable-leader-election`
//! against one OpenIPMI `ipmi_sim`, the leader killed with SIGKILL in the middle of a bmc Job.
//! The standby must take the `rufio` Lease over within the lease duration and finish the Job,
//! and the BMC must carry out every power command of the Job exactly once.
//!
//! The kill is placed exactly, by the BMC: its chassis_control hook (which `ipmi_sim` runs
//! synchronously, before it answers) appends each power command it carries out to
//! `power.log` — the count — and, at the armed command, sends SIGKILL to the leader's pid:
//! * `after`: the BMC carries the command out, then the leader dies before it hears back (the
//!   Task is claimed, the machine switched, nothing recorded): the new leader must not send it
//!   again;
//! * `lost`: the leader dies and its command never takes effect (as if it had died between
//!   claiming the Task and sending): the new leader must send it.
//!
//! Takeover times (from the kill, and from the dead leader's last `renewTime`) are printed.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{IPMI_PASSWORD, IPMI_USER, IpmiSim, free_udp_port, read_lines, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::{Value, json};
use tinkerbell_core::model::bmc::{condition_status, job_condition_type};
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_core::testing::{Replica, replica_logs};

/// controller-runtime's timing, which `rufio` uses (core/src/store/kube_lease.rs).
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// [`common::DEFAULT_HOOK`] plus the count (`power.log`) and the armed kill (`kill`: `N MODE
/// PID`, acting at the Nth power command).
const HOOK: &str = r#"#!/bin/sh
S=$(dirname "$0")
mc=$1; op=$2; shift 2; echo "$op $*" >> "$S/chassis.log"
case $op in
  get) for p in "$@"; do case $p in
         power) echo "power:$(cat "$S/power" 2>/dev/null || echo 0)" ;;
         boot) echo "boot:$(cat "$S/boot" 2>/dev/null || echo default)" ;;
         *) echo "bad parm $p"; exit 1 ;; esac; done ;;
  set) while [ $# -ge 2 ]; do p=$1 v=$2; shift 2; case $p in
         power)
           n=$(( $(cat "$S/power.log" 2>/dev/null | wc -l) + 1 ))
           if [ -f "$S/kill" ] && read at mode pid < "$S/kill" && [ "$n" = "$at" ]; then
             rm -f "$S/kill"
             if [ "$mode" = after ]; then echo "$v" >> "$S/power.log"; echo "$v" > "$S/power"; fi
             echo "killed $mode $v" >> "$S/chassis.log"
             kill -9 "$pid"
             exit 0
           fi
           echo "$v" >> "$S/power.log"; echo "$v" > "$S/power" ;;
         reset) echo 1 > "$S/power" ;;
         boot) echo "$v" > "$S/boot" ;;
         shutdown) echo 0 > "$S/power" ;;
         identify) ;;
         *) echo "bad parm $p"; exit 1 ;; esac; done ;;
  *) echo "bad op $op"; exit 1 ;;
esac
"#;

/// What `rufio` prints once it holds the Lease and has started its controllers.
const STARTED: &str = "rufio: reconciling bmc.tinkerbell.org";

/// The Lease's holder and last renewal, when it has a holder.
async fn holder(leases: &Api<Lease>) -> Option<(String, k8s_openapi::jiff::Timestamp)> {
    let spec = leases.get_opt("rufio").await.ok()??.spec?;
    let h = spec.holder_identity.filter(|h| !h.is_empty())?;
    Some((h, spec.renew_time?.0))
}

async fn create(store: &KubeStore, v: Value) {
    store
        .create(Object::from_typed_json(v).unwrap())
        .await
        .unwrap();
}

/// The Job's Completed/Failed condition, when it has one.
async fn job_outcome(store: &KubeStore, ns: &str, name: &str) -> Option<(String, String)> {
    let Ok(Object::Job(j)) = store.get(Kind::Job, ns, name).await else {
        return None;
    };
    j.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.status.as_deref() == Some(condition_status::TRUE)
                && matches!(
                    c.type_.as_deref(),
                    Some(job_condition_type::COMPLETED | job_condition_type::FAILED)
                )
        })
        .map(|c| {
            (
                c.type_.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// Two replicas, a Job `on, off, on, off` from power off, the leader killed (`mode`) at the
/// Job's second power command: the standby finishes the Job and the BMC carries out exactly
/// `1 0 1 0`.
async fn leader_killed_mid_job(test: &str, mode: &str) {
    let Some(env) = tinkerbell_core::testing::test_kube(test).await else {
        return;
    };
    let ns = env.namespace.as_str();
    let sim = IpmiSim::start_with_hook(free_udp_port(), 16, HOOK);
    sim.ready().await;
    let store = KubeStore::new(env.client.clone(), ns);
    create(
        &store,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bmc-auth", "namespace": ns},
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": IPMI_USER, "password": IPMI_PASSWORD}
        }),
    )
    .await;
    create(
        &store,
        json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
            "metadata": {"name": "m1", "namespace": ns},
            "spec": {"connection": {
                "host": "127.0.0.1", "port": sim.port, "insecureTLS": false,
                "authSecretRef": {"name": "bmc-auth", "namespace": ns},
                "providerOptions": {"ipmitool": {"cipherSuite": "3"}}
            }}
        }),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let mut replicas = vec![
        Replica::start(
            env!("CARGO_BIN_EXE_rufio"),
            "rufio-a",
            &env.kubeconfig,
            ns,
            &["--rufio-enable-leader-election"],
            dir.path(),
        ),
        Replica::start(
            env!("CARGO_BIN_EXE_rufio"),
            "rufio-b",
            &env.kubeconfig,
            ns,
            &["--rufio-enable-leader-election"],
            dir.path(),
        ),
    ];
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), ns);
    let (first, _) = wait_for(
        "a rufio replica to take the Lease",
        Duration::from_secs(60),
        || holder(&leases),
    )
    .await;
    let leader = replicas
        .iter()
        .position(|r| first.starts_with(&format!("{}_", r.name)))
        .unwrap_or_else(|| panic!("Lease holder {first:?} is neither replica"));
    let standby = 1 - leader;
    eprintln!("{test}: leader {first}");
    std::fs::write(
        sim.path("kill"),
        format!("2 {mode} {}\n", replicas[leader].child.id()),
    )
    .unwrap();

    create(
        &store,
        json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Job",
            "metadata": {"name": "j1", "namespace": ns},
            "spec": {"machineRef": {"name": "m1", "namespace": ns}, "tasks": [
                {"powerAction": "on"}, {"powerAction": "off"},
                {"powerAction": "on"}, {"powerAction": "off"}
            ]}
        }),
    )
    .await;

    // The BMC kills the leader at the second power command.
    let start = Instant::now();
    let killed = loop {
        if replicas[leader].exited().is_some() {
            break Instant::now();
        }
        assert!(
            replicas[standby].exited().is_none(),
            "the standby exited\n{}",
            replica_logs(&replicas)
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the leader was not killed at the second power command; BMC log {:?}\n{}",
            sim.hook_log(),
            replica_logs(&replicas)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status = replicas[leader].child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "{status:?}\n{}",
        replica_logs(&replicas)
    );
    // Until then the standby only waited for the Lease: it never started its controllers.
    let standby_log = std::fs::read_to_string(&replicas[standby].log).unwrap();
    assert!(
        !standby_log.contains(STARTED),
        "the standby reconciled while the leader held the Lease\n{}",
        replica_logs(&replicas)
    );
    let (_, last_renewal) = holder(&leases).await.expect("the dead leader's Lease");
    // The Task was claimed and not finished (the kill came before the result was written).
    let Ok(Object::Task(t1)) = store.get(Kind::Task, ns, "j1-task-1").await else {
        panic!("Task j1-task-1 missing");
    };
    let t1_status = t1.status.clone().unwrap_or_default();
    assert!(
        t1_status.start_time.is_some() && t1_status.completion_time.is_none(),
        "{t1_status:?}"
    );

    // The standby takes the Lease over once it has stayed unrenewed for the lease duration.
    let (second, renewed) = wait_for(
        "the standby to take the Lease",
        Duration::from_secs(60),
        || {
            let leases = leases.clone();
            let first = first.clone();
            async move { holder(&leases).await.filter(|(h, _)| *h != first) }
        },
    )
    .await;
    let since_kill = killed.elapsed();
    let since_renewal = Duration::from_millis(
        u64::try_from(renewed.as_millisecond() - last_renewal.as_millisecond()).unwrap_or(0),
    );
    eprintln!(
        "{test}: {second} took over {since_kill:.1?} after the kill, {since_renewal:.1?} after \
         the dead leader's last renewal"
    );
    assert!(
        second.starts_with(&format!("{}_", replicas[standby].name)),
        "{second}"
    );
    wait_for(
        "the new leader to start its controllers",
        Duration::from_secs(30),
        || {
            let log = replicas[standby].log.clone();
            async move {
                std::fs::read_to_string(log)
                    .ok()?
                    .contains(STARTED)
                    .then_some(())
            }
        },
    )
    .await;
    // Expiry is judged on the standby's clock from when it first saw the last renewal (at most
    // one retry period late), then checked every retry period; 3 s more for a loaded machine.
    let bound = LEASE_DURATION + 2 * RETRY_PERIOD + Duration::from_secs(3);
    assert!(
        since_renewal <= bound,
        "takeover {since_renewal:?} after the last renewal (bound {bound:?})\n{}",
        replica_logs(&replicas)
    );

    let waiting = Instant::now();
    let (cond, msg) = loop {
        if let Some(outcome) = job_outcome(&store, ns, "j1").await {
            break outcome;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(90),
            "Job j1 did not finish within 90 s of the takeover; the BMC carried out {:?}; \
             BMC log {:?}\n{}",
            read_lines(&sim.path("power.log")),
            sim.hook_log(),
            replica_logs(&replicas)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let commands = read_lines(&sim.path("power.log"));
    eprintln!("{test}: power commands the BMC carried out: {commands:?}");
    assert_eq!(
        (cond.as_str(), msg.as_str()),
        (job_condition_type::COMPLETED, ""),
        "\n{}",
        replica_logs(&replicas)
    );
    assert_eq!(
        commands,
        ["1", "0", "1", "0"],
        "each power action exactly once; BMC log {:?}\n{}",
        sim.hook_log(),
        replica_logs(&replicas)
    );
    assert!(
        sim.hook_log().contains(&format!("killed {mode} 0")),
        "{:?}",
        sim.hook_log()
    );
    drop(replicas);
}

/// The leader dies after the BMC switched the machine off, before it heard back: the new
/// leader sees the machine off and completes the Task without sending `off` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_after_the_bmc_acted() {
    leader_killed_mid_job("rufio-leader-after", "after").await;
}

/// The leader dies before its `off` took effect: the new leader sees the machine still on
/// and sends `off` (once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_before_the_bmc_acted() {
    leader_killed_mid_job("rufio-leader-lost", "lost").await;
}
