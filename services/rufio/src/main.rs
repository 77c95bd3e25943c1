//! `rufio`: the bmc.tinkerbell.org controllers as their own process.
//!
//! Parses flags and the environment (upstream Tinkerbell's `TINKERBELL_RUFIO_*` names where
//! the setting exists), sets up logging and the runtime, connects the backend — the
//! appliance's store API (the embedded store `tinkerbell serve` owns) or Kubernetes — and runs
//! [`tinkerbell_rufio::Controllers`] until SIGTERM/SIGINT. Exit codes: 2 usage or
//! configuration, 1 failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tinkerbell_core::connect::{self, StoreConnection};
use tinkerbell_core::store::Store;
use tinkerbell_rufio::controller::{self, Config, parse_duration};
use tinkerbell_rufio::{ControllerError, Controllers};
use tokio_util::sync::CancellationToken;

/// Out-of-band BMC control: reconciles bmc.tinkerbell.org Machines, Jobs and Tasks.
#[derive(Debug, Parser)]
#[command(name = "rufio", version, about)]
struct Cli {
    /// How often each Machine's power state is read (Go-style duration: 30m, 90s, ...).
    #[arg(
        long,
        env = "TINKERBELL_RUFIO_POWER_CHECK_INTERVAL",
        default_value = "30m",
        value_parser = parse_duration
    )]
    rufio_power_check_interval: Duration,

    /// Upper bound of one BMC operation, session set-up included.
    #[arg(
        long,
        env = "TINKERBELL_RUFIO_BMC_CONNECT_TIMEOUT",
        default_value = "60s",
        value_parser = parse_duration
    )]
    rufio_bmc_connect_timeout: Duration,

    /// BMC operations in flight at once over all BMCs (one at a time per BMC regardless).
    #[arg(long, env = "TINKERBELL_RUFIO_MAX_CONCURRENT", default_value_t = 32)]
    rufio_max_concurrent: usize,

    /// Where the bmc objects live: the appliance's store API, or Kubernetes.
    #[arg(long, env = "TINKERBELL_BACKEND", default_value = "embedded")]
    backend: connect::BackendKind,

    /// Store API URL (backend `embedded`). Default: <data-dir>/api-url, else http://127.0.0.1:7081.
    #[arg(long, env = "TINKERBELL_SERVER")]
    server: Option<String>,

    /// File holding the store API bearer token (backend `embedded`). Default: <data-dir>/api-token.
    #[arg(long, env = "TINKERBELL_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    /// The appliance's data directory, for the defaults above.
    /// Default: /var/lib/tinkerbell as root, else ~/.local/share/tinkerbell.
    #[arg(long, env = "TINKERBELL_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Kubeconfig for `--backend kube` (default: in-cluster config or $KUBECONFIG).
    #[arg(long, env = "TINKERBELL_BACKEND_KUBE_CONFIG")]
    backend_kube_config: Option<PathBuf>,

    /// Namespace to reconcile (all namespaces when empty).
    #[arg(long, env = "TINKERBELL_BACKEND_KUBE_NAMESPACE", default_value = "")]
    backend_kube_namespace: String,

    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "TINKERBELL_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    tinkerbell_core::store::remote::install_crypto_provider();

    let config = Config {
        namespace: Some(cli.backend_kube_namespace.clone()).filter(|n| !n.is_empty()),
        power_check_interval: cli.rufio_power_check_interval,
        bmc_timeout: cli.rufio_bmc_connect_timeout,
        max_concurrent_bmc: cli.rufio_max_concurrent,
        ..Config::default()
    };
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
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

async fn run(cli: &Cli, config: controller::Config) -> anyhow::Result<()> {
    let store = connect(cli).await?;
    let root = CancellationToken::new();
    let controllers = Controllers::start(config, store, root.child_token())?;
    eprintln!("rufio: reconciling bmc.tinkerbell.org Machines, Jobs and Tasks");
    let signals = tokio::spawn({
        let root = root.clone();
        async move {
            connect::shutdown_signal().await;
            tracing::info!("shutting down");
            root.cancel();
        }
    });
    let result = controllers.join().await;
    signals.abort();
    result.context("rufio controllers")
}

async fn connect(cli: &Cli) -> anyhow::Result<Arc<dyn Store>> {
    let data_dir = match &cli.data_dir {
        Some(d) => d.clone(),
        None => connect::default_data_dir().context("HOME is not set; pass --data-dir")?,
    };
    let conn = StoreConnection {
        backend: cli.backend,
        data_dir,
        server: cli.server.clone(),
        token_file: cli.token_file.clone(),
        kube_config: cli.backend_kube_config.clone(),
        kube_namespace: cli.backend_kube_namespace.clone(),
    };
    let store: Arc<dyn Store> = conn.connect().await?;
    Ok(store)
}
