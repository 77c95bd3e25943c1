//! Standalone hegel: its router on the shared listener ([`tinkerbell_edge::HttpServer`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tinkerbell_core::store::HardwareLookup;
use tinkerbell_edge::metrics::Registry;
use tinkerbell_edge::{HttpServer, ServeError, ServeOptions};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};

/// Why hegel could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum HegelError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listener could not be bound, or failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
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
        // The process's one registry, hegel's alone here.
        let mut registry = Registry::default();
        let router = crate::router(backend, config, &mut registry).route(
            "/metrics",
            tinkerbell_edge::metrics::route(Arc::new(registry)),
        );
        let options = ServeOptions {
            limits: config.limits,
            ..ServeOptions::new(config.shutdown_grace)
        };
        let server = HttpServer::start(config.listen, router, cancel, options).await?;
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
        Ok(self.server.join().await?)
    }
}
