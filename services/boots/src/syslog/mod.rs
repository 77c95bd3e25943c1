//! The syslog receiver: what HookOS, the worker and BMCs log to `syslog_host`, kept per machine.
//!
//! Upstream Smee parses each datagram and writes it to its own log; here each message is also
//! stored in memory under the machine that sent it (source IP → Hardware via
//! [`HardwareLookup::hardware_by_ip`]; an unknown source is kept under its IP), so an operator can
//! read one machine's boot log with `tinkerbell logs HARDWARE` or `GET
//! /tinkerbell/v1/logs/<hardware>`. Retention is a byte budget per machine, in total, and for
//! unknown senders together (a smaller share, so strangers cannot push registered machines'
//! lines out); a chatty or hostile sender can only push older lines out, never grow memory.
//! Budgets count bytes, not lines, because the sender picks each line's size (see [`store`]).
//!
//! Lines are not written to the process log above `debug` (a sender would choose how much the
//! appliance logs); `tinkerbell logs` and the HTTP route are where they are read.
//!
//! Parsing is [`syslog_loose`] (RFC 5424 first, then RFC 3164); it is lenient, so the raw line
//! is what the entry keeps as `message` when nothing parses. A message body that is a JSON object
//! is also decoded into `json` (upstream does the same).

pub mod http;
pub mod store;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tinkerbell_core::store::HardwareLookup;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use store::{Budget, LogEntry, LogStore, MachineKey};

/// Syslog receiver configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (`--syslog-bind-addr`:`--syslog-bind-port`, default 0.0.0.0:514).
    pub bind: SocketAddr,
    /// Bytes kept per machine, known or not (oldest lines dropped first). Default 4 MiB.
    pub per_machine_bytes: usize,
    /// Bytes kept in total, over all machines (oldest lines dropped first, unknown senders'
    /// before known machines'). Default 64 MiB.
    pub total_bytes: usize,
    /// Bytes kept for unknown senders (no Hardware has the address) together, within
    /// `total_bytes`. Default 8 MiB.
    pub unknown_bytes: usize,
    /// Longer messages are truncated to this many bytes.
    pub max_message: usize,
    /// How long the source-IP → Hardware lookup may take before the line is kept under the IP.
    pub lookup_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([0, 0, 0, 0], 514)),
            per_machine_bytes: 4 << 20,
            total_bytes: 64 << 20,
            unknown_bytes: 8 << 20,
            max_message: 8192,
            lookup_timeout: Duration::from_millis(500),
        }
    }
}

/// Why the syslog receiver could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// Invalid configuration.
    #[error("invalid syslog configuration: {0}")]
    Config(String),
    /// The socket could not be bound.
    #[error("cannot listen for syslog on {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        #[source]
        source: io::Error,
    },
    /// The task panicked or was aborted.
    #[error("syslog receiver task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

impl Config {
    /// The store's byte budgets.
    pub fn budget(&self) -> Budget {
        Budget {
            per_machine: self.per_machine_bytes,
            total: self.total_bytes,
            unknown: self.unknown_bytes,
        }
    }

    /// Check the configuration.
    pub fn validate(&self) -> Result<(), SyslogError> {
        let mut p = Vec::new();
        // Room for a few of the longest lines (their decoded JSON weighs more than the text).
        if self.per_machine_bytes < 4 * self.max_message {
            p.push("per_machine_bytes must be at least 4 × max_message");
        }
        if self.total_bytes < self.per_machine_bytes {
            p.push("total_bytes must be at least per_machine_bytes");
        }
        if self.unknown_bytes < 4 * self.max_message {
            p.push("unknown_bytes must be at least 4 × max_message");
        }
        if self.unknown_bytes > self.total_bytes {
            p.push("unknown_bytes must be at most total_bytes");
        }
        if self.max_message < 64 {
            p.push("max_message must be at least 64");
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(SyslogError::Config(p.join("; ")))
        }
    }
}

/// Receiver counters.
#[derive(Debug, Default)]
pub struct SyslogMetrics {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Lookups that failed or timed out (the line was kept under the IP).
    pub lookup_failures: AtomicU64,
}

/// The receiver's metrics at scrape time: its counters and the store's budgets.
#[derive(Debug, Clone)]
pub struct SyslogCollector {
    /// The counters.
    pub metrics: Arc<SyslogMetrics>,
    /// The stored lines.
    pub store: Arc<LogStore>,
}

impl tinkerbell_edge::metrics::Collector for SyslogCollector {
    fn encode(
        &self,
        mut e: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use tinkerbell_edge::metrics::{counter, gauge, gauge_family};
        let (m, store) = (&self.metrics, &self.store);
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        counter(
            &mut e,
            "boots_syslog_received",
            "Syslog datagrams received.",
            m.received.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "boots_syslog_lookup_failures",
            "Source lookups that failed or timed out.",
            m.lookup_failures.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "boots_syslog_evicted",
            "Stored lines dropped by the retention budgets.",
            store.evicted(),
        )?;
        counter(
            &mut e,
            "boots_syslog_evicted_bytes",
            "Bytes freed by the retention budgets.",
            store.evicted_bytes(),
        )?;
        gauge(
            &mut e,
            "boots_syslog_stored_lines",
            "Lines currently stored.",
            int(store.len()),
        )?;
        gauge_family(
            &mut e,
            "boots_syslog_stored_bytes",
            "Bytes currently stored, by sender.",
            "sender",
            [
                ("known", int(store.known_bytes())),
                ("unknown", int(store.unknown_bytes())),
            ],
        )
    }
}

/// A running syslog receiver.
#[derive(Debug)]
pub struct SyslogServer {
    local_addr: SocketAddr,
    store: Arc<LogStore>,
    metrics: Arc<SyslogMetrics>,
    task: JoinHandle<Result<(), SyslogError>>,
}

impl SyslogServer {
    /// Bind and start receiving. The socket is bound when this returns.
    pub async fn start(
        cfg: &Config,
        lookup: Arc<dyn HardwareLookup>,
        cancel: CancellationToken,
    ) -> Result<SyslogServer, SyslogError> {
        cfg.validate()?;
        let bind_err = |source| SyslogError::Bind {
            addr: cfg.bind,
            source,
        };
        let sock = UdpSocket::bind(cfg.bind).await.map_err(bind_err)?;
        let local_addr = sock.local_addr().map_err(bind_err)?;
        let store = Arc::new(LogStore::new(cfg.budget()));
        let metrics = Arc::new(SyslogMetrics::default());
        let task = tokio::spawn(receive(
            sock,
            cfg.clone(),
            lookup,
            store.clone(),
            metrics.clone(),
            cancel,
        ));
        tracing::info!(addr = %local_addr, "syslog listening");
        Ok(SyslogServer {
            local_addr,
            store,
            metrics,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The stored logs.
    pub fn store(&self) -> Arc<LogStore> {
        self.store.clone()
    }

    /// The counters.
    pub fn metrics(&self) -> Arc<SyslogMetrics> {
        self.metrics.clone()
    }

    /// Wait for the receiver to stop.
    pub async fn join(self) -> Result<(), SyslogError> {
        self.task.await.map_err(SyslogError::Join)?
    }
}

async fn receive(
    sock: UdpSocket,
    cfg: Config,
    lookup: Arc<dyn HardwareLookup>,
    store: Arc<LogStore>,
    metrics: Arc<SyslogMetrics>,
    cancel: CancellationToken,
) -> Result<(), SyslogError> {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "syslog receive error");
                    continue;
                }
            },
        };
        metrics.received.fetch_add(1, Ordering::Relaxed);
        let ip = store::canonical(peer.ip());
        let key =
            match tokio::time::timeout(cfg.lookup_timeout, lookup.hardware_by_ip(&ip.to_string()))
                .await
            {
                Ok(Ok(Some(hw))) => MachineKey::Hardware {
                    namespace: hw.metadata.namespace.clone().unwrap_or_default(),
                    name: hw.metadata.name.clone().unwrap_or_default(),
                },
                Ok(Ok(None)) => MachineKey::Address(ip),
                Ok(Err(_)) | Err(_) => {
                    metrics.lookup_failures.fetch_add(1, Ordering::Relaxed);
                    MachineKey::Address(ip)
                }
            };
        let entry = store::parse(&buf[..n], ip, cfg.max_message);
        // Debug only: the sender decides how much is logged here.
        tracing::debug!(target: "boots::syslog", machine = %key, host = ?entry.hostname,
            app = ?entry.app, severity = ?entry.severity, msg = %entry.message, "syslog");
        store.push(key, entry);
    }
}
