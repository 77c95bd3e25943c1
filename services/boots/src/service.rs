//! [`Boots`]: every part of boots validated, started, served and joined as one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;
use tinkerbell_core::store::HardwareLookup;
use tinkerbell_core::timeline::Timeline;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dhcp::{DhcpError, DhcpMetrics, DhcpServer};
use crate::http::{HttpError, HttpMetrics};
use crate::ra::{RaError, RaMetrics, RaResponder};
use crate::record::Recorder;
use crate::syslog::{LogStore, SyslogCollector, SyslogError, SyslogServer};
use crate::tftp::{Tftp, TftpError, TftpMetrics};
use crate::{dhcp, http, ra, syslog, tftp};

/// What boots serves. A `None` part is switched off.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// DHCP (`--dhcp-enabled`); off when `None`.
    pub dhcp: Option<dhcp::Config>,
    /// Syslog receiver; off when `None`.
    pub syslog: Option<syslog::Config>,
    /// TFTP server (`--tftp-enabled`); off when `None`.
    pub tftp: Option<tftp::Config>,
    /// The iPXE HTTP routes in [`Boots::router`] (binaries, scripts, HookOS); none when
    /// `None`. Its `listen` and `shutdown_grace` are not used: the caller owns the listener.
    pub http: Option<http::Config>,
    /// IPv6 Router Advertisement responder (`--ipv6-ra-enabled`); off when `None`.
    pub ra: Option<ra::Config>,
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
    /// TFTP.
    #[error("TFTP")]
    Tftp(#[from] TftpError),
    /// The iPXE HTTP routes.
    #[error("iPXE HTTP")]
    Http(#[from] HttpError),
    /// The IPv6 Router Advertisement responder.
    #[error("IPv6 RA")]
    Ra(#[from] RaError),
    /// A part's task ended abnormally (panicked or was aborted).
    #[error("a boots task ended abnormally")]
    Task(#[source] tokio::task::JoinError),
}

impl BootsError {
    /// Whether the error is a configuration problem (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            BootsError::Dhcp(DhcpError::Config(_))
                | BootsError::Syslog(SyslogError::Config(_))
                | BootsError::Tftp(TftpError::Config(_))
                | BootsError::Tftp(TftpError::Binaries(_))
                | BootsError::Tftp(TftpError::AssetDir { .. })
                | BootsError::Http(HttpError::Binaries(_))
                | BootsError::Http(HttpError::HookosDir(_))
                | BootsError::Ra(RaError::Config(_))
                | BootsError::Ra(RaError::Interface { .. })
        )
    }
}

/// A running boots.
#[derive(Debug)]
pub struct Boots {
    dhcp: Option<DhcpServer>,
    syslog: Option<SyslogServer>,
    tftp: Option<Tftp>,
    http: Option<(Router, HttpMetrics)>,
    ra: Option<RaResponder>,
    recorder: Recorder,
}

impl Boots {
    /// Validate every part, then bind every socket and start serving. Nothing is bound when
    /// any part's configuration is invalid (or the iPXE binaries or HookOS directory cannot be
    /// read); every socket is bound when this returns. Phases are recorded into `timeline`
    /// (`tinkerbell serve` passes the one every service shares).
    pub async fn start(
        config: &Config,
        lookup: Arc<dyn HardwareLookup>,
        timeline: Arc<Timeline>,
        cancel: CancellationToken,
    ) -> Result<Boots, BootsError> {
        if let Some(c) = &config.dhcp {
            c.validate().map_err(DhcpError::from)?;
        }
        if let Some(c) = &config.syslog {
            c.validate()?;
        }
        if let Some(c) = &config.tftp {
            c.validate()?;
        }
        if let Some(c) = &config.ra {
            c.validate()?;
        }
        let recorder = Recorder::new(timeline, lookup.clone());
        // Building the routes reads the iPXE binaries and checks the HookOS directory: before
        // any socket is bound.
        let http = match &config.http {
            Some(c) => {
                let metrics = HttpMetrics::default();
                let r = http::router(lookup.clone(), c, metrics.clone(), Some(recorder.clone()))?;
                Some((r, metrics))
            }
            None => None,
        };
        let dhcp = match &config.dhcp {
            Some(c) => Some(
                DhcpServer::start(
                    c,
                    lookup.clone(),
                    Some(recorder.clone()),
                    cancel.child_token(),
                )
                .await?,
            ),
            None => None,
        };
        let tftp = match &config.tftp {
            Some(c) => {
                Some(Tftp::start(c.clone(), Some(recorder.clone()), cancel.child_token()).await?)
            }
            None => None,
        };
        let syslog = match &config.syslog {
            Some(c) => Some(SyslogServer::start(c, lookup.clone(), cancel.child_token()).await?),
            None => None,
        };
        let ra = match &config.ra {
            Some(c) => Some(RaResponder::start(c, cancel.child_token())?),
            None => None,
        };
        Ok(Boots {
            dhcp,
            syslog,
            tftp,
            http,
            ra,
            recorder,
        })
    }

    /// The timeline boots records into.
    pub fn timeline(&self) -> &Arc<Timeline> {
        self.recorder.timeline()
    }

    /// The TFTP listener's address, when TFTP is on.
    pub fn tftp_addr(&self) -> Option<SocketAddr> {
        self.tftp.as_ref().map(Tftp::local_addr)
    }

    /// TFTP counters, when TFTP is on.
    pub fn tftp_metrics(&self) -> Option<TftpMetrics> {
        self.tftp.as_ref().map(|t| t.metrics().clone())
    }

    /// iPXE HTTP counters, when the routes are on.
    pub fn http_metrics(&self) -> Option<HttpMetrics> {
        self.http.as_ref().map(|(_, m)| m.clone())
    }

    /// The DHCP listener's address, when DHCP is on.
    pub fn dhcp_addr(&self) -> Option<SocketAddr> {
        self.dhcp.as_ref().map(DhcpServer::local_addr)
    }

    /// The syslog listener's address, when on.
    pub fn syslog_addr(&self) -> Option<SocketAddr> {
        self.syslog.as_ref().map(SyslogServer::local_addr)
    }

    /// Every bound address (UDP: DHCP, TFTP, syslog).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.dhcp_addr()
            .into_iter()
            .chain(self.tftp_addr())
            .chain(self.syslog_addr())
            .collect()
    }

    /// IPv6 RA responder counters, when it is on.
    pub fn ra_metrics(&self) -> Option<RaMetrics> {
        self.ra.as_ref().map(RaResponder::metrics)
    }

    /// Whether any part runs a task (a UDP listener or the RA responder): when none does,
    /// [`Boots::join`] returns at once.
    pub fn serves_anything(&self) -> bool {
        !self.local_addrs().is_empty() || self.ra.is_some()
    }

    /// DHCP counters, when DHCP is on.
    pub fn dhcp_metrics(&self) -> Option<Arc<DhcpMetrics>> {
        self.dhcp.as_ref().map(DhcpServer::metrics)
    }

    /// The stored syslog lines, when the receiver is on.
    pub fn logs(&self) -> Option<Arc<LogStore>> {
        self.syslog.as_ref().map(SyslogServer::store)
    }

    /// Register every part's metrics (DHCP, syslog, TFTP, HTTP, the RA responder) into the
    /// process's registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        if let Some(d) = self.dhcp_metrics() {
            registry.register_collector(Box::new(d));
        }
        if let Some(s) = &self.syslog {
            registry.register_collector(Box::new(SyslogCollector {
                metrics: s.metrics(),
                store: s.store(),
            }));
        }
        if let Some(t) = self.tftp_metrics() {
            t.register(registry);
        }
        if let Some(h) = self.http_metrics() {
            h.register(registry);
        }
        if let Some(r) = self.ra_metrics() {
            r.register(registry);
        }
    }

    /// HTTP routes for a listener the caller owns (it must serve them with connect info,
    /// `into_make_service_with_connect_info::<SocketAddr>()`): the iPXE routes
    /// (`/ipxe/binary/…`, `/ipxe/script/…/auto.ipxe`, `/hookos/…`) when configured,
    /// `GET /tinkerbell/v1/logs[/{name}]` (with `token` required when given) and
    /// `GET /boots/metrics` (the process's `metrics`, into which
    /// [`Boots::register_metrics`] put boots' own; open).
    pub fn router(&self, token: Option<String>, metrics: Arc<Registry>) -> Router {
        let mut r = Router::new().route("/boots/metrics", tinkerbell_edge::metrics::route(metrics));
        if let Some((ipxe, _)) = &self.http {
            r = r.merge(ipxe.clone());
        }
        if let Some(store) = self.logs() {
            r = r.merge(syslog::http::router(store, token));
        }
        r
    }

    /// [`Boots::router`] with a registry of boots' metrics alone: the standalone `boots`
    /// binary, where boots is the whole process.
    pub fn router_alone(&self, token: Option<String>) -> Router {
        let mut registry = Registry::default();
        self.register_metrics(&mut registry);
        self.router(token, Arc::new(registry))
    }

    /// Wait until every part has stopped. A part that fails (or panics) ends the wait at once
    /// with its error, so the process exits and its supervisor restarts it, instead of a
    /// half-alive boots whose DHCP is gone while TFTP and syslog still answer; the other parts
    /// are aborted when the returned future's set is dropped.
    pub async fn join(self) -> Result<(), BootsError> {
        let mut set: JoinSet<Result<(), BootsError>> = JoinSet::new();
        if let Some(d) = self.dhcp {
            set.spawn(async move { d.join().await.map_err(BootsError::from) });
        }
        if let Some(s) = self.syslog {
            set.spawn(async move { s.join().await.map_err(BootsError::from) });
        }
        if let Some(t) = self.tftp {
            set.spawn(async move { t.join().await.map_err(BootsError::from) });
        }
        if let Some(r) = self.ra {
            set.spawn(async move { r.join().await.map_err(BootsError::from) });
        }
        first_failure(set).await
    }
}
/// Waits for every task of `set`; the first that fails or panics ends the wait with its error
/// (dropping `set` aborts the rest).
async fn first_failure(mut set: JoinSet<Result<(), BootsError>>) -> Result<(), BootsError> {
    while let Some(r) = set.join_next().await {
        r.unwrap_or_else(|e| Err(BootsError::Task(e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// One part panicking (a DHCP listener hit by a packet it could not handle) ends the wait
    /// at once, although the other parts would run forever: the process exits non-zero.
    #[tokio::test]
    async fn a_failed_part_ends_the_wait() {
        let mut set: JoinSet<Result<(), BootsError>> = JoinSet::new();
        set.spawn(std::future::pending());
        let listener = tokio::spawn(async { panic!("listener hit") });
        set.spawn(async move {
            listener
                .await
                .map_err(DhcpError::Join)
                .map_err(BootsError::from)
        });
        let r = tokio::time::timeout(Duration::from_secs(5), first_failure(set))
            .await
            .expect("the wait ends without the pending part");
        assert!(
            matches!(r, Err(BootsError::Dhcp(DhcpError::Join(_)))),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn parts_ending_cleanly_end_the_wait_cleanly() {
        let mut set: JoinSet<Result<(), BootsError>> = JoinSet::new();
        set.spawn(async { Ok(()) });
        set.spawn(async { Ok(()) });
        first_failure(set).await.expect("no failure");
    }
}
