//! Leader election on a real kube-apiserver (`TINKERBELL_TEST_KUBECONFIG`, see
//! `tinkerbell_core::testing`): two `tink-controller` processes with
//! `--tink-controller-enable-leader-election`; the leader is killed (SIGKILL) between creating a
//! Workflow's bmc Job and recording the Job's UID in the Workflow's status. The standby must
//! take the `tink-controller` Lease over within the lease duration, adopt that Job instead of
//! deleting and re-creating it (which would run its power actions twice), and carry the
//! Workflow on once the Job completes.
//!
//! The window is held open by the API server itself: a ValidatingAdmissionPolicy bound to the
//! test's namespace refuses Workflow status writes that record a Job UID, and Job deletions,
//! until the leader is dead.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use tinkerbell_core::model::Workflow;
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_core::testing::{Replica, replica_logs};

/// controller-runtime's timing, which `tink-controller` uses (core/src/store/kube_lease.rs).
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RETRY_PERIOD: Duration = Duration::from_secs(2);

const JOB: &str = "netboot-hw1";

/// What `tink-controller` prints once it holds the Lease and has started its controller.
const STARTED: &str = "tink-controller: reconciling workflows";

/// Poll `f` every 100 ms until it returns `Some`; panic after `limit` with `why()`.
async fn until<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Fut,
    why: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            why()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The admission policy that holds the window open, cluster-scoped but bound to one namespace;
/// deleted on drop (also when the test fails).
struct Freeze {
    client: kube::Client,
    name: String,
    on: bool,
}

impl Freeze {
    async fn start(client: &kube::Client, ns: &str) -> Freeze {
        let name = format!("freeze-{ns}");
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [
                    {"apiGroups": ["tinkerbell.org"], "apiVersions": ["*"],
                     "operations": ["CREATE", "UPDATE"],
                     "resources": ["workflows", "workflows/status"]},
                    {"apiGroups": ["bmc.tinkerbell.org"], "apiVersions": ["*"],
                     "operations": ["DELETE"], "resources": ["jobs"]}
                ]},
                "validations": [
                    {"expression": "request.operation == 'DELETE' || !(has(object.metadata.labels) && 'tinkerbell.org/freeze-probe' in object.metadata.labels)",
                     "message": "freeze probe"},
                    {"expression": "request.operation == 'DELETE' || !(has(object.status) && has(object.status.bootOptions) && has(object.status.bootOptions.jobs) && object.status.bootOptions.jobs.exists(k, has(object.status.bootOptions.jobs[k].uid) && object.status.bootOptions.jobs[k].uid != ''))",
                     "message": "frozen by the test: no Job UID in a Workflow status"},
                    {"expression": "request.operation != 'DELETE'",
                     "message": "frozen by the test: no Job deletion"}
                ]
            }
        }))
        .unwrap();
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": ns}
                }}
            }
        }))
        .unwrap();
        let pp = PostParams::default();
        Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .create(&pp, &policy)
            .await
            .unwrap();
        let freeze = Freeze {
            client: client.clone(),
            name,
            on: true,
        };
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .create(&pp, &binding)
            .await
            .unwrap();
        // In force once a dry-run create of a labelled Workflow is refused.
        let workflows: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &kube::api::ApiResource {
                group: "tinkerbell.org".into(),
                version: "v1alpha1".into(),
                api_version: "tinkerbell.org/v1alpha1".into(),
                kind: "Workflow".into(),
                plural: "workflows".into(),
            },
        );
        let probe: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "probe", "labels": {"tinkerbell.org/freeze-probe": "1"}},
            "spec": {"templateRef": "none", "hardwareRef": "none"}
        }))
        .unwrap();
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        until(
            "the admission policy to be in force",
            Duration::from_secs(30),
            || {
                let workflows = workflows.clone();
                let probe = probe.clone();
                let dry = dry.clone();
                async move {
                    match workflows.create(&dry, &probe).await {
                        Err(e) if e.to_string().contains("freeze probe") => Some(()),
                        _ => None,
                    }
                }
            },
            String::new,
        )
        .await;
        freeze
    }

    async fn stop(&mut self) {
        if !self.on {
            return;
        }
        self.on = false;
        let dp = DeleteParams::default();
        let _ = Api::<ValidatingAdmissionPolicyBinding>::all(self.client.clone())
            .delete(&self.name, &dp)
            .await;
        let _ = Api::<ValidatingAdmissionPolicy>::all(self.client.clone())
            .delete(&self.name, &dp)
            .await;
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        if self.on {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(self.stop());
            });
        }
    }
}

async fn holder(leases: &Api<Lease>) -> Option<(String, k8s_openapi::jiff::Timestamp)> {
    let spec = leases.get_opt("tink-controller").await.ok()??.spec?;
    let h = spec.holder_identity.filter(|h| !h.is_empty())?;
    Some((h, spec.renew_time?.0))
}

async fn create(store: &KubeStore, v: Value) {
    store
        .create(Object::from_typed_json(v).unwrap())
        .await
        .unwrap();
}

async fn workflow(store: &KubeStore, ns: &str) -> Arc<Workflow> {
    match store.get(Kind::Workflow, ns, "wf1").await.unwrap() {
        Object::Workflow(w) => w,
        other => panic!("{other:?}"),
    }
}

/// The Job UID the Workflow's status tracks.
fn tracked(wf: &Workflow) -> Option<String> {
    wf.status
        .as_ref()?
        .boot_options
        .as_ref()?
        .jobs
        .as_ref()?
        .get(JOB)?
        .uid
        .clone()
        .filter(|u| !u.is_empty())
}

async fn job_uid(store: &KubeStore, ns: &str) -> Option<String> {
    match store.get(Kind::Job, ns, JOB).await {
        Ok(o) => o.meta().uid.clone(),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_adopts_the_bmc_job_of_a_killed_leader() {
    let Some(env) = tinkerbell_core::testing::test_kube("tink-leader").await else {
        return;
    };
    let ns = env.namespace.as_str();
    let store = KubeStore::new(env.client.clone(), ns);
    let mut freeze = Freeze::start(&env.client, ns).await;

    let dir = tempfile::tempdir().unwrap();
    let mut replicas = vec![
        Replica::start(
            env!("CARGO_BIN_EXE_tink-controller"),
            "tink-a",
            &env.kubeconfig,
            ns,
            &["--tink-controller-enable-leader-election"],
            dir.path(),
        ),
        Replica::start(
            env!("CARGO_BIN_EXE_tink-controller"),
            "tink-b",
            &env.kubeconfig,
            ns,
            &["--tink-controller-enable-leader-election"],
            dir.path(),
        ),
    ];
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), ns);
    let (first, _) = until(
        "a replica to take the Lease",
        Duration::from_secs(60),
        || holder(&leases),
        || replica_logs(&replicas),
    )
    .await;
    let leader = replicas
        .iter()
        .position(|r| first.starts_with(&format!("{}_", r.name)))
        .unwrap_or_else(|| panic!("Lease holder {first:?} is neither replica"));
    let standby = 1 - leader;

    create(
        &store,
        json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
            "metadata": {"name": "tpl", "namespace": ns},
            "spec": {"data": common::one_step(600)}
        }),
    )
    .await;
    create(
        &store,
        json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
            "metadata": {"name": "hw1", "namespace": ns},
            "spec": {
                "bmcRef": {"apiGroup": "bmc.tinkerbell.org", "kind": "Machine", "name": "bmc1"},
                "interfaces": [{
                    "dhcp": {"mac": "52:54:00:aa:bb:01"},
                    "netboot": {"allowPXE": false, "allowWorkflow": true}
                }]
            }
        }),
    )
    .await;
    create(
        &store,
        json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "wf1", "namespace": ns},
            "spec": {
                "templateRef": "tpl", "hardwareRef": "hw1",
                "hardwareMap": {"device_1": "52:54:00:aa:bb:01"},
                "bootOptions": {"toggleAllowNetboot": true, "bootMode": "netboot"}
            }
        }),
    )
    .await;

    // The leader created the Job; its status write recording the UID is refused.
    let uid = until(
        "the leader to create the bmc Job",
        Duration::from_secs(60),
        || job_uid(&store, ns),
        || replica_logs(&replicas),
    )
    .await;
    until(
        "the leader's status write to be refused",
        Duration::from_secs(30),
        || {
            let log = replicas[leader].log.clone();
            async move {
                std::fs::read_to_string(log)
                    .ok()?
                    .contains("frozen by the test")
                    .then_some(())
            }
        },
        || replica_logs(&replicas),
    )
    .await;
    // Until then the standby only waited for the Lease.
    let standby_log = std::fs::read_to_string(&replicas[standby].log).unwrap();
    assert!(
        !standby_log.contains(STARTED),
        "{}",
        replica_logs(&replicas)
    );
    replicas[leader].child.kill().unwrap();
    let status = replicas[leader].child.wait().unwrap();
    let killed = Instant::now();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let (_, last_renewal) = holder(&leases).await.expect("the dead leader's Lease");
    assert_eq!(tracked(&*workflow(&store, ns).await), None);
    freeze.stop().await;

    let (second, renewed) = until(
        "the standby to take the Lease",
        Duration::from_secs(60),
        || {
            let leases = leases.clone();
            let first = first.clone();
            async move { holder(&leases).await.filter(|(h, _)| *h != first) }
        },
        || replica_logs(&replicas),
    )
    .await;
    let since_renewal = Duration::from_millis(
        u64::try_from(renewed.as_millisecond() - last_renewal.as_millisecond()).unwrap_or(0),
    );
    eprintln!(
        "tink-leader: {second} took over {:.1?} after the kill, {since_renewal:.1?} after the dead \
         leader's last renewal",
        killed.elapsed()
    );
    assert!(second.starts_with(&format!("{}_", replicas[standby].name)));
    let bound = LEASE_DURATION + 2 * RETRY_PERIOD + Duration::from_secs(3);
    assert!(since_renewal <= bound, "{since_renewal:?} > {bound:?}");

    // The new leader tracks the Job the dead one created: the same object, never replaced.
    let now_tracked = until(
        "the new leader to track the bmc Job",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            async move { tracked(&*workflow(&store, ns).await) }
        },
        || replica_logs(&replicas),
    )
    .await;
    assert_eq!(
        now_tracked,
        uid,
        "the Job was replaced\n{}",
        replica_logs(&replicas)
    );
    assert_eq!(job_uid(&store, ns).await.as_deref(), Some(uid.as_str()));

    // Rufio's part, by hand: the Job completes; the Workflow goes on to PENDING.
    let Object::Job(job) = store.get(Kind::Job, ns, JOB).await.unwrap() else {
        unreachable!()
    };
    let mut job = (*job).clone();
    job.status = Some(
        serde_json::from_value(json!({
            "conditions": [{"type": "Completed", "status": "True"}]
        }))
        .unwrap(),
    );
    store
        .update_status(Object::Job(Arc::new(job)))
        .await
        .unwrap();
    until(
        "the Workflow to reach PENDING",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            async move {
                let wf = workflow(&store, ns).await;
                (wf.status.as_ref()?.state.as_deref() == Some("PENDING")).then_some(())
            }
        },
        || replica_logs(&replicas),
    )
    .await;
    assert_eq!(job_uid(&store, ns).await.as_deref(), Some(uid.as_str()));
    drop(replicas);
}
