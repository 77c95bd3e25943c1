//! Job: run `spec.tasks` in order as Task objects `<job>-task-<n>` owned by the Job, one at
//! a time, and report `Running`, then `Completed` or `Failed`, with `startTime` and
//! `completionTime`. The Job's progress is derived every time from the Tasks that exist
//! (how many completed, whether one failed), never from memory.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use tinkerbell_core::model::bmc::{
    Job, Task, TaskSpec, condition_status, job_condition_type, task_condition_type,
};
use tinkerbell_core::store::{Kind, Object, ObjectKey, StoreError};

use super::{ControllerError, Ctx, Requeue, live, now, owner_job, status};

/// The name of a Job's `n`th Task (0-based), as upstream's `FormatTaskName`.
pub fn task_name(job: &str, n: usize) -> String {
    format!("{job}-task-{n}")
}

/// What the Job's Tasks say.
enum Progress {
    /// A Task is still running (or was just created): wait for its events.
    Waiting,
    /// Task `n` is next.
    Next(usize),
    /// Every Task completed.
    Done,
    /// A Task failed.
    Failed(String),
}

pub(crate) async fn reconcile(
    ctx: &Ctx,
    key: &ObjectKey,
    cached: Option<Object>,
) -> Result<Requeue, ControllerError> {
    let cached = match cached {
        Some(c) => Some(c),
        // Not in the watch cache: gone, or not seen yet (a Task's event can queue its Job
        // before the Job's own watch has delivered it, as at start-up). Its Tasks are orphans
        // only when the store has no such Job.
        None => match ctx.store.get(key.kind, &key.namespace, &key.name).await {
            Ok(o) => Some(o),
            Err(StoreError::NotFound(_)) => {
                delete_orphans(ctx, key).await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        },
    };
    let pending = |o: &Object| matches!(o, Object::Job(j) if j.metadata.deletion_timestamp.is_none() && !terminal(j));
    let Some(Object::Job(job)) = live(ctx, key, cached, pending).await? else {
        return Ok(None);
    };
    let progress = progress(ctx, key, &job).await?;
    let (cond, message): (Option<&str>, Option<String>) = match progress {
        Progress::Waiting => (None, None),
        Progress::Done => (Some(job_condition_type::COMPLETED), None),
        Progress::Failed(m) => (Some(job_condition_type::FAILED), Some(m)),
        Progress::Next(n) => match create_task(ctx, key, &job, n).await {
            Ok(()) => (None, None),
            Err(m) => (Some(job_condition_type::FAILED), Some(m)),
        },
    };
    if let Some(c) = cond {
        tracing::info!(job = %key, condition = c, message = message.as_deref().unwrap_or(""), "Job finished");
    }
    status::update(ctx.store.as_ref(), key, |cur| {
        let Object::Job(cur) = cur else {
            return None;
        };
        if terminal(cur) {
            return None;
        }
        let mut j = status::edit(cur);
        let st = j.status.get_or_insert_with(Default::default);
        let mut changed = false;
        if !status::is_true(&st.conditions, job_condition_type::RUNNING) {
            st.start_time = Some(now());
            status::set(
                &mut st.conditions,
                job_condition_type::RUNNING,
                condition_status::TRUE,
                None,
            );
            changed = true;
        }
        if let Some(c) = cond {
            status::set(
                &mut st.conditions,
                c,
                condition_status::TRUE,
                message.clone(),
            );
            if c == job_condition_type::COMPLETED {
                st.completion_time = Some(now());
            }
            changed = true;
        }
        changed.then(|| Object::Job(Arc::new(j)))
    })
    .await?;
    Ok(None)
}

fn terminal(job: &Job) -> bool {
    let conds = job.status.as_ref().and_then(|s| s.conditions.clone());
    status::is_true(&conds, job_condition_type::COMPLETED)
        || status::is_true(&conds, job_condition_type::FAILED)
}

async fn progress(ctx: &Ctx, key: &ObjectKey, job: &Job) -> Result<Progress, ControllerError> {
    let wanted = job.spec.tasks.as_ref().map_or(0, Vec::len);
    let tasks = ctx.store.list(Kind::Task, Some(&key.namespace)).await?;
    let uid = job.metadata.uid.as_deref().unwrap_or("");
    let mut completed = 0;
    for t in &tasks.items {
        if owner_job(t).as_ref() != Some(key) {
            continue;
        }
        // A Task left by an earlier Job of the same name is not ours.
        if !uid.is_empty() && owner_uid(t).is_some_and(|u| u != uid) {
            continue;
        }
        let Object::Task(t) = t else { continue };
        let conds = t.status.as_ref().and_then(|s| s.conditions.clone());
        if status::is_true(&conds, task_condition_type::COMPLETED) {
            completed += 1;
        } else if status::is_true(&conds, task_condition_type::FAILED) {
            let why = conds
                .iter()
                .flatten()
                .find(|c| c.type_.as_deref() == Some(task_condition_type::FAILED))
                .and_then(|c| c.message.clone())
                .unwrap_or_default();
            let name = t.metadata.name.as_deref().unwrap_or("");
            return Ok(Progress::Failed(if why.is_empty() {
                format!("task {}/{name} failed", key.namespace)
            } else {
                format!("task {}/{name} failed: {why}", key.namespace)
            }));
        } else {
            return Ok(Progress::Waiting);
        }
    }
    Ok(if completed >= wanted {
        Progress::Done
    } else {
        Progress::Next(completed)
    })
}

/// Create Task `n` with the Machine's connection. An error is the Job's failure message.
async fn create_task(ctx: &Ctx, key: &ObjectKey, job: &Job, n: usize) -> Result<(), String> {
    let mref = job.spec.machine_ref.clone().unwrap_or_default();
    let mname = mref.name.unwrap_or_default();
    let mns = mref
        .namespace
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| key.namespace.clone());
    let machine = match ctx.store.get(Kind::Machine, &mns, &mname).await {
        Ok(Object::Machine(m)) => m,
        Ok(_) | Err(StoreError::NotFound(_)) => {
            return Err(format!("machine {mns}/{mname} not found"));
        }
        Err(e) => {
            return Err(format!(
                "failed to get Machine {mns}/{mname}: {}",
                tinkerbell_core::error_chain(&e)
            ));
        }
    };
    let action = job
        .spec
        .tasks
        .as_ref()
        .and_then(|t| t.get(n))
        .cloned()
        .unwrap_or_default();
    let name = task_name(&key.name, n);
    let task = Task {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(key.namespace.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: Kind::Job.api_version().into(),
                kind: Kind::Job.as_str().into(),
                name: key.name.clone(),
                uid: job.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: TaskSpec {
            task: Some(action),
            connection: machine.spec.connection.clone(),
        },
        status: None,
    };
    match ctx.store.create(Object::Task(Arc::new(task))).await {
        Ok(_) => {
            tracing::info!(job = %key, task = %name, "created Task");
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => {
            // Created by an earlier reconcile whose event is on its way, or left by an earlier
            // Job of the same name (the embedded store has no garbage collector): replace it.
            let uid = job.metadata.uid.as_deref().unwrap_or("");
            let old = match ctx.store.get(Kind::Task, &key.namespace, &name).await {
                Ok(o) => o,
                Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) => {
                    return Err(format!(
                        "failed to read Task {}/{name}: {}",
                        key.namespace,
                        tinkerbell_core::error_chain(&e)
                    ));
                }
            };
            if owner_uid(&old).is_some_and(|u| u == uid) {
                return Ok(());
            }
            tracing::info!(job = %key, task = %name, "replacing a Task left by an earlier Job");
            match ctx
                .store
                .delete(Kind::Task, &key.namespace, &name, old.resource_version())
                .await
            {
                Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
                Err(e) => Err(format!(
                    "failed to delete stale Task {}/{name}: {}",
                    key.namespace,
                    tinkerbell_core::error_chain(&e)
                )),
            }
            // The Task's Deleted event queues this Job again, which creates the Task anew.
        }
        Err(e) => Err(format!(
            "failed to create Task {}/{name}: {}",
            key.namespace,
            tinkerbell_core::error_chain(&e)
        )),
    }
}

/// The uid in a Task's Job owner reference, when set.
fn owner_uid(t: &Object) -> Option<&str> {
    t.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Job")
        .and_then(|o| (!o.uid.is_empty()).then_some(o.uid.as_str()))
}

/// The Job is gone: delete the Tasks it owned (Kubernetes' garbage collector does this for
/// the kube backend; the embedded store has none).
async fn delete_orphans(ctx: &Ctx, key: &ObjectKey) -> Result<(), ControllerError> {
    let tasks = ctx.store.list(Kind::Task, Some(&key.namespace)).await?;
    for t in tasks
        .items
        .iter()
        .filter(|t| owner_job(t).as_ref() == Some(key))
    {
        match ctx
            .store
            .delete(Kind::Task, t.namespace(), t.name(), t.resource_version())
            .await
        {
            Ok(_) | Err(StoreError::NotFound(_)) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
