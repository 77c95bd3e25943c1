//! The DHCP, TFTP, iPXE-over-HTTP, syslog and IPv6 RA flags, as clap argument groups both the `boots`
//! binary and `tinkerbell serve` flatten, so the two accept the same upstream names
//! (`TINKERBELL_DHCP_*`, `TINKERBELL_TFTP_*`, `TINKERBELL_IPXE_*`, `TINKERBELL_SYSLOG_*`) and
//! turn them into a [`Config`](crate::Config) the same way. Only the on/off switches and the
//! values that depend on the process (its HTTP port, the tink server next to it) differ per
//! binary: serve keeps DHCP, TFTP and syslog off unless asked, as they bind privileged ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tinkerbell_core::worker_token::WorkerTokenKey;
use tinkerbell_edge::Cidr;

use crate::dhcp::{self, MacFormat, Mode, UrlParts};
use crate::http::{self, ScriptConfig};
use crate::ra;
use crate::syslog;
use crate::tftp::{self, files::DEBIAN_IPXE_DIR};

/// DHCP flags (upstream Smee's names).
#[derive(Debug, Clone, clap::Args)]
pub struct DhcpArgs {
    /// DHCP mode: reservation, proxy or auto-proxy.
    #[arg(
        long,
        env = "TINKERBELL_DHCP_MODE",
        value_enum,
        default_value = "reservation"
    )]
    pub dhcp_mode: Mode,
    /// DHCP listen address: IP or IP:PORT.
    #[arg(long, env = "TINKERBELL_DHCP_BIND_ADDR", default_value = "0.0.0.0:67")]
    pub dhcp_bind_addr: String,
    /// Serve DHCP on this interface only (SO_BINDTODEVICE).
    #[arg(long, env = "TINKERBELL_DHCP_BIND_INTERFACE")]
    pub dhcp_bind_interface: Option<String>,
    /// Server identifier / siaddr in replies. Default: the address the request arrived on.
    #[arg(long, env = "TINKERBELL_DHCP_IP_FOR_PACKET")]
    pub dhcp_ip_for_packet: Option<Ipv4Addr>,
    /// Syslog server handed out in option 7.
    #[arg(long, env = "TINKERBELL_DHCP_SYSLOG_IP")]
    pub dhcp_syslog_ip: Option<Ipv4Addr>,
    /// TFTP server handed out to PXE clients. Default: the address the request arrived on.
    #[arg(long, env = "TINKERBELL_DHCP_TFTP_IP")]
    pub dhcp_tftp_ip: Option<Ipv4Addr>,
    /// TFTP port handed out to iPXE clients.
    #[arg(long, env = "TINKERBELL_DHCP_TFTP_PORT", default_value_t = 69)]
    pub dhcp_tftp_port: u16,
    /// Scheme of the iPXE binary URL (UEFI HTTP boot).
    #[arg(
        long,
        env = "TINKERBELL_DHCP_IPXE_HTTP_BINARY_SCHEME",
        default_value = "http"
    )]
    pub dhcp_ipxe_http_binary_scheme: String,
    /// Host of the iPXE binary URL. Default: the address the request arrived on.
    #[arg(long, env = "TINKERBELL_DHCP_IPXE_HTTP_BINARY_HOST")]
    pub dhcp_ipxe_http_binary_host: Option<String>,
    /// Port of the iPXE binary URL. Default: the port of this process's HTTP listener.
    #[arg(long, env = "TINKERBELL_DHCP_IPXE_HTTP_BINARY_PORT")]
    pub dhcp_ipxe_http_binary_port: Option<u16>,
    /// Path of the iPXE binary URL.
    #[arg(
        long,
        env = "TINKERBELL_DHCP_IPXE_HTTP_BINARY_PATH",
        default_value = "/ipxe/binary"
    )]
    pub dhcp_ipxe_http_binary_path: String,
    /// Scheme of the iPXE script URL.
    #[arg(
        long,
        env = "TINKERBELL_DHCP_IPXE_HTTP_SCRIPT_SCHEME",
        default_value = "http"
    )]
    pub dhcp_ipxe_http_script_scheme: String,
    /// Host of the iPXE script URL. Default: the address the request arrived on.
    #[arg(long, env = "TINKERBELL_DHCP_IPXE_HTTP_SCRIPT_HOST")]
    pub dhcp_ipxe_http_script_host: Option<String>,
    /// Port of the iPXE script URL. Default: the port of this process's HTTP listener.
    #[arg(long, env = "TINKERBELL_DHCP_IPXE_HTTP_SCRIPT_PORT")]
    pub dhcp_ipxe_http_script_port: Option<u16>,
    /// Path of the iPXE script URL ("" for no script: clients get /no-ipxe-script-defined).
    #[arg(
        long,
        env = "TINKERBELL_DHCP_IPXE_HTTP_SCRIPT_PATH",
        default_value = "/ipxe/script"
    )]
    pub dhcp_ipxe_http_script_path: String,
    /// Put the MAC into the iPXE script URL.
    #[arg(long, env = "TINKERBELL_DHCP_IPXE_HTTP_SCRIPT_PREPEND_MAC", default_value_t = true,
        num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub dhcp_ipxe_http_script_prepend_mac: bool,
    /// Send netboot options (reservation mode); off: addresses only.
    #[arg(long, env = "TINKERBELL_DHCP_ENABLE_NETBOOT_OPTIONS", default_value_t = true,
        num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub dhcp_enable_netboot_options: bool,
    /// Option 93 → iPXE binary overrides, e.g. "7=snp-x86_64.efi,11=snp-arm64.efi".
    #[arg(
        long,
        env = "TINKERBELL_IPXE_OVERRIDE_ARCH_MAPPING",
        default_value = ""
    )]
    pub ipxe_override_arch_mapping: String,
    /// MAC format in binary URLs and TFTP paths: colon, dot, dash, no-delimiter, empty.
    #[arg(
        long,
        env = "TINKERBELL_IPXE_BINARY_INJECT_MAC_ADDR_FORMAT",
        default_value = "colon"
    )]
    pub ipxe_binary_inject_mac_addr_format: String,
    /// A user class treated like "Tinkerbell" (your own iPXE build).
    #[arg(long, env = "TINKERBELL_DHCP_CUSTOM_USER_CLASS")]
    pub dhcp_custom_user_class: Option<String>,
    /// The iPXE binaries are stock builds (Debian's, as served by default): iPXE clients get
    /// the script URL right away. Set false when serving upstream's Tinkerbell iPXE builds
    /// (whose embedded script re-asks as user class Tinkerbell) for upstream's exact rule.
    #[arg(long, env = "TINKERBELL_DHCP_IPXE_STOCK_BINARIES", default_value_t = true,
        num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub dhcp_ipxe_stock_binaries: bool,

    /// Default for --dhcp-ip-for-packet and --dhcp-tftp-ip.
    #[arg(long, env = "TINKERBELL_PUBLIC_IPV4")]
    pub public_ipv4: Option<Ipv4Addr>,
}

/// The IPv6 Router Advertisement responder's flag (not an upstream feature; see [`ra`]).
#[derive(Debug, Clone, clap::Args)]
pub struct RaArgs {
    /// Answer IPv6 Router Solicitations on --dhcp-bind-interface with a Router Advertisement
    /// that configures nothing (lifetime 0, no prefixes), so stock iPXE's IPv6
    /// autoconfiguration ends at once instead of waiting ~16 s. Off by default: on a link with
    /// a real IPv6 router it is an extra voice an operator must choose to add.
    #[arg(long, env = "TINKERBELL_IPV6_RA_ENABLED", default_value_t = false, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub ipv6_ra_enabled: bool,
}

impl RaArgs {
    /// The responder's configuration (`None` when off) on `interface`
    /// (`--dhcp-bind-interface`), which is required when on.
    pub fn to_config(&self, interface: Option<&str>) -> Result<Option<ra::Config>, Vec<String>> {
        if !self.ipv6_ra_enabled {
            return Ok(None);
        }
        let Some(interface) = interface else {
            return Err(vec![
                "--ipv6-ra-enabled needs --dhcp-bind-interface (the interface to answer on)"
                    .to_string(),
            ]);
        };
        let cfg = ra::Config::new(interface);
        match cfg.validate() {
            Ok(()) => Ok(Some(cfg)),
            Err(e) => Err(vec![format!("--dhcp-bind-interface: {e}")]),
        }
    }
}

/// Syslog receiver flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SyslogArgs {
    /// Syslog listen address.
    #[arg(long, env = "TINKERBELL_SYSLOG_BIND_ADDR", default_value = "0.0.0.0")]
    pub syslog_bind_addr: IpAddr,
    /// Syslog listen port.
    #[arg(long, env = "TINKERBELL_SYSLOG_BIND_PORT", default_value_t = 514)]
    pub syslog_bind_port: u16,
}

fn parse_bind(s: &str) -> Result<SocketAddrV4, String> {
    if let Ok(a) = s.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    s.parse::<Ipv4Addr>()
        .map(|ip| SocketAddrV4::new(ip, 67))
        .map_err(|_| format!("{s:?} is not an IPv4 address or address:port"))
}

/// TFTP flags (upstream Smee's names). The iPXE binaries come from [`IpxeArgs`].
#[derive(Debug, Clone, clap::Args)]
pub struct TftpArgs {
    /// TFTP listen address.
    #[arg(
        long,
        env = "TINKERBELL_TFTP_SERVER_BIND_ADDR",
        default_value = "0.0.0.0"
    )]
    pub tftp_server_bind_addr: IpAddr,
    /// TFTP listen port.
    #[arg(long, env = "TINKERBELL_TFTP_SERVER_BIND_PORT", default_value_t = 69)]
    pub tftp_server_bind_port: u16,
    /// Retransmission timeout when the client asks for none (a Go duration: 500ms, 1s, 1m;
    /// or seconds).
    #[arg(
        long,
        env = "TINKERBELL_TFTP_TIMEOUT",
        default_value = "1s",
        value_parser = tinkerbell_model::duration::parse
    )]
    pub tftp_timeout: Duration,
    /// The largest block size granted to a client that asks for one (RFC 2348; 8..=65464).
    #[arg(long, env = "TINKERBELL_TFTP_BLOCK_SIZE", default_value_t = tftp::MAX_BLOCK_SIZE)]
    pub tftp_block_size: u16,
    /// Directory of further files served over TFTP (paths outside it are refused).
    #[arg(long, env = "TINKERBELL_TFTP_ASSET_DIR")]
    pub tftp_asset_dir: Option<PathBuf>,
}

/// iPXE flags: the binaries (TFTP and HTTP), the `auto.ipxe` script settings (upstream's
/// `ipxe-http-script-*` and `ipxe-script-tink-server-*`) and the HookOS directory.
#[derive(Debug, Clone, clap::Args)]
pub struct IpxeArgs {
    /// Directory of iPXE binaries (undionly.kpxe, ipxe.efi, snponly.efi, ...). Default:
    /// Debian's /usr/lib/ipxe when it exists, else none are served.
    #[arg(long, env = "TINKERBELL_IPXE_BINARIES_DIR")]
    pub ipxe_binaries_dir: Option<PathBuf>,
    /// Directory served under /hookos/ (vmlinuz-x86_64, initramfs-x86_64, ...). The script's
    /// download URL defaults to it when no OSIE URL is set.
    #[arg(long, env = "TINKERBELL_HOOKOS_DIR")]
    pub hookos_dir: Option<PathBuf>,
    /// Where the scripts download HookOS from. Default: this listener's /hookos (with
    /// --hookos-dir).
    #[arg(long, env = "TINKERBELL_IPXE_HTTP_SCRIPT_OSIE_URL", default_value = "")]
    pub ipxe_http_script_osie_url: String,
    /// Extra kernel command-line arguments for HookOS, space separated.
    #[arg(
        long,
        env = "TINKERBELL_IPXE_HTTP_SCRIPT_EXTRA_KERNEL_ARGS",
        default_value = ""
    )]
    pub ipxe_http_script_extra_kernel_args: String,
    /// Kernel file name before `-<arch>`.
    #[arg(
        long,
        env = "TINKERBELL_IPXE_HTTP_SCRIPT_KERNEL_NAME",
        default_value = "vmlinuz"
    )]
    pub ipxe_http_script_kernel_name: String,
    /// Initrd file name before `-<arch>`.
    #[arg(
        long,
        env = "TINKERBELL_IPXE_HTTP_SCRIPT_INITRD_NAME",
        default_value = "initramfs"
    )]
    pub ipxe_http_script_initrd_name: String,
    /// Extra attempts at kernel, initrd and boot.
    #[arg(long, env = "TINKERBELL_IPXE_HTTP_SCRIPT_RETRIES", default_value_t = 1)]
    pub ipxe_http_script_retries: u32,
    /// Seconds between attempts.
    #[arg(
        long,
        env = "TINKERBELL_IPXE_HTTP_SCRIPT_RETRY_DELAY",
        default_value_t = 1
    )]
    pub ipxe_http_script_retry_delay: u32,
    /// The tink server HookOS's worker connects to (grpc_authority, host:port). Default: the
    /// address the script request was sent to, with the tink server port of this process.
    #[arg(long, env = "TINKERBELL_IPXE_SCRIPT_TINK_SERVER_ADDR_PORT")]
    pub ipxe_script_tink_server_addr_port: Option<String>,
    /// The worker uses TLS to the tink server.
    #[arg(long, env = "TINKERBELL_IPXE_SCRIPT_TINK_SERVER_USE_TLS", default_value_t = false,
        num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub ipxe_script_tink_server_use_tls: bool,
    /// The worker does not verify the tink server's certificate.
    #[arg(long, env = "TINKERBELL_IPXE_SCRIPT_TINK_SERVER_INSECURE_TLS", default_value_t = false,
        num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub ipxe_script_tink_server_insecure_tls: bool,
}

/// What boots' configuration takes from the process around it (the rest comes from
/// [`BootsArgs`]).
#[derive(Debug, Clone, Default)]
pub struct IpxeContext {
    /// The port of the tink gRPC server running next to boots, for the `grpc_authority`
    /// default (none: no default).
    pub tink_server_port: Option<u16>,
    /// Whether this process's tink server uses TLS (`tinkerbell_tls` default).
    pub tink_tls: bool,
    /// Peers whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// The key HookOS's `worker_token=` is derived from (the tink server's).
    pub worker_token_key: Option<WorkerTokenKey>,
}

/// Which of boots' UDP services run. Their switches differ per binary: `boots` runs them by
/// default, `tinkerbell serve` only when asked (they bind privileged ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enabled {
    /// DHCP (`--dhcp-enabled`).
    pub dhcp: bool,
    /// The syslog receiver (`--syslog-enabled`).
    pub syslog: bool,
    /// TFTP (`--tftp-enabled`).
    pub tftp: bool,
}

/// Every boots flag but the on/off switches: what the `boots` binary and `tinkerbell serve`
/// both flatten, and turn into a [`Config`](crate::Config) with [`BootsArgs::to_config`].
#[derive(Debug, Clone, clap::Args)]
pub struct BootsArgs {
    /// DHCP.
    #[command(flatten)]
    pub dhcp: DhcpArgs,
    /// Syslog.
    #[command(flatten)]
    pub syslog: SyslogArgs,
    /// IPv6 RA responder (off by default, needs --dhcp-bind-interface).
    #[command(flatten)]
    pub ra: RaArgs,
    /// TFTP.
    #[command(flatten)]
    pub tftp: TftpArgs,
    /// iPXE binaries, scripts and HookOS on the HTTP port.
    #[command(flatten)]
    pub ipxe: IpxeArgs,
}

impl BootsArgs {
    /// The configuration, or every problem with the flags at once. `http_port` is the bound
    /// HTTP port (the default of the iPXE URLs DHCP hands out).
    pub fn to_config(
        &self,
        enabled: Enabled,
        ctx: IpxeContext,
        http_port: u16,
    ) -> Result<crate::Config, Vec<String>> {
        let mut problems = Vec::new();
        let dhcp = if enabled.dhcp {
            self.dhcp
                .to_config(http_port)
                .map_err(|p| problems.extend(p))
                .ok()
        } else {
            None
        };
        let syslog = enabled.syslog.then(|| self.syslog.to_config());
        if let Some(s) = &syslog
            && let Err(e) = s.validate()
        {
            problems.push(e.to_string());
        }
        let around = ScriptInputs {
            syslog_host: self.dhcp.dhcp_syslog_ip,
            syslog_local: enabled.syslog,
            static_script: self.dhcp.dhcp_mode == Mode::AutoProxy,
        };
        let http = self
            .ipxe
            .to_config(ctx, around)
            .map_err(|p| problems.extend(p))
            .ok();
        let tftp = match (enabled.tftp, self.ipxe.ipxe_dir()) {
            (true, Ok(dir)) => self
                .tftp
                .to_config(dir)
                .map_err(|p| problems.extend(p))
                .ok(),
            // A bad --ipxe-binaries-dir is reported by the iPXE configuration.
            _ => None,
        };
        let ra = self
            .ra
            .to_config(self.dhcp.dhcp_bind_interface.as_deref())
            .map_err(|p| problems.extend(p))
            .ok()
            .flatten();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(crate::Config {
            dhcp,
            syslog,
            tftp,
            http,
            ra,
        })
    }
}

/// What the scripts take from boots' other flags.
#[derive(Debug, Clone, Copy, Default)]
struct ScriptInputs {
    /// The syslog host handed out (`--dhcp-syslog-ip`), if any.
    syslog_host: Option<Ipv4Addr>,
    /// Whether this process receives syslog: then the syslog host defaults to the address the
    /// script request was sent to.
    syslog_local: bool,
    /// Auto-proxy DHCP: unknown machines get the static script.
    static_script: bool,
}

impl IpxeArgs {
    /// The iPXE binaries directory: the flag (which must exist), else Debian's when present.
    pub fn ipxe_dir(&self) -> Result<Option<PathBuf>, String> {
        match &self.ipxe_binaries_dir {
            Some(d) if d.is_dir() => Ok(Some(d.clone())),
            Some(d) => Err(format!(
                "--ipxe-binaries-dir {}: not a directory",
                d.display()
            )),
            None => Ok(Path::new(DEBIAN_IPXE_DIR)
                .is_dir()
                .then(|| PathBuf::from(DEBIAN_IPXE_DIR))),
        }
    }

    /// The iPXE HTTP configuration, or every problem with the flags.
    fn to_config(
        &self,
        ctx: IpxeContext,
        around: ScriptInputs,
    ) -> Result<http::Config, Vec<String>> {
        let mut problems = Vec::new();
        let ipxe_dir = self.ipxe_dir().unwrap_or_else(|e| {
            problems.push(e);
            None
        });
        if let Some(d) = &self.hookos_dir
            && !d.is_dir()
        {
            problems.push(format!("--hookos-dir {}: not a directory", d.display()));
        }
        let osie = &self.ipxe_http_script_osie_url;
        if !(osie.is_empty() || osie.starts_with("http://") || osie.starts_with("https://")) {
            problems.push(format!(
                "--ipxe-http-script-osie-url {:?}: not an http(s) URL",
                self.ipxe_http_script_osie_url
            ));
        }
        for (flag, v) in [
            (
                "--ipxe-http-script-kernel-name",
                &self.ipxe_http_script_kernel_name,
            ),
            (
                "--ipxe-http-script-initrd-name",
                &self.ipxe_http_script_initrd_name,
            ),
        ] {
            if v.is_empty() || v.contains(['/', ' ']) {
                problems.push(format!("{flag} {v:?}: not a file name"));
            }
        }
        if let Some(t) = &self.ipxe_script_tink_server_addr_port
            && (t.is_empty() || t.contains(['/', ' ']))
        {
            problems.push(format!(
                "--ipxe-script-tink-server-addr-port {t:?}: expected host:port"
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(http::Config {
            ipxe_dir,
            hookos_dir: self.hookos_dir.clone(),
            trusted_proxies: ctx.trusted_proxies,
            script: ScriptConfig {
                osie_url: self
                    .ipxe_http_script_osie_url
                    .trim_end_matches('/')
                    .to_string(),
                extra_kernel_args: self
                    .ipxe_http_script_extra_kernel_args
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
                kernel_name: self.ipxe_http_script_kernel_name.clone(),
                initrd_name: self.ipxe_http_script_initrd_name.clone(),
                retries: self.ipxe_http_script_retries,
                retry_delay: self.ipxe_http_script_retry_delay,
                tink_server: self
                    .ipxe_script_tink_server_addr_port
                    .clone()
                    .unwrap_or_default(),
                tink_tls: self.ipxe_script_tink_server_use_tls || ctx.tink_tls,
                tink_insecure_tls: self.ipxe_script_tink_server_insecure_tls,
                syslog_host: around
                    .syslog_host
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                tink_server_port: ctx.tink_server_port,
                syslog_local: around.syslog_local,
            },
            static_script: around.static_script,
            worker_token_key: ctx.worker_token_key,
            ..http::Config::default()
        })
    }
}

impl TftpArgs {
    /// The TFTP configuration serving the binaries of `ipxe_dir`, or every problem.
    pub fn to_config(&self, ipxe_dir: Option<PathBuf>) -> Result<tftp::Config, Vec<String>> {
        let mut problems = Vec::new();
        if let Some(d) = &self.tftp_asset_dir
            && !d.is_dir()
        {
            problems.push(format!("--tftp-asset-dir {}: not a directory", d.display()));
        }
        let cfg = tftp::Config {
            listen: SocketAddr::new(self.tftp_server_bind_addr, self.tftp_server_bind_port),
            ipxe_dir,
            asset_dir: self.tftp_asset_dir.clone(),
            timeout: self.tftp_timeout,
            max_block_size: self.tftp_block_size,
            ..tftp::Config::default()
        };
        if let Err(tftp::TftpError::Config(p)) = cfg.validate() {
            problems.extend(p.into_iter().map(|p| format!("TFTP: {p}")));
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }
}

impl DhcpArgs {
    /// The DHCP configuration, or every problem with the flags. `http_port` is the port of
    /// this process's HTTP listener (the one actually bound), the default of the iPXE binary
    /// and script URL ports.
    pub fn to_config(&self, http_port: u16) -> Result<dhcp::Config, Vec<String>> {
        let mut problems = Vec::new();
        let mode = self.dhcp_mode;
        let bind = parse_bind(&self.dhcp_bind_addr).unwrap_or_else(|e| {
            problems.push(format!("--dhcp-bind-addr: {e}"));
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67)
        });
        let arch_overrides = dhcp::netboot::parse_arch_overrides(&self.ipxe_override_arch_mapping)
            .unwrap_or_else(|e| {
                problems.push(format!("--ipxe-override-arch-mapping: {e}"));
                Default::default()
            });
        let mac_format =
            MacFormat::parse(&self.ipxe_binary_inject_mac_addr_format).unwrap_or_else(|| {
                problems.push(format!(
                    "--ipxe-binary-inject-mac-addr-format {:?}: expected colon, dot, dash, no-delimiter or empty",
                    self.ipxe_binary_inject_mac_addr_format
                ));
                MacFormat::Colon
            });
        let script_url = (!self.dhcp_ipxe_http_script_path.is_empty()).then(|| UrlParts {
            scheme: self.dhcp_ipxe_http_script_scheme.clone(),
            host: self.dhcp_ipxe_http_script_host.clone(),
            port: self.dhcp_ipxe_http_script_port.unwrap_or(http_port),
            path: self.dhcp_ipxe_http_script_path.clone(),
        });
        let cfg = dhcp::Config {
            mode,
            bind,
            bind_interface: self.dhcp_bind_interface.clone(),
            ip_for_packet: self.dhcp_ip_for_packet.or(self.public_ipv4),
            syslog_ip: self.dhcp_syslog_ip,
            tftp_ip: self.dhcp_tftp_ip.or(self.public_ipv4),
            tftp_port: self.dhcp_tftp_port,
            binary_url: UrlParts {
                scheme: self.dhcp_ipxe_http_binary_scheme.clone(),
                host: self.dhcp_ipxe_http_binary_host.clone(),
                port: self.dhcp_ipxe_http_binary_port.unwrap_or(http_port),
                path: self.dhcp_ipxe_http_binary_path.clone(),
            },
            script_url,
            script_prepend_mac: self.dhcp_ipxe_http_script_prepend_mac,
            netboot_options: self.dhcp_enable_netboot_options,
            arch_overrides,
            mac_format,
            custom_user_class: self.dhcp_custom_user_class.clone(),
            stock_ipxe: self.dhcp_ipxe_stock_binaries,
            ..dhcp::Config::default()
        };
        if let Err(e) = cfg.validate() {
            problems.extend(e.problems);
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }
}

impl SyslogArgs {
    /// The syslog receiver configuration.
    pub fn to_config(&self) -> syslog::Config {
        syslog::Config {
            bind: SocketAddr::new(self.syslog_bind_addr, self.syslog_bind_port),
            ..syslog::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        dhcp: DhcpArgs,
        #[command(flatten)]
        syslog: SyslogArgs,
        #[command(flatten)]
        ra: RaArgs,
        #[command(flatten)]
        tftp: TftpArgs,
    }

    #[derive(Debug, Parser)]
    struct B {
        #[command(flatten)]
        boots: BootsArgs,
    }

    /// `autoproxy` is auto-proxy everywhere: DHCP answers unknown machines and their script
    /// is the static one (the script side used to compare the flag's text with "auto-proxy"
    /// and gave those machines 404).
    #[test]
    fn auto_proxy_by_either_name_serves_the_static_script() {
        let on = Enabled {
            dhcp: true,
            syslog: false,
            tftp: false,
        };
        for (mode, auto) in [
            ("autoproxy", true),
            ("auto-proxy", true),
            ("proxy", false),
            ("reservation", false),
        ] {
            let b = B::try_parse_from(["b", "--dhcp-mode", mode]).unwrap();
            let c = b.boots.to_config(on, IpxeContext::default(), 7080).unwrap();
            assert_eq!(
                c.dhcp.unwrap().mode == Mode::AutoProxy,
                auto,
                "{mode}: DHCP"
            );
            assert_eq!(c.http.unwrap().static_script, auto, "{mode}: script");
        }
    }

    /// Go's units, all of them: `1h` used to be refused (the parser knew ms, s and m).
    #[test]
    fn tftp_timeout_takes_go_durations() {
        for (arg, want) in [
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("250ms", Duration::from_millis(250)),
            ("2", Duration::from_secs(2)),
        ] {
            let t = T::try_parse_from(["t", "--tftp-timeout", arg]).unwrap();
            assert_eq!(t.tftp.tftp_timeout, want, "{arg}");
        }
        let e = T::try_parse_from(["t", "--tftp-timeout", "1d"]).unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
    }

    #[test]
    fn ra_flag() {
        let t = T::try_parse_from(["t"]).unwrap();
        assert!(t.ra.to_config(Some("br0")).unwrap().is_none());
        let t = T::try_parse_from(["t", "--ipv6-ra-enabled"]).unwrap();
        let e = t.ra.to_config(None).unwrap_err();
        assert!(e[0].contains("--dhcp-bind-interface"), "{e:?}");
        let e = t.ra.to_config(Some("no/such")).unwrap_err();
        assert!(e[0].contains("not an interface name"), "{e:?}");
        let t =
            T::try_parse_from(["t", "--ipv6-ra-enabled", "--dhcp-bind-interface", "br0"]).unwrap();
        let c =
            t.ra.to_config(t.dhcp.dhcp_bind_interface.as_deref())
                .unwrap()
                .unwrap();
        assert_eq!(c.interface, "br0");
        assert_eq!(c.min_delay_between_ras, ra::MIN_DELAY_BETWEEN_RAS);
    }

    #[test]
    fn defaults_and_problems() {
        let t = T::try_parse_from(["t"]).unwrap();
        let c = t.dhcp.to_config(7080).unwrap();
        assert_eq!(c.mode, Mode::Reservation);
        assert_eq!(c.script_url.as_ref().map(|u| u.port), Some(7080));
        let c = t.dhcp.to_config(41234).unwrap();
        assert_eq!(c.script_url.as_ref().map(|u| u.port), Some(41234));
        assert_eq!(c.binary_url.port, 41234);
        assert_eq!(c.bind, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67));
        assert_eq!(t.syslog.to_config().bind.port(), 514);
        let t = T::try_parse_from([
            "t",
            "--dhcp-mode",
            "proxy",
            "--dhcp-bind-addr",
            "10.0.0.1",
            "--public-ipv4",
            "10.0.0.9",
            "--dhcp-ipxe-http-script-path",
            "",
        ])
        .unwrap();
        let c = t.dhcp.to_config(7080).unwrap();
        assert_eq!(c.mode, Mode::Proxy);
        assert_eq!(c.bind, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 67));
        assert_eq!(c.ip_for_packet, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(c.tftp_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(c.script_url, None);
        // A mode clap does not know is refused at parsing; `autoproxy` is auto-proxy.
        let e = T::try_parse_from(["t", "--dhcp-mode", "nope"]).unwrap_err();
        assert!(e.to_string().contains("auto-proxy"), "{e}");
        let t = T::try_parse_from(["t", "--dhcp-mode", "autoproxy"]).unwrap();
        assert_eq!(t.dhcp.to_config(7080).unwrap().mode, Mode::AutoProxy);
        let t = T::try_parse_from([
            "t",
            "--dhcp-bind-addr",
            "x",
            "--ipxe-override-arch-mapping",
            "7",
            "--ipxe-binary-inject-mac-addr-format",
            "weird",
            "--dhcp-ipxe-http-binary-scheme",
            "ftp",
        ])
        .unwrap();
        assert_eq!(t.dhcp.to_config(7080).unwrap_err().len(), 4);
    }

    #[derive(Debug, Parser)]
    struct I {
        #[command(flatten)]
        tftp: TftpArgs,
        #[command(flatten)]
        ipxe: IpxeArgs,
    }

    #[test]
    fn tftp_and_ipxe_flags() {
        let dir = std::env::temp_dir();
        let d = dir.to_str().unwrap();
        let t = I::try_parse_from([
            "t",
            "--tftp-server-bind-port",
            "6969",
            "--tftp-timeout",
            "500ms",
            "--tftp-block-size",
            "1468",
            "--hookos-dir",
            d,
            "--ipxe-binaries-dir",
            d,
            "--ipxe-http-script-extra-kernel-args",
            "a=1  b=2",
        ])
        .unwrap();
        let c = t.tftp.to_config(None).unwrap();
        assert_eq!(c.listen.port(), 6969);
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.max_block_size, 1468);
        let ctx = IpxeContext {
            tink_server_port: Some(42113),
            ..IpxeContext::default()
        };
        let around = ScriptInputs {
            syslog_local: true,
            ..ScriptInputs::default()
        };
        let h = t.ipxe.to_config(ctx.clone(), around).unwrap();
        assert_eq!(h.hookos_dir.as_deref(), Some(dir.as_path()));
        assert_eq!(h.script.extra_kernel_args, ["a=1", "b=2"]);
        assert_eq!(h.script.tink_server, "");
        assert_eq!(h.script.tink_server_port, Some(42113));
        assert!(h.script.syslog_local);
        let t = I::try_parse_from([
            "t",
            "--tftp-block-size",
            "4",
            "--tftp-asset-dir",
            "/nonexistent/x",
            "--hookos-dir",
            "/nonexistent/y",
            "--ipxe-binaries-dir",
            "/nonexistent/z",
            "--ipxe-http-script-osie-url",
            "ftp://x",
        ])
        .unwrap();
        assert_eq!(t.tftp.to_config(None).unwrap_err().len(), 2);
        let e = t.ipxe.to_config(ctx, around).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(I::try_parse_from(["t", "--tftp-timeout", "5x"]).is_err());
    }
}
