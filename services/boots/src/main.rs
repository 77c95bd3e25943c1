//! `boots`: the network-boot service as its own process.
//!
//! Parses flags and the environment (upstream Smee's `TINKERBELL_*` names where the feature
//! exists), sets up logging and the runtime, connects the backend (the appliance's store API or
//! Kubernetes) and runs [`tinkerbell_boots::Boots`] until SIGTERM/SIGINT. Its HTTP routes
//! (iPXE binaries and scripts, HookOS, logs, metrics) are served on
//! `--bind-address`:`--http-port`, which is bound first so the DHCP iPXE URLs carry the port
//! actually bound. Exit codes: 2 usage or configuration, 1 failure.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tinkerbell_boots::flags::{BootsArgs, Enabled, IpxeContext};
use tinkerbell_boots::{Boots, BootsError, Config};
use tinkerbell_core::store::HardwareLookup;
use tinkerbell_core::timeline::Timeline;
use tinkerbell_core::worker_token::{KeyFileError, WorkerTokenKey};
use tinkerbell_edge::{HttpServer, ServeOptions};
use tinkerbell_process as process;
use tokio_util::sync::CancellationToken;

/// Network boot for Tinkerbell Hardware: DHCP, TFTP, iPXE over HTTP, syslog.
#[derive(Debug, Parser)]
#[command(name = "boots", version, about)]
struct Cli {
    /// Serve DHCP.
    #[arg(long, env = "TINKERBELL_DHCP_ENABLED", default_value_t = true, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    dhcp_enabled: bool,
    /// Receive syslog.
    #[arg(long, env = "TINKERBELL_SYSLOG_ENABLED", default_value_t = true, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    syslog_enabled: bool,

    /// Serve the iPXE binaries over TFTP.
    #[arg(long, env = "TINKERBELL_TFTP_SERVER_ENABLED", default_value_t = true, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    tftp_enabled: bool,

    #[command(flatten)]
    boots: BootsArgs,

    /// The tink server port for the scripts' `grpc_authority` default (the address the
    /// script request was sent to, with this port), when
    /// --ipxe-script-tink-server-addr-port is not given.
    #[arg(
        long,
        env = "TINKERBELL_TINK_SERVER_BIND_PORT",
        default_value_t = 42113
    )]
    tink_server_bind_port: u16,
    /// Comma-separated CIDRs/IPs of proxies whose X-Forwarded-For is believed.
    #[arg(long, env = "TINKERBELL_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,

    /// Address of the HTTP listener (iPXE, HookOS, logs and metrics routes).
    #[arg(long, env = "TINKERBELL_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Port of the HTTP listener (0 picks one).
    #[arg(long, env = "TINKERBELL_HTTP_PORT", default_value_t = 7080)]
    http_port: u16,
    /// The worker token key shared with tink-server (a mounted Secret on Kubernetes): the
    /// scripts put each machine's `worker_token=` on the HookOS command line. Default: the
    /// data directory's `worker-token-key`, when there is one.
    #[arg(long, env = "TINKERBELL_WORKER_TOKEN_KEY_FILE")]
    worker_token_key_file: Option<PathBuf>,
    /// File whose content is the bearer token the logs routes require (open when unset).
    #[arg(long, env = "TINKERBELL_LOGS_TOKEN_FILE")]
    logs_token_file: Option<PathBuf>,

    #[command(flatten)]
    store: process::StoreArgs,

    #[command(flatten)]
    log: process::LogArgs,
}

/// Build and validate the configuration; every problem is reported at once. `http_port` is
/// the bound HTTP port; `key` the worker token key, when the appliance has one.
fn config(cli: &Cli, http_port: u16, key: Option<WorkerTokenKey>) -> Result<Config, String> {
    let mut problems = Vec::new();
    let trusted_proxies = tinkerbell_edge::Cidr::parse_list(&cli.trusted_proxies)
        .map_err(|errs| {
            for e in errs {
                problems.push(format!("--trusted-proxies: {e}"));
            }
        })
        .unwrap_or_default();
    let enabled = Enabled {
        dhcp: cli.dhcp_enabled,
        syslog: cli.syslog_enabled,
        tftp: cli.tftp_enabled,
    };
    let ctx = IpxeContext {
        tink_server_port: Some(cli.tink_server_bind_port),
        tink_tls: false,
        trusted_proxies,
        worker_token_key: key,
    };
    match cli.boots.to_config(enabled, ctx, http_port) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(problems.join("; ")),
        Err(more) => {
            problems.extend(more);
            Err(problems.join("; "))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::service_main(
        &cli.log.log_level,
        |e| {
            e.downcast_ref::<BootsError>()
                .is_some_and(BootsError::is_config)
                || e.is::<KeyFileError>()
        },
        run(&cli),
    )
}

/// How long HTTP downloads in flight may take to finish after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn run(cli: &Cli) -> anyhow::Result<()> {
    // Validate the flags before anything is bound (the real HTTP port comes later).
    config(cli, cli.http_port, None).map_err(process::UsageError)?;
    let token = cli
        .logs_token_file
        .as_ref()
        .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
        .transpose()?
        .map(|t| t.trim().to_string());
    // The worker token key: the file given (it must be good), else the one the appliance's
    // tink server created, if this host has one; then the scripts carry `worker_token=` the
    // tink server accepts.
    let key = match (&cli.worker_token_key_file, cli.store.data_dir()) {
        (Some(f), _) => Some(WorkerTokenKey::from_file(f)?),
        (None, Ok(d)) => WorkerTokenKey::load(&d).ok(),
        (None, Err(_)) => None,
    };
    let backend: Arc<dyn HardwareLookup> = cli.store.connect(tinkerbell_boots::STORE_KINDS).await?;
    if key.is_none() {
        tracing::info!("no worker token key in the data directory: scripts carry no worker_token");
    }
    let listener = tokio::net::TcpListener::bind((cli.bind_address, cli.http_port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", cli.bind_address, cli.http_port))?;
    let http_addr = listener.local_addr()?;
    let config = config(cli, http_addr.port(), key)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let root = CancellationToken::new();
    let timeline = Arc::new(Timeline::new());
    let boots = Boots::start(&config, backend, timeline, root.child_token()).await?;
    for a in boots.local_addrs() {
        eprintln!("boots: listening on udp {a}");
    }
    eprintln!("boots: iPXE, HookOS, logs and metrics on http://{http_addr}");
    let router = boots.router_alone(token);
    let signals = process::cancel_on_shutdown(&root);
    // HTTP and the UDP services run until a signal, or until one of them fails, which stops
    // the rest. With DHCP, TFTP and syslog all off, `join` returns at once and HTTP (iPXE
    // scripts, HookOS, logs, metrics) carries on alone.
    // The shared listener (header-read timeout, connection cap); open downloads get
    // SHUTDOWN_GRACE to finish, not forever.
    let server = HttpServer::serve(
        listener,
        router,
        root.child_token(),
        ServeOptions::new(SHUTDOWN_GRACE),
    )?;
    let http = async {
        let r = server.join().await;
        root.cancel();
        r
    };
    let udp = async {
        let r = boots.join().await;
        if r.is_err() {
            root.cancel();
        }
        r
    };
    let (udp, http) = tokio::join!(udp, http);
    signals.abort();
    udp.context("boots")?;
    http.context("boots HTTP server")
}
