//! Running the store API: bind first, then serve until cancelled.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::Backend;

/// Where and how to serve the store API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Listen address (port 0 picks a free port; see [`ApiServer::local_addr`]).
    pub listen: SocketAddr,
    /// How long in-flight requests (and open watches) get after cancellation.
    pub shutdown_grace: Duration,
}

/// Why the store API could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
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
    #[error("store API server")]
    Serve(#[source] std::io::Error),
    /// The server task panicked or was aborted.
    #[error("store API server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

/// A running store API.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    task: JoinHandle<Result<(), ApiServerError>>,
}

impl ApiServer {
    /// Bind `config.listen` and start serving `store`. The socket is bound when this returns.
    /// The server stops when `cancel` fires (after at most `shutdown_grace`).
    pub async fn start(
        config: &ApiConfig,
        store: Arc<dyn Backend>,
        token: &str,
        cancel: CancellationToken,
    ) -> Result<ApiServer, ApiServerError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ApiServerError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(ApiServerError::Serve)?;
        let router = super::router(store, token);
        let grace = config.shutdown_grace;
        let task = tokio::spawn(async move {
            let shutdown = cancel.clone().cancelled_owned();
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .into_future();
            tokio::pin!(serve);
            tokio::select! {
                r = &mut serve => r.map_err(ApiServerError::Serve),
                () = async { cancel.cancelled().await; tokio::time::sleep(grace).await } => {
                    // Watches are long-lived: do not wait for them past the grace period.
                    Ok(())
                }
            }
        });
        tracing::info!(addr = %local_addr, "store API listening");
        Ok(ApiServer { local_addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Wait for the server to stop.
    pub async fn join(self) -> Result<(), ApiServerError> {
        self.task.await.map_err(ApiServerError::Join)?
    }
}
