//! Serving a router: bind first, then serve until cancelled.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use tinkerbell_core::store::HardwareLookup;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};

/// Why hegel could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum HegelError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    #[error("HTTP server")]
    Serve(#[source] std::io::Error),
    /// The server task panicked or was aborted.
    #[error("HTTP server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

/// A running HTTP server for any router that needs the peer address (connect info).
/// Used by standalone hegel and by `tinkerbell serve`'s consolidated HTTP port.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    task: JoinHandle<Result<(), HegelError>>,
}

impl HttpServer {
    /// Bind `listen` and serve `router` until `cancel` fires; in-flight requests then get at
    /// most `grace`. The socket is bound when this returns.
    pub async fn start(
        listen: SocketAddr,
        router: Router,
        cancel: CancellationToken,
        grace: Duration,
    ) -> Result<HttpServer, HegelError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| HegelError::Bind {
                addr: listen,
                source,
            })?;
        HttpServer::serve(listener, router, cancel, grace)
    }

    /// Serve `router` on a listener the caller bound (e.g. to learn the port of `:0` before
    /// the routes are built); otherwise as [`HttpServer::start`].
    pub fn serve(
        listener: tokio::net::TcpListener,
        router: Router,
        cancel: CancellationToken,
        grace: Duration,
    ) -> Result<HttpServer, HegelError> {
        let local_addr = listener.local_addr().map_err(HegelError::Serve)?;
        let listener = listener.tap_io(|tcp| {
            // Small answers: do not wait for Nagle.
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let shutdown = cancel.clone().cancelled_owned();
            let serve = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .into_future();
            tokio::pin!(serve);
            tokio::select! {
                r = &mut serve => r.map_err(HegelError::Serve),
                () = async { cancel.cancelled().await; tokio::time::sleep(grace).await } => Ok(()),
            }
        });
        Ok(HttpServer { local_addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Wait for the server to stop.
    pub async fn join(self) -> Result<(), HegelError> {
        self.task.await.map_err(HegelError::Join)?
    }
}

/// Standalone hegel: its router on its own listener.
#[derive(Debug)]
pub struct Hegel {
    server: HttpServer,
}

impl Hegel {
    /// Validate `config`, bind `config.listen` and serve. The socket is bound when this
    /// returns; the server stops when `cancel` fires.
    pub async fn start(
        config: &Config,
        backend: Arc<dyn HardwareLookup>,
        cancel: CancellationToken,
    ) -> Result<Hegel, HegelError> {
        config.validate()?;
        let router = crate::router(backend, config);
        let server =
            HttpServer::start(config.listen, router, cancel, config.shutdown_grace).await?;
        tracing::info!(addr = %server.local_addr(), "hegel listening");
        Ok(Hegel { server })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Every bound address (one: the HTTP listener).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        vec![self.server.local_addr()]
    }

    /// Wait for the server to stop.
    pub async fn join(self) -> Result<(), HegelError> {
        self.server.join().await
    }
}
