//! tinkerbell-process: what every binary does around its service — flags, reaching the store,
//! logging, signals, leader election, exit codes — shared so the `tinkerbell` CLI and each
//! service binary (`boots`, `hegel`, `rufio`, `tink-server`, `tink-controller`) behave the
//! same. Libraries never depend on it; only `main`s do.
//!
//! * [`StoreConnection`]: the appliance's store API (found through the data directory's
//!   `api-url` and `api-token`, as `tinkerbell serve` writes them) or Kubernetes
//!   (`--backend kube`, upstream's `TINKERBELL_BACKEND_KUBE_*`).
//! * [`StoreArgs`] and [`LogArgs`]: the backend and logging flags, defined once
//!   so `boots`, `hegel`, `rufio`, `tink-server` and `tink-controller` accept the same names
//!   (`--backend` / `TINKERBELL_BACKEND`, `TINKERBELL_BACKEND_KUBE_CONFIG`,
//!   `TINKERBELL_BACKEND_KUBE_NAMESPACE`, `TINKERBELL_SERVER`, `TINKERBELL_TOKEN_FILE`,
//!   `TINKERBELL_DATA_DIR`, `TINKERBELL_LOG_LEVEL`) and a deployment can swap one binary for
//!   another without relearning them; [`init_tracing`] sets up their logs the same way.
//! * [`service_main`]: logging, the runtime and the exit code (2 for a
//!   [`UsageError`]) around a service binary's body, the same in every binary.
//! * [`default_data_dir`], [`shutdown_signal`], [`cancel_on_shutdown`], [`until_shutdown`], [`run_controller`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tinkerbell_core::api::token;
use tinkerbell_core::error_chain;
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::remote::RemoteStore;
use tinkerbell_core::store::{Backend, Kind, StoreError};

/// Name of the file in the data directory that tells clients where the store API listens.
pub const URL_FILE: &str = "api-url";
/// Name of the file in the data directory holding the store API's TLS certificate, when it
/// serves HTTPS: what local clients trust (pinned) by default.
pub const CERT_FILE: &str = "api-cert.pem";
/// The store API's address when the data directory does not say.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7081";

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// The appliance's embedded store, through its store API.
    Embedded,
    /// Kubernetes (the Tinkerbell CRDs).
    Kube,
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    /// `embedded` (alias `remote`) or `kube`, as given to `--backend` / `TINKERBELL_BACKEND`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "embedded" | "remote" => Ok(BackendKind::Embedded),
            "kube" => Ok(BackendKind::Kube),
            other => Err(format!("unknown backend {other:?} (embedded or kube)")),
        }
    }
}

/// How to reach the store.
#[derive(Debug, Clone)]
pub struct StoreConnection {
    /// Backend.
    pub backend: BackendKind,
    /// Data directory of the appliance (for `api-url` and `api-token`).
    pub data_dir: PathBuf,
    /// Store API URL; default: the data directory's `api-url`, else [`DEFAULT_URL`].
    pub server: Option<String>,
    /// Token file; default: `<data_dir>/api-token`.
    pub token_file: Option<PathBuf>,
    /// Whom to trust for an https:// store API (a CA, or the certificate itself); default:
    /// `<data_dir>/api-cert.pem` ([`CERT_FILE`]) when it exists, else the system's CAs.
    pub ca_file: Option<PathBuf>,
    /// Kubeconfig for the kube backend (default: in-cluster or `$KUBECONFIG`).
    pub kube_config: Option<PathBuf>,
    /// Namespace the kube backend reads ("" = all).
    pub kube_namespace: String,
}

/// The backend flags every service binary shares (flatten into the binary's clap parser).
///
/// Env names are upstream Tinkerbell's where the setting exists (`TINKERBELL_BACKEND`,
/// `TINKERBELL_BACKEND_KUBE_CONFIG`, `TINKERBELL_BACKEND_KUBE_NAMESPACE`); the embedded-backend
/// ones (`TINKERBELL_SERVER`, `TINKERBELL_TOKEN_FILE`, `TINKERBELL_DATA_DIR`) are ours.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Where objects come from: the appliance's store API (`embedded`), or Kubernetes (`kube`).
    #[arg(
        long,
        env = "TINKERBELL_BACKEND",
        default_value = "embedded",
        global = true
    )]
    pub backend: BackendKind,

    /// Store API URL (backend `embedded`). Default: <data-dir>/api-url, else http://127.0.0.1:7081.
    #[arg(long, env = "TINKERBELL_SERVER", global = true)]
    pub server: Option<String>,

    /// File holding the store API bearer token (backend `embedded`). Default: <data-dir>/api-token.
    #[arg(long, env = "TINKERBELL_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// Whom to trust for an https:// store API (PEM): the CA that signed its certificate, or
    /// the certificate itself (pinned). Default: <data-dir>/api-cert.pem, which `serve` writes
    /// when it has one, else the system's CAs.
    #[arg(long, env = "TINKERBELL_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,

    /// The appliance's data directory, for the defaults above (and tink-server's worker token
    /// key). Default: /var/lib/tinkerbell as root, else ~/.local/share/tinkerbell.
    #[arg(long, env = "TINKERBELL_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Kubeconfig for `--backend kube` (default: $KUBECONFIG, ~/.kube/config, else the
    /// in-cluster service account).
    #[arg(long, env = "TINKERBELL_BACKEND_KUBE_CONFIG", global = true)]
    pub backend_kube_config: Option<PathBuf>,

    /// Namespace the kube backend reads and reconciles (all namespaces when empty).
    #[arg(
        long,
        env = "TINKERBELL_BACKEND_KUBE_NAMESPACE",
        default_value = "",
        global = true
    )]
    pub backend_kube_namespace: String,
}

impl StoreArgs {
    /// The data directory: `--data-dir`, else [`default_data_dir`].
    pub fn data_dir(&self) -> Result<PathBuf, ConnectError> {
        match &self.data_dir {
            Some(d) => Ok(d.clone()),
            None => default_data_dir().ok_or(ConnectError::NoDataDir),
        }
    }

    /// The namespace a controller reconciles: `None` for every namespace.
    pub fn namespace(&self) -> Option<String> {
        Some(self.backend_kube_namespace.clone()).filter(|n| !n.is_empty())
    }

    /// What [`StoreConnection::connect`] needs. The data directory is only required by the
    /// embedded backend; with `kube` a missing one is not an error.
    pub fn connection(&self) -> Result<StoreConnection, ConnectError> {
        let data_dir = match self.backend {
            BackendKind::Embedded => self.data_dir()?,
            BackendKind::Kube => self.data_dir().unwrap_or_default(),
        };
        Ok(StoreConnection {
            backend: self.backend,
            data_dir,
            server: self.server.clone(),
            token_file: self.token_file.clone(),
            ca_file: self.ca_file.clone(),
            kube_config: self.backend_kube_config.clone(),
            kube_namespace: self.backend_kube_namespace.clone(),
        })
    }

    /// Connect to the backend these flags name, for a service that reads `kinds` (on `kube`,
    /// checked at once: see [`KubeStore::preflight`]).
    pub async fn connect(&self, kinds: &[Kind]) -> Result<Arc<dyn Backend>, ConnectError> {
        self.connection()?.connect_for(kinds).await
    }
}

/// Take the controller's Lease (`lease`, e.g. `tink-controller`) in `namespace` (default:
/// the kube backend's namespace, else the kubeconfig's / service account's) before
/// reconciling, waiting while another replica holds it; `None` when `cancel` fires first.
/// Leader election needs `--backend kube`: the embedded store has one writer process anyway.
/// The identity is the pod name (`HOSTNAME`) plus a random suffix, so a restarted pod is a
/// new candidate.
pub async fn acquire_leadership(
    store: &StoreArgs,
    lease: &str,
    namespace: &str,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Option<tinkerbell_core::store::kube_lease::Leadership>, ConnectError> {
    use tinkerbell_core::store::kube_lease::{LeaderElector, LeaseConfig};
    if store.backend != BackendKind::Kube {
        return Err(ConnectError::LeaderNeedsKube);
    }
    let client =
        tinkerbell_core::store::kube::client_from_kubeconfig(store.backend_kube_config.as_deref())
            .await
            .map_err(ConnectError::Kube)?;
    let namespace = [namespace, store.backend_kube_namespace.as_str()]
        .into_iter()
        .find(|n| !n.is_empty())
        .map_or_else(|| client.default_namespace().to_string(), str::to_string);
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| lease.to_string());
    let identity = format!("{host}_{}", uuid::Uuid::new_v4());
    let elector = LeaderElector::new(client, LeaseConfig::new(&namespace, lease, &identity))
        .map_err(ConnectError::LeaderElection)?;
    tracing::info!(%namespace, %lease, %identity, "leader election: acquiring");
    elector
        .acquire(cancel)
        .await
        .map_err(ConnectError::LeaderElection)
}

/// Which Lease a controller takes before it reconciles.
#[derive(Debug, Clone, Copy)]
pub struct Election<'a> {
    /// Name of the Lease (`tink-controller`, `rufio`).
    pub lease: &'a str,
    /// Its namespace; empty: see [`acquire_leadership`].
    pub namespace: &'a str,
}

impl StoreArgs {
    /// The [`Election`] a controller binary asked for with `flag` (`enabled`), checked
    /// against the backend: leader election needs `--backend kube`, and asking for it
    /// elsewhere is a usage error naming the flag.
    pub fn election<'a>(
        &self,
        flag: &str,
        enabled: bool,
        lease: &'a str,
        namespace: &'a str,
    ) -> Result<Option<Election<'a>>, UsageError> {
        if !enabled {
            return Ok(None);
        }
        if self.backend != BackendKind::Kube {
            return Err(UsageError(format!(
                "{flag}: {}",
                ConnectError::LeaderNeedsKube
            )));
        }
        Ok(Some(Election { lease, namespace }))
    }
}

/// A usage or configuration problem a binary found in its flags: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The `main` of every binary: logs as `log_level` (`--log-level`) says, then `body` on a multi-threaded
/// runtime. Exit code 0 when `body` succeeds; 2 for a bad `--log-level`, a [`UsageError`] or
/// an error `is_usage` calls one (anywhere in the error's chain); 1 for any other failure.
/// Errors print on stderr as `error: ` and their [`error_chain`].
pub fn service_main<E>(
    log_level: &str,
    is_usage: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
    body: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode
where
    E: std::ops::Deref<Target = dyn std::error::Error + Send + Sync + 'static>,
{
    use std::process::ExitCode;
    if let Err(e) = init_tracing(log_level) {
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
    match rt.block_on(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e: &(dyn std::error::Error + 'static) = &*e;
            eprintln!("error: {}", error_chain(e));
            let usage = std::iter::successors(Some(e), |e| e.source())
                .any(|e| e.is::<UsageError>() || is_usage(e));
            if usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Cancels `root` on SIGTERM or SIGINT (see [`shutdown_signal`]). The task ends then; abort
/// it when the service stops first.
pub fn cancel_on_shutdown(
    root: &tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let root = root.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        root.cancel();
    })
}

/// A service binary's body until SIGTERM/SIGINT: `run` gets the token those cancel and
/// starts the service, waits for it and returns its result.
pub async fn until_shutdown<F: std::future::Future>(
    run: impl FnOnce(tokio_util::sync::CancellationToken) -> F,
) -> F::Output {
    let root = tokio_util::sync::CancellationToken::new();
    let signals = cancel_on_shutdown(&root);
    let result = run(root).await;
    signals.abort();
    result
}

/// A controller binary's body: [`run_elected`] until SIGTERM/SIGINT; `run` gets the token
/// that stops the controller. `Ok(())` when stopped while still waiting for the Lease.
pub async fn run_controller<F, E>(
    store: &StoreArgs,
    election: Option<Election<'_>>,
    run: impl FnOnce(tokio_util::sync::CancellationToken) -> F,
) -> Result<(), E>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: From<ConnectError>,
{
    until_shutdown(|root| async move {
        let controller = run(root.child_token());
        run_elected(store, election, &root, controller)
            .await?
            .unwrap_or(Ok(()))
    })
    .await
}

/// Run a controller — `run` starts it and waits for it — under leader election when
/// `election` is given: the Lease is taken first (`Ok(None)` when `root` is cancelled while
/// waiting for it, and `run` never starts). When leadership is lost before `run` ends, `root`
/// is cancelled, the controller is let stop, and the result is
/// [`ConnectError::LeadershipLost`]: a controller that no longer holds the Lease must stop
/// reconciling before another replica's lease begins (the process then exits and restarts as a
/// candidate, as controller-runtime's do). The Lease is released on the way out.
pub async fn run_elected<R>(
    store: &StoreArgs,
    election: Option<Election<'_>>,
    root: &tokio_util::sync::CancellationToken,
    run: impl std::future::Future<Output = R>,
) -> Result<Option<R>, ConnectError> {
    let leadership = match election {
        None => None,
        Some(e) => match acquire_leadership(store, e.lease, e.namespace, root).await? {
            Some(l) => Some(l),
            None => return Ok(None),
        },
    };
    let result = {
        let mut run = std::pin::pin!(run);
        let lost = async {
            match &leadership {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut run => Ok(Some(r)),
            () = lost => {
                root.cancel();
                let _ = run.await;
                Err(ConnectError::LeadershipLost)
            }
        }
    };
    if let Some(l) = leadership {
        l.release().await;
    }
    result
}

/// The logging flag every service binary shares.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter (tracing env-filter syntax: `info`, `debug,hyper=warn`, ...).
    #[arg(long, env = "TINKERBELL_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("--log-level (TINKERBELL_LOG_LEVEL) {filter:?} is not a tracing filter")]
pub struct LogLevelError {
    /// The filter given.
    pub filter: String,
    /// Why it does not parse.
    #[source]
    pub source: tracing_subscriber::filter::ParseError,
}

/// Human-readable logs on stderr filtered by `filter` (tracing env-filter syntax), and the
/// process-wide rustls crypto provider every TLS client and server of ours uses. A filter that
/// does not parse is refused (a usage error), not silently replaced.
pub fn init_tracing(filter: &str) -> Result<(), LogLevelError> {
    let env_filter =
        tracing_subscriber::EnvFilter::try_new(filter).map_err(|source| LogLevelError {
            filter: filter.to_string(),
            source,
        })?;
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .init();
    tinkerbell_edge::tls::install_crypto_provider();
    Ok(())
}

/// Why the store could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Leader election was asked for on a backend that has no Leases.
    #[error("leader election needs --backend kube (TINKERBELL_BACKEND=kube)")]
    LeaderNeedsKube,
    /// The Lease could not be renewed in time, or another replica took it.
    #[error("leadership lost; stopped reconciling")]
    LeadershipLost,
    /// Leader election failed.
    #[error("leader election")]
    LeaderElection(#[source] tinkerbell_core::store::kube_lease::LeaseError),
    /// No data directory given and none to default to.
    #[error("HOME is not set and not running as root; pass --data-dir (TINKERBELL_DATA_DIR)")]
    NoDataDir,
    /// The Kubernetes client could not be set up.
    #[error("connecting to Kubernetes")]
    Kube(#[source] StoreError),
    /// No token to talk to the store API.
    #[error(
        "no store API token at {path} — is `tinkerbell serve --data-dir {data_dir}` running on this machine? (or pass --token-file)"
    )]
    Token {
        /// Token file looked for.
        path: PathBuf,
        /// Data directory.
        data_dir: PathBuf,
        /// Why it could not be read.
        #[source]
        source: token::TokenError,
    },
    /// The token file given could not be read.
    #[error("reading token file {path}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("store API client")]
    Client(#[source] StoreError),
    /// The CA file (`--ca-file`) could not be used.
    #[error("--ca-file")]
    Tls(#[from] tinkerbell_edge::tls::TlsError),
}

impl StoreConnection {
    /// Connect (no preflight: each call reports its own errors).
    pub async fn connect(&self) -> Result<Arc<dyn Backend>, ConnectError> {
        self.connect_for(&[]).await
    }

    /// Connect for a service that reads `kinds`. On `kube` the cluster is checked first
    /// ([`KubeStore::preflight`]): a service that cannot work there exits with the cause
    /// instead of retrying forever.
    pub async fn connect_for(&self, kinds: &[Kind]) -> Result<Arc<dyn Backend>, ConnectError> {
        if self.backend == BackendKind::Kube {
            let store =
                KubeStore::connect(self.kube_config.as_deref(), &self.kube_namespace, kinds)
                    .await
                    .map_err(ConnectError::Kube)?;
            return Ok(Arc::new(store));
        }
        let url = match &self.server {
            Some(u) => u.clone(),
            None => std::fs::read_to_string(self.data_dir.join(URL_FILE))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| DEFAULT_URL.to_string()),
        };
        let token = match &self.token_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|source| ConnectError::TokenFile {
                    path: f.clone(),
                    source,
                })?
                .trim()
                .to_string(),
            None => token::load(&self.data_dir).map_err(|source| ConnectError::Token {
                path: self.data_dir.join(token::FILE_NAME),
                data_dir: self.data_dir.clone(),
                source,
            })?,
        };
        let trust = match &self.ca_file {
            Some(f) => Some(f.clone()),
            None => Some(self.data_dir.join(CERT_FILE)).filter(|f| f.exists()),
        };
        let store = match trust.filter(|_| url.starts_with("https://")) {
            Some(f) => {
                let tls = tinkerbell_edge::tls::client_config(&f)?;
                RemoteStore::with_tls(&url, &token, tls)
            }
            None => RemoteStore::new(&url, &token),
        };
        Ok(Arc::new(store.map_err(ConnectError::Client)?))
    }
}

/// The data directory when none is given: /var/lib/tinkerbell for root, else
/// `~/.local/share/tinkerbell`. `None` when not root and `HOME` is unset.
pub fn default_data_dir() -> Option<PathBuf> {
    // Root (the owner of /proc/self) gets the system location.
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        return Some(PathBuf::from("/var/lib/tinkerbell"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share/tinkerbell"))
}

/// A listen address as upstream's flags write it: `host:port`, or `:port` for every IPv4
/// address.
pub fn parse_listen_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not an address:port (or :port)"))
}

/// Resolves when the process gets SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers, only ctrl-c (or kill) ends the process.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_in_upstream_forms() {
        assert_eq!(
            parse_listen_addr(":50061").unwrap(),
            "0.0.0.0:50061".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("10.0.0.1:42113").unwrap(),
            "10.0.0.1:42113".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        let e = parse_listen_addr("localhost").unwrap_err();
        assert!(e.contains("\"localhost\""), "{e}");
    }
}
