//! `rufio`: the bmc.tinkerbell.org controllers as their own process.
//!
//! Parses flags and the environment (upstream Tinkerbell's `TINKERBELL_RUFIO_*` names where
//! the setting exists), sets up logging and the runtime, connects the backend — the
//! appliance's store API (the embedded store `tinkerbell serve` owns) or Kubernetes — and runs
//! [`tinkerbell_rufio::Controllers`] until SIGTERM/SIGINT. Exit codes: 2 usage or
//! configuration, 1 failure.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tinkerbell_core::duration;
use tinkerbell_core::store::Store;
use tinkerbell_process as process;
use tinkerbell_rufio::controller::Config;
use tinkerbell_rufio::{ControllerError, Controllers};

/// Out-of-band BMC control: reconciles bmc.tinkerbell.org Machines, Jobs and Tasks.
#[derive(Debug, Parser)]
#[command(name = "rufio", version, about)]
struct Cli {
    /// How often each Machine's power state is read (Go-style duration: 30m, 90s, ...).
    #[arg(
        long,
        env = "TINKERBELL_RUFIO_POWER_CHECK_INTERVAL",
        default_value = "30m",
        value_parser = duration::parse
    )]
    rufio_power_check_interval: Duration,

    /// Upper bound of one BMC operation, session set-up included.
    #[arg(
        long,
        env = "TINKERBELL_RUFIO_BMC_CONNECT_TIMEOUT",
        default_value = "60s",
        value_parser = duration::parse
    )]
    rufio_bmc_connect_timeout: Duration,

    /// BMC operations in flight at once over all BMCs (one at a time per BMC regardless).
    #[arg(long, env = "TINKERBELL_RUFIO_MAX_CONCURRENT", default_value_t = 32)]
    rufio_max_concurrent: usize,

    /// Take the `rufio` Lease before reconciling, so only one replica does (needs
    /// `--backend kube`).
    #[arg(
        long,
        env = "TINKERBELL_RUFIO_ENABLE_LEADER_ELECTION",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    rufio_enable_leader_election: bool,

    /// Namespace of the Lease (default: --backend-kube-namespace, else the kubeconfig's or
    /// the service account's namespace).
    #[arg(
        long,
        env = "TINKERBELL_RUFIO_LEADER_ELECTION_NAMESPACE",
        default_value = ""
    )]
    rufio_leader_election_namespace: String,

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
    let election = cli.store.election(
        "--rufio-enable-leader-election",
        cli.rufio_enable_leader_election,
        "rufio",
        &cli.rufio_leader_election_namespace,
    )?;
    let config = Config {
        namespace: cli.store.namespace(),
        power_check_interval: cli.rufio_power_check_interval,
        bmc_timeout: cli.rufio_bmc_connect_timeout,
        max_concurrent_bmc: cli.rufio_max_concurrent,
        ..Config::default()
    };
    config.validate()?;
    let store: Arc<dyn Store> = cli.store.connect(tinkerbell_rufio::STORE_KINDS).await?;
    process::run_controller(&cli.store, election, |cancel| async move {
        let controllers = Controllers::start(config, store, cancel)?;
        eprintln!("rufio: reconciling bmc.tinkerbell.org Machines, Jobs and Tasks");
        controllers.join().await.context("rufio controllers")
    })
    .await
}
