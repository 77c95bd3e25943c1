//! The request listener: binds the port, hands each read request to a transfer task.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::cache::FileCache;
use super::files::{self, AssetRoot, IpxeBinaries};
use super::metrics::{self, DropReason, TftpMetrics};
use super::packet::{self, ErrorCode, Packet};
use super::transfer;
use crate::record::Recorder;

/// The largest block size RFC 2348 allows.
pub const MAX_BLOCK_SIZE: u16 = 65464;

/// How the TFTP server serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Request port (upstream `tftp-server-bind-addr`/`-port`, default 0.0.0.0:69).
    pub listen: SocketAddr,
    /// Directory of iPXE binaries; `None` serves none. Default: Debian's `/usr/lib/ipxe`.
    pub ipxe_dir: Option<PathBuf>,
    /// Directory of further files (upstream `tftp-asset-dir`); `None` serves none.
    pub asset_dir: Option<PathBuf>,
    /// Retransmission timeout when the client does not ask for one (`timeout` option).
    pub timeout: Duration,
    /// Retransmissions of one packet before the transfer is given up.
    pub max_retries: u32,
    /// The largest block size granted (8..=65464).
    pub max_block_size: u16,
    /// The largest window granted (1..=65535).
    pub max_window_size: u16,
    /// Transfers in progress at most; further requests are dropped.
    pub max_transfers: usize,
    /// Transfers in progress at most per client IP address (IPv4-mapped IPv6 counts as the
    /// IPv4 address); its further requests are dropped and counted as
    /// [`DropReason::ClientBusy`], so one client that never acknowledges cannot take every
    /// slot of [`max_transfers`](Config::max_transfers). A PXE ROM fetches one file at a time;
    /// raise it when many machines reach the server through one NAT address.
    pub max_transfers_per_client: usize,
    /// Bytes of asset files held in memory at most, shared by every transfer:
    /// concurrent transfers of one file share one copy, released when the last ends. An
    /// asset that does not fit, or is larger than 16 MiB, is streamed from its file instead.
    /// `0` streams every asset. The iPXE binaries are loaded at start and not counted here.
    pub max_file_cache_bytes: u64,
}

/// Default of [`Config::max_transfers_per_client`].
pub const DEFAULT_MAX_TRANSFERS_PER_CLIENT: usize = 8;

/// Default of [`Config::max_file_cache_bytes`]: 64 MiB, four asset files of the largest size
/// read whole.
pub const DEFAULT_MAX_FILE_CACHE_BYTES: u64 = 64 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 69)),
            ipxe_dir: Some(PathBuf::from(files::DEBIAN_IPXE_DIR)),
            asset_dir: None,
            timeout: Duration::from_secs(1),
            max_retries: 5,
            max_block_size: MAX_BLOCK_SIZE,
            max_window_size: 64,
            max_transfers: 512,
            max_transfers_per_client: DEFAULT_MAX_TRANSFERS_PER_CLIENT,
            max_file_cache_bytes: DEFAULT_MAX_FILE_CACHE_BYTES,
        }
    }
}

/// Why the TFTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    /// The configuration is invalid (every problem listed).
    #[error("invalid TFTP configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// The iPXE binaries could not be loaded.
    #[error(transparent)]
    Binaries(#[from] files::BinariesError),
    /// The asset directory could not be opened.
    #[error("cannot open TFTP asset directory {dir}")]
    AssetDir {
        /// Directory.
        dir: PathBuf,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The request port could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The server task ended abnormally.
    #[error("TFTP server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

impl Config {
    /// Check every value; all problems at once.
    pub fn validate(&self) -> Result<(), TftpError> {
        let mut p = Vec::new();
        if !(8..=MAX_BLOCK_SIZE).contains(&self.max_block_size) {
            p.push(format!(
                "maximum block size must be 8..={MAX_BLOCK_SIZE}, not {}",
                self.max_block_size
            ));
        }
        if self.max_window_size == 0 {
            p.push("maximum window size must be at least 1".into());
        }
        if self.max_transfers == 0 {
            p.push("maximum transfers must be at least 1".into());
        }
        if self.max_transfers_per_client == 0 {
            p.push("maximum transfers per client must be at least 1".into());
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(255) {
            p.push("timeout must be between 1 ms and 255 s".into());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(TftpError::Config(p))
        }
    }
}

/// What every transfer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) binaries: IpxeBinaries,
    pub(crate) assets: Option<AssetRoot>,
    pub(crate) metrics: TftpMetrics,
    pub(crate) recorder: Option<Recorder>,
    pub(crate) cache: FileCache,
}

/// A running TFTP server.
#[derive(Debug)]
pub struct Tftp {
    local_addr: SocketAddr,
    metrics: TftpMetrics,
    task: JoinHandle<()>,
}

impl Tftp {
    /// Validate `config`, load the binaries, open the asset directory and bind the request
    /// port; the socket is bound when this returns. Serves until `cancel` fires; transfers in
    /// flight are then stopped. With a `recorder`, every completed transfer is recorded in the
    /// timeline for the Hardware of the MAC in the path, else of the client's address.
    pub async fn start(
        config: Config,
        recorder: Option<Recorder>,
        cancel: CancellationToken,
    ) -> Result<Tftp, TftpError> {
        config.validate()?;
        let binaries = match &config.ipxe_dir {
            Some(dir) => IpxeBinaries::load(dir)?,
            None => IpxeBinaries::default(),
        };
        let assets = match &config.asset_dir {
            Some(dir) => Some(AssetRoot::open(dir).map_err(|source| TftpError::AssetDir {
                dir: dir.clone(),
                source,
            })?),
            None => None,
        };
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| TftpError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = socket.local_addr().map_err(|source| TftpError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics = TftpMetrics::default();
        tracing::info!(
            addr = %local_addr,
            binaries = binaries.names().collect::<Vec<_>>().join(","),
            assets = ?config.asset_dir,
            "tftp listening"
        );
        let cache = FileCache::new(config.max_file_cache_bytes, metrics.clone());
        let shared = Arc::new(Shared {
            config,
            binaries,
            assets,
            metrics: metrics.clone(),
            recorder,
            cache,
        });
        let task = tokio::spawn(serve(socket, shared, cancel));
        Ok(Tftp {
            local_addr,
            metrics,
            task,
        })
    }

    /// The bound request address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters (register them with [`TftpMetrics::register`]).
    pub fn metrics(&self) -> &TftpMetrics {
        &self.metrics
    }

    /// Wait until the server stopped.
    pub async fn join(self) -> Result<(), TftpError> {
        self.task.await.map_err(TftpError::Join)
    }
}

/// Transfers in progress per client address. Entries exist only while a transfer of the
/// client runs, so there are at most [`Config::max_transfers`] of them.
#[derive(Debug)]
struct ClientSlots {
    max: usize,
    active: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One transfer of a client; its slot frees on drop (transfer ended, was cancelled or panicked).
#[derive(Debug)]
struct ClientPermit {
    ip: IpAddr,
    active: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ClientSlots {
    fn new(max: usize) -> ClientSlots {
        ClientSlots {
            max,
            active: Arc::default(),
        }
    }

    /// A slot for `ip`, unless it already has `max` transfers in progress.
    fn try_acquire(&self, ip: IpAddr) -> Option<ClientPermit> {
        let ip = ip.to_canonical();
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let n = active.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientPermit {
            ip,
            active: self.active.clone(),
        })
    }
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = active.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.ip);
            }
        }
    }
}

async fn serve(socket: UdpSocket, shared: Arc<Shared>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(shared.config.max_transfers));
    let clients = ClientSlots::new(shared.config.max_transfers_per_client);
    let mut transfers = JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = transfers.join_next(), if !transfers.is_empty() => continue,
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; never fatal.
                    tracing::debug!(error = %e, "tftp receive");
                    continue;
                }
            },
        };
        let packet = match Packet::decode(&buf[..n]) {
            Ok(p) => p,
            Err(e) => {
                shared.metrics.dropped(DropReason::Malformed);
                tracing::debug!(%peer, error = %e, "tftp malformed packet dropped");
                continue;
            }
        };
        match packet {
            Packet::Rrq(req) => {
                let Some(client) = clients.try_acquire(peer.ip()) else {
                    // Per packet, so only at debug: a flood must not flood the log as well.
                    shared.metrics.dropped(DropReason::ClientBusy);
                    tracing::debug!(%peer, "tftp: client at its transfer limit, request dropped");
                    continue;
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    shared.metrics.dropped(DropReason::Busy);
                    tracing::warn!(%peer, "tftp: all transfer slots busy, request dropped");
                    continue;
                };
                let req = transfer::OwnedRequest::from(&req);
                let shared = shared.clone();
                let cancel = cancel.clone();
                let local = socket.local_addr().ok();
                transfers.spawn(async move {
                    transfer::run(shared, local, peer, req, cancel).await;
                    drop((permit, client));
                });
            }
            Packet::Wrq(req) => {
                tracing::info!(%peer, file = req.filename, "tftp write request refused");
                shared.metrics.outcome(metrics::Outcome::Refused);
                let err = packet::encode_error(
                    ErrorCode::AccessViolation,
                    "write requests are not accepted",
                );
                let _ = socket.send_to(&err, peer).await;
            }
            _ => {
                shared.metrics.dropped(DropReason::Unexpected);
                tracing::debug!(%peer, "tftp: non-request packet on the request port dropped");
            }
        }
    }
    transfers.shutdown().await;
    tracing::info!("tftp stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_slots_cap_each_address_and_free_on_drop() {
        let slots = ClientSlots::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let p1 = slots.try_acquire(a).unwrap();
        // IPv4-mapped IPv6 is the same client.
        let p2 = slots.try_acquire(a_mapped).unwrap();
        assert!(slots.try_acquire(a).is_none());
        // Another client is not affected.
        let q = slots.try_acquire(b).unwrap();
        drop(p1);
        let p3 = slots.try_acquire(a).unwrap();
        assert!(slots.try_acquire(a_mapped).is_none());
        drop((p2, p3, q));
        // No entry outlives its client's transfers.
        assert!(slots.active.lock().unwrap().is_empty());
    }

    #[test]
    fn zero_limits_are_refused() {
        let c = Config {
            max_transfers: 0,
            max_transfers_per_client: 0,
            ..Config::default()
        };
        let TftpError::Config(p) = c.validate().unwrap_err() else {
            panic!("not a config error");
        };
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
