//! Serving a router: bind first, then serve until cancelled.
//!
//! The port is open to every machine on the provisioning network, so the listener has limits
//! of its own ([`HttpLimits`]): a client must send each request's headers within a deadline,
//! and at most so many connections are served at once. At the cap the listener accepts
//! nothing until a connection ends, so a flood waits in the kernel's listen backlog (bounded;
//! beyond it the kernel drops new connection attempts) instead of in memory here, and a
//! connection that stalls gives its slot back when the deadline passes.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tinkerbell_core::store::HardwareLookup;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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

/// Limits of an [`HttpServer`] against clients that hold connections open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client has to send a request's headers, from connecting or from the end of
    /// its previous response (so an idle kept-alive connection is closed after it too). A
    /// client that is slower is disconnected.
    pub header_read_timeout: Duration,
    /// How many connections are served at once (at least 1). At the cap nothing more is
    /// accepted until one ends.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    /// 10 s for headers, 1024 connections: what [`Config::default`] has.
    fn default() -> Self {
        HttpLimits::of(&Config::default())
    }
}

impl HttpLimits {
    /// The limits `config` asks for.
    pub fn of(config: &Config) -> HttpLimits {
        HttpLimits {
            header_read_timeout: config.header_read_timeout,
            max_connections: config.max_connections,
        }
    }
}

/// A running HTTP server for any router that needs the peer address (connect info).
/// Used by standalone hegel and by `tinkerbell serve`'s consolidated HTTP port.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    task: JoinHandle<Result<(), HegelError>>,
}

impl HttpServer {
    /// Bind `listen` and serve `router` with `limits` until `cancel` fires; in-flight requests
    /// then get at most `grace`. The socket is bound when this returns.
    pub async fn start(
        listen: SocketAddr,
        router: Router,
        cancel: CancellationToken,
        grace: Duration,
        limits: HttpLimits,
    ) -> Result<HttpServer, HegelError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| HegelError::Bind {
                addr: listen,
                source,
            })?;
        HttpServer::serve_with_limits(listener, router, cancel, grace, limits)
    }

    /// Serve `router` on a listener the caller bound (e.g. to learn the port of `:0` before
    /// the routes are built), with the default [`HttpLimits`]; otherwise as
    /// [`HttpServer::start`].
    pub fn serve(
        listener: TcpListener,
        router: Router,
        cancel: CancellationToken,
        grace: Duration,
    ) -> Result<HttpServer, HegelError> {
        HttpServer::serve_with_limits(listener, router, cancel, grace, HttpLimits::default())
    }

    /// [`HttpServer::serve`] with the given limits.
    pub fn serve_with_limits(
        listener: TcpListener,
        router: Router,
        cancel: CancellationToken,
        grace: Duration,
        limits: HttpLimits,
    ) -> Result<HttpServer, HegelError> {
        let local_addr = listener.local_addr().map_err(HegelError::Serve)?;
        let task = tokio::spawn(run(listener, router, cancel, grace, limits));
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

/// The accept loop: a free connection slot first, then a connection, served in its own task
/// that holds the slot until the connection ends. After cancellation each connection finishes
/// its request in flight (at most `grace`), and so does this function.
async fn run(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    grace: Duration,
    limits: HttpLimits,
) -> Result<(), HegelError> {
    // `acquire_many` below counts in u32.
    let slots_total = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(slots_total));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => break,
            },
            () = cancel.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = cancel.cancelled() => break,
                        }
                    }
                    continue;
                }
            },
            () = cancel.cancelled() => break,
        };
        // Small answers: do not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let conn = http.serve_connection(TokioIo::new(tcp), service);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut conn = pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(grace, conn.as_mut()).await {
                        Ok(ended) => ended,
                        Err(_elapsed) => return,
                    }
                }
            };
            if let Err(e) = ended {
                // Header deadline passed, client went away, malformed request: the
                // client's problem, not the server's.
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    // Every slot back means every connection ended; each has at most `grace` after
    // cancellation, so this wait is bounded the same way.
    let all = u32::try_from(slots_total).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(grace, slots.acquire_many(all)).await;
    Ok(())
}

/// Errors of one connection attempt (the peer gave up before it was accepted), not of the
/// listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
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
        let server = HttpServer::start(
            config.listen,
            router,
            cancel,
            config.shutdown_grace,
            HttpLimits::of(config),
        )
        .await?;
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
