//! The DHCP and syslog flags, as clap argument groups both the `boots` binary and `tinkerbell
//! serve` flatten, so the two accept the same upstream names (`TINKERBELL_DHCP_*`,
//! `TINKERBELL_SYSLOG_*`) and turn them into a [`Config`](crate::Config) the same way. Only the
//! on/off switches differ per binary (serve keeps DHCP off unless asked).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::dhcp::{self, MacFormat, Mode, UrlParts};
use crate::syslog;

/// DHCP flags (upstream Smee's names).
#[derive(Debug, Clone, clap::Args)]
pub struct DhcpArgs {
    /// DHCP mode: reservation, proxy or auto-proxy.
    #[arg(long, env = "TINKERBELL_DHCP_MODE", default_value = "reservation")]
    pub dhcp_mode: String,
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
    /// Port of the iPXE binary URL.
    #[arg(
        long,
        env = "TINKERBELL_DHCP_IPXE_HTTP_BINARY_PORT",
        default_value_t = 7080
    )]
    pub dhcp_ipxe_http_binary_port: u16,
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
    /// Port of the iPXE script URL.
    #[arg(
        long,
        env = "TINKERBELL_DHCP_IPXE_HTTP_SCRIPT_PORT",
        default_value_t = 7080
    )]
    pub dhcp_ipxe_http_script_port: u16,
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

    /// Default for --dhcp-ip-for-packet and --dhcp-tftp-ip.
    #[arg(long, env = "TINKERBELL_PUBLIC_IPV4")]
    pub public_ipv4: Option<Ipv4Addr>,
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

impl DhcpArgs {
    /// The DHCP configuration, or every problem with the flags.
    pub fn to_config(&self) -> Result<dhcp::Config, Vec<String>> {
        let mut problems = Vec::new();
        let mode = Mode::parse(&self.dhcp_mode).unwrap_or_else(|| {
            problems.push(format!(
                "--dhcp-mode {:?}: expected reservation, proxy or auto-proxy",
                self.dhcp_mode
            ));
            Mode::Reservation
        });
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
            port: self.dhcp_ipxe_http_script_port,
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
                port: self.dhcp_ipxe_http_binary_port,
                path: self.dhcp_ipxe_http_binary_path.clone(),
            },
            script_url,
            script_prepend_mac: self.dhcp_ipxe_http_script_prepend_mac,
            netboot_options: self.dhcp_enable_netboot_options,
            arch_overrides,
            mac_format,
            custom_user_class: self.dhcp_custom_user_class.clone(),
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
    }

    #[test]
    fn defaults_and_problems() {
        let t = T::try_parse_from(["t"]).unwrap();
        let c = t.dhcp.to_config().unwrap();
        assert_eq!(c.mode, Mode::Reservation);
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
        let c = t.dhcp.to_config().unwrap();
        assert_eq!(c.mode, Mode::Proxy);
        assert_eq!(c.bind, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 67));
        assert_eq!(c.ip_for_packet, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(c.tftp_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(c.script_url, None);
        let t = T::try_parse_from([
            "t",
            "--dhcp-mode",
            "nope",
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
        assert_eq!(t.dhcp.to_config().unwrap_err().len(), 5);
    }
}
