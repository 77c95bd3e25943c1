//! `tink-controller`: the workflow controller as its own process.
//!
//! Parses flags and the environment, connects the backend (the appliance's store API or
//! Kubernetes, as every tinkerbell-rs binary does through `tinkerbell_core::connect`) and runs
//! [`tinkerbell_tink_controller::Controller`] until SIGTERM/SIGINT. Exit codes: 2 usage or
//! configuration, 1 failure.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tinkerbell_core::connect;
use tinkerbell_core::store::Store;
use tinkerbell_tink_controller::{Config, Controller, ControllerError};
use tokio_util::sync::CancellationToken;

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
    store: connect::StoreArgs,

    #[command(flatten)]
    log: connect::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = connect::init_tracing(&cli.log.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }

    if cli.resync_seconds == 0 {
        eprintln!("error: --resync-seconds must be > 0");
        return ExitCode::from(2);
    }
    if cli.tink_controller_enable_leader_election && cli.store.backend != connect::BackendKind::Kube
    {
        eprintln!(
            "error: --tink-controller-enable-leader-election: {}",
            connect::ConnectError::LeaderNeedsKube
        );
        return ExitCode::from(2);
    }
    let config = Config {
        resync: Duration::from_secs(cli.resync_seconds),
        namespace: cli.store.namespace(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let usage = matches!(
                e.downcast_ref::<ControllerError>(),
                Some(ControllerError::Config(_))
            );
            eprintln!("error: {}", connect::error_chain(e.as_ref()));
            if usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: &Cli, config: Config) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = cli.store.connect().await?;
    let root = CancellationToken::new();
    let signals = tokio::spawn({
        let root = root.clone();
        async move {
            connect::shutdown_signal().await;
            tracing::info!("shutting down");
            root.cancel();
        }
    });
    let election = cli
        .tink_controller_enable_leader_election
        .then(|| connect::Election {
            lease: "tink-controller",
            namespace: &cli.tink_controller_leader_election_namespace,
        });
    let result = connect::run_elected(&cli.store, election, &root, async {
        let controller = Controller::start(config, store, root.child_token()).await?;
        eprintln!("tink-controller: reconciling workflows");
        controller.join().await.context("tink controller")
    })
    .await;
    signals.abort();
    // None: stopped while waiting for the Lease.
    result?.unwrap_or(Ok(()))
}
