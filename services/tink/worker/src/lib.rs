//! tink-worker: the on-machine Tinkerbell agent. It runs in HookOS (or any initramfs), polls
//! the tink server for the next action of its workflow, runs it natively — the upstream
//! action images (`image2disk`, `writefile`, …) are implemented in [`actions`], so no
//! container runtime is needed — and reports RUNNING/SUCCESS/FAILED/TIMEOUT with durations.
//!
//! It is built as one static binary that needs nothing from the root filesystem: TLS roots
//! are loaded explicitly (none → plain http only), proxies come from flags, the environment
//! or the kernel command line (see [`config`]).

pub mod actions;
pub mod agent;
pub mod config;
pub mod grpc;
mod sys;

use tinkerbell_tink_proto::{current, legacy};
use tokio_util::sync::CancellationToken;

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The gRPC connection could not be set up.
    #[error("gRPC setup")]
    Grpc(#[from] grpc::GrpcError),
}

/// Run the agent with `config` until `cancel`: connect (lazily) to the tink server, then poll,
/// run and report forever. Returns only on cancellation or a setup error.
pub async fn run(config: config::Config, cancel: CancellationToken) -> Result<(), WorkerError> {
    actions::install_crypto_provider();
    let (channel, auth) = grpc::channel(&config)?;
    let mut ctx = actions::ActionContext::new(config.http.clone());
    ctx.allow_power = config.allow_power;
    let settings = agent::AgentSettings {
        retry_interval: config.retry_interval,
        backoff_max: config.backoff_max,
        default_timeout: config.default_timeout,
    };
    let power = |p| {
        let e = actions::perform_power(p);
        tracing::error!(error = %e, "the power action failed");
    };
    let id = config.worker_id.clone();
    match config.protocol {
        config::Protocol::Current => {
            let t = grpc::CurrentTransport::new(
                channel,
                auth,
                id,
                current::workflow_service_client::WorkflowServiceClient::with_interceptor,
            );
            agent::run(&t, &settings, &ctx, &cancel, None, &power).await;
        }
        config::Protocol::Legacy => {
            let t = grpc::LegacyTransport::new(
                channel,
                auth,
                id,
                legacy::workflow_service_client::WorkflowServiceClient::with_interceptor,
            );
            agent::run(&t, &settings, &ctx, &cancel, None, &power).await;
        }
    }
    Ok(())
}
