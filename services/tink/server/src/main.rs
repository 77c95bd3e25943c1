//! `tink-server`: the tink gRPC server as its own process.
//!
//! Parses flags and the environment (upstream Tinkerbell's names where the feature exists),
//! sets up logging and the runtime, connects the backend (the appliance's store API or
//! Kubernetes) and runs [`tinkerbell_tink_server::start`] until SIGTERM/SIGINT.
//! Exit codes: 2 usage or configuration, 1 failure.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tinkerbell_core::connect::{self, StoreConnection};
use tinkerbell_core::store::{HardwareLookup, Store};
use tinkerbell_core::worker_token::WorkerTokenKey;
use tinkerbell_tink_server::{Auth, Config, TinkError, TlsFiles};
use tokio_util::sync::CancellationToken;

/// Tinkerbell tink server: workers fetch actions and report status over gRPC.
#[derive(Debug, Parser)]
#[command(name = "tink-server", version, about)]
struct Cli {
    /// IP address the gRPC server listens on.
    #[arg(
        long,
        env = "TINKERBELL_TINK_SERVER_BIND_ADDR",
        default_value = "0.0.0.0"
    )]
    tink_server_bind_addr: IpAddr,

    /// Port the gRPC server listens on.
    #[arg(
        long,
        env = "TINKERBELL_TINK_SERVER_BIND_PORT",
        default_value_t = 42113
    )]
    tink_server_bind_port: u16,

    /// Standalone tink-server's form of the listen address (`host:port` or `:port`);
    /// overrides the two flags above.
    #[arg(long, env = "TINKERBELL_GRPC_AUTHORITY", value_parser = parse_addr)]
    grpc_authority: Option<SocketAddr>,

    /// TLS certificate chain (PEM). With --tls-key-file, the server speaks TLS.
    #[arg(long, env = "TINKERBELL_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "TINKERBELL_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,

    /// Require worker tokens (`authorization: Bearer <token>`). Turn off for stock upstream
    /// workers, which send none.
    #[arg(
        long,
        env = "TINKERBELL_TINK_SERVER_WORKER_AUTH",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    worker_auth: bool,

    /// Token that may read every workflow's action logs. Default: the store API token of the
    /// data directory, when present.
    #[arg(long, env = "TINKERBELL_TINK_SERVER_LOGS_TOKEN_FILE")]
    logs_token_file: Option<PathBuf>,

    /// Where workflows come from: the appliance's store API, or Kubernetes.
    #[arg(long, env = "TINKERBELL_BACKEND", default_value = "embedded")]
    backend: connect::BackendKind,

    /// Store API URL (backend `embedded`). Default: <data-dir>/api-url, else http://127.0.0.1:7081.
    #[arg(long, env = "TINKERBELL_SERVER")]
    server: Option<String>,

    /// File holding the store API bearer token (backend `embedded`). Default: <data-dir>/api-token.
    #[arg(long, env = "TINKERBELL_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    /// The appliance's data directory (store API defaults, `worker-token-key`).
    /// Default: /var/lib/tinkerbell as root, else ~/.local/share/tinkerbell.
    #[arg(long, env = "TINKERBELL_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Kubeconfig for `--backend kube` (default: in-cluster config or $KUBECONFIG).
    #[arg(long, env = "TINKERBELL_BACKEND_KUBE_CONFIG")]
    backend_kube_config: Option<PathBuf>,

    /// Namespace the kube backend reads (all namespaces when empty).
    #[arg(long, env = "TINKERBELL_BACKEND_KUBE_NAMESPACE", default_value = "")]
    backend_kube_namespace: String,

    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "TINKERBELL_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not an address:port (or :port)"))
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
    match rt.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let usage = matches!(
                e.downcast_ref::<TinkError>(),
                Some(TinkError::TlsFile { .. } | TinkError::Tls(_))
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

fn data_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    match &cli.data_dir {
        Some(d) => Ok(d.clone()),
        None => connect::default_data_dir().context("HOME is not set; pass --data-dir"),
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let dir = data_dir(cli)?;
    let key = if cli.worker_auth {
        Some(WorkerTokenKey::load_or_create(&dir).context("worker token key")?)
    } else {
        tracing::warn!(
            "worker authentication is off: any client may fetch and report any workflow"
        );
        None
    };
    let admin_file = cli
        .logs_token_file
        .clone()
        .unwrap_or_else(|| dir.join(tinkerbell_core::api::token::FILE_NAME));
    let admin_token = match std::fs::read_to_string(&admin_file) {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
        Ok(_) => None,
        Err(e) if cli.logs_token_file.is_none() && e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("reading {}", admin_file.display())));
        }
    };
    let config = Config {
        listen: cli.grpc_authority.unwrap_or(SocketAddr::new(
            cli.tink_server_bind_addr,
            cli.tink_server_bind_port,
        )),
        tls: match (&cli.tls_cert_file, &cli.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        auth: Auth { key, admin_token },
        ..Config::default()
    };
    let conn = StoreConnection {
        backend: cli.backend,
        data_dir: dir,
        server: cli.server.clone(),
        token_file: cli.token_file.clone(),
        kube_config: cli.backend_kube_config.clone(),
        kube_namespace: cli.backend_kube_namespace.clone(),
    };
    let backend = conn.connect().await?;
    let store: Arc<dyn Store> = backend.clone();
    let lookup: Arc<dyn HardwareLookup> = backend;
    let root = CancellationToken::new();
    let server = tinkerbell_tink_server::start(config, store, lookup, root.child_token()).await?;
    eprintln!("tink-server: gRPC on {}", server.local_addr());
    let signals = tokio::spawn({
        let root = root.clone();
        async move {
            connect::shutdown_signal().await;
            tracing::info!("shutting down");
            root.cancel();
        }
    });
    let result = server.join().await;
    signals.abort();
    result.context("tink server")
}
