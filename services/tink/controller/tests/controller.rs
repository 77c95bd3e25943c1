//! The controller against the embedded store (tempdir): a workflow driven through its states
//! by simulated worker reports (the state functions + store writes, as the tink server does),
//! the netboot path with the bmc Job completed by hand, render errors, Job failure, timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;
use tinkerbell_core::model::{Hardware, Job, Workflow};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store, StoreError};
use tinkerbell_core::testing::{Intercepted, Interceptor, Write};
use tinkerbell_tink_controller::{Config, Controller, Reconciled, reconcile};
use tinkerbell_tink_workflow::state::{self, ActionKey, State};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";
const MAC: &str = "52:54:00:aa:bb:01";

const TEMPLATE: &str = r#"
version: "0.1"
name: two-steps
global_timeout: 600
tasks:
  - name: install
    worker: "{{ .device_1 }}"
    actions:
      - name: image
        image: quay.io/tinkerbell/actions/image2disk:latest
        timeout: {{ .timeout }}
        environment:
          DEST_DISK: {{ index .Hardware.Disks 0 }}
      - name: reboot
        image: 127.0.0.1/embedded/reboot
        timeout: 90
        pid: host
        namespaces:
          network: host
"#;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    controller: Option<Controller>,
}

impl Env {
    async fn new() -> Self {
        Self::with_store(|s| s).await
    }

    /// The controller on the embedded store as `wrap` returns it (fault injection).
    async fn with_store(wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = wrap(Arc::new(EmbeddedStore::open(dir.path()).unwrap()));
        let cancel = CancellationToken::new();
        let config = Config {
            resync: Duration::from_millis(100),
            namespace: None,
        };
        let controller = Controller::start(config, store.clone(), cancel.child_token())
            .await
            .unwrap();
        Self {
            _dir: dir,
            store,
            cancel,
            controller: Some(controller),
        }
    }

    async fn create(&self, v: serde_json::Value) -> Object {
        self.store
            .create(Object::from_typed_json(v).unwrap())
            .await
            .unwrap()
    }

    async fn fixtures(&self, template: bool) {
        if template {
            self.create(json!({
                "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
                "metadata": {"name": "tpl", "namespace": NS},
                "spec": {"data": TEMPLATE}
            }))
            .await;
        }
        self.create(json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
            "metadata": {"name": "hw1", "namespace": NS},
            "spec": {
                "bmcRef": {"apiGroup": "bmc.tinkerbell.org", "kind": "Machine", "name": "bmc1"},
                "disks": [{"device": "/dev/sda"}],
                "interfaces": [{
                    "dhcp": {"mac": MAC, "uefi": true},
                    "netboot": {"allowPXE": false, "allowWorkflow": true}
                }]
            }
        }))
        .await;
    }

    async fn workflow(&self, name: &str, timeout: i64, boot: serde_json::Value) {
        self.create(json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "templateRef": "tpl",
                "hardwareRef": "hw1",
                "hardwareMap": {"device_1": MAC, "timeout": timeout.to_string()},
                "bootOptions": boot
            }
        }))
        .await;
    }

    async fn get_wf(&self, name: &str) -> Arc<Workflow> {
        match self.store.get(Kind::Workflow, NS, name).await.unwrap() {
            Object::Workflow(w) => w,
            other => panic!("{other:?}"),
        }
    }

    async fn get_hw(&self) -> Arc<Hardware> {
        match self.store.get(Kind::Hardware, NS, "hw1").await.unwrap() {
            Object::Hardware(h) => h,
            other => panic!("{other:?}"),
        }
    }

    /// Polls until `pred` holds for the Workflow (10 s limit).
    async fn wait_wf(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&Workflow) -> bool,
    ) -> Arc<Workflow> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let wf = self.get_wf(name).await;
            if pred(&wf) {
                return wf;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; workflow status: {:#?}",
                wf.status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A worker report, written the way the tink server does (read, transition, write; a
    /// conflicting write is retried on a fresh read).
    async fn report(&self, name: &str, action: &str, to: State, at: Timestamp) {
        for _ in 0..5 {
            let mut wf = (*self.get_wf(name).await).clone();
            let next = state::next_action(&wf);
            let status = wf.status.as_mut().unwrap();
            if to == State::Running {
                let next = next.unwrap();
                assert_eq!(next.action_name, action);
                assert_eq!(next.agent_id, MAC);
                state::mark_served(status, &next, MAC);
            }
            let key = ActionKey::Names {
                task: "install",
                action,
            };
            state::report(status, key, to, Some("by test"), at).unwrap();
            match self
                .store
                .update_status(Object::Workflow(Arc::new(wf)))
                .await
            {
                Ok(_) => return,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("report kept conflicting");
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        self.controller.take().unwrap().join().await.unwrap();
    }
}

fn st(wf: &Workflow) -> &str {
    wf.status
        .as_ref()
        .and_then(|s| s.state.as_deref())
        .unwrap_or("")
}

fn condition(wf: &Workflow, type_: &str) -> Option<(String, String)> {
    wf.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
        .map(|c| {
            (
                c.status.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

fn allow_pxe(hw: &Hardware) -> Vec<Option<bool>> {
    hw.spec
        .interfaces
        .iter()
        .flatten()
        .map(|i| i.netboot.as_ref().and_then(|n| n.allow_pxe))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_workflow_runs_to_success() {
    let env = Env::new().await;
    env.fixtures(true).await;
    env.workflow("wf1", 600, json!({})).await;
    let wf = env.wait_wf("wf1", "PENDING", |w| st(w) == "PENDING").await;
    let status = wf.status.as_ref().unwrap();
    assert_eq!(status.template_rendering.as_deref(), Some("successful"));
    assert_eq!(status.global_timeout, Some(600));
    assert_eq!(condition(&wf, "TemplateRenderedSuccess").unwrap().0, "True");
    let tasks = status.tasks.as_ref().unwrap();
    assert_eq!(tasks[0].agent_id.as_deref(), Some(MAC));
    let actions = tasks[0].actions.as_ref().unwrap();
    assert_eq!(
        actions[0].environment.as_ref().unwrap()["DEST_DISK"],
        "/dev/sda"
    );
    assert_eq!(actions[1].pid.as_deref(), Some("host"));
    // namespaces are copied when one is set (and only what is set); none on the first action.
    let ns = actions[1].namespaces.as_ref().unwrap();
    assert_eq!(
        (ns.network.as_deref(), ns.pid.as_deref()),
        (Some("host"), None)
    );
    assert_eq!(actions[0].namespaces, None);

    // Reconciling again changes nothing.
    assert_eq!(
        reconcile(&env.store, NS, "wf1", Timestamp::now())
            .await
            .unwrap(),
        Reconciled::Idle
    );

    let now = Timestamp::now();
    env.report("wf1", "image", State::Running, now).await;
    env.report("wf1", "image", State::Success, now).await;
    env.report("wf1", "reboot", State::Running, now).await;
    env.report("wf1", "reboot", State::Success, now).await;
    // The server leaves POST; the controller finishes it.
    let wf = env.wait_wf("wf1", "SUCCESS", |w| st(w) == "SUCCESS").await;
    assert!(
        condition(&wf, "AllowNetbootFalse").is_none(),
        "allowPXE was never toggled"
    );
    assert_eq!(allow_pxe(&*env.get_hw().await), [Some(false)]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netboot_workflow_prepares_with_a_bmc_job() {
    let env = Env::new().await;
    env.fixtures(true).await;
    env.workflow(
        "wf-net",
        600,
        json!({"toggleAllowNetboot": true, "bootMode": "netboot"}),
    )
    .await;
    let wf = env
        .wait_wf("wf-net", "BootJobSetupComplete", |w| {
            condition(w, "BootJobSetupComplete").is_some()
        })
        .await;
    assert_eq!(st(&wf), "PREPARING");
    assert_eq!(condition(&wf, "AllowNetbootTrue").unwrap().0, "True");
    assert_eq!(allow_pxe(&*env.get_hw().await), [Some(true)]);
    // The worker is not served while PREPARING.
    assert_eq!(state::next_action(&wf), Err(state::NoAction::Preparing));

    let job = match env.store.get(Kind::Job, NS, "netboot-hw1").await.unwrap() {
        Object::Job(j) => j,
        other => panic!("{other:?}"),
    };
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Workflow", "wf-net")
    );
    assert_eq!(owner.uid, wf.metadata.uid.clone().unwrap());
    let spec = serde_json::to_value(&job.spec).unwrap();
    assert_eq!(
        spec,
        json!({
            "machineRef": {"name": "bmc1", "namespace": NS},
            "tasks": [
                {"powerAction": "off"},
                {"oneTimeBootDeviceAction": {"device": ["pxe"], "efiBoot": true}},
                {"powerAction": "on"}
            ]
        })
    );
    let tracked = &wf
        .status
        .as_ref()
        .unwrap()
        .boot_options
        .as_ref()
        .unwrap()
        .jobs
        .as_ref()
        .unwrap()["netboot-hw1"];
    assert_eq!(tracked.uid, job.metadata.uid);

    // Rufio completes the Job.
    complete_job(&env, &job, "Completed").await;
    let wf = env
        .wait_wf("wf-net", "PENDING", |w| st(w) == "PENDING")
        .await;
    assert_eq!(condition(&wf, "BootJobComplete").unwrap().0, "True");

    let now = Timestamp::now();
    env.report("wf-net", "image", State::Running, now).await;
    env.report("wf-net", "image", State::Success, now).await;
    env.report("wf-net", "reboot", State::Running, now).await;
    env.report("wf-net", "reboot", State::Success, now).await;
    let wf = env
        .wait_wf("wf-net", "SUCCESS", |w| st(w) == "SUCCESS")
        .await;
    assert_eq!(condition(&wf, "AllowNetbootFalse").unwrap().0, "True");
    assert_eq!(allow_pxe(&*env.get_hw().await), [Some(false)]);
    env.stop().await;
}

async fn complete_job(env: &Env, job: &Job, condition: &str) {
    let mut job = job.clone();
    let fresh = env
        .store
        .get(Kind::Job, NS, job.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    job.metadata.resource_version = fresh.resource_version().map(str::to_string);
    job.status = Some(
        serde_json::from_value(json!({
            "conditions": [{"type": condition, "status": "True", "message": "by test"}]
        }))
        .unwrap(),
    );
    env.store
        .update_status(Object::Job(Arc::new(job)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_bmc_job_fails_the_workflow() {
    let env = Env::new().await;
    env.fixtures(true).await;
    env.workflow("wf-f", 600, json!({"bootMode": "netboot"}))
        .await;
    env.wait_wf("wf-f", "job created", |w| {
        condition(w, "BootJobSetupComplete").is_some()
    })
    .await;
    let job = match env.store.get(Kind::Job, NS, "netboot-hw1").await.unwrap() {
        Object::Job(j) => j,
        other => panic!("{other:?}"),
    };
    complete_job(&env, &job, "Failed").await;
    let wf = env.wait_wf("wf-f", "FAILED", |w| st(w) == "FAILED").await;
    let (status, message) = condition(&wf, "BootJobFailed").unwrap();
    assert_eq!(status, "True");
    assert!(
        message.contains("netboot-hw1") && message.contains("by test"),
        "{message}"
    );
    // allowPXE was not asked for.
    assert_eq!(allow_pxe(&*env.get_hw().await), [Some(false)]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_errors_are_conditions_until_fixed() {
    let env = Env::new().await;
    env.fixtures(false).await;
    env.workflow("wf-r", 600, json!({})).await;
    let wf = env
        .wait_wf("wf-r", "TemplateRenderedSuccess=False", |w| {
            condition(w, "TemplateRenderedSuccess").is_some()
        })
        .await;
    assert_eq!(st(&wf), "");
    assert_eq!(
        wf.status.as_ref().unwrap().template_rendering.as_deref(),
        Some("failed")
    );
    let (status, message) = condition(&wf, "TemplateRenderedSuccess").unwrap();
    assert_eq!(status, "False");
    assert!(message.contains("\"tpl\" not found"), "{message}");

    // A template with a missing key: the message names it.
    env.create(json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
        "metadata": {"name": "tpl", "namespace": NS},
        "spec": {"data": TEMPLATE.replace(".device_1", ".device_9")}
    }))
    .await;
    env.wait_wf("wf-r", "missing key message", |w| {
        condition(w, "TemplateRenderedSuccess").is_some_and(|(_, m)| m.contains("device_9"))
    })
    .await;

    // Fixed: the next resync renders it.
    let tpl = env.store.get(Kind::Template, NS, "tpl").await.unwrap();
    let mut v = tpl.to_json();
    v["spec"]["data"] = json!(TEMPLATE);
    env.store
        .update(Object::from_typed_json(v).unwrap())
        .await
        .unwrap();
    let wf = env.wait_wf("wf-r", "PENDING", |w| st(w) == "PENDING").await;
    assert_eq!(condition(&wf, "TemplateRenderedSuccess").unwrap().0, "True");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_timeout_times_the_workflow_out() {
    let env = Env::new().await;
    env.fixtures(true).await;
    env.workflow("wf-t", 5, json!({})).await;
    env.wait_wf("wf-t", "PENDING", |w| st(w) == "PENDING").await;
    // The worker started the 5 s action a minute ago and went silent.
    let started = Timestamp::now() - SignedDuration::from_secs(60);
    env.report("wf-t", "image", State::Running, started).await;
    let wf = env.wait_wf("wf-t", "TIMEOUT", |w| st(w) == "TIMEOUT").await;
    let action = &wf.status.as_ref().unwrap().tasks.as_ref().unwrap()[0]
        .actions
        .as_ref()
        .unwrap()[0];
    assert_eq!(action.state.as_deref(), Some("TIMEOUT"));
    assert!(action.message.as_deref().unwrap().contains("timeout"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_secret_ref_keys_are_rendered() {
    let env = Env::new().await;
    env.fixtures(false).await;
    env.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "tpl-secret", "namespace": NS},
        "data": {"proxy": "aHR0cDovL3Byb3h5OjMxMjg="},
        "stringData": {"user": "admin"}
    }))
    .await;
    let text = TEMPLATE.replace(
        "DEST_DISK: {{ index .Hardware.Disks 0 }}",
        "DEST_DISK: {{ index .Hardware.Disks 0 }}\n          HTTP_PROXY: {{ .secret.proxy }}\n          USER: {{ .secret.user }}",
    );
    env.create(json!({
        "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
        "metadata": {"name": "tpl", "namespace": NS},
        "spec": {"data": text, "secretRef": {"name": "tpl-secret"}}
    }))
    .await;
    env.workflow("wf-s", 600, json!({})).await;
    let wf = env.wait_wf("wf-s", "PENDING", |w| st(w) == "PENDING").await;
    let env_vars = wf.status.as_ref().unwrap().tasks.as_ref().unwrap()[0]
        .actions
        .as_ref()
        .unwrap()[0]
        .environment
        .clone()
        .unwrap();
    assert_eq!(env_vars["HTTP_PROXY"], "http://proxy:3128");
    assert_eq!(env_vars["USER"], "admin");
    env.stop().await;
}

/// Counts bmc Job creates and deletes and fails the first Workflow status write after a Job was
/// created (a conflict, as when another writer got there first): the side effect happened, the
/// status that would track it did not land.
#[derive(Default)]
struct LoseTheJobWrite {
    job_created: AtomicBool,
    failed_once: AtomicBool,
    job_creates: AtomicUsize,
    job_deletes: AtomicUsize,
}

#[async_trait::async_trait]
impl Interceptor for LoseTheJobWrite {
    async fn before(&self, _: &dyn Store, write: Write<'_>) -> Result<(), StoreError> {
        match write {
            Write::UpdateStatus(o)
                if o.kind() == Kind::Workflow
                    && self.job_created.load(Ordering::SeqCst)
                    && !self.failed_once.swap(true, Ordering::SeqCst) =>
            {
                Err(StoreError::Conflict {
                    key: o.key(),
                    current: "injected".into(),
                    given: o.resource_version().unwrap_or_default().into(),
                })
            }
            Write::Delete {
                kind: Kind::Job, ..
            } => {
                self.job_deletes.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            _ => Ok(()),
        }
    }
    fn after(&self, write: Write<'_>) {
        if let Write::Create(o) = write
            && o.kind() == Kind::Job
        {
            self.job_creates.fetch_add(1, Ordering::SeqCst);
            self.job_created.store(true, Ordering::SeqCst);
        }
    }
}

/// The status write after the Job's creation is lost: the controller adopts its own Job (by
/// its ownerReference) instead of deleting it as a stranger's and creating another, which
/// would power-cycle the machine twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_status_write_does_not_recreate_the_bmc_job() {
    let faults = Arc::new(LoseTheJobWrite::default());
    let hooks = faults.clone();
    let env = Env::with_store(move |inner| Arc::new(Intercepted { inner, hooks })).await;
    env.fixtures(true).await;
    env.workflow(
        "wf-net",
        600,
        json!({"toggleAllowNetboot": true, "bootMode": "netboot"}),
    )
    .await;
    let wf = env
        .wait_wf("wf-net", "the Job tracked", |w| {
            w.status
                .as_ref()
                .and_then(|s| s.boot_options.as_ref())
                .and_then(|b| b.jobs.as_ref())
                .and_then(|j| j.get("netboot-hw1"))
                .is_some_and(|j| j.uid.is_some())
        })
        .await;
    assert!(
        faults.failed_once.load(Ordering::SeqCst),
        "the fault was injected"
    );
    // Let a few more resyncs pass: nothing may delete and re-create it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let job = env.store.get(Kind::Job, NS, "netboot-hw1").await.unwrap();
    let tracked = wf
        .status
        .as_ref()
        .unwrap()
        .boot_options
        .as_ref()
        .unwrap()
        .jobs
        .as_ref()
        .unwrap()["netboot-hw1"]
        .uid
        .clone();
    assert_eq!(job.meta().uid, tracked);
    assert_eq!(
        faults.job_creates.load(Ordering::SeqCst),
        1,
        "one bmc Job, created once"
    );
    assert_eq!(
        faults.job_deletes.load(Ordering::SeqCst),
        0,
        "never deleted"
    );
    env.stop().await;
}

/// Two Workflows for one Hardware: the younger waits (HardwareInUse says for which) and
/// neither touches the other's bmc Job; when the older finishes, the younger starts. Before,
/// both shared `netboot-<hw>`: the second deleted the first's running Job and made its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_workflow_for_one_hardware_waits() {
    let env = Env::new().await;
    env.fixtures(true).await;
    let boot = json!({"toggleAllowNetboot": true, "bootMode": "netboot"});
    env.workflow("wf-a", 600, boot.clone()).await;
    env.wait_wf("wf-a", "its Job", |w| {
        condition(w, "BootJobSetupComplete").is_some()
    })
    .await;
    let job_a = env.store.get(Kind::Job, NS, "netboot-hw1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    env.workflow("wf-b", 600, boot).await;
    let b = env
        .wait_wf("wf-b", "HardwareInUse", |w| {
            condition(w, "HardwareInUse").is_some()
        })
        .await;
    let (value, message) = condition(&b, "HardwareInUse").unwrap();
    assert_eq!(value, "True");
    assert!(message.contains("in use by workflow wf-a"), "{message}");
    assert_eq!(st(&b), "", "wf-b has not started");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = env.store.get(Kind::Job, NS, "netboot-hw1").await.unwrap();
    assert_eq!(still.meta().uid, job_a.meta().uid, "wf-a's Job untouched");

    // wf-a runs to the end; then wf-b starts with a Job of its own.
    let Object::Job(job) = job_a else { panic!() };
    complete_job(&env, &job, "Completed").await;
    env.wait_wf("wf-a", "PENDING", |w| st(w) == "PENDING").await;
    let now = Timestamp::now();
    for action in ["image", "reboot"] {
        env.report("wf-a", action, State::Running, now).await;
        env.report("wf-a", action, State::Success, now).await;
    }
    env.wait_wf("wf-a", "SUCCESS", |w| st(w) == "SUCCESS").await;
    let b = env
        .wait_wf("wf-b", "started", |w| {
            condition(w, "BootJobSetupComplete").is_some()
        })
        .await;
    assert_eq!(condition(&b, "HardwareInUse").unwrap().0, "False");
    let job_b = env.store.get(Kind::Job, NS, "netboot-hw1").await.unwrap();
    assert_ne!(job_b.meta().uid, job.metadata.uid, "wf-b's own Job");
    env.stop().await;
}
