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
use tinkerbell_core::store::{HardwareLookup, Store};
use tinkerbell_core::worker_token::{KeyFileError, WorkerTokenKey};
use tinkerbell_process as process;
use tinkerbell_tink_server::{Auth, Config, TinkError, TlsFiles};

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
    #[arg(long, env = "TINKERBELL_GRPC_AUTHORITY", value_parser = process::parse_listen_addr)]
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

    /// The worker token key, shared with boots (a mounted Secret on Kubernetes). Default:
    /// `worker-token-key` in the data directory, created when missing.
    #[arg(long, env = "TINKERBELL_WORKER_TOKEN_KEY_FILE")]
    worker_token_key_file: Option<PathBuf>,

    /// Token that may read every workflow's action logs. Default: the store API token of the
    /// data directory, when present.
    #[arg(long, env = "TINKERBELL_TINK_SERVER_LOGS_TOKEN_FILE")]
    logs_token_file: Option<PathBuf>,

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
            matches!(
                e.downcast_ref::<TinkError>(),
                Some(TinkError::TlsFile { .. } | TinkError::Tls(_))
            ) || e.is::<KeyFileError>()
        },
        run(&cli),
    )
}

/// A token file's trimmed content; `None` when it is empty.
fn read_token(path: &std::path::Path) -> anyhow::Result<Option<String>> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| anyhow::Error::new(e).context(format!("reading {}", path.display())))?;
    Ok(Some(t.trim().to_string()).filter(|t| !t.is_empty()))
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    // The data directory holds the worker token key and the default admin token. On the kube
    // backend a pod may have none (no HOME, read-only root): only worker auth then needs one.
    let dir = cli.store.data_dir();
    let key = if let (true, Some(f)) = (cli.worker_auth, &cli.worker_token_key_file) {
        Some(WorkerTokenKey::from_file(f)?)
    } else if cli.worker_auth {
        let dir = dir
            .as_ref()
            .map_err(|e| anyhow::anyhow!("worker token key: {e}"))?;
        Some(WorkerTokenKey::load_or_create(dir).context("worker token key")?)
    } else {
        tracing::warn!(
            "worker authentication is off: any client may fetch and report any workflow"
        );
        None
    };
    // Explicit file: must be readable. Default (<data-dir>/api-token): used when present.
    let admin_token = match (&cli.logs_token_file, &dir) {
        (Some(f), _) => read_token(f)?,
        (None, Ok(d)) => match read_token(&d.join(tinkerbell_core::api::token::FILE_NAME)) {
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
            {
                None
            }
            other => other?,
        },
        (None, Err(_)) => None,
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
    let backend = cli
        .store
        .connect(tinkerbell_tink_server::STORE_KINDS)
        .await?;
    let store: Arc<dyn Store> = backend.clone();
    let lookup: Arc<dyn HardwareLookup> = backend;
    process::until_shutdown(|cancel| async move {
        let server = tinkerbell_tink_server::start(config, store, lookup, cancel).await?;
        eprintln!("tink-server: gRPC on {}", server.local_addr());
        server.join().await.context("tink server")
    })
    .await
}
