//! tink server: the gRPC server on port 42113 that workers poll for actions and report status
//! to, speaking both generations of upstream's `proto.WorkflowService` on one port, with
//! per-worker authentication and bounded action logs (`tinkerbell.v1.WorkerLogs`).
//!
//! Shape: [`Config`] → [`start`] binds the socket and returns a [`TinkServer`] handle
//! ([`TinkServer::local_addr`], [`TinkServer::join`]); the server stops when the
//! `CancellationToken` given to `start` fires. The Workflow state lives only in the store (the
//! server keeps nothing but logs in memory), so a restarted server carries on where the old
//! one stopped: an action that was RUNNING is served again.
//!
//! Modules: [`service`] (handlers), [`dispatch`] (one service name, two generations),
//! [`auth`] (worker tokens), [`logs`] (the bounded log store).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tinkerbell_core::store::{HardwareLookup, Store};
use tinkerbell_core::timeline::Timeline;
use tinkerbell_tink_proto::{current, legacy, logs as logs_proto};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod auth;
pub mod dispatch;
pub mod logs;
pub mod service;

pub use auth::Auth;
pub use logs::{LogLimits, LogStore};

/// The kinds the tink server reads and writes (what a `--backend kube` start-up checks it may
/// list).
pub const STORE_KINDS: &[tinkerbell_core::store::Kind] = &[
    tinkerbell_core::store::Kind::Hardware,
    tinkerbell_core::store::Kind::Template,
    tinkerbell_core::store::Kind::Workflow,
];

/// Upstream's gRPC port.
pub const DEFAULT_PORT: u16 = 42113;

/// PEM certificate chain and key files for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (port 0 picks a free port; see [`TinkServer::local_addr`]).
    pub listen: SocketAddr,
    /// Serve TLS with these files; plaintext when None.
    pub tls: Option<TlsFiles>,
    /// Worker authentication (and who may read logs).
    pub auth: Auth,
    /// Caps of the action log store.
    pub log_limits: LogLimits,
    /// How long in-flight requests get after cancellation.
    pub shutdown_grace: Duration,
    /// Where worker connections, actions and reboots are recorded (`tinkerbell timeline`).
    pub timeline: Option<Arc<Timeline>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            tls: None,
            auth: Auth::default(),
            log_limits: LogLimits::default(),
            shutdown_grace: Duration::from_secs(5),
            timeline: None,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TinkError {
    /// A TLS file could not be read.
    #[error("cannot read TLS file {path}")]
    TlsFile {
        /// File.
        path: PathBuf,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration")]
    Tls(#[source] tonic::transport::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("tink gRPC server")]
    Serve(#[source] tonic::transport::Error),
    /// The server task panicked or was aborted.
    #[error("tink server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

/// A running tink server.
#[derive(Debug)]
pub struct TinkServer {
    local_addr: SocketAddr,
    logs: Arc<LogStore>,
    task: JoinHandle<Result<(), TinkError>>,
}

/// Validate `config`, bind, and serve until `cancel` fires. The socket is bound when this
/// returns.
pub async fn start(
    config: Config,
    store: Arc<dyn Store>,
    lookup: Arc<dyn HardwareLookup>,
    cancel: CancellationToken,
) -> Result<TinkServer, TinkError> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| TinkError::TlsFile {
                path: path.clone(),
                source,
            })
        };
        let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(TinkError::Tls)?;
    }
    let bind_err = |source| TinkError::Bind {
        addr: config.listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    let logs = Arc::new(LogStore::new(config.log_limits));
    let handler = service::Handler {
        store,
        lookup,
        auth: Arc::new(config.auth.clone()),
        logs: logs.clone(),
        cancel: cancel.clone(),
        timeline: config.timeline.clone(),
    };
    let router = builder
        .add_service(dispatch::WorkflowRouter::new(
            current::workflow_service_server::WorkflowServiceServer::new(handler.clone()),
            legacy::workflow_service_server::WorkflowServiceServer::new(handler.clone()),
        ))
        .add_service(logs_proto::worker_logs_server::WorkerLogsServer::new(
            handler,
        ));
    let grace = config.shutdown_grace;
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let serve = router.serve_with_incoming_shutdown(incoming, cancel.clone().cancelled_owned());
        tokio::pin!(serve);
        tokio::select! {
            r = &mut serve => r.map_err(TinkError::Serve),
            () = async { cancel.cancelled().await; tokio::time::sleep(grace).await } => Ok(()),
        }
    });
    tracing::info!(addr = %local_addr, tls = config.tls.is_some(), worker_auth = config.auth.enabled(), "tink gRPC server listening");
    Ok(TinkServer {
        local_addr,
        logs,
        task,
    })
}

impl TinkServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The action logs this server keeps.
    pub fn logs(&self) -> &Arc<LogStore> {
        &self.logs
    }

    /// Wait for the server to stop.
    pub async fn join(self) -> Result<(), TinkError> {
        self.task.await.map_err(TinkError::Join)?
    }
}
