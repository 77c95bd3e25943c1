//! Running the store API on the shared listener ([`tinkerbell_edge::HttpServer`]): bind
//! first, then serve (HTTPS when given a certificate) until cancelled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tinkerbell_edge::{HttpServer, ServeError, ServeOptions};
use tokio_util::sync::CancellationToken;

use crate::store::Backend;

/// Where and how to serve the store API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Listen address (port 0 picks a free port; see [`ApiServer::local_addr`]).
    pub listen: SocketAddr,
    /// How long in-flight requests (and open watches) get after cancellation.
    pub shutdown_grace: Duration,
    /// Serve HTTPS with this configuration ([`tinkerbell_edge::tls::server_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What `/healthz` checks besides the store.
    pub health: super::HealthChecks,
}

/// A running store API.
#[derive(Debug)]
pub struct ApiServer {
    server: HttpServer,
}

impl ApiServer {
    /// Bind `config.listen` and start serving `store`. The socket is bound when this returns.
    /// The server stops when `cancel` fires (open watches get at most `shutdown_grace`).
    pub async fn start(
        config: &ApiConfig,
        store: Arc<dyn Backend>,
        token: &str,
        cancel: CancellationToken,
    ) -> Result<ApiServer, ServeError> {
        let options = ServeOptions {
            tls: config.tls.clone(),
            ..ServeOptions::new(config.shutdown_grace)
        };
        let router = super::router(store, token, config.health.clone());
        let server = HttpServer::start(config.listen, router, cancel, options).await?;
        tracing::info!(addr = %server.local_addr(), tls = config.tls.is_some(), "store API listening");
        Ok(ApiServer { server })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Wait for the server to stop.
    pub async fn join(self) -> Result<(), ServeError> {
        self.server.join().await
    }
}
