//! `tink-controller`: the workflow controller as its own process.
//!
//! Parses flags and the environment, connects the backend (the appliance's store API or
//! Kubernetes, as every tinkerbell-rs binary does through `tinkerbell_process`) and runs
//! [`tinkerbell_tink_controller::Controller`] until SIGTERM/SIGINT. Exit codes: 2 usage or
//! configuration, 1 failure.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tinkerbell_core::store::Store;
use tinkerbell_process as process;
use tinkerbell_tink_controller::{Config, Controller, ControllerError};

/// Renders Templates into Workflows and drives their boot options, timeouts and POST.
#[derive(Debug, Parser)]
#[command(name = "tink-controller", version, about)]
struct Cli {
    /// Seconds between full reconciles of every Workflow (timeouts resolve at this pace).
    #[arg(
        long,
        env = "TINKERBELL_TINK_CONTROLLER_RESYNC_SECONDS",
        default_value_t = 10
    )]
    resync_seconds: u64,

    /// Take the `tink-controller` Lease before reconciling, so only one replica does (needs
    /// `--backend kube`).
    #[arg(
        long,
        env = "TINKERBELL_TINK_CONTROLLER_ENABLE_LEADER_ELECTION",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    tink_controller_enable_leader_election: bool,

    /// Namespace of the Lease (default: --backend-kube-namespace, else the kubeconfig's or
    /// the service account's namespace).
    #[arg(
        long,
        env = "TINKERBELL_TINK_CONTROLLER_LEADER_ELECTION_NAMESPACE",
        default_value = ""
    )]
    tink_controller_leader_election_namespace: String,

    #[command(flatten)]
    store: process::StoreArgs,

    #[command(flatten)]
    log: process::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::service_main(
        &cli.log.log_level,
        |e| {
            e.downcast_ref::<ControllerError>()
                .is_some_and(ControllerError::is_config)
        },
        run(&cli),
    )
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    if cli.resync_seconds == 0 {
        return Err(process::UsageError("--resync-seconds must be > 0".into()).into());
    }
    let election = cli.store.election(
        "--tink-controller-enable-leader-election",
        cli.tink_controller_enable_leader_election,
        "tink-controller",
        &cli.tink_controller_leader_election_namespace,
    )?;
    let config = Config {
        resync: Duration::from_secs(cli.resync_seconds),
        namespace: cli.store.namespace(),
    };
    let store: Arc<dyn Store> = cli
        .store
        .connect(tinkerbell_tink_controller::STORE_KINDS)
        .await?;
    process::run_controller(&cli.store, election, |cancel| async move {
        let controller = Controller::start(config, store, cancel).await?;
        eprintln!("tink-controller: reconciling workflows");
        controller.join().await.context("tink controller")
    })
    .await
}
