//! Reconciling one Workflow: render, prepare (allowPXE, bmc Jobs), time out, post.
//!
//! Idempotent by construction: every step first looks at what is already there (the status'
//! `bootOptions` bookkeeping, the Job in the store, the Hardware's `allowPXE`) and only then
//! acts, and the status is written only when it changed, conditionally on the resourceVersion
//! that was read. A conflicting write (the tink server reported an action meanwhile) is simply
//! retried on a fresh read. A bmc Job is created before the status that tracks its UID is
//! written; a controller that dies in between (a leader killed; its standby takes the Lease
//! over) leaves an untracked Job, which the next reconcile recognises by its controller owner
//! reference (this Workflow's UID) and adopts, so each Job runs once. State transitions go
//! through `tinkerbell_tink_workflow::state`, the same functions the server uses.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use tinkerbell_core::model::{
    Action as BmcAction, Hardware, Job, JobSpec, MachineRef, OneTimeBootDeviceAction,
    VirtualMediaAction, Workflow, WorkflowCondition, WorkflowJobStatus, WorkflowStatus,
    boot_device, boot_mode, condition_status, job_condition_type, power_action, template_rendering,
    virtual_media_kind, workflow_condition_type as cond,
};
use tinkerbell_core::store::{Kind, Object, Store, StoreError};
use tinkerbell_tink_workflow::state::{self, State};
use tinkerbell_tink_workflow::template;

/// What a reconcile did, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// Nothing to do (terminal, disabled, waiting for a worker, waiting for a Job).
    Idle,
    /// The status (and maybe the Hardware or a Job) was written.
    Changed,
    /// The Workflow no longer exists.
    Gone,
}

/// Errors of one reconcile (the next event or resync retries).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
}

/// How many times a conflicting status write is retried within one reconcile.
const CONFLICT_RETRIES: usize = 5;

/// Reconciles the Workflow `namespace/name` at time `now`, as the store has it now.
pub async fn reconcile(
    store: &Arc<dyn Store>,
    namespace: &str,
    name: &str,
    now: Timestamp,
) -> Result<Reconciled, ReconcileError> {
    reconcile_from(store, namespace, name, None, now).await
}

/// Reconciles the Workflow `namespace/name` at time `now` starting from `cached` (what the
/// controller's watch last saw; `None`: gone): no read unless a write conflicts, which means
/// the cached state was old, and every retry then reads it afresh.
pub async fn reconcile_from(
    store: &Arc<dyn Store>,
    namespace: &str,
    name: &str,
    mut cached: Option<Option<Arc<Workflow>>>,
    now: Timestamp,
) -> Result<Reconciled, ReconcileError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match reconcile_once(store, namespace, name, cached.take(), now).await {
            Err(ReconcileError::Store(StoreError::Conflict { .. }))
                if attempt < CONFLICT_RETRIES =>
            {
                tracing::debug!(workflow = %format!("{namespace}/{name}"), attempt, "conflict, re-reading");
            }
            other => return other,
        }
    }
}

async fn reconcile_once(
    store: &Arc<dyn Store>,
    namespace: &str,
    name: &str,
    cached: Option<Option<Arc<Workflow>>>,
    now: Timestamp,
) -> Result<Reconciled, ReconcileError> {
    let wf = match cached {
        Some(Some(wf)) => wf,
        Some(None) => return Ok(Reconciled::Gone),
        None => match store.get(Kind::Workflow, namespace, name).await {
            Ok(Object::Workflow(wf)) => wf,
            Ok(_) | Err(StoreError::NotFound(_)) => return Ok(Reconciled::Gone),
            Err(e) => return Err(e.into()),
        },
    };
    if wf.spec.disabled == Some(true) {
        return Ok(Reconciled::Idle);
    }
    let before = wf.status.clone().unwrap_or_default();
    let mut status = before.clone();
    let mut ctx = Ctx {
        store,
        wf: &wf,
        namespace,
        now,
    };
    state::normalize_legacy(&mut status);
    match state::workflow_state(&status) {
        // One active Workflow per Hardware: a new one waits for older unfinished ones.
        None if ctx.wait_for_hardware(&mut status).await? => {}
        None => ctx.render(&mut status).await?,
        Some(State::Preparing) => ctx.prepare(&mut status).await?,
        Some(State::Running) => {
            if let Some(outcome) = state::check_timeouts(&mut status, now) {
                tracing::info!(workflow = %format!("{namespace}/{name}"), ?outcome, "timeout");
            }
        }
        Some(State::Post) => ctx.post(&mut status).await?,
        Some(State::Pending | State::Success | State::Failed | State::Timeout) => {}
    }
    if status == before {
        return Ok(Reconciled::Idle);
    }
    let mut updated = (*wf).clone();
    updated.status = Some(status);
    store
        .update_status(Object::Workflow(Arc::new(updated)))
        .await?;
    Ok(Reconciled::Changed)
}

struct Ctx<'a> {
    store: &'a Arc<dyn Store>,
    wf: &'a Workflow,
    namespace: &'a str,
    now: Timestamp,
}

/// A bmc Job the controller runs for a boot option: its name and tasks.
struct BootJob {
    name: String,
    tasks: Vec<BmcAction>,
}

enum JobProgress {
    Running,
    Completed,
    Failed(String),
    /// Cannot create the Job (no bmcRef, ...): the message says why.
    SetupFailed(String),
}

impl Ctx<'_> {
    /// [`set_condition`] at this reconcile's time.
    fn condition(
        &self,
        status: &mut WorkflowStatus,
        type_: &str,
        ok: bool,
        reason: &str,
        msg: &str,
    ) {
        set_condition(status, type_, ok, reason, msg, self.now);
    }

    fn wf_name(&self) -> &str {
        self.wf.metadata.name.as_deref().unwrap_or_default()
    }

    fn boot_mode(&self) -> &str {
        self.wf
            .spec
            .boot_options
            .as_ref()
            .and_then(|b| b.boot_mode.as_deref())
            .unwrap_or_default()
    }

    fn toggle_allow_netboot(&self) -> bool {
        self.wf
            .spec
            .boot_options
            .as_ref()
            .and_then(|b| b.toggle_allow_netboot)
            .unwrap_or(false)
    }

    async fn hardware(&self) -> Result<Option<Arc<Hardware>>, StoreError> {
        let Some(hw) = self
            .wf
            .spec
            .hardware_ref
            .as_deref()
            .filter(|h| !h.is_empty())
        else {
            return Ok(None);
        };
        match self.store.get(Kind::Hardware, self.namespace, hw).await? {
            Object::Hardware(h) => Ok(Some(h)),
            _ => Ok(None),
        }
    }

    /// "" → PREPARING / PENDING, or a TemplateRenderedSuccess=False condition.
    async fn render(&mut self, status: &mut WorkflowStatus) -> Result<(), ReconcileError> {
        match self.try_render().await? {
            Ok((tasks, global_timeout)) => {
                let preparing = self.toggle_allow_netboot() || !self.boot_mode().is_empty();
                if state::begin(status, tasks, global_timeout, preparing).is_ok() {
                    status.template_rendering = Some(template_rendering::SUCCESSFUL.into());
                    self.condition(
                        status,
                        cond::TEMPLATE_RENDERED_SUCCESS,
                        true,
                        "Complete",
                        "template rendered successfully",
                    );
                    tracing::info!(workflow = %self.wf_name(), preparing, "template rendered");
                }
            }
            Err(message) => {
                tracing::warn!(workflow = %self.wf_name(), %message, "template not rendered");
                status.template_rendering = Some(template_rendering::FAILED.into());
                self.condition(
                    status,
                    cond::TEMPLATE_RENDERED_SUCCESS,
                    false,
                    "Error",
                    &message,
                );
            }
        }
        Ok(())
    }

    /// The rendered tasks and global timeout, or why not (as a condition message).
    async fn try_render(
        &self,
    ) -> Result<Result<(Vec<tinkerbell_core::model::WorkflowTask>, i64), String>, ReconcileError>
    {
        let tpl_name = self.wf.spec.template_ref.clone().unwrap_or_default();
        if tpl_name.is_empty() {
            return Ok(Err("spec.templateRef is empty".into()));
        }
        let tpl = match self
            .store
            .get(Kind::Template, self.namespace, &tpl_name)
            .await
        {
            Ok(Object::Template(t)) => t,
            Ok(_) | Err(StoreError::NotFound(_)) => {
                return Ok(Err(format!("template {tpl_name:?} not found")));
            }
            Err(e) => return Err(e.into()),
        };
        let hardware = match self.hardware().await {
            Ok(h) => h,
            Err(StoreError::NotFound(_)) => {
                let hw = self.wf.spec.hardware_ref.clone().unwrap_or_default();
                return Ok(Err(format!("hardware {hw:?} not found")));
            }
            Err(e) => return Err(e.into()),
        };
        if hardware.is_none() && (self.toggle_allow_netboot() || !self.boot_mode().is_empty()) {
            return Ok(Err("spec.hardwareRef is required with bootOptions".into()));
        }
        let secret = match tpl.spec.secret_ref.as_ref().and_then(|r| r.name.clone()) {
            Some(name) if !name.is_empty() => {
                match self.store.get(Kind::Secret, self.namespace, &name).await {
                    Ok(Object::Secret(sec)) => Some(secret_strings(&sec)),
                    Ok(_) | Err(StoreError::NotFound(_)) => {
                        return Ok(Err(format!("secret {name:?} (spec.secretRef) not found")));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            _ => None,
        };
        let text = tpl.spec.data.clone().unwrap_or_default();
        let map = self.wf.spec.hardware_map.clone().unwrap_or_default();
        Ok(
            match template::render_workflow(
                &tpl_name,
                &text,
                hardware.as_deref(),
                &map,
                secret.as_ref(),
            ) {
                Ok(doc) => Ok((
                    doc.to_tasks(|| uuid::Uuid::new_v4().to_string()),
                    doc.global_timeout,
                )),
                Err(e) => Err(e.to_string()),
            },
        )
    }

    /// Whether this (not yet started) Workflow must wait: another Workflow of the same
    /// Hardware that is unfinished and older (creation time, then name) runs first, so two
    /// Workflows never power-cycle one machine against each other or share its bmc Jobs. The
    /// `HardwareInUse` condition says which one; it turns False when this one may start.
    async fn wait_for_hardware(&self, status: &mut WorkflowStatus) -> Result<bool, ReconcileError> {
        let Some(hw) = self.wf.spec.hardware_ref.clone().filter(|h| !h.is_empty()) else {
            return Ok(false);
        };
        let me = (
            self.wf.metadata.creation_timestamp.as_ref().map(|t| t.0),
            self.wf_name().to_string(),
        );
        let list = self
            .store
            .list(Kind::Workflow, Some(self.namespace))
            .await?;
        let blocker = list
            .items
            .iter()
            .filter_map(|o| match o {
                Object::Workflow(w) => Some(w),
                _ => None,
            })
            .filter(|w| {
                w.spec.hardware_ref.as_deref() == Some(hw.as_str())
                    && w.spec.disabled != Some(true)
                    && w.metadata.name.as_deref() != Some(self.wf_name())
                    && !state::workflow_state(&w.status.clone().unwrap_or_default()).is_some_and(
                        |s| matches!(s, State::Success | State::Failed | State::Timeout),
                    )
            })
            .map(|w| {
                (
                    (
                        w.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        w.metadata.name.clone().unwrap_or_default(),
                    ),
                    w,
                )
            })
            .filter(|(key, _)| *key < me)
            .min_by(|a, b| a.0.cmp(&b.0));
        match blocker {
            Some((_, other)) => {
                let other_state = other
                    .status
                    .as_ref()
                    .and_then(|s| s.state.clone())
                    .unwrap_or_else(|| "new".into());
                let message = format!(
                    "hardware {hw} is in use by workflow {} ({other_state}); this workflow starts when that one finishes",
                    other.metadata.name.as_deref().unwrap_or_default()
                );
                self.condition(status, cond::HARDWARE_IN_USE, true, "Waiting", &message);
                Ok(true)
            }
            None => {
                if status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_.as_deref() == Some(cond::HARDWARE_IN_USE))
                {
                    self.condition(
                        status,
                        cond::HARDWARE_IN_USE,
                        false,
                        "Started",
                        &format!("hardware {hw} is free; this workflow started"),
                    );
                }
                Ok(false)
            }
        }
    }

    /// PREPARING: allowPXE on, the boot Job; then PENDING (or FAILED if the Job failed).
    async fn prepare(&mut self, status: &mut WorkflowStatus) -> Result<(), ReconcileError> {
        let Some(hw) = self.hardware().await.or_else(not_found_none)? else {
            self.condition(
                status,
                cond::BOOT_JOB_SETUP_FAILED,
                true,
                "Error",
                "hardware not found",
            );
            return Ok(());
        };
        if self.toggle_allow_netboot() {
            let toggled = allow_netboot(status).toggled_true.unwrap_or(false);
            if !toggled {
                self.set_allow_pxe(&hw, true).await?;
                allow_netboot(status).toggled_true = Some(true);
                self.condition(
                    status,
                    cond::ALLOW_NETBOOT_TRUE,
                    true,
                    "Complete",
                    "allowPXE set to true",
                );
            }
        }
        let progress = match self.prepare_job(&hw) {
            Ok(Some(job)) => self.ensure_job(&hw, &job, status).await?,
            Ok(None) => JobProgress::Completed,
            Err(m) => JobProgress::SetupFailed(m),
        };
        match progress {
            JobProgress::Running => return Ok(()),
            JobProgress::SetupFailed(m) => {
                self.condition(status, cond::BOOT_JOB_SETUP_FAILED, true, "Error", &m);
                return Ok(());
            }
            JobProgress::Failed(m) => {
                self.condition(status, cond::BOOT_JOB_FAILED, true, "Error", &m);
                let _ = state::prepare_failed(status);
                return Ok(());
            }
            JobProgress::Completed => {}
        }
        let _ = state::prepared(status);
        tracing::info!(workflow = %self.wf_name(), "prepared");
        Ok(())
    }

    /// POST: the post Job (iso eject, customboot), allowPXE off; then SUCCESS.
    async fn post(&mut self, status: &mut WorkflowStatus) -> Result<(), ReconcileError> {
        let hw = self.hardware().await.or_else(not_found_none)?;
        if let Some(hw) = &hw {
            if let Some(job) = self.post_job(hw) {
                match self.ensure_job(hw, &job, status).await? {
                    JobProgress::Running => return Ok(()),
                    JobProgress::SetupFailed(m) | JobProgress::Failed(m) => {
                        // The workflow's actions all succeeded; a failed post job is reported
                        // but does not undo that.
                        self.condition(status, cond::BOOT_JOB_FAILED, true, "Error", &m);
                    }
                    JobProgress::Completed => {}
                }
            }
            let an = allow_netboot(status);
            if an.toggled_true == Some(true) && an.toggled_false != Some(true) {
                self.set_allow_pxe(hw, false).await?;
                allow_netboot(status).toggled_false = Some(true);
                self.condition(
                    status,
                    cond::ALLOW_NETBOOT_FALSE,
                    true,
                    "Complete",
                    "allowPXE set to false",
                );
            }
        }
        let _ = state::post_done(status);
        tracing::info!(workflow = %self.wf_name(), "workflow succeeded");
        Ok(())
    }

    fn prepare_job(&self, hw: &Hardware) -> Result<Option<BootJob>, String> {
        let hw_name = hw.metadata.name.clone().unwrap_or_default();
        let efi_boot = hw
            .spec
            .interfaces
            .iter()
            .flatten()
            .any(|i| i.dhcp.as_ref().and_then(|d| d.uefi) == Some(true));
        let power = |p: &str| BmcAction {
            power_action: Some(p.into()),
            ..Default::default()
        };
        let one_time = |device: &str| BmcAction {
            one_time_boot_device_action: Some(OneTimeBootDeviceAction {
                devices: Some(vec![device.into()]),
                efi_boot: Some(efi_boot),
            }),
            ..Default::default()
        };
        let opts = self.wf.spec.boot_options.clone().unwrap_or_default();
        Ok(match self.boot_mode() {
            "" => None,
            boot_mode::NETBOOT => Some(BootJob {
                name: format!("netboot-{hw_name}"),
                tasks: vec![
                    power(power_action::HARD_OFF),
                    one_time(boot_device::PXE),
                    power(power_action::ON),
                ],
            }),
            boot_mode::ISO | boot_mode::ISOBOOT => {
                let url = opts.iso_url.unwrap_or_default();
                if url.is_empty() {
                    return Err("bootOptions.isoURL is empty".into());
                }
                Some(BootJob {
                    name: format!("iso-mount-{hw_name}"),
                    tasks: vec![
                        power(power_action::HARD_OFF),
                        media(""),
                        media(&url),
                        one_time(boot_device::CDROM),
                        power(power_action::ON),
                    ],
                })
            }
            boot_mode::CUSTOMBOOT => Some(BootJob {
                name: format!("customboot-preparing-{hw_name}"),
                tasks: opts
                    .customboot_config
                    .and_then(|c| c.preparing_actions)
                    .unwrap_or_default(),
            }),
            other => return Err(format!("unsupported bootMode {other:?}")),
        })
    }

    fn post_job(&self, hw: &Hardware) -> Option<BootJob> {
        let hw_name = hw.metadata.name.clone().unwrap_or_default();
        let opts = self.wf.spec.boot_options.clone().unwrap_or_default();
        match self.boot_mode() {
            boot_mode::ISO | boot_mode::ISOBOOT => Some(BootJob {
                name: format!("iso-eject-{hw_name}"),
                tasks: vec![media("")],
            }),
            boot_mode::CUSTOMBOOT => {
                let post = opts
                    .customboot_config
                    .and_then(|c| c.post_actions)
                    .unwrap_or_default();
                (!post.is_empty()).then(|| BootJob {
                    name: format!("customboot-post-{hw_name}"),
                    tasks: post,
                })
            }
            _ => None,
        }
    }

    /// Creates the Job if needed (deleting a stale one of the same name first) and reports
    /// its progress. The Job's UID is tracked in `status.bootOptions.jobs[name]`.
    async fn ensure_job(
        &self,
        hw: &Hardware,
        job: &BootJob,
        status: &mut WorkflowStatus,
    ) -> Result<JobProgress, ReconcileError> {
        let tracked = jobs(status).get(&job.name).cloned().unwrap_or_default();
        if tracked.complete == Some(true) {
            return Ok(JobProgress::Completed);
        }
        let existing = match self.store.get(Kind::Job, self.namespace, &job.name).await {
            Ok(Object::Job(j)) => Some(j),
            Ok(_) | Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let tracked_uid = tracked.uid.clone().unwrap_or_default();
        match existing {
            Some(j)
                if !tracked_uid.is_empty() && j.metadata.uid.as_deref() == Some(&tracked_uid) =>
            {
                let conds = j
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.clone())
                    .unwrap_or_default();
                let is = |t: &str| {
                    conds.iter().find(|c| {
                        c.type_.as_deref() == Some(t)
                            && c.status.as_deref() == Some(condition_status::TRUE)
                    })
                };
                if let Some(c) = is(job_condition_type::FAILED) {
                    self.condition(
                        status,
                        cond::BOOT_JOB_RUNNING,
                        false,
                        "Error",
                        &format!("bmc job {} finished", job.name),
                    );
                    let msg = format!(
                        "bmc job {} failed: {}",
                        job.name,
                        c.message.clone().unwrap_or_default()
                    );
                    return Ok(JobProgress::Failed(msg));
                }
                if is(job_condition_type::COMPLETED).is_some() {
                    jobs(status).entry(job.name.clone()).or_default().complete = Some(true);
                    self.condition(
                        status,
                        cond::BOOT_JOB_RUNNING,
                        false,
                        "Complete",
                        &format!("bmc job {} finished", job.name),
                    );
                    self.condition(
                        status,
                        cond::BOOT_JOB_COMPLETE,
                        true,
                        "Complete",
                        &format!("bmc job {} completed", job.name),
                    );
                    return Ok(JobProgress::Completed);
                }
                self.condition(
                    status,
                    cond::BOOT_JOB_RUNNING,
                    true,
                    "Running",
                    &format!("bmc job {} running", job.name),
                );
                Ok(JobProgress::Running)
            }
            Some(j) if self.owns(&j) => {
                // Created by this Workflow (its ownerReference names this Workflow's UID), but
                // the status write that would have tracked it never landed or tracked another
                // incarnation: the controller died in between (a leader killed, its standby
                // now here) or the write conflicted. Adopt it: deleting and re-creating it
                // would run the bmc Job — its power actions — a second time.
                self.track_job(status, &job.name, j.metadata.uid.clone());
                tracing::info!(workflow = %self.wf_name(), job = %job.name, "adopted the bmc job this workflow created earlier");
                Ok(JobProgress::Running)
            }
            Some(j) => {
                // A Job of that name that is not ours (an earlier workflow's): delete it first.
                self.store
                    .delete(
                        Kind::Job,
                        self.namespace,
                        &job.name,
                        j.metadata.resource_version.as_deref(),
                    )
                    .await
                    .or_else(|e| match e {
                        StoreError::NotFound(_) => Ok(Object::Job(j.clone())),
                        e => Err(e),
                    })?;
                jobs(status)
                    .entry(job.name.clone())
                    .or_default()
                    .existing_job_deleted = Some(true);
                tracing::info!(workflow = %self.wf_name(), job = %job.name, "deleted an existing bmc job");
                Ok(JobProgress::Running)
            }
            None if !tracked_uid.is_empty() => Ok(JobProgress::Failed(format!(
                "bmc job {} disappeared before completing",
                job.name
            ))),
            None => {
                let Some(machine) = hw
                    .spec
                    .bmc_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .filter(|n| !n.is_empty())
                else {
                    return Ok(JobProgress::SetupFailed(format!(
                        "hardware {} has no spec.bmcRef",
                        hw.metadata.name.as_deref().unwrap_or_default()
                    )));
                };
                let new = Job {
                    metadata: ObjectMeta {
                        name: Some(job.name.clone()),
                        namespace: Some(self.namespace.to_string()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: Kind::Workflow.api_version().into(),
                            kind: Kind::Workflow.as_str().into(),
                            name: self.wf_name().to_string(),
                            uid: self.wf.metadata.uid.clone().unwrap_or_default(),
                            controller: Some(true),
                            block_owner_deletion: Some(true),
                        }]),
                        ..Default::default()
                    },
                    spec: JobSpec {
                        machine_ref: Some(MachineRef {
                            name: Some(machine),
                            namespace: Some(self.namespace.to_string()),
                        }),
                        tasks: Some(job.tasks.clone()),
                    },
                    status: None,
                };
                let created = match self.store.create(Object::Job(Arc::new(new))).await {
                    Ok(o) => o,
                    // Created by a concurrent reconcile whose status write lost: next round
                    // finds it untracked and adopts it.
                    Err(StoreError::AlreadyExists(_)) => return Ok(JobProgress::Running),
                    Err(e) => return Err(e.into()),
                };
                self.track_job(status, &job.name, created.meta().uid.clone());
                tracing::info!(workflow = %self.wf_name(), job = %job.name, "created bmc job");
                Ok(JobProgress::Running)
            }
        }
    }

    /// Record the bmc Job `name` (with `uid`) as this Workflow's, not yet complete, and say so
    /// in the `BootJobSetupComplete` condition.
    fn track_job(&self, status: &mut WorkflowStatus, name: &str, uid: Option<String>) {
        let entry = jobs(status).entry(name.to_string()).or_default();
        entry.uid = uid;
        entry.complete = Some(false);
        self.condition(
            status,
            cond::BOOT_JOB_SETUP_COMPLETE,
            true,
            "Created",
            &format!("bmc job {name} created"),
        );
    }

    /// Whether this Workflow (this incarnation: its UID) is the Job's controller owner.
    fn owns(&self, job: &Job) -> bool {
        let Some(uid) = self.wf.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
            return false;
        };
        job.metadata.owner_references.iter().flatten().any(|o| {
            o.controller == Some(true)
                && o.kind == Kind::Workflow.as_str()
                && o.api_version == Kind::Workflow.api_version()
                && o.uid == uid
        })
    }

    /// Sets `netboot.allowPXE` on every interface of the Hardware (no write when already so).
    async fn set_allow_pxe(&self, hw: &Hardware, allow: bool) -> Result<(), ReconcileError> {
        let mut hw = hw.clone();
        let mut changed = false;
        for iface in hw.spec.interfaces.iter_mut().flatten() {
            let nb = iface.netboot.get_or_insert_with(Default::default);
            if nb.allow_pxe != Some(allow) {
                nb.allow_pxe = Some(allow);
                changed = true;
            }
        }
        if changed {
            self.store.update(Object::Hardware(Arc::new(hw))).await?;
        }
        Ok(())
    }
}

/// A Secret's keys as strings (`data` decoded, `stringData` over it), for `.secret.<key>`.
fn secret_strings(secret: &tinkerbell_core::model::Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    out.extend(secret.string_data.clone().unwrap_or_default());
    out
}

/// Insert (`url`) or eject (`""`) the virtual CD.
fn media(url: &str) -> BmcAction {
    BmcAction {
        virtual_media_action: Some(VirtualMediaAction {
            media_url: Some(url.into()),
            kind: Some(virtual_media_kind::CD.into()),
        }),
        ..Default::default()
    }
}

fn not_found_none<T>(e: StoreError) -> Result<Option<T>, StoreError> {
    match e {
        StoreError::NotFound(_) => Ok(None),
        e => Err(e),
    }
}

fn allow_netboot(status: &mut WorkflowStatus) -> &mut tinkerbell_core::model::AllowNetbootStatus {
    status
        .boot_options
        .get_or_insert_with(Default::default)
        .allow_netboot
        .get_or_insert_with(Default::default)
}

fn jobs(status: &mut WorkflowStatus) -> &mut BTreeMap<String, WorkflowJobStatus> {
    status
        .boot_options
        .get_or_insert_with(Default::default)
        .jobs
        .get_or_insert_with(Default::default)
}

/// Sets a condition at time `now`, replacing one of the same type; the time only moves when
/// something else changed, so an unchanged reconcile writes nothing.
fn set_condition(
    status: &mut WorkflowStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let value = if ok {
        condition_status::TRUE
    } else {
        condition_status::FALSE
    };
    let new = WorkflowCondition {
        type_: Some(type_.into()),
        status: Some(value.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        time: Some(Time(now)),
    };
    match conds.iter_mut().find(|c| c.type_.as_deref() == Some(type_)) {
        Some(c) => {
            if c.status != new.status || c.reason != new.reason || c.message != new.message {
                *c = new;
            }
        }
        None => conds.push(new),
    }
}
