//! `boots`: the network-boot service as its own process.
//!
//! Parses flags and the environment (upstream Smee's `TINKERBELL_*` names where the feature
//! exists), sets up logging and the runtime, connects the backend (the appliance's store API or
//! Kubernetes) and runs [`tinkerbell_boots::Boots`] until SIGTERM/SIGINT. Its logs and metrics
//! routes are served on `--bind-address`:`--http-port`. Exit codes: 2 usage or configuration,
//! 1 failure.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tinkerbell_boots::flags::{DhcpArgs, SyslogArgs};
use tinkerbell_boots::{Boots, BootsError, Config};
use tinkerbell_core::connect;
use tinkerbell_core::store::HardwareLookup;
use tokio_util::sync::CancellationToken;

/// Network boot for Tinkerbell Hardware: DHCP, syslog (TFTP and iPXE over HTTP join later).
#[derive(Debug, Parser)]
#[command(name = "boots", version, about)]
struct Cli {
    /// Serve DHCP.
    #[arg(long, env = "TINKERBELL_DHCP_ENABLED", default_value_t = true, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    dhcp_enabled: bool,
    #[command(flatten)]
    dhcp: DhcpArgs,

    /// Receive syslog.
    #[arg(long, env = "TINKERBELL_SYSLOG_ENABLED", default_value_t = true, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    syslog_enabled: bool,
    #[command(flatten)]
    syslog: SyslogArgs,

    /// Address of the HTTP listener (logs and metrics routes).
    #[arg(long, env = "TINKERBELL_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Port of the HTTP listener (0 picks one).
    #[arg(long, env = "TINKERBELL_HTTP_PORT", default_value_t = 7080)]
    http_port: u16,
    /// File whose content is the bearer token the logs routes require (open when unset).
    #[arg(long, env = "TINKERBELL_LOGS_TOKEN_FILE")]
    logs_token_file: Option<PathBuf>,

    #[command(flatten)]
    store: connect::StoreArgs,

    #[command(flatten)]
    log: connect::LogArgs,
}

/// Build and validate the configuration; every problem is reported at once.
fn config(cli: &Cli) -> Result<Config, String> {
    let dhcp = if cli.dhcp_enabled {
        Some(cli.dhcp.to_config().map_err(|p| p.join("; "))?)
    } else {
        None
    };
    let syslog = cli.syslog_enabled.then(|| cli.syslog.to_config());
    if let Some(s) = &syslog {
        s.validate().map_err(|e| e.to_string())?;
    }
    Ok(Config { dhcp, syslog })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = connect::init_tracing(&cli.log.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let config = match config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
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
            let usage = e
                .downcast_ref::<BootsError>()
                .is_some_and(BootsError::is_config);
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
    let token = match &cli.logs_token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let backend = connect(cli).await?;
    let root = CancellationToken::new();
    let boots = Boots::start(&config, backend, root.child_token()).await?;
    let listener = tokio::net::TcpListener::bind((cli.bind_address, cli.http_port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", cli.bind_address, cli.http_port))?;
    for a in boots.local_addrs() {
        eprintln!("boots: listening on udp {a}");
    }
    eprintln!(
        "boots: logs and metrics on http://{}",
        listener.local_addr()?
    );
    let router = boots.router(token);
    let http = tokio::spawn({
        let cancel = root.clone();
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
        }
    });
    let signals = tokio::spawn({
        let root = root.clone();
        async move {
            connect::shutdown_signal().await;
            tracing::info!("shutting down");
            root.cancel();
        }
    });
    let result = boots.join().await;
    root.cancel();
    signals.abort();
    let _ = http.await;
    result.context("boots")
}

async fn connect(cli: &Cli) -> anyhow::Result<Arc<dyn HardwareLookup>> {
    let backend: Arc<dyn HardwareLookup> = cli.store.connect().await?;
    Ok(backend)
}
