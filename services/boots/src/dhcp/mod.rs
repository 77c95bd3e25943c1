//! The DHCPv4 server: reservation, proxy and auto-proxy modes (upstream Smee's
//! `smee/internal/dhcp/handler/{reservation,proxy}`), relays, interface-scoped replies.
//!
//! Split so that every decision is testable without a socket:
//! * [`netboot`]: who is a netboot client, which iPXE binary, what goes into `file`/`siaddr`.
//! * [`handler`]: one request (+ the Hardware found for its MAC) in, one reply or a reason for
//!   silence out — a pure function, like a dora handler over a per-message context.
//! * [`server`]: the socket loop (IP_PKTINFO in and out, so a reply leaves on the interface the
//!   request came in on), reply addressing, bounded concurrency for slow backends.
//! * [`metrics`]: lock-free counters, in the Prometheus text format.
//!
//! No state is kept per client: every answer is a function of the packet and the Hardware, so a
//! flood of unknown MACs costs CPU but never memory.

pub mod handler;
pub mod metrics;
pub mod netboot;
#[cfg(feature = "server")]
pub mod probe;
#[cfg(feature = "server")]
pub mod server;
pub mod wire;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

pub use handler::{Outcome, Reason};
pub use metrics::DhcpMetrics;
pub use netboot::MacFormat;
#[cfg(feature = "server")]
pub use server::{DhcpError, DhcpServer};

/// Which DHCP service boots offers (`--dhcp-mode`: `reservation`, `proxy`, `auto-proxy`, also
/// written `autoproxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "server", derive(clap::ValueEnum))]
pub enum Mode {
    /// Full DHCP server whose every address is a Hardware reservation; silent for unknown MACs.
    #[default]
    Reservation,
    /// ProxyDHCP: boot information only (no address), for netboot clients with a Hardware.
    Proxy,
    /// Like proxy, but also for unknown machines (discovery/enrollment).
    #[cfg_attr(feature = "server", value(name = "auto-proxy", alias = "autoproxy"))]
    AutoProxy,
}

/// `scheme://host:port/path` parts of a URL boots hands out; `host: None` means the address
/// the request arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP; `None` = the packet's local address (or `public_ip`).
    pub host: Option<String>,
    /// Port.
    pub port: u16,
    /// Path prefix, with a leading `/` and no trailing `/`.
    pub path: String,
}

impl UrlParts {
    /// Render with `host` filled in when unset.
    pub fn render(&self, default_host: Ipv4Addr) -> String {
        let host = self
            .host
            .clone()
            .unwrap_or_else(|| default_host.to_string());
        let path = self.path.trim_end_matches('/');
        let path = if path.is_empty() || path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        format!("{}://{}:{}{}", self.scheme, host, self.port, path)
    }
}

/// DHCP server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Mode.
    pub mode: Mode,
    /// Listen address (`--dhcp-bind-addr`, default 0.0.0.0:67).
    pub bind: SocketAddrV4,
    /// Only serve this interface (`--dhcp-bind-interface`, SO_BINDTODEVICE).
    pub bind_interface: Option<String>,
    /// Server identifier / `siaddr` (`--dhcp-ip-for-packet`); default: the address the request
    /// arrived on.
    pub ip_for_packet: Option<Ipv4Addr>,
    /// Option 7 (`--dhcp-syslog-ip`).
    pub syslog_ip: Option<Ipv4Addr>,
    /// TFTP server (`--dhcp-tftp-ip`); default: the address the request arrived on.
    pub tftp_ip: Option<Ipv4Addr>,
    /// TFTP port (`--dhcp-tftp-port`).
    pub tftp_port: u16,
    /// Where the iPXE binaries are served over HTTP (`--dhcp-ipxe-http-binary-*`).
    pub binary_url: UrlParts,
    /// Where the iPXE script is served (`--dhcp-ipxe-http-script-*`); `None`: no script.
    pub script_url: Option<UrlParts>,
    /// Put the MAC into the script URL (`--dhcp-ipxe-http-script-prepend-mac`).
    pub script_prepend_mac: bool,
    /// Send netboot options at all (`--dhcp-enable-netboot-options`).
    pub netboot_options: bool,
    /// Option 93 → binary overrides (`--ipxe-override-arch-mapping`).
    pub arch_overrides: BTreeMap<u16, String>,
    /// MAC format in binary URLs and TFTP paths (`--ipxe-binary-inject-mac-addr-format`).
    pub mac_format: MacFormat,
    /// A user class treated like `Tinkerbell` (the operator's own iPXE build).
    pub custom_user_class: Option<String>,
    /// The iPXE binaries served are stock builds (Debian's `ipxe`, QEMU's ROMs), which carry no
    /// embedded script setting user class `Tinkerbell`: an iPXE client (user class `iPXE`) then
    /// gets the script URL instead of an iPXE binary it would chainload forever. Off: upstream's
    /// rule (iPXE → Tinkerbell's own iPXE binary over TFTP, whose script asks again).
    pub stock_ipxe: bool,
    /// Requests whose Hardware lookup has not finished at once are handled by spawned tasks;
    /// at most this many at a time, the rest are dropped and counted.
    pub max_in_flight: usize,
    /// A lookup that takes longer is abandoned (the client retransmits).
    pub lookup_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Reservation,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67),
            bind_interface: None,
            ip_for_packet: None,
            syslog_ip: None,
            tftp_ip: None,
            tftp_port: 69,
            binary_url: UrlParts {
                scheme: "http".into(),
                host: None,
                port: 7080,
                path: "/ipxe/binary".into(),
            },
            script_url: Some(UrlParts {
                scheme: "http".into(),
                host: None,
                port: 7080,
                path: "/ipxe/script".into(),
            }),
            script_prepend_mac: true,
            netboot_options: true,
            arch_overrides: BTreeMap::new(),
            mac_format: MacFormat::Colon,
            custom_user_class: None,
            stock_ipxe: false,
            max_in_flight: 1024,
            lookup_timeout: Duration::from_secs(2),
        }
    }
}

/// Problems with a DHCP [`Config`], all of them.
#[derive(Debug, thiserror::Error)]
#[error("invalid DHCP configuration: {}", problems.join("; "))]
pub struct ConfigError {
    /// Every problem found.
    pub problems: Vec<String>,
}

impl Config {
    /// Check the configuration; every problem is reported at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        for (name, u) in std::iter::once(("binary", &self.binary_url))
            .chain(self.script_url.as_ref().map(|u| ("script", u)))
        {
            if !matches!(u.scheme.as_str(), "http" | "https") {
                problems.push(format!(
                    "{name} URL scheme {:?} is not http or https",
                    u.scheme
                ));
            }
            if let Some(h) = &u.host
                && (h.is_empty() || h.contains('/') || h.contains(' '))
            {
                problems.push(format!("{name} URL host {h:?} is not a host"));
            }
        }
        if let Some(i) = &self.bind_interface
            && (i.is_empty() || i.len() > 15)
        {
            problems.push(format!("interface name {i:?} is not valid"));
        }
        if self.max_in_flight == 0 {
            problems.push("max_in_flight must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The listen address as a `SocketAddr`.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.bind)
    }
}
