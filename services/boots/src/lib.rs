//! boots: the network-boot service of tinkerbell-rs (upstream Smee, formerly Boots).
//!
//! A machine powers on, its firmware asks DHCP for an address and a boot file, fetches iPXE
//! over TFTP (or HTTP for UEFI HTTP boot), iPXE asks DHCP again and chains to the `auto.ipxe`
//! script, which boots HookOS; HookOS then logs to boots' syslog receiver. Every answer comes
//! from the Hardware found for the machine's MAC (or source IP) through
//! [`tinkerbell_core::store::HardwareLookup`], which answers from memory.
//!
//! * [`dhcp`]: the DHCPv4 server (reservation, proxy, auto-proxy; relays; interface-scoped
//!   replies).
//! * [`syslog`]: the syslog receiver, its per-machine store and its HTTP routes.
//! * [`tftp`]: the TFTP server for the iPXE binaries (RFC 2347/2348/2349/7440).
//! * [`http`]: iPXE binaries, `auto.ipxe` scripts and HookOS artifacts over HTTP.
//!
//! [`Boots::start`] binds every socket before it returns; the handle has
//! [`Boots::local_addrs`] and [`Boots::join`], and stops when its `CancellationToken` fires.

pub mod dhcp;
pub mod flags;
pub mod http;
pub mod syslog;
pub mod tftp;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tinkerbell_core::store::HardwareLookup;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use dhcp::{DhcpError, DhcpMetrics, DhcpServer};
use syslog::{LogStore, SyslogError, SyslogMetrics, SyslogServer};

/// What boots serves. A `None` part is switched off.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// DHCP (`--dhcp-enabled`); off when `None`.
    pub dhcp: Option<dhcp::Config>,
    /// Syslog receiver; off when `None`.
    pub syslog: Option<syslog::Config>,
    // TFTP and HTTP configs join here (`tftp: Option<tftp::Config>`, `http: …`).
}

/// Why boots could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BootsError {
    /// DHCP.
    #[error("DHCP")]
    Dhcp(#[from] DhcpError),
    /// Syslog.
    #[error("syslog")]
    Syslog(#[from] SyslogError),
}

impl BootsError {
    /// Whether the error is a configuration problem (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            BootsError::Dhcp(DhcpError::Config(_)) | BootsError::Syslog(SyslogError::Config(_))
        )
    }
}

/// A running boots.
#[derive(Debug)]
pub struct Boots {
    dhcp: Option<DhcpServer>,
    syslog: Option<SyslogServer>,
}

impl Boots {
    /// Validate every part, then bind every socket and start serving. Nothing is bound when
    /// any part's configuration is invalid; everything is bound when this returns.
    pub async fn start(
        config: &Config,
        lookup: Arc<dyn HardwareLookup>,
        cancel: CancellationToken,
    ) -> Result<Boots, BootsError> {
        if let Some(c) = &config.dhcp {
            c.validate().map_err(DhcpError::from)?;
        }
        if let Some(c) = &config.syslog {
            c.validate()?;
        }
        let dhcp = match &config.dhcp {
            Some(c) => Some(DhcpServer::start(c, lookup.clone(), cancel.child_token()).await?),
            None => None,
        };
        let syslog = match &config.syslog {
            Some(c) => Some(SyslogServer::start(c, lookup.clone(), cancel.child_token()).await?),
            None => None,
        };
        Ok(Boots { dhcp, syslog })
    }

    /// The DHCP listener's address, when DHCP is on.
    pub fn dhcp_addr(&self) -> Option<SocketAddr> {
        self.dhcp.as_ref().map(DhcpServer::local_addr)
    }

    /// The syslog listener's address, when on.
    pub fn syslog_addr(&self) -> Option<SocketAddr> {
        self.syslog.as_ref().map(SyslogServer::local_addr)
    }

    /// Every bound address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.dhcp_addr()
            .into_iter()
            .chain(self.syslog_addr())
            .collect()
    }

    /// DHCP counters, when DHCP is on.
    pub fn dhcp_metrics(&self) -> Option<Arc<DhcpMetrics>> {
        self.dhcp.as_ref().map(DhcpServer::metrics)
    }

    /// The stored syslog lines, when the receiver is on.
    pub fn logs(&self) -> Option<Arc<LogStore>> {
        self.syslog.as_ref().map(SyslogServer::store)
    }

    /// HTTP routes for a listener the caller owns: `GET /tinkerbell/v1/logs[/{name}]` (with
    /// `token` required when given) and `GET /boots/metrics` (Prometheus text, open).
    pub fn router(&self, token: Option<String>) -> Router {
        let dhcp = self.dhcp_metrics();
        let sys: Option<(Arc<SyslogMetrics>, Arc<LogStore>)> =
            self.syslog.as_ref().map(|s| (s.metrics(), s.store()));
        let metrics = get(move || {
            let dhcp = dhcp.clone();
            let sys = sys.clone();
            async move {
                let mut out = dhcp.map(|m| m.render()).unwrap_or_default();
                if let Some((m, store)) = sys {
                    out.push_str(&m.render(&store));
                }
                out
            }
        });
        let mut r = Router::new().route("/boots/metrics", metrics);
        if let Some(store) = self.logs() {
            r = r.merge(syslog::http::router(store, token));
        }
        r
    }

    /// Wait until every part has stopped; the first error is returned.
    pub async fn join(self) -> Result<(), BootsError> {
        let mut set: JoinSet<Result<(), BootsError>> = JoinSet::new();
        if let Some(d) = self.dhcp {
            set.spawn(async move { d.join().await.map_err(BootsError::from) });
        }
        if let Some(s) = self.syslog {
            set.spawn(async move { s.join().await.map_err(BootsError::from) });
        }
        let mut result = Ok(());
        while let Some(r) = set.join_next().await {
            let r = r.unwrap_or_else(|e| Err(BootsError::Dhcp(DhcpError::Join(e))));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}
