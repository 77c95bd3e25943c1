//! `tink-controller`: the workflow controller as its own process.
//!
//! Parses flags and the environment, connects the backend (the appliance's store API or
//! Kubernetes, as every tinkerbell-rs binary does through `tinkerbell_core::connect`) and runs
//! [`tinkerbell_tink_controller::Controller`] until SIGTERM/SIGINT. Exit codes: 2 usage or
//! configuration, 1 failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tinkerbell_core::connect::{self, StoreConnection};
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

    /// Where objects come from: the appliance's store API, or Kubernetes.
    #[arg(long, env = "TINKERBELL_BACKEND", default_value = "embedded")]
    backend: connect::BackendKind,

    /// Store API URL (backend `embedded`). Default: <data-dir>/api-url, else http://127.0.0.1:7081.
    #[arg(long, env = "TINKERBELL_SERVER")]
    server: Option<String>,

    /// File holding the store API bearer token (backend `embedded`). Default: <data-dir>/api-token.
    #[arg(long, env = "TINKERBELL_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    /// The appliance's data directory, for the defaults above.
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

    if cli.resync_seconds == 0 {
        eprintln!("error: --resync-seconds must be > 0");
        return ExitCode::from(2);
    }
    let config = Config {
        resync: Duration::from_secs(cli.resync_seconds),
        namespace: Some(cli.backend_kube_namespace.clone()).filter(|n| !n.is_empty()),
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
    let root = CancellationToken::new();
    let controller = Controller::start(config, store, root.child_token()).await?;
    eprintln!("tink-controller: reconciling workflows");
    let signals = tokio::spawn({
        let root = root.clone();
        async move {
            connect::shutdown_signal().await;
            tracing::info!("shutting down");
            root.cancel();
        }
    });
    let result = controller.join().await;
    signals.abort();
    result.context("tink controller")
}
