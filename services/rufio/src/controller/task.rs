//! Task: run one action against the BMC, once, then (for `on`, `off` and `soft`) ask the BMC
//! every `power_verify_interval` until it reports the wanted power state, failing after
//! `task_timeout` from `startTime`.
//!
//! Exactly once, also when the controller dies mid-Task:
//!
//! * **Claim before acting.** The first status write sets `startTime` before the action runs,
//!   conditionally on the resourceVersion read: it claims the Task, so the action runs once
//!   even when two controllers (or two reconciles) race. The process remembers the Tasks it
//!   acted on (`Ctx::acted`) until they end.
//! * **A started Task this process did not act on was inherited** from a controller that
//!   stopped between its claim and the Task's end: with leader election, a leader killed
//!   (`kill -9`, node loss) in the middle of a Job, whose standby has taken the Lease over. The
//!   dead leader may have died before sending the command, or after the BMC carried it out but
//!   before the result was written; `startTime` cannot tell which. For `on`, `off` and `soft`
//!   the BMC can: the new owner reads the power state first and, when the machine is already
//!   in the wanted state, completes the Task without a command; otherwise it sends the command
//!   (once: the Task is then its own) and verifies as usual. Upstream writes `startTime` after
//!   acting, so its next controller acts again: the command twice in the second case. Only
//!   verifying (what this module did before) loses it in the first: the Task times out after
//!   10 minutes.
//! * What it cannot cover: a command the BMC accepted but has not carried out yet when the new
//!   owner looks (a graceful `soft` shutdown still in progress, a BMC that applies power changes
//!   seconds later) is sent again — harmless for on/off, which are idempotent, and a second
//!   ACPI power-button press for `soft`. Actions whose effect cannot be read back (cycle,
//!   reset) and those safe to repeat (boot device, virtual media, status) run again on an
//!   inherited Task. Two *live* controllers on one store without leader election could both
//!   treat a verifying Task as inherited; run replicas with leader election.

use std::collections::HashSet;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tinkerbell_core::model::bmc::{Task, condition_status, task_condition_type};
use tinkerbell_core::store::{Kind, Object, ObjectKey};
use tinkerbell_core::timeline::{Phase, Subject};

use super::bmcs::{self, Target};
use super::{ControllerError, Ctx, Requeue, live, now, status};
use crate::action::{ActionOutcome, Step};
use crate::{PowerAction, PowerState};

pub(crate) async fn reconcile(
    ctx: &Ctx,
    key: &ObjectKey,
    cached: Option<Object>,
) -> Result<Requeue, ControllerError> {
    let pending = |o: &Object| matches!(o, Object::Task(t) if t.metadata.deletion_timestamp.is_none() && !terminal(t));
    let Some(Object::Task(task)) = live(ctx, key, cached, pending).await? else {
        forget(ctx, key);
        return Ok(None);
    };
    let step = match Step::from_action(&task.spec.task.clone().unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return finish(ctx, key, Err(bmcs::message(&e))).await,
    };
    let wanted = match &step {
        Step::Power(PowerAction::On) => Some(PowerState::On),
        Step::Power(PowerAction::Off | PowerAction::Soft) => Some(PowerState::Off),
        _ => None,
    };
    let started = task.status.as_ref().and_then(|s| s.start_time.clone());
    let Some(conn) = task.spec.connection.clone() else {
        return finish(ctx, key, Err("the Task has no connection".into())).await;
    };

    if let (Some(start), Some(want)) = (&started, wanted) {
        // Verifying: time out, or ask the BMC again.
        let elapsed = elapsed_since(start);
        if elapsed >= ctx.config.task_timeout {
            let last = verify_errors(ctx).get(key).cloned();
            let mut msg = format!(
                "bmc task timeout: power state {want} not reached within {:?}",
                ctx.config.task_timeout
            );
            if let Some(last) = last {
                msg.push_str(&format!("; last error: {last}"));
            }
            return finish(ctx, key, Err(msg)).await;
        }
        let target = match Target::resolve(ctx.store.as_ref(), &conn, &key.namespace).await {
            Ok(t) => t,
            Err(m) => return finish(ctx, key, Err(m)).await,
        };
        let remaining = ctx.config.task_timeout - elapsed;
        if !acted(ctx).contains(key) {
            return take_over(ctx, key, &task, &step, &target, want, remaining).await;
        }
        return verify(ctx, key, &target, want, remaining).await;
    }

    if started.is_none() {
        // Claim the Task.
        let claimed = status::update(ctx.store.as_ref(), key, |cur| {
            let Object::Task(cur) = cur else { return None };
            if terminal(cur) || cur.status.as_ref().is_some_and(|s| s.start_time.is_some()) {
                return None;
            }
            let mut t = status::edit(cur);
            t.status.get_or_insert_with(Default::default).start_time = Some(now());
            Some(Object::Task(Arc::new(t)))
        })
        .await?;
        if claimed.is_none() {
            // Someone else started it (or it is gone): look again.
            return Ok(Some(Duration::ZERO));
        }
        acted(ctx).insert(key.clone());
    }
    let target = match Target::resolve(ctx.store.as_ref(), &conn, &key.namespace).await {
        Ok(t) => t,
        Err(m) => return finish(ctx, key, Err(m)).await,
    };
    tracing::info!(task = %key, host = %target.host, action = ?step, "running BMC action");
    let result = ctx.bmcs.run(&target, &step).await;
    if result.is_ok() {
        record(ctx, &task, &step).await;
    }
    match result {
        Err(e) => finish(ctx, key, Err(bmcs::message(&e))).await,
        Ok(ActionOutcome::PowerState(s)) => {
            finish(ctx, key, Ok(Some(format!("power state: {s}")))).await
        }
        Ok(ActionOutcome::Done) => finish(ctx, key, Ok(None)).await,
        Ok(ActionOutcome::AwaitPower(want)) => {
            verify(ctx, key, &target, want, ctx.config.task_timeout).await
        }
    }
}

/// A verified power Task started by a controller that stopped before finishing it: complete it
/// when the BMC already reports `want`, else send the action (once) and verify.
async fn take_over(
    ctx: &Ctx,
    key: &ObjectKey,
    task: &Task,
    step: &Step,
    target: &Target,
    want: PowerState,
    remaining: Duration,
) -> Result<Requeue, ControllerError> {
    let state = match ctx.bmcs.run(target, &Step::PowerStatus).await {
        Ok(ActionOutcome::PowerState(s)) => s,
        Ok(_) => return Ok(Some(ctx.config.power_verify_interval.min(remaining))),
        Err(e) => {
            // Cannot tell yet whether the command is needed: ask again (the timeout holds).
            let m = bmcs::message(&e);
            tracing::info!(task = %key, error = %m, "inherited Task: power state check failed; retrying");
            verify_errors(ctx).insert(key.clone(), m);
            return Ok(Some(ctx.config.power_verify_interval.min(remaining)));
        }
    };
    acted(ctx).insert(key.clone());
    if state == want {
        tracing::info!(task = %key, state = %state, "inherited Task: the BMC already reports the wanted power state; not sending the action again");
        return finish(ctx, key, Ok(None)).await;
    }
    tracing::info!(task = %key, host = %target.host, action = ?step, state = %state, "inherited Task: the action had not taken effect; running it");
    match ctx.bmcs.run(target, step).await {
        Err(e) => finish(ctx, key, Err(bmcs::message(&e))).await,
        Ok(_) => {
            record(ctx, task, step).await;
            verify(ctx, key, target, want, remaining).await
        }
    }
}

fn acted(ctx: &Ctx) -> MutexGuard<'_, HashSet<ObjectKey>> {
    ctx.acted.lock().unwrap_or_else(|p| p.into_inner())
}

fn verify_errors(ctx: &Ctx) -> MutexGuard<'_, std::collections::HashMap<ObjectKey, String>> {
    ctx.verify_errors.lock().unwrap_or_else(|p| p.into_inner())
}

/// Put a power or boot-device change into the timeline, under the bmc Machine of the Job that
/// owns the Task (the Hardware's `bmcRef` names that Machine).
async fn record(ctx: &Ctx, task: &Task, step: &Step) {
    let Some(timeline) = &ctx.config.timeline else {
        return;
    };
    let (phase, detail) = match step {
        Step::Power(PowerAction::On) => (Phase::PowerOn, "on".to_string()),
        Step::Power(a @ (PowerAction::Off | PowerAction::Soft)) => {
            (Phase::PowerOff, format!("{a:?}").to_lowercase())
        }
        Step::Power(a @ (PowerAction::Cycle | PowerAction::Reset)) => {
            (Phase::Reboot, format!("bmc {a:?}").to_lowercase())
        }
        Step::BootDevice {
            device,
            persistent,
            efi,
        } => (
            Phase::BootDevice,
            format!("{device:?} persistent={persistent} efi={efi}").to_lowercase(),
        ),
        _ => return,
    };
    let ns = task.metadata.namespace.clone().unwrap_or_default();
    let job = task
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Job")
        .map(|o| o.name.clone());
    let Some(job) = job else { return };
    let Ok(Object::Job(j)) = ctx.store.get(Kind::Job, &ns, &job).await else {
        return;
    };
    let Some(machine) = j.spec.machine_ref.as_ref() else {
        return;
    };
    let machine_ns = machine
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(&ns);
    timeline.record(
        Subject::bmc(machine_ns, machine.name.as_deref().unwrap_or("")),
        phase,
        "rufio",
        detail,
    );
}

/// Ask the BMC for its power state: complete the Task when it is `want`, else come back.
async fn verify(
    ctx: &Ctx,
    key: &ObjectKey,
    target: &Target,
    want: PowerState,
    remaining: Duration,
) -> Result<Requeue, ControllerError> {
    match ctx.bmcs.run(target, &Step::PowerStatus).await {
        Ok(ActionOutcome::PowerState(s)) if s == want => {
            return finish(ctx, key, Ok(None)).await;
        }
        Ok(ActionOutcome::PowerState(s)) => {
            tracing::debug!(task = %key, state = %s, wanted = %want, "power state not reached yet");
            verify_errors(ctx).insert(key.clone(), format!("power state is {s}"));
        }
        Ok(_) => {}
        Err(e) => {
            let m = bmcs::message(&e);
            tracing::info!(task = %key, error = %m, "power state check failed; retrying");
            verify_errors(ctx).insert(key.clone(), m);
        }
    }
    Ok(Some(ctx.config.power_verify_interval.min(remaining)))
}

/// Write the end of the Task: `Completed` (with `completionTime`) or `Failed`, with a message.
async fn finish(
    ctx: &Ctx,
    key: &ObjectKey,
    result: Result<Option<String>, String>,
) -> Result<Requeue, ControllerError> {
    match &result {
        Ok(_) => tracing::info!(task = %key, "Task completed"),
        Err(m) => tracing::warn!(task = %key, error = %m, "Task failed"),
    }
    status::update(ctx.store.as_ref(), key, |cur| {
        let Object::Task(cur) = cur else { return None };
        if terminal(cur) {
            return None;
        }
        let mut t = status::edit(cur);
        let st = t.status.get_or_insert_with(Default::default);
        if st.start_time.is_none() {
            st.start_time = Some(now());
        }
        match &result {
            Ok(msg) => {
                st.completion_time = Some(now());
                status::set(
                    &mut st.conditions,
                    task_condition_type::COMPLETED,
                    condition_status::TRUE,
                    msg.clone(),
                );
            }
            Err(msg) => status::set(
                &mut st.conditions,
                task_condition_type::FAILED,
                condition_status::TRUE,
                Some(msg.clone()),
            ),
        }
        Some(Object::Task(Arc::new(t)))
    })
    .await?;
    forget(ctx, key);
    Ok(None)
}

fn forget(ctx: &Ctx, key: &ObjectKey) {
    verify_errors(ctx).remove(key);
    acted(ctx).remove(key);
}

fn terminal(t: &Task) -> bool {
    let conds = t.status.as_ref().and_then(|s| s.conditions.clone());
    status::is_true(&conds, task_condition_type::COMPLETED)
        || status::is_true(&conds, task_condition_type::FAILED)
}

fn elapsed_since(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Duration {
    let ms = k8s_openapi::jiff::Timestamp::now().as_millisecond() - t.0.as_millisecond();
    Duration::from_millis(ms.max(0) as u64)
}
