//! One request in, one reply (or a reason for silence) out.
//!
//! [`precheck`] runs before the Hardware lookup and throws away what no mode answers (wrong
//! message type, not a netboot client in proxy mode); [`respond`] builds the reply from the
//! request, the Hardware found for its MAC and the configuration. Both are pure, so the
//! reservation and proxy rules of upstream Smee are unit-tested here without sockets.

use std::net::Ipv4Addr;
use std::str::FromStr;

use dhcproto::Name;
use dhcproto::v4::{
    DhcpOption, Message, MessageType, Opcode, OptionCode, UnknownOption,
    relay::RelayAgentInformation,
};
use tinkerbell_model::{Dhcp, Hardware, Interface, Ip, MacAddr};

use super::netboot::{self, BootSources, ClientKind};
use super::{Config, Mode};

/// Lease time when the Hardware gives none (upstream's default, one week).
pub const DEFAULT_LEASE_SECS: u32 = 604_800;

/// Why no reply was sent. Each is a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A BOOTREPLY (another server's answer) or no message type.
    NotRequest,
    /// RELEASE, DECLINE, INFORM, …: logged and ignored, as upstream.
    IgnoredType,
    /// chaddr is not an Ethernet MAC.
    NoMac,
    /// Proxy modes answer netboot clients only.
    NotNetboot,
    /// No Hardware has this MAC (reservation and proxy).
    UnknownMac,
    /// The interface has `disableDhcp: true`.
    Disabled,
    /// The Hardware has no usable IPv4 address for this interface.
    NoAddress,
    /// A REQUEST for another server's offer.
    OtherServer,
}

impl Reason {
    /// Every reason, for metrics.
    pub const ALL: [Reason; 8] = [
        Reason::NotRequest,
        Reason::IgnoredType,
        Reason::NoMac,
        Reason::NotNetboot,
        Reason::UnknownMac,
        Reason::Disabled,
        Reason::NoAddress,
        Reason::OtherServer,
    ];

    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotRequest => "not_request",
            Reason::IgnoredType => "ignored_type",
            Reason::NoMac => "no_mac",
            Reason::NotNetboot => "not_netboot",
            Reason::UnknownMac => "unknown_mac",
            Reason::Disabled => "disabled",
            Reason::NoAddress => "no_address",
            Reason::OtherServer => "other_server",
        }
    }
}

/// The result of handling one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Send this reply.
    Reply(Box<Message>),
    /// Stay silent.
    Silent(Reason),
}

/// Cheap checks before the lookup. Returns the client MAC when the request deserves one.
pub fn precheck(cfg: &Config, req: &Message) -> Result<[u8; 6], Reason> {
    if req.opcode() != Opcode::BootRequest {
        return Err(Reason::NotRequest);
    }
    match req.opts().msg_type() {
        Some(MessageType::Discover | MessageType::Request) => {}
        Some(_) => return Err(Reason::IgnoredType),
        None => return Err(Reason::NotRequest),
    }
    let mac = netboot::client_mac(req).ok_or(Reason::NoMac)?;
    if cfg.mode != Mode::Reservation && !netboot::is_netboot_client(req) {
        return Err(Reason::NotNetboot);
    }
    Ok(mac)
}

/// The interface of `hw` whose `dhcp.mac` is `mac`.
pub fn interface_for<'h>(hw: &'h Hardware, mac: &[u8; 6]) -> Option<&'h Interface> {
    hw.interfaces().iter().find(|i| {
        i.dhcp
            .as_ref()
            .and_then(|d| d.mac.as_deref())
            .is_some_and(|m| MacAddr(*mac).is_spelt_by(m))
    })
}

/// Build the reply for a request that passed [`precheck`]. `local_ip` is the address the
/// request arrived on; `hw` the Hardware holding the MAC, if any.
pub fn respond(
    cfg: &Config,
    req: &Message,
    mac: &[u8; 6],
    local_ip: Ipv4Addr,
    hw: Option<&Hardware>,
) -> Outcome {
    match cfg.mode {
        Mode::Reservation => reservation(cfg, req, mac, local_ip, hw),
        Mode::Proxy | Mode::AutoProxy => proxy(cfg, req, mac, local_ip, hw),
    }
}

fn reply_type(req: &Message) -> MessageType {
    if req.opts().msg_type() == Some(MessageType::Request) {
        MessageType::Ack
    } else {
        MessageType::Offer
    }
}

/// A BOOTREPLY carrying the request's xid, flags, giaddr, chaddr and hops.
fn reply_base(req: &Message) -> Message {
    let mut m = Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        req.giaddr(),
        req.chaddr(),
    );
    m.set_opcode(Opcode::BootReply)
        .set_htype(req.htype())
        .set_hops(req.hops())
        .set_flags(req.flags());
    // RFC 3046: a relay's option 82 is echoed back unchanged.
    if let Some(DhcpOption::RelayAgentInformation(info)) =
        req.opts().get(OptionCode::RelayAgentInformation)
    {
        m.opts_mut().insert(DhcpOption::RelayAgentInformation(
            RelayAgentInformation::clone(info),
        ));
    }
    m
}

fn sources(cfg: &Config, local_ip: Ipv4Addr) -> BootSources {
    let public_ip = cfg.ip_for_packet.unwrap_or(local_ip);
    let binary_ip = match &cfg.binary_url.host {
        None => Some(public_ip),
        Some(h) => h.parse().ok(),
    };
    BootSources {
        tftp_ip: cfg.tftp_ip.unwrap_or(public_ip),
        tftp_port: cfg.tftp_port,
        binary_base: cfg.binary_url.render(public_ip),
        binary_ip,
        script_base: cfg.script_url.as_ref().map(|u| u.render(public_ip)),
        script_prepend_mac: cfg.script_prepend_mac,
        mac_format: cfg.mac_format,
        public_ip,
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn ipv4s(list: &Option<Vec<String>>) -> Vec<Ipv4Addr> {
    list.iter()
        .flatten()
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// RFC 3442 encoding of `destination_descriptor`/`router` pairs; bad entries are skipped.
pub fn classless_routes(routes: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (dest, router) in routes {
        let Some((net, len)) = dest.split_once('/') else {
            continue;
        };
        let (Ok(net), Ok(len), Ok(router)) = (
            net.trim().parse::<Ipv4Addr>(),
            len.trim().parse::<u8>(),
            router.trim().parse::<Ipv4Addr>(),
        ) else {
            continue;
        };
        if len > 32 {
            continue;
        }
        out.push(len);
        out.extend_from_slice(&net.octets()[..usize::from(len).div_ceil(8)]);
        out.extend_from_slice(&router.octets());
    }
    out
}

/// Upstream's reservation handler.
fn reservation(
    cfg: &Config,
    req: &Message,
    mac: &[u8; 6],
    local_ip: Ipv4Addr,
    hw: Option<&Hardware>,
) -> Outcome {
    let Some(hw) = hw else {
        return Outcome::Silent(Reason::UnknownMac);
    };
    let Some(iface) = interface_for(hw, mac) else {
        return Outcome::Silent(Reason::UnknownMac);
    };
    if iface.disable_dhcp == Some(true) {
        return Outcome::Silent(Reason::Disabled);
    }
    static NO_DHCP: std::sync::LazyLock<Dhcp> = std::sync::LazyLock::new(Dhcp::default);
    static NO_IP: std::sync::LazyLock<Ip> = std::sync::LazyLock::new(Ip::default);
    let dhcp: &Dhcp = iface.dhcp.as_ref().unwrap_or(&NO_DHCP);
    let ip: &Ip = dhcp.ip.as_ref().unwrap_or(&NO_IP);
    let Some(yiaddr) = non_empty(&ip.address).and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
        return Outcome::Silent(Reason::NoAddress);
    };
    let server_id = cfg.ip_for_packet.unwrap_or(local_ip);
    if let Some(DhcpOption::ServerIdentifier(sid)) = req.opts().get(OptionCode::ServerIdentifier)
        && *sid != server_id
    {
        return Outcome::Silent(Reason::OtherServer);
    }
    // RFC 2131 §4.3.2: a REQUEST in SELECTING (our server identifier) or INIT-REBOOT (no
    // server identifier) state names the address it wants in option 50; when that is not the
    // client's reservation, the client must hear so (DHCPNAK) and start over with a
    // DISCOVER, instead of keeping an address no Hardware gives it.
    if req.opts().msg_type() == Some(MessageType::Request)
        && let Some(DhcpOption::RequestedIpAddress(want)) =
            req.opts().get(OptionCode::RequestedIpAddress)
        && *want != yiaddr
    {
        return Outcome::Reply(Box::new(nak(req, server_id, *want)));
    }

    let mut m = reply_base(req);
    m.set_yiaddr(yiaddr).set_siaddr(server_id);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(reply_type(req)));
    o.insert(DhcpOption::ServerIdentifier(server_id));
    let mask = non_empty(&ip.netmask).and_then(|m| m.parse::<Ipv4Addr>().ok());
    if let Some(mask) = mask {
        o.insert(DhcpOption::SubnetMask(mask));
        o.insert(DhcpOption::BroadcastAddr(Ipv4Addr::from(
            u32::from(yiaddr) | !u32::from(mask),
        )));
    }
    if let Some(gw) = non_empty(&ip.gateway).and_then(|g| g.parse::<Ipv4Addr>().ok()) {
        o.insert(DhcpOption::Router(vec![gw]));
    }
    let dns = ipv4s(&dhcp.name_servers);
    if !dns.is_empty() {
        o.insert(DhcpOption::DomainNameServer(dns));
    }
    if let Some(h) = non_empty(&dhcp.hostname) {
        o.insert(DhcpOption::Hostname(h.to_string()));
    }
    if let Some(d) = non_empty(&dhcp.domain_name) {
        o.insert(DhcpOption::DomainName(d.to_string()));
        if let Ok(name) = Name::from_str(d) {
            o.insert(DhcpOption::DomainSearch(vec![name]));
        }
    }
    let ntp = ipv4s(&dhcp.time_servers);
    if !ntp.is_empty() {
        o.insert(DhcpOption::NtpServers(ntp));
    }
    let lease = dhcp
        .lease_time
        .and_then(|t| u32::try_from(t).ok())
        .unwrap_or(DEFAULT_LEASE_SECS);
    o.insert(DhcpOption::AddressLeaseTime(lease));
    let routes: Vec<(String, String)> = dhcp
        .classless_static_routes
        .iter()
        .flatten()
        .filter_map(|r| Some((r.destination_descriptor.clone()?, r.router.clone()?)))
        .collect();
    let routes = classless_routes(&routes);
    if !routes.is_empty() {
        o.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::ClasslessStaticRoute,
            routes,
        )));
    }
    if let Some(log) = cfg.syslog_ip {
        o.insert(DhcpOption::LogServer(vec![log]));
    }

    // Both set on the Hardware: sent verbatim, the netboot logic is skipped.
    if let (Some(tftp), Some(file)) = (
        non_empty(&dhcp.tftp_server_name),
        non_empty(&dhcp.boot_file_name),
    ) {
        o.insert(DhcpOption::TFTPServerName(tftp.as_bytes().to_vec()));
        o.insert(DhcpOption::BootfileName(file.as_bytes().to_vec()));
        return Outcome::Reply(Box::new(m));
    }
    if cfg.netboot_options && netboot::is_netboot_client(req) {
        let allowed = iface
            .netboot
            .as_ref()
            .and_then(|n| n.allow_pxe)
            .unwrap_or(false);
        if !allowed {
            if netboot::is_http_client(req) {
                set_boot_file(&mut m, &not_allowed_url(cfg, local_ip));
                m.opts_mut()
                    .insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
            } else {
                m.set_fname_str("/netboot-not-allowed")
                    .set_siaddr(Ipv4Addr::UNSPECIFIED);
            }
            return Outcome::Reply(Box::new(m));
        }
        if let Some((boot, kind)) = boot(cfg, req, mac, local_ip, Some(iface)) {
            set_boot_file(&mut m, &boot.file);
            m.set_siaddr(boot.next_server);
            let o = m.opts_mut();
            o.insert(DhcpOption::VendorExtensions(netboot::vendor_options(
                netboot::is_rpi(mac),
                non_empty(&dhcp.vlan_id),
            )));
            if kind == ClientKind::HttpClient {
                o.insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
            }
            if matches!(kind, ClientKind::Ipxe | ClientKind::Tinkerbell) {
                // iPXE option 175.176 (no-pxedhcp) = 1: boots is the only DHCP server in
                // reservation mode, so iPXE need not wait ~3 s for ProxyDHCP offers.
                o.insert(DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::from(175),
                    vec![176, 1, 1],
                )));
            }
        }
    }
    Outcome::Reply(Box::new(m))
}

/// A DHCPNAK for `req` (RFC 2131 table 3: no addresses, no lease, only the message type,
/// the server identifier and a message).
fn nak(req: &Message, server_id: Ipv4Addr, wanted: Ipv4Addr) -> Message {
    let mut m = reply_base(req);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Nak));
    o.insert(DhcpOption::ServerIdentifier(server_id));
    o.insert(DhcpOption::Message(format!(
        "{wanted} is not this client's reserved address"
    )));
    m
}

/// The boot file and next server for an allowed netboot client, or `None` for an
/// architecture with no binary.
/// The boot file for a UEFI HTTP boot client whose Hardware has `allowPXE` false: a URL on
/// our HTTP server that answers 404 at once. Upstream's `/netboot-not-allowed` is no URL, and
/// firmware ignores such an offer and keeps asking for about a minute before it tries the next
/// boot option (OVMF: 60 s, measured in the lab); with a URL it fails in well under a second.
fn not_allowed_url(cfg: &Config, local_ip: Ipv4Addr) -> String {
    format!(
        "{}/netboot-not-allowed",
        sources(cfg, local_ip).binary_base.trim_end_matches('/')
    )
}

fn boot(
    cfg: &Config,
    req: &Message,
    mac: &[u8; 6],
    local_ip: Ipv4Addr,
    iface: Option<&Interface>,
) -> Option<(netboot::BootInfo, ClientKind)> {
    let ipxe = iface
        .and_then(|i| i.netboot.as_ref())
        .and_then(|n| n.ipxe.as_ref());
    let arch = netboot::client_arch(req, mac)?;
    let binary = netboot::binary_for(
        arch,
        &cfg.arch_overrides,
        ipxe.and_then(|x| non_empty(&x.binary)),
    )?;
    let kind = match netboot::classify(req, cfg.custom_user_class.as_deref()) {
        // Stock iPXE has no script of its own that would ask again as `Tinkerbell`.
        ClientKind::Ipxe if cfg.stock_ipxe => ClientKind::Tinkerbell,
        kind => kind,
    };
    let src = sources(cfg, local_ip);
    Some((
        netboot::boot_info(
            kind,
            mac,
            &binary,
            &src,
            ipxe.and_then(|x| non_empty(&x.url)),
        ),
        kind,
    ))
}

/// Upstream's proxy handler (also auto-proxy).
fn proxy(
    cfg: &Config,
    req: &Message,
    mac: &[u8; 6],
    local_ip: Ipv4Addr,
    hw: Option<&Hardware>,
) -> Outcome {
    let iface = match hw {
        Some(hw) => match interface_for(hw, mac) {
            Some(i) => Some(i),
            None if cfg.mode == Mode::AutoProxy => None,
            None => return Outcome::Silent(Reason::UnknownMac),
        },
        None if cfg.mode == Mode::AutoProxy => None,
        None => return Outcome::Silent(Reason::UnknownMac),
    };
    let allowed = match iface {
        // Auto-proxy: an unknown machine may boot (discovery).
        None => true,
        Some(i) => i
            .netboot
            .as_ref()
            .and_then(|n| n.allow_pxe)
            .unwrap_or(false),
    };
    let src = sources(cfg, local_ip);
    let (file, next_server) = if !allowed && netboot::is_http_client(req) {
        (not_allowed_url(cfg, local_ip), src.tftp_ip)
    } else if !allowed {
        (
            format!("/{}/netboot-not-allowed", netboot::mac_string(mac)),
            src.tftp_ip,
        )
    } else {
        match boot(cfg, req, mac, local_ip, iface) {
            Some((b, _)) => (b.file, b.next_server),
            None => return Outcome::Silent(Reason::NotNetboot),
        }
    };
    let mut m = reply_base(req);
    m.set_siaddr(next_server)
        .set_sname_str(next_server.to_string());
    set_boot_file(&mut m, &file);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(reply_type(req)));
    o.insert(DhcpOption::ServerIdentifier(next_server));
    let class: &[u8] = if netboot::is_http_client(req) {
        b"HTTPClient"
    } else {
        b"PXEClient"
    };
    o.insert(DhcpOption::ClassIdentifier(class.to_vec()));
    if let Some(DhcpOption::ClientMachineIdentifier(g)) =
        req.opts().get(OptionCode::ClientMachineIdentifier)
    {
        o.insert(DhcpOption::ClientMachineIdentifier(g.clone()));
    }
    let vlan = iface
        .and_then(|i| i.dhcp.as_ref())
        .and_then(|d| non_empty(&d.vlan_id));
    o.insert(DhcpOption::VendorExtensions(netboot::vendor_options(
        netboot::is_rpi(mac),
        vlan,
    )));
    Outcome::Reply(Box::new(m))
}

/// The BOOTP `file` field's capacity, keeping its terminating NUL.
pub const FILE_FIELD_MAX: usize = 127;

/// Puts the boot file name in the reply: in the `file` field when it fits, else (a Hardware's
/// iPXE script URL may be long) in option 67, which iPXE, PXE ROMs and UEFI HTTP boot read
/// before `file`; dhcproto splits a name over 255 bytes into RFC 3396 long-option pieces.
/// Never panics (dhcproto's `set_fname_str` asserts ≤ 128 bytes, in release builds too).
pub fn set_boot_file(m: &mut Message, file: &str) {
    if file.len() <= FILE_FIELD_MAX {
        m.set_fname_str(file);
    } else {
        m.opts_mut()
            .insert(DhcpOption::BootfileName(file.as_bytes().to_vec()));
    }
}

/// The boot file name a reply carries: option 67 when present, else the `file` field.
pub fn boot_file(m: &Message) -> Option<String> {
    if let Some(DhcpOption::BootfileName(b)) = m.opts().get(OptionCode::BootfileName) {
        return Some(String::from_utf8_lossy(b).into_owned());
    }
    let f = m.fname_str()?.ok()?.trim_end_matches('\0');
    (!f.is_empty()).then(|| f.to_string())
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use dhcproto::v4::{Architecture, relay::RelayInfo};
    use tinkerbell_model::{ClasslessStaticRoute, Dhcp, HardwareSpec, Ip, Ipxe, Netboot};

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
    const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn hw(allow_pxe: bool) -> Hardware {
        let iface = Interface {
            dhcp: Some(Dhcp {
                mac: Some("52:54:00:AA:BB:CC".into()),
                hostname: Some("node1".into()),
                domain_name: Some("lab.example".into()),
                lease_time: Some(86400),
                name_servers: Some(vec!["1.1.1.1".into(), "not-an-ip".into()]),
                time_servers: Some(vec!["10.0.0.5".into()]),
                ip: Some(Ip {
                    address: Some("10.0.0.50".into()),
                    netmask: Some("255.255.255.0".into()),
                    gateway: Some("10.0.0.254".into()),
                    family: Some(4),
                }),
                vlan_id: Some("42".into()),
                classless_static_routes: Some(vec![ClasslessStaticRoute {
                    destination_descriptor: Some("172.16.0.0/12".into()),
                    router: Some("10.0.0.253".into()),
                }]),
                ..Dhcp::default()
            }),
            netboot: Some(Netboot {
                allow_pxe: Some(allow_pxe),
                ..Netboot::default()
            }),
            ..Interface::default()
        };
        let mut h = Hardware::new(
            "node1",
            HardwareSpec {
                interfaces: Some(vec![iface]),
                ..HardwareSpec::default()
            },
        );
        h.metadata.namespace = Some("default".into());
        h
    }

    fn req(t: MessageType, extra: Vec<DhcpOption>) -> Message {
        let mut m = Message::new_with_id(
            0x1234,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &MAC,
        );
        m.opts_mut().insert(DhcpOption::MessageType(t));
        for o in extra {
            m.opts_mut().insert(o);
        }
        m
    }

    fn pxe(class: &str, arch: u16) -> Vec<DhcpOption> {
        vec![
            DhcpOption::ClassIdentifier(class.as_bytes().to_vec()),
            DhcpOption::ClientSystemArchitecture(Architecture(arch)),
            DhcpOption::ClientNetworkInterface(1, 3, 16),
        ]
    }

    fn run(cfg: &Config, r: &Message, h: Option<&Hardware>) -> Outcome {
        match precheck(cfg, r) {
            Ok(mac) => respond(cfg, r, &mac, LOCAL, h),
            Err(reason) => Outcome::Silent(reason),
        }
    }

    fn reply(o: Outcome) -> Message {
        match o {
            Outcome::Reply(m) => *m,
            Outcome::Silent(r) => panic!("silent: {r:?}"),
        }
    }

    #[test]
    fn reservation_offer_carries_the_hardware_options() {
        let cfg = Config::default();
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, vec![]),
            Some(&hw(true)),
        ));
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.xid(), 0x1234);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 0, 50));
        assert_eq!(m.siaddr(), LOCAL);
        assert_eq!(m.chaddr(), &MAC);
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Offer));
        let get = |c: OptionCode| o.get(c).cloned();
        assert_eq!(
            get(OptionCode::ServerIdentifier),
            Some(DhcpOption::ServerIdentifier(LOCAL))
        );
        assert_eq!(
            get(OptionCode::SubnetMask),
            Some(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            get(OptionCode::Router),
            Some(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 254)]))
        );
        assert_eq!(
            get(OptionCode::DomainNameServer),
            Some(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
                1, 1, 1, 1
            )]))
        );
        assert_eq!(
            get(OptionCode::Hostname),
            Some(DhcpOption::Hostname("node1".into()))
        );
        assert_eq!(
            get(OptionCode::DomainName),
            Some(DhcpOption::DomainName("lab.example".into()))
        );
        assert_eq!(
            get(OptionCode::BroadcastAddr),
            Some(DhcpOption::BroadcastAddr(Ipv4Addr::new(10, 0, 0, 255)))
        );
        assert_eq!(
            get(OptionCode::NtpServers),
            Some(DhcpOption::NtpServers(vec![Ipv4Addr::new(10, 0, 0, 5)]))
        );
        assert_eq!(
            get(OptionCode::AddressLeaseTime),
            Some(DhcpOption::AddressLeaseTime(86400))
        );
        assert!(o.contains(OptionCode::DomainSearch));
        // Not a netboot client: no boot options at all.
        assert!(!o.contains(OptionCode::VendorExtensions));
        assert_eq!(m.fname(), None);
        // The wire form carries 121 as RFC 3442 bytes.
        let bytes = super::super::wire::encode(&m).unwrap();
        let back = super::super::wire::decode(&bytes).unwrap();
        match back.opts().get(OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(r)) => {
                assert_eq!(r.len(), 1);
                assert_eq!(r[0].0.to_string(), "172.16.0.0/12");
                assert_eq!(r[0].1, Ipv4Addr::new(10, 0, 0, 253));
            }
            other => panic!("121: {other:?}"),
        }
    }

    #[test]
    fn reservation_request_gets_ack_and_lease_default() {
        let cfg = Config::default();
        let mut h = hw(true);
        h.spec.interfaces.as_mut().unwrap()[0]
            .dhcp
            .as_mut()
            .unwrap()
            .lease_time = None;
        let m = reply(run(
            &cfg,
            &req(
                MessageType::Request,
                vec![DhcpOption::ServerIdentifier(LOCAL)],
            ),
            Some(&h),
        ));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(
            m.opts().get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(DEFAULT_LEASE_SECS))
        );
    }

    /// RFC 2131 §4.3.2: the REQUEST states and what each gets.
    #[test]
    fn request_states_ack_or_nak() {
        let cfg = Config::default();
        let h = hw(true);
        let mine = Ipv4Addr::new(10, 0, 0, 50);
        let wrong = Ipv4Addr::new(10, 0, 0, 77);
        let sid = DhcpOption::ServerIdentifier(LOCAL);
        let cases: Vec<(&str, Vec<DhcpOption>, Option<MessageType>)> = vec![
            (
                "selecting, our offer",
                vec![sid.clone(), DhcpOption::RequestedIpAddress(mine)],
                Some(MessageType::Ack),
            ),
            (
                "selecting, wrong address",
                vec![sid.clone(), DhcpOption::RequestedIpAddress(wrong)],
                Some(MessageType::Nak),
            ),
            (
                "init-reboot, the reservation",
                vec![DhcpOption::RequestedIpAddress(mine)],
                Some(MessageType::Ack),
            ),
            (
                "init-reboot, an old address",
                vec![DhcpOption::RequestedIpAddress(wrong)],
                Some(MessageType::Nak),
            ),
            // Another server's offer: not ours to refuse.
            (
                "selecting another server",
                vec![
                    DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 2)),
                    DhcpOption::RequestedIpAddress(wrong),
                ],
                None,
            ),
            // Renewing/rebinding (ciaddr, no option 50): the reservation is acknowledged.
            ("renewing", vec![], Some(MessageType::Ack)),
        ];
        for (name, opts, want) in cases {
            let r = req(MessageType::Request, opts);
            match (run(&cfg, &r, Some(&h)), want) {
                (Outcome::Reply(m), Some(MessageType::Nak)) => {
                    assert_eq!(m.opts().msg_type(), Some(MessageType::Nak), "{name}");
                    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "{name}");
                    assert_eq!(m.siaddr(), Ipv4Addr::UNSPECIFIED, "{name}");
                    assert_eq!(m.xid(), r.xid(), "{name}");
                    assert_eq!(m.opts().get(OptionCode::ServerIdentifier), Some(&sid));
                    assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
                    assert!(m.opts().get(OptionCode::Message).is_some());
                }
                (Outcome::Reply(m), Some(t)) => {
                    assert_eq!(m.opts().msg_type(), Some(t), "{name}");
                    assert_eq!(m.yiaddr(), mine, "{name}");
                }
                (Outcome::Silent(_), None) => {}
                (got, want) => panic!("{name}: {got:?}, want {want:?}"),
            }
        }
        // Unknown MACs stay silent even when asking for an address: not ours to refuse.
        let r = req(
            MessageType::Request,
            vec![DhcpOption::RequestedIpAddress(wrong)],
        );
        assert_eq!(run(&cfg, &r, None), Outcome::Silent(Reason::UnknownMac));
    }

    #[test]
    fn silence_table() {
        let res = Config::default();
        let prox = Config {
            mode: Mode::Proxy,
            ..Config::default()
        };
        let mut disabled = hw(true);
        if let Some(i) = disabled.spec.interfaces.as_mut() {
            i[0].disable_dhcp = Some(true);
        }
        let mut no_ip = hw(true);
        no_ip.spec.interfaces.as_mut().unwrap()[0]
            .dhcp
            .as_mut()
            .unwrap()
            .ip = None;
        let mut reply_msg = req(MessageType::Offer, vec![]);
        reply_msg.set_opcode(Opcode::BootReply);
        let mut long_hw = req(MessageType::Discover, vec![]);
        long_hw.set_chaddr(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let h = hw(true);
        let cases: Vec<(&str, &Config, Message, Option<&Hardware>, Reason)> = vec![
            (
                "unknown mac",
                &res,
                req(MessageType::Discover, vec![]),
                None,
                Reason::UnknownMac,
            ),
            (
                "disabled",
                &res,
                req(MessageType::Discover, vec![]),
                Some(&disabled),
                Reason::Disabled,
            ),
            (
                "no address",
                &res,
                req(MessageType::Discover, vec![]),
                Some(&no_ip),
                Reason::NoAddress,
            ),
            (
                "release",
                &res,
                req(MessageType::Release, vec![]),
                Some(&h),
                Reason::IgnoredType,
            ),
            (
                "inform",
                &res,
                req(MessageType::Inform, vec![]),
                Some(&h),
                Reason::IgnoredType,
            ),
            (
                "decline",
                &res,
                req(MessageType::Decline, vec![]),
                Some(&h),
                Reason::IgnoredType,
            ),
            ("bootreply", &res, reply_msg, Some(&h), Reason::NotRequest),
            ("not ethernet", &res, long_hw, Some(&h), Reason::NoMac),
            (
                "other server",
                &res,
                req(
                    MessageType::Request,
                    vec![DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 2))],
                ),
                Some(&h),
                Reason::OtherServer,
            ),
            (
                "proxy: not netboot",
                &prox,
                req(MessageType::Discover, vec![]),
                Some(&h),
                Reason::NotNetboot,
            ),
            (
                "proxy: unknown mac",
                &prox,
                req(MessageType::Discover, pxe("PXEClient", 7)),
                None,
                Reason::UnknownMac,
            ),
            (
                "proxy: arch without binary",
                &prox,
                req(MessageType::Discover, pxe("PXEClient", 99)),
                Some(&h),
                Reason::NotNetboot,
            ),
        ];
        for (name, cfg, r, h, want) in cases {
            assert_eq!(run(cfg, &r, h), Outcome::Silent(want), "{name}");
        }
    }

    #[test]
    fn reservation_netboot_table() {
        let cfg = Config::default();
        let tb = DhcpOption::UserClass(b"Tinkerbell".to_vec());
        let ipxe = DhcpOption::UserClass(b"iPXE".to_vec());
        let cases: Vec<(&str, Vec<DhcpOption>, &str, Ipv4Addr, Option<&[u8]>)> = vec![
            (
                "bios pxe",
                pxe("PXEClient:Arch:00000", 0),
                "undionly.kpxe",
                LOCAL,
                None,
            ),
            (
                "uefi pxe",
                pxe("PXEClient:Arch:00007", 7),
                "ipxe.efi",
                LOCAL,
                None,
            ),
            (
                "stock ipxe",
                [pxe("PXEClient", 7), vec![ipxe]].concat(),
                "tftp://10.0.0.1:69/52:54:00:aa:bb:cc/ipxe.efi",
                LOCAL,
                None,
            ),
            (
                "tinkerbell ipxe",
                [pxe("PXEClient", 7), vec![tb]].concat(),
                "http://10.0.0.1:7080/ipxe/script/52:54:00:aa:bb:cc/auto.ipxe",
                LOCAL,
                None,
            ),
            (
                "uefi http",
                pxe("HTTPClient:Arch:00016", 16),
                "http://10.0.0.1:7080/ipxe/binary/52:54:00:aa:bb:cc/ipxe.efi",
                LOCAL,
                Some(b"HTTPClient"),
            ),
        ];
        for (name, opts, file, siaddr, class) in cases {
            let m = reply(run(
                &cfg,
                &req(MessageType::Discover, opts),
                Some(&hw(true)),
            ));
            assert_eq!(m.fname_str().and_then(Result::ok), Some(file), "{name}");
            assert_eq!(m.siaddr(), siaddr, "{name}");
            assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 0, 50), "{name}");
            assert_eq!(
                m.opts().get(OptionCode::VendorExtensions),
                Some(&DhcpOption::VendorExtensions(vec![
                    6, 1, 8, 116, 2, b'4', b'2', 255
                ])),
                "{name}"
            );
            let got_class = match m.opts().get(OptionCode::ClassIdentifier) {
                Some(DhcpOption::ClassIdentifier(c)) => Some(c.as_slice()),
                _ => None,
            };
            assert_eq!(got_class, class, "{name}");
        }
    }

    /// A Hardware's iPXE script URL or binary longer than the BOOTP `file` field (128 bytes):
    /// the reply carries it in option 67 with `file` empty, in every mode, and encodes; it
    /// used to panic in dhcproto's `set_fname_str` (an assert, in release builds too) inside
    /// the DHCP receive loop.
    #[test]
    fn long_boot_file_names_go_in_option_67() {
        let url = format!("http://10.0.0.1:7080/{}/auto.ipxe", "s".repeat(169));
        assert_eq!(url.len(), 200);
        let binary = format!("{}.efi", "b".repeat(200));
        let tinkerbell = DhcpOption::UserClass(b"Tinkerbell".to_vec());
        for mode in [Mode::Reservation, Mode::Proxy, Mode::AutoProxy] {
            let cfg = Config {
                mode,
                ..Config::default()
            };
            let mut h = hw(true);
            h.spec.interfaces.as_mut().unwrap()[0]
                .netboot
                .as_mut()
                .unwrap()
                .ipxe = Some(Ipxe {
                url: Some(url.clone()),
                binary: Some(binary.clone()),
                ..Ipxe::default()
            });
            let cases = [
                (
                    "tinkerbell",
                    [pxe("PXEClient", 0), vec![tinkerbell.clone()]].concat(),
                    &url,
                ),
                ("pxe rom", pxe("PXEClient:Arch:00000", 0), &binary),
            ];
            for (name, opts, want) in cases {
                let m = reply(run(&cfg, &req(MessageType::Discover, opts), Some(&h)));
                assert_eq!(m.fname(), None, "{mode:?} {name}");
                assert_eq!(boot_file(&m).as_ref(), Some(want), "{mode:?} {name}");
                let bytes = super::super::wire::encode(&m).expect("encodes");
                let back = super::super::wire::decode(&bytes).expect("decodes");
                assert_eq!(
                    boot_file(&back).as_ref(),
                    Some(want),
                    "{mode:?} {name} on the wire"
                );
            }
        }
        // Short names stay in `file`, option 67 unused.
        let cfg = Config::default();
        let r = req(MessageType::Discover, pxe("PXEClient:Arch:00000", 0));
        let m = reply(run(&cfg, &r, Some(&hw(true))));
        assert_eq!(boot_file(&m).as_deref(), Some("undionly.kpxe"));
        assert!(!m.opts().contains(OptionCode::BootfileName));
    }

    /// With stock iPXE binaries (the default of the binaries), an iPXE client gets the script
    /// URL at once instead of a binary it would chainload forever; PXE ROMs still get the
    /// binary, in both reservation and proxy mode.
    #[test]
    fn stock_ipxe_gets_the_script() {
        let ipxe = DhcpOption::UserClass(b"iPXE".to_vec());
        let script = "http://10.0.0.1:7080/ipxe/script/52:54:00:aa:bb:cc/auto.ipxe";
        for mode in [Mode::Reservation, Mode::Proxy] {
            let cfg = Config {
                stock_ipxe: true,
                mode,
                ..Config::default()
            };
            let r = req(
                MessageType::Discover,
                [pxe("PXEClient", 7), vec![ipxe.clone()]].concat(),
            );
            let m = reply(run(&cfg, &r, Some(&hw(true))));
            assert_eq!(m.fname_str().and_then(Result::ok), Some(script), "{mode:?}");
            let r = req(MessageType::Discover, pxe("PXEClient:Arch:00007", 7));
            let m = reply(run(&cfg, &r, Some(&hw(true))));
            assert_eq!(
                m.fname_str().and_then(Result::ok),
                Some("ipxe.efi"),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn reservation_netboot_not_allowed_and_overrides() {
        let cfg = Config::default();
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, pxe("PXEClient", 7)),
            Some(&hw(false)),
        ));
        assert_eq!(
            m.fname_str().and_then(Result::ok),
            Some("/netboot-not-allowed")
        );
        assert_eq!(m.siaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 0, 50));

        // UEFI HTTP boot: a URL that fails at once, with option 60 so the firmware takes it.
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, pxe("HTTPClient", 16)),
            Some(&hw(false)),
        ));
        let file = m.fname_str().and_then(Result::ok).unwrap_or_default();
        assert!(
            file.starts_with("http://") && file.ends_with("/netboot-not-allowed"),
            "{file}"
        );
        assert_eq!(
            m.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 0, 50));

        // Per-interface binary and script URL.
        let mut h = hw(true);
        if let Some(i) = h.spec.interfaces.as_mut() {
            i[0].netboot.as_mut().unwrap().ipxe = Some(Ipxe {
                binary: Some("snp-x86_64.efi".into()),
                url: Some("http://example/custom.ipxe".into()),
                ..Ipxe::default()
            });
        }
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, pxe("PXEClient", 7)),
            Some(&h),
        ));
        assert_eq!(m.fname_str().and_then(Result::ok), Some("snp-x86_64.efi"));
        let tb = [
            pxe("PXEClient", 7),
            vec![DhcpOption::UserClass(b"Tinkerbell".to_vec())],
        ]
        .concat();
        let m = reply(run(&cfg, &req(MessageType::Discover, tb), Some(&h)));
        assert_eq!(
            m.fname_str().and_then(Result::ok),
            Some("http://example/custom.ipxe")
        );

        // Netboot options off: a netboot client gets its address only.
        let off = Config {
            netboot_options: false,
            ..Config::default()
        };
        let m = reply(run(
            &off,
            &req(MessageType::Discover, pxe("PXEClient", 7)),
            Some(&hw(true)),
        ));
        assert_eq!(m.fname(), None);
        assert!(!m.opts().contains(OptionCode::VendorExtensions));

        // Options 66/67 from the Hardware are sent verbatim, netboot logic skipped.
        let mut h = hw(true);
        if let Some(i) = h.spec.interfaces.as_mut() {
            let d = i[0].dhcp.as_mut().unwrap();
            d.tftp_server_name = Some("10.9.9.9".into());
            d.boot_file_name = Some("pxelinux.0".into());
        }
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, pxe("PXEClient", 7)),
            Some(&h),
        ));
        assert_eq!(
            m.opts().get(OptionCode::TFTPServerName),
            Some(&DhcpOption::TFTPServerName(b"10.9.9.9".to_vec()))
        );
        assert_eq!(
            m.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"pxelinux.0".to_vec()))
        );
        assert_eq!(m.fname(), None);
    }

    #[test]
    fn ip_for_packet_and_syslog() {
        let cfg = Config {
            ip_for_packet: Some(Ipv4Addr::new(192, 168, 1, 1)),
            syslog_ip: Some(Ipv4Addr::new(192, 168, 1, 2)),
            tftp_ip: Some(Ipv4Addr::new(192, 168, 1, 3)),
            ..Config::default()
        };
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, pxe("PXEClient", 0)),
            Some(&hw(true)),
        ));
        assert_eq!(
            m.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 1, 1)))
        );
        assert_eq!(
            m.opts().get(OptionCode::LogServer),
            Some(&DhcpOption::LogServer(vec![Ipv4Addr::new(192, 168, 1, 2)]))
        );
        assert_eq!(m.siaddr(), Ipv4Addr::new(192, 168, 1, 3));
    }

    #[test]
    fn proxy_reply_has_no_address() {
        let cfg = Config {
            mode: Mode::Proxy,
            ..Config::default()
        };
        let guid = [vec![0u8], vec![9u8; 16]].concat();
        let opts = [
            pxe("PXEClient:Arch:00007", 7),
            vec![DhcpOption::ClientMachineIdentifier(guid.clone())],
        ]
        .concat();
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, opts.clone()),
            Some(&hw(true)),
        ));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.siaddr(), LOCAL);
        assert_eq!(m.sname_str().and_then(Result::ok), Some("10.0.0.1"));
        assert_eq!(m.fname_str().and_then(Result::ok), Some("ipxe.efi"));
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Offer));
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(LOCAL))
        );
        assert_eq!(
            o.get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        assert_eq!(
            o.get(OptionCode::ClientMachineIdentifier),
            Some(&DhcpOption::ClientMachineIdentifier(guid))
        );
        assert!(!o.contains(OptionCode::SubnetMask));
        assert!(!o.contains(OptionCode::AddressLeaseTime));
        // REQUEST → ACK.
        let m = reply(run(&cfg, &req(MessageType::Request, opts), Some(&hw(true))));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        // Not allowed: the MAC-prefixed not-allowed file.
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, pxe("PXEClient", 7)),
            Some(&hw(false)),
        ));
        assert_eq!(
            m.fname_str().and_then(Result::ok),
            Some("/52:54:00:aa:bb:cc/netboot-not-allowed")
        );
        // HTTPClient gets HTTPClient back.
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, pxe("HTTPClient", 16)),
            Some(&hw(true)),
        ));
        assert_eq!(
            m.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
    }

    #[test]
    fn auto_proxy_answers_unknown_machines() {
        let cfg = Config {
            mode: Mode::AutoProxy,
            ..Config::default()
        };
        let m = reply(run(
            &cfg,
            &req(MessageType::Discover, pxe("PXEClient", 0)),
            None,
        ));
        assert_eq!(m.fname_str().and_then(Result::ok), Some("undionly.kpxe"));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn relay_agent_information_is_echoed() {
        let cfg = Config::default();
        let mut info = RelayAgentInformation::default();
        info.insert(RelayInfo::AgentCircuitId(b"port7".to_vec()));
        let mut r = req(
            MessageType::Discover,
            vec![DhcpOption::RelayAgentInformation(info.clone())],
        );
        r.set_giaddr(Ipv4Addr::new(10, 1, 0, 1)).set_hops(1);
        let m = reply(run(&cfg, &r, Some(&hw(true))));
        assert_eq!(m.giaddr(), Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(m.hops(), 1);
        assert_eq!(
            m.opts().get(OptionCode::RelayAgentInformation),
            Some(&DhcpOption::RelayAgentInformation(info))
        );
    }

    #[test]
    fn mutated_pxe_requests_never_panic_in_any_mode() {
        // The fuzz target's body (fuzz/fuzz_targets/dhcp_decode.rs) over every single-byte
        // change of a relayed PXE DISCOVER: decode, precheck, respond, re-encode.
        let mut info = RelayAgentInformation::default();
        info.insert(RelayInfo::AgentCircuitId(b"c".to_vec()));
        let opts = [
            pxe("PXEClient:Arch:00007:UNDI:003016", 7),
            vec![
                DhcpOption::UserClass(b"iPXE".to_vec()),
                DhcpOption::ClientMachineIdentifier([vec![0u8], vec![1u8; 16]].concat()),
                DhcpOption::RelayAgentInformation(info),
            ],
        ]
        .concat();
        let mut r = req(MessageType::Discover, opts);
        r.set_giaddr(Ipv4Addr::new(10, 1, 0, 1));
        let good = super::super::wire::encode(&r).unwrap();
        let h = hw(true);
        let mut replies = 0;
        for i in 0..good.len() {
            for b in [0u8, 1, 3, 6, 0x7f, 0xff] {
                let mut v = good.clone();
                v[i] = b;
                let Ok(m) = super::super::wire::decode(&v) else {
                    continue;
                };
                for mode in [Mode::Reservation, Mode::Proxy, Mode::AutoProxy] {
                    let cfg = Config {
                        mode,
                        ..Config::default()
                    };
                    let Ok(mac) = precheck(&cfg, &m) else {
                        continue;
                    };
                    for hw in [None, Some(&h)] {
                        if let Outcome::Reply(rep) = respond(&cfg, &m, &mac, LOCAL, hw) {
                            let bytes = super::super::wire::encode(&rep).unwrap();
                            super::super::wire::decode(&bytes).unwrap();
                            replies += 1;
                        }
                    }
                }
            }
        }
        assert!(
            replies > 1000,
            "the sweep must reach the reply path ({replies})"
        );
    }

    #[test]
    fn classless_route_encoding() {
        let r = |d: &str, g: &str| (d.to_string(), g.to_string());
        assert_eq!(
            classless_routes(&[r("0.0.0.0/0", "10.0.0.1")]),
            vec![0, 10, 0, 0, 1]
        );
        assert_eq!(
            classless_routes(&[r("10.0.0.0/8", "10.0.0.1")]),
            vec![8, 10, 10, 0, 0, 1]
        );
        assert_eq!(
            classless_routes(&[r("10.17.0.0/16", "1.2.3.4")]),
            vec![16, 10, 17, 1, 2, 3, 4]
        );
        assert_eq!(
            classless_routes(&[r("10.27.129.0/24", "1.2.3.4")]),
            vec![24, 10, 27, 129, 1, 2, 3, 4]
        );
        assert_eq!(
            classless_routes(&[r("10.229.0.128/25", "1.2.3.4")]),
            vec![25, 10, 229, 0, 128, 1, 2, 3, 4]
        );
        assert_eq!(
            classless_routes(&[r("bad", "1.2.3.4"), r("1.2.3.4/33", "1.2.3.4")]),
            Vec::<u8>::new()
        );
    }
}
