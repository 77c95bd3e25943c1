//! `tink-worker`: the on-machine agent as a static binary.
//!
//! Reads flags and the environment (upstream's names: `ID`/`WORKER_ID`,
//! `TINKERBELL_GRPC_AUTHORITY`, `TINKERBELL_TLS`, `TINKERBELL_INSECURE_TLS`, proxies) and the
//! kernel command line, then polls the tink server forever. `--run-action IMAGE --env K=V …`
//! runs one native action locally instead (debugging, benchmarks). Exit codes: 2 usage or
//! configuration, 1 failure (only `--run-action`: the agent never exits on its own).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tinkerbell_tink_worker::actions::{self, ActionContext, ActionSpec, HttpSettings, Outcome};
use tinkerbell_tink_worker::config::{self, Config, Given, Protocol, Secret};
use tokio_util::sync::CancellationToken;

/// The Tinkerbell worker: runs workflow actions natively (image2disk and friends).
#[derive(Debug, Parser)]
#[command(name = "tink-worker", version, about)]
struct Cli {
    /// Worker (agent) ID; `WORKER_ID` is read too. Default: worker_id= or hw_addr= on the
    /// kernel command line.
    #[arg(long, env = "ID")]
    id: Option<String>,

    /// The tink server's gRPC endpoint, host:port (kernel command line: grpc_authority=).
    #[arg(
        long = "tinkerbell-grpc-authority",
        alias = "grpc-server",
        env = "TINKERBELL_GRPC_AUTHORITY"
    )]
    grpc_authority: Option<String>,

    /// Use TLS to the tink server (default true; kernel command line: tinkerbell_tls=).
    #[arg(long = "tinkerbell-tls", alias = "grpc-tls", env = "TINKERBELL_TLS", value_parser = parse_bool)]
    tls: Option<bool>,

    /// Accept any certificate from the tink server (kernel command line: tinkerbell_insecure_tls=).
    #[arg(long = "tinkerbell-insecure-tls", alias = "grpc-insecure-tls", env = "TINKERBELL_INSECURE_TLS", value_parser = parse_bool)]
    insecure_tls: Option<bool>,

    /// Worker token sent as `authorization: Bearer` (kernel command line: worker_token=).
    #[arg(long, env = "TINKERBELL_WORKER_TOKEN", hide_env_values = true)]
    worker_token: Option<String>,

    /// API generation of the tink server: current (GetAction) or legacy (GetWorkflowContexts).
    #[arg(long, env = "TINKERBELL_WORKER_PROTOCOL", default_value = "current")]
    protocol: Protocol,

    /// Poll interval when idle (seconds, or with s/m/h suffix).
    #[arg(long, env = "RETRY_INTERVAL", default_value = "3s", value_parser = tinkerbell_model::duration::parse)]
    retry_interval: Duration,

    /// Longest backoff after transport errors.
    #[arg(long = "backoff-max-interval", default_value = "30s", value_parser = tinkerbell_model::duration::parse)]
    backoff_max: Duration,

    /// Timeout of actions that do not set one.
    #[arg(long, env = "TIMEOUT", default_value = "60m", value_parser = tinkerbell_model::duration::parse)]
    timeout: Duration,

    /// PEM bundle of trusted TLS roots. Default: the system bundle if one exists (an
    /// initramfs usually has none: then only plain http, or --tinkerbell-insecure-tls).
    #[arg(long, env = "TINKERBELL_CA_FILE")]
    ca_file: Option<PathBuf>,

    /// Proxy for http downloads (kernel command line: HTTP_PROXY=).
    #[arg(long, env = "HTTP_PROXY", hide_env_values = true)]
    http_proxy: Option<String>,

    /// Proxy for https downloads (kernel command line: HTTPS_PROXY=).
    #[arg(long, env = "HTTPS_PROXY", hide_env_values = true)]
    https_proxy: Option<String>,

    /// Hosts that bypass the proxies (kernel command line: NO_PROXY=).
    #[arg(long, env = "NO_PROXY")]
    no_proxy: Option<String>,

    /// Kernel command line to read (empty string: none).
    #[arg(long, default_value = "/proc/cmdline")]
    cmdline: PathBuf,

    /// Refuse reboot/kexec actions (they then fail).
    #[arg(long)]
    no_power: bool,

    /// Run one native action locally and exit (image name, e.g. image2disk), with --env.
    #[arg(long, value_name = "IMAGE")]
    run_action: Option<String>,

    /// KEY=VALUE environment of --run-action (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", requires = "run_action")]
    env: Vec<String>,

    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "TINKERBELL_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn parse_bool(s: &str) -> Result<bool, String> {
    config::parse_bool(s).ok_or_else(|| format!("{s:?} is not a boolean"))
}

const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let ca_pem = match &cli.ca_file {
        Some(p) => match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: reading --ca-file {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => CA_BUNDLES
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .unwrap_or_default(),
    };
    let mut base = Config::defaults();
    base.protocol = cli.protocol;
    base.retry_interval = cli.retry_interval;
    base.backoff_max = cli.backoff_max;
    base.default_timeout = cli.timeout;
    base.allow_power = !cli.no_power;
    base.http = HttpSettings {
        ca_pem,
        ..HttpSettings::default()
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

    if let Some(image) = &cli.run_action {
        let mut http = base.http.clone();
        http.http_proxy = cli.http_proxy.clone();
        http.https_proxy = cli.https_proxy.clone();
        http.no_proxy = cli.no_proxy.clone();
        let mut ctx = ActionContext::new(http);
        ctx.allow_power = base.allow_power;
        let spec = ActionSpec {
            name: image.clone(),
            image: image.clone(),
            env: ActionSpec::env_from_pairs(&cli.env),
            command: Vec::new(),
            timeout: base.default_timeout,
        };
        let outcome = rt.block_on(async { actions::run(&spec, &ctx, &cancel_on_signal()).await });
        return match outcome {
            Outcome::Success { message, after } => {
                println!("SUCCESS: {message}");
                if let Some(p) = after {
                    let e = actions::perform_power(p);
                    eprintln!("error: power action failed: {e}");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Outcome::Failed(m) => {
                eprintln!("FAILED: {m}");
                ExitCode::FAILURE
            }
            Outcome::Timeout => {
                eprintln!("TIMEOUT");
                ExitCode::FAILURE
            }
            Outcome::Cancelled => ExitCode::FAILURE,
        };
    }

    let cmdline = if cli.cmdline.as_os_str().is_empty() {
        Default::default()
    } else {
        config::parse_cmdline(&std::fs::read_to_string(&cli.cmdline).unwrap_or_default())
    };
    let given = Given {
        worker_id: cli.id.clone().or_else(|| std::env::var("WORKER_ID").ok()),
        grpc_authority: cli.grpc_authority.clone(),
        tls: cli.tls,
        insecure_tls: cli.insecure_tls,
        token: cli.worker_token.clone().map(Secret),
        http_proxy: cli.http_proxy.clone(),
        https_proxy: cli.https_proxy.clone(),
        no_proxy: cli.no_proxy.clone(),
    };
    let config = match config::resolve(given, &cmdline, base) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    tracing::info!(worker_id = %config.worker_id, server = %config.grpc_authority,
        tls = config.tls, protocol = ?config.protocol, "tink-worker starting");
    let result =
        rt.block_on(async { tinkerbell_tink_worker::run(config, cancel_on_signal()).await });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", actions::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// A token cancelled on SIGTERM or SIGINT (never, when SIGTERM cannot be caught). Call it
/// inside the runtime.
fn cancel_on_signal() -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        c.cancel();
    });
    cancel
}
