//! Serving a router: bind first, then serve until cancelled, then a grace period.
//!
//! The port is open to every machine on the provisioning network, so the listener has limits
//! of its own ([`HttpLimits`]): a client must finish its TLS handshake and send each request's
//! headers within a deadline, and at most so many connections are served at once. At the cap
//! the listener accepts nothing until a connection ends, so a flood waits in the kernel's
//! listen backlog (bounded; beyond it the kernel drops new connection attempts) instead of in
//! memory here, and a connection that stalls gives its slot back when the deadline passes.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The largest connection cap a configuration may ask for.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The listener failed.
    #[error("HTTP server")]
    Listener(#[source] std::io::Error),
    /// The server task panicked or was aborted.
    #[error("HTTP server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

/// Limits of an [`HttpServer`] against clients that hold connections open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client has to complete the TLS handshake (when TLS is on) and to send a
    /// request's headers, from connecting or from the end of its previous response (so an
    /// idle kept-alive connection is closed after it too). A client that is slower is
    /// disconnected.
    pub header_read_timeout: Duration,
    /// How many connections are served at once (1 ..= [`MAX_CONNECTIONS`]). At the cap
    /// nothing more is accepted until one ends.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    /// 10 s for headers, 1024 connections.
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

impl HttpLimits {
    /// What is wrong with these limits, one line each (empty: nothing).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.header_read_timeout.is_zero() {
            problems.push("the header read timeout must be more than zero".to_string());
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            problems.push(format!(
                "the connection cap must be between 1 and {MAX_CONNECTIONS}, not {}",
                self.max_connections
            ));
        }
        problems
    }
}

/// How an [`HttpServer`] serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long in-flight requests (and open streams) get after cancellation.
    pub grace: Duration,
    /// Limits against clients that hold connections open.
    pub limits: HttpLimits,
    /// Serve HTTPS with this configuration (see [`crate::tls::server_config`]); plain HTTP
    /// when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ServeOptions {
    /// Plain HTTP with the default limits and `grace`.
    pub fn new(grace: Duration) -> ServeOptions {
        ServeOptions {
            grace,
            limits: HttpLimits::default(),
            tls: None,
        }
    }
}

/// A running HTTP(S) server for a router; requests carry the peer address (axum's
/// `ConnectInfo<SocketAddr>`).
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Bind `listen` and serve `router` until `cancel` fires. The socket is bound when this
    /// returns.
    pub async fn start(
        listen: SocketAddr,
        router: Router,
        cancel: CancellationToken,
        options: ServeOptions,
    ) -> Result<HttpServer, ServeError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: listen,
                source,
            })?;
        HttpServer::serve(listener, router, cancel, options)
    }

    /// Serve `router` on a listener the caller bound (e.g. to learn the port of `:0` before
    /// the routes are built); otherwise as [`HttpServer::start`].
    pub fn serve(
        listener: TcpListener,
        router: Router,
        cancel: CancellationToken,
        options: ServeOptions,
    ) -> Result<HttpServer, ServeError> {
        let local_addr = listener.local_addr().map_err(ServeError::Listener)?;
        let task = tokio::spawn(run(listener, router, cancel, options));
        Ok(HttpServer { local_addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Wait for the server to stop: after cancellation, once every connection has ended (each
    /// gets at most the grace period).
    pub async fn join(self) -> Result<(), ServeError> {
        self.task.await.map_err(ServeError::Join)
    }
}

/// The accept loop: a free connection slot first, then a connection, served in its own task
/// that holds the slot until the connection ends. After cancellation each connection finishes
/// its request in flight (at most `grace`), and so does this function.
async fn run(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    options: ServeOptions,
) {
    let limits = options.limits;
    // `acquire_many` below counts in u32.
    let slots_total = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(slots_total));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let tls = options.tls.map(TlsAcceptor::from);
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
        let conn = Conn {
            router: router.clone(),
            http: http.clone(),
            peer,
            cancel: cancel.clone(),
            grace: options.grace,
            _slot: slot,
        };
        match &tls {
            None => {
                tokio::spawn(conn.serve(tcp));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let deadline = limits.header_read_timeout;
                tokio::spawn(async move {
                    // The handshake counts against the header deadline, and stops at
                    // cancellation: a client that never finishes it holds its slot no longer.
                    let handshake = tokio::time::timeout(deadline, acceptor.accept(tcp));
                    let stream = tokio::select! {
                        r = handshake => r,
                        () = conn.cancel.cancelled() => return,
                    };
                    match stream {
                        Ok(Ok(stream)) => conn.serve(stream).await,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed")
                        }
                        Err(_elapsed) => {
                            tracing::debug!(peer = %conn.peer, "TLS handshake timed out")
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    // Every slot back means every connection ended; each has at most `grace` after
    // cancellation, so this wait is bounded the same way.
    let all = u32::try_from(slots_total).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(options.grace, slots.acquire_many(all)).await;
}

/// One accepted connection and what serving it needs; holds its connection slot.
struct Conn {
    router: Router,
    http: hyper::server::conn::http1::Builder,
    peer: SocketAddr,
    cancel: CancellationToken,
    grace: Duration,
    _slot: OwnedSemaphorePermit,
}

impl Conn {
    /// Serve requests on `io` until the client is done, or until cancellation plus the grace
    /// period.
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            router,
            http,
            peer,
            cancel,
            grace,
            _slot,
        } = self;
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let mut conn = pin!(http.serve_connection(TokioIo::new(io), service));
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
            // Header deadline passed, client went away, malformed request: the client's
            // problem, not the server's.
            tracing::debug!(%peer, error = %e, "connection ended");
        }
    }
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
