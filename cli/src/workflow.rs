//! `tinkerbell workflow`: create a Workflow the way EKS Anywhere does, watch it run, read its
//! action logs.
//!
//! * `create` writes a Workflow with `templateRef`, `hardwareRef` and `hardwareMap.device_1` =
//!   the Hardware's first MAC (the worker ID the template's `{{.device_1}}` renders to);
//!   `--netboot` adds `bootOptions{toggleAllowNetboot: true, bootMode: netboot}`.
//! * `watch` follows the Workflow through `Store::watch` and prints a line whenever the
//!   workflow or an action changes state; it exits 0 on SUCCESS and 1 on FAILED/TIMEOUT (or
//!   when the Workflow is deleted).
//! * `logs` asks the tink server (`tinkerbell.v1.WorkerLogs/ReadLogs`) with the reader token
//!   (`<data-dir>/reader-token`), which `serve` gives the tink server as its log-reading token.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use futures::StreamExt;
use serde_json::json;
use tinkerbell_core::model::{Workflow, WorkflowStatus};
use tinkerbell_core::store::{Kind, Object, WatchEvent};

use crate::Global;
use crate::commands::{connect, data_dir};

/// File in the data directory where `serve` writes the tink gRPC server's URL.
pub const GRPC_URL_FILE: &str = "tink-grpc-url";

/// `workflow` subcommands.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Create a Workflow running a Template on a Hardware.
    Create {
        /// Template name.
        #[arg(long)]
        template: String,
        /// Hardware name.
        #[arg(long)]
        hardware: String,
        /// Workflow name (default: the Hardware's name).
        #[arg(long)]
        name: Option<String>,
        /// Netboot the machine through its BMC first (toggleAllowNetboot, bootMode netboot).
        #[arg(long)]
        netboot: bool,
    },
    /// Follow a Workflow's progress until it ends (exit 0 on SUCCESS, 1 otherwise).
    Watch {
        /// Workflow name.
        name: String,
    },
    /// Print the action logs workers sent for a Workflow.
    Logs {
        /// Workflow name.
        name: String,
        /// Only this action.
        #[arg(long)]
        action: Option<String>,
        /// tink server URL. Default: <data-dir>/tink-grpc-url, else http://127.0.0.1:42113.
        #[arg(long, env = "TINKERBELL_TINK_SERVER_URL")]
        tink_server: Option<String>,
    },
}

/// Run a `workflow` subcommand.
pub async fn run(g: &Global, cmd: WorkflowCommand) -> anyhow::Result<()> {
    match cmd {
        WorkflowCommand::Create {
            template,
            hardware,
            name,
            netboot,
        } => create(g, &template, &hardware, name.as_deref(), netboot).await,
        WorkflowCommand::Watch { name } => watch(g, &name).await,
        WorkflowCommand::Logs {
            name,
            action,
            tink_server,
        } => logs(g, &name, action.as_deref(), tink_server).await,
    }
}

async fn create(
    g: &Global,
    template: &str,
    hardware: &str,
    name: Option<&str>,
    netboot: bool,
) -> anyhow::Result<()> {
    let store = connect(g).await?;
    let ns = g.namespace.as_str();
    store
        .get(Kind::Template, ns, template)
        .await
        .with_context(|| format!("Template {ns}/{template}"))?;
    let hw = store
        .get(Kind::Hardware, ns, hardware)
        .await
        .with_context(|| format!("Hardware {ns}/{hardware}"))?;
    let mac = hw
        .as_hardware()
        .and_then(|h| h.spec.interfaces.as_ref())
        .and_then(|i| {
            i.iter()
                .find_map(|i| i.dhcp.as_ref().and_then(|d| d.mac.clone()))
        })
        .with_context(|| format!("Hardware {ns}/{hardware} has no interface with a MAC"))?;
    let name = name.unwrap_or(hardware);
    let mut spec = json!({
        "templateRef": template,
        "hardwareRef": hardware,
        "hardwareMap": {"device_1": mac},
    });
    if netboot {
        spec["bootOptions"] = json!({"toggleAllowNetboot": true, "bootMode": "netboot"});
    }
    let wf: Workflow = serde_json::from_value(json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .context("building the Workflow")?;
    store.create(Object::Workflow(Arc::new(wf))).await?;
    println!("workflow.tinkerbell.org/{name} created");
    Ok(())
}

/// One line per change: the workflow state, and each action that changed.
fn progress(
    prev_wf: &mut String,
    prev: &mut BTreeMap<String, String>,
    status: &WorkflowStatus,
) -> Vec<String> {
    let mut lines = Vec::new();
    let state = status.state.clone().unwrap_or_default();
    for task in status.tasks.iter().flatten() {
        for a in task.actions.iter().flatten() {
            let key = format!(
                "{}/{}",
                task.name.as_deref().unwrap_or(""),
                a.name.as_deref().unwrap_or("")
            );
            let s = a.state.clone().unwrap_or_else(|| "PENDING".into());
            if prev.get(&key) != Some(&s) {
                let mut line = format!("  {key:<40} {s}");
                if let Some(d) = &a.execution_duration {
                    line.push_str(&format!(" ({d})"));
                }
                if let Some(m) = a.message.as_deref().filter(|m| !m.is_empty()) {
                    line.push_str(&format!(": {m}"));
                }
                lines.push(line);
                prev.insert(key, s);
            }
        }
    }
    if *prev_wf != state {
        lines.push(format!("workflow {state}"));
        *prev_wf = state;
    }
    lines
}

async fn watch(g: &Global, name: &str) -> anyhow::Result<()> {
    let store = connect(g).await?;
    let ns = g.namespace.clone();
    let mut prev_wf = String::new();
    let mut prev = BTreeMap::new();
    loop {
        // Unanchored: the current object first, then every change. Re-listed when the watch
        // ends (the store dropped a slow watcher).
        let mut events = store.watch(Kind::Workflow, Some(&ns), None).await?;
        let mut seen = false;
        while let Some(ev) = events.next().await {
            let ev = ev?;
            if ev.object().name() != name {
                continue;
            }
            seen = true;
            let Some(wf) = ev.object().as_workflow().cloned() else {
                continue;
            };
            if let WatchEvent::Deleted(_) = ev {
                bail!("workflow {ns}/{name} was deleted");
            }
            let status = wf.status.clone().unwrap_or_default();
            for l in progress(&mut prev_wf, &mut prev, &status) {
                println!("{l}");
            }
            match status.state.as_deref() {
                Some("SUCCESS" | "STATE_SUCCESS") => return Ok(()),
                Some(s @ ("FAILED" | "TIMEOUT" | "STATE_FAILED" | "STATE_TIMEOUT")) => {
                    bail!("workflow {ns}/{name} ended {s}")
                }
                _ => {}
            }
        }
        if !seen {
            store
                .get(Kind::Workflow, &ns, name)
                .await
                .with_context(|| format!("workflow {ns}/{name}"))?;
        }
    }
}

async fn logs(
    g: &Global,
    name: &str,
    action: Option<&str>,
    url: Option<String>,
) -> anyhow::Result<()> {
    use tinkerbell_tink_proto::logs::ReadLogsRequest;
    use tinkerbell_tink_proto::logs::worker_logs_client::WorkerLogsClient;

    let dir = data_dir(g)?;
    let url = match url {
        Some(u) => u,
        None => std::fs::read_to_string(dir.join(GRPC_URL_FILE))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "http://127.0.0.1:42113".into()),
    };
    let token_file = g
        .store
        .token_file
        .clone()
        .unwrap_or_else(|| dir.join(tinkerbell_core::api::token::READER_FILE_NAME));
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the token {}", token_file.display()))?;
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| format!("tink server URL {url:?}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to the tink server at {url}"))?;
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {}", token.trim())
        .parse()
        .context("the token is not valid metadata")?;
    let mut client =
        WorkerLogsClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", auth.clone());
            Ok(req)
        });
    let resp = client
        .read_logs(ReadLogsRequest {
            workflow_id: format!("{}/{name}", g.namespace),
            action_name: action.unwrap_or("").to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))
        .context("reading logs")?
        .into_inner();
    if resp.actions.is_empty() {
        eprintln!("no logs for workflow {}/{name}", g.namespace);
    }
    for a in resp.actions {
        println!("==> {} ({})", a.action_name, a.action_id);
        if a.dropped > 0 {
            println!("... {} older lines dropped", a.dropped);
        }
        for l in a.lines {
            println!("{}", l.text);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_prints_changes_only() {
        let st = |a: &str, wf: &str| -> WorkflowStatus {
            serde_json::from_value(json!({
                "state": wf,
                "tasks": [{"id": "t", "name": "os", "agentID": "x", "actions": [
                    {"id": "1", "name": "stream", "state": a, "executionDuration": "1s"},
                ]}],
            }))
            .unwrap()
        };
        let (mut w, mut p) = (String::new(), BTreeMap::new());
        let l = progress(&mut w, &mut p, &st("RUNNING", "RUNNING"));
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(progress(&mut w, &mut p, &st("RUNNING", "RUNNING")).is_empty());
        let l = progress(&mut w, &mut p, &st("SUCCESS", "POST"));
        assert!(
            l[0].contains("os/stream") && l[0].contains("SUCCESS (1s)"),
            "{l:?}"
        );
        assert_eq!(l[1], "workflow POST");
    }
}
