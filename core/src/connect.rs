//! What every binary does to reach the store and to stop: shared so the `tinkerbell` CLI and
//! each service binary (`hegel`, and the ones to come) behave the same.
//!
//! * [`StoreConnection`]: the appliance's store API (found through the data directory's
//!   `api-url` and `api-token`, as `tinkerbell serve` writes them) or Kubernetes
//!   (`--backend kube`, upstream's `TINKERBELL_BACKEND_KUBE_*`).
//! * [`default_data_dir`], [`shutdown_signal`], [`error_chain`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::token;
use crate::store::kube::KubeStore;
use crate::store::remote::RemoteStore;
use crate::store::{Backend, StoreError};

/// Name of the file in the data directory that tells clients where the store API listens.
pub const URL_FILE: &str = "api-url";
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
    /// Kubeconfig for the kube backend (default: in-cluster or `$KUBECONFIG`).
    pub kube_config: Option<PathBuf>,
    /// Namespace the kube backend reads ("" = all).
    pub kube_namespace: String,
}

/// Why the store could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
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
}

impl StoreConnection {
    /// Connect.
    pub async fn connect(&self) -> Result<Arc<dyn Backend>, ConnectError> {
        if self.backend == BackendKind::Kube {
            let store =
                KubeStore::from_kubeconfig(self.kube_config.as_deref(), &self.kube_namespace)
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
        Ok(Arc::new(
            RemoteStore::new(&url, &token).map_err(ConnectError::Client)?,
        ))
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

/// An error and its causes on one line, skipping a cause whose text is already included.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}
