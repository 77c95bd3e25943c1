//! Netboot decisions, as pure functions of the request: is this a network-boot client, which
//! iPXE binary does its architecture need, and what goes into `file`/`siaddr`.
//!
//! Kept free of sockets and of the store so every rule from upstream Smee
//! (`smee/internal/dhcp/dhcp.go`: `IsNetbootClient`, the arch map, `Bootfile`, `NextServer`) is a
//! table-driven unit test here.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};

/// Raspberry Pi OUIs: forced to arch 41 because the Pi 5 sends option 93 = 0.
const RPI_OUIS: [[u8; 3]; 5] = [
    [0xb8, 0x27, 0xeb],
    [0xdc, 0xa6, 0x32],
    [0xe4, 0x5f, 0x01],
    [0x28, 0xcd, 0xc1],
    [0xd8, 0x3a, 0xdd],
];

/// The arch value used for Raspberry Pis (upstream's "rpiboot").
pub const ARCH_RPI: u16 = 41;

/// How the MAC is written into URLs and TFTP paths (`--ipxe-binary-inject-mac-addr-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MacFormat {
    /// `52:54:00:12:34:56` (the default).
    #[default]
    Colon,
    /// `5254.0012.3456`.
    Dot,
    /// `52-54-00-12-34-56`.
    Dash,
    /// `525400123456`.
    NoDelimiter,
    /// No MAC in the path at all.
    Empty,
}

impl MacFormat {
    /// Parse upstream's names: `colon`, `dot`, `dash`, `no-delimiter`, `empty`.
    pub fn parse(s: &str) -> Option<MacFormat> {
        Some(match s {
            "colon" | "" => MacFormat::Colon,
            "dot" => MacFormat::Dot,
            "dash" => MacFormat::Dash,
            "no-delimiter" => MacFormat::NoDelimiter,
            "empty" => MacFormat::Empty,
            _ => return None,
        })
    }

    /// Format `mac` (lower-case hex). One allocation: this runs for every DHCP request.
    pub fn format(self, mac: &[u8; 6]) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let (sep, every) = match self {
            MacFormat::Colon => (Some(':'), 1),
            MacFormat::Dash => (Some('-'), 1),
            MacFormat::Dot => (Some('.'), 2),
            MacFormat::NoDelimiter => (None, 6),
            MacFormat::Empty => return String::new(),
        };
        let mut out = String::with_capacity(17);
        for (i, b) in mac.iter().enumerate() {
            if i > 0
                && i % every == 0
                && let Some(sep) = sep
            {
                out.push(sep);
            }
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }
}

/// A MAC as the store spells it: lower-case, colon separated.
pub fn mac_string(mac: &[u8; 6]) -> String {
    MacFormat::Colon.format(mac)
}

/// The client hardware address when it is an Ethernet MAC (htype 1, hlen 6).
pub fn client_mac(msg: &Message) -> Option<[u8; 6]> {
    if msg.hlen() != 6 {
        return None;
    }
    msg.chaddr().get(..6).and_then(|s| s.try_into().ok())
}

/// Upstream's `IsNetbootClient`: DISCOVER or REQUEST; option 60 starting with `PXEClient` or
/// `HTTPClient`; options 93 and 94 present; option 97 absent or 17 bytes with a leading 0.
pub fn is_netboot_client(msg: &Message) -> bool {
    let opts = msg.opts();
    if !matches!(
        opts.msg_type(),
        Some(MessageType::Discover | MessageType::Request)
    ) {
        return false;
    }
    let class_ok = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => {
            v.starts_with(b"PXEClient") || v.starts_with(b"HTTPClient")
        }
        _ => false,
    };
    if !class_ok
        || !opts.contains(OptionCode::ClientSystemArchitecture)
        || !opts.contains(OptionCode::ClientNetworkInterface)
    {
        return false;
    }
    match opts.get(OptionCode::ClientMachineIdentifier) {
        None => true,
        Some(DhcpOption::ClientMachineIdentifier(g)) => g.len() == 17 && g[0] == 0,
        Some(_) => false,
    }
}

/// Option 60 starts with `HTTPClient`: UEFI HTTP boot.
pub fn is_http_client(msg: &Message) -> bool {
    matches!(msg.opts().get(OptionCode::ClassIdentifier),
        Some(DhcpOption::ClassIdentifier(v)) if v.starts_with(b"HTTPClient"))
}

/// Option 77 read as a raw string (upstream does not split RFC 3004 classes).
pub fn user_class(msg: &Message) -> Option<&[u8]> {
    match msg.opts().get(OptionCode::UserClass) {
        Some(DhcpOption::UserClass(v)) => Some(v.as_slice()),
        _ => None,
    }
}

/// The client's architecture (option 93), with Raspberry Pi OUIs forced to [`ARCH_RPI`].
pub fn client_arch(msg: &Message, mac: &[u8; 6]) -> Option<u16> {
    if RPI_OUIS.iter().any(|oui| mac[..3] == oui[..]) {
        return Some(ARCH_RPI);
    }
    match msg.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(a.0),
        _ => None,
    }
}

/// Whether the MAC belongs to a Raspberry Pi.
pub fn is_rpi(mac: &[u8; 6]) -> bool {
    RPI_OUIS.iter().any(|oui| mac[..3] == oui[..])
}

/// The default iPXE binary for an architecture (upstream's `IPXE_ARCH_MAP`), before overrides.
pub fn default_binary(arch: u16) -> Option<&'static str> {
    Some(match arch {
        0..=5 | 20 => "undionly.kpxe",
        6..=9 | 15 | 16 => "ipxe.efi",
        10 | 11 | 18 | 19 | ARCH_RPI => "snp-arm64.efi",
        _ => return None,
    })
}

/// The binary for `arch`: the per-interface `netboot.ipxe.binary`, else the global override
/// (`--ipxe-override-arch-mapping`), else the default map.
pub fn binary_for(
    arch: u16,
    overrides: &BTreeMap<u16, String>,
    per_interface: Option<&str>,
) -> Option<String> {
    if let Some(b) = per_interface.filter(|b| !b.is_empty()) {
        return Some(b.to_string());
    }
    if let Some(b) = overrides.get(&arch) {
        return Some(b.clone());
    }
    default_binary(arch).map(str::to_string)
}

/// Parse `--ipxe-override-arch-mapping`: `7=snp-x86_64.efi,11=snp-arm64.efi`.
pub fn parse_arch_overrides(s: &str) -> Result<BTreeMap<u16, String>, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (a, b) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not ARCH=BINARY"))?;
        let arch: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not an architecture number"))?;
        let bin = b.trim();
        if bin.is_empty() || bin.contains('/') {
            return Err(format!("{b:?} is not a binary file name"));
        }
        out.insert(arch, bin.to_string());
    }
    Ok(out)
}

/// What kind of netboot client sent the request, in upstream's order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// User class `Tinkerbell` (or the configured custom class): our iPXE, wants the script.
    Tinkerbell,
    /// Option 60 `HTTPClient`: UEFI HTTP boot, wants an HTTP URL of the binary.
    HttpClient,
    /// User class `iPXE`: a stock iPXE, wants a `tftp://` URL of our binary.
    Ipxe,
    /// A plain PXE ROM: wants a binary name it fetches from `siaddr` over TFTP.
    Pxe,
}

/// Classify a netboot client.
pub fn classify(msg: &Message, custom_user_class: Option<&str>) -> ClientKind {
    let uc = user_class(msg);
    let custom = custom_user_class.filter(|c| !c.is_empty());
    if uc == Some(b"Tinkerbell".as_slice()) || (custom.is_some() && uc == custom.map(str::as_bytes))
    {
        ClientKind::Tinkerbell
    } else if is_http_client(msg) {
        ClientKind::HttpClient
    } else if uc == Some(b"iPXE".as_slice()) {
        ClientKind::Ipxe
    } else {
        ClientKind::Pxe
    }
}

/// Where boot files come from; hosts already resolved (configured, or the packet's local IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSources {
    /// TFTP server address.
    pub tftp_ip: Ipv4Addr,
    /// TFTP port.
    pub tftp_port: u16,
    /// `scheme://host:port/path` prefix of the iPXE binaries (no trailing slash).
    pub binary_base: String,
    /// The host of `binary_base` when it is an IPv4 address (for `siaddr`).
    pub binary_ip: Option<Ipv4Addr>,
    /// `scheme://host:port/path` prefix of the iPXE script, or `None` when none is configured.
    pub script_base: Option<String>,
    /// Put the MAC into the script URL.
    pub script_prepend_mac: bool,
    /// MAC format for binary URLs and TFTP paths.
    pub mac_format: MacFormat,
    /// The address used when nothing better is known (the public/packet IP).
    pub public_ip: Ipv4Addr,
}

/// The boot file and next server for an allowed netboot client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    /// Boot file (`file` header; also option 67 is not used, as upstream).
    pub file: String,
    /// Next server (`siaddr`).
    pub next_server: Ipv4Addr,
}

/// Upstream's `Bootfile`/`NextServer` for an allowed netboot client.
///
/// `ipxe_url` is the Hardware's `netboot.ipxe.url` (replaces the script URL).
pub fn boot_info(
    kind: ClientKind,
    mac: &[u8; 6],
    binary: &str,
    src: &BootSources,
    ipxe_url: Option<&str>,
) -> BootInfo {
    let mac_s = src.mac_format.format(mac);
    let with_mac = |base: &str, tail: &str| {
        if mac_s.is_empty() {
            format!("{base}/{tail}")
        } else {
            format!("{base}/{mac_s}/{tail}")
        }
    };
    match kind {
        ClientKind::Tinkerbell => {
            let file = match (ipxe_url.filter(|u| !u.is_empty()), &src.script_base) {
                (Some(u), _) => u.to_string(),
                (None, Some(base)) if src.script_prepend_mac => {
                    format!("{base}/{}/auto.ipxe", mac_string(mac))
                }
                (None, Some(base)) => format!("{base}/auto.ipxe"),
                (None, None) => "/no-ipxe-script-defined".to_string(),
            };
            BootInfo {
                file,
                next_server: src.tftp_ip,
            }
        }
        ClientKind::HttpClient => BootInfo {
            file: with_mac(&src.binary_base, binary),
            next_server: src.binary_ip.unwrap_or(src.public_ip),
        },
        ClientKind::Ipxe => BootInfo {
            file: with_mac(&format!("tftp://{}:{}", src.tftp_ip, src.tftp_port), binary),
            next_server: src.tftp_ip,
        },
        ClientKind::Pxe => BootInfo {
            file: binary.to_string(),
            next_server: src.tftp_ip,
        },
    }
}

/// Option 43 (PXE vendor options): sub-option 6 = 8 (skip PXE discovery, boot `file`), the
/// Raspberry Pi sub-options 9 and 10 for Pis, and 116 = VLAN ID when set (read by the embedded
/// iPXE script as `${43.116:string}`).
pub fn vendor_options(rpi: bool, vlan: Option<&str>) -> Vec<u8> {
    let mut out = vec![6, 1, 8];
    if rpi {
        let menu = b"\x00\x00\x11Raspberry Pi Boot";
        out.push(9);
        out.push(menu.len() as u8);
        out.extend_from_slice(menu);
        out.extend_from_slice(&[10, 4, 0, b'P', b'X', b'E']);
    }
    if let Some(v) = vlan.filter(|v| !v.is_empty() && v.len() <= 255) {
        out.push(116);
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    out.push(255);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{Architecture, Opcode};

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn req(t: MessageType, opts: Vec<DhcpOption>) -> Message {
        let mut m = Message::new_with_id(
            1,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &MAC,
        );
        m.set_opcode(Opcode::BootRequest);
        m.opts_mut().insert(DhcpOption::MessageType(t));
        for o in opts {
            m.opts_mut().insert(o);
        }
        m
    }

    fn pxe_opts(class: &str) -> Vec<DhcpOption> {
        vec![
            DhcpOption::ClassIdentifier(class.as_bytes().to_vec()),
            DhcpOption::ClientSystemArchitecture(Architecture::X64),
            DhcpOption::ClientNetworkInterface(1, 3, 16),
        ]
    }

    #[test]
    fn netboot_detection_table() {
        let guid_ok = DhcpOption::ClientMachineIdentifier([vec![0u8], vec![7u8; 16]].concat());
        let guid_short = DhcpOption::ClientMachineIdentifier(vec![0u8; 16]);
        let guid_bad_type =
            DhcpOption::ClientMachineIdentifier([vec![1u8], vec![7u8; 16]].concat());
        let cases: Vec<(&str, MessageType, Vec<DhcpOption>, bool)> = vec![
            (
                "pxe discover",
                MessageType::Discover,
                pxe_opts("PXEClient:Arch:00007:UNDI:003016"),
                true,
            ),
            (
                "pxe request",
                MessageType::Request,
                pxe_opts("PXEClient"),
                true,
            ),
            (
                "http client",
                MessageType::Discover,
                pxe_opts("HTTPClient:Arch:00016"),
                true,
            ),
            (
                "inform is not",
                MessageType::Inform,
                pxe_opts("PXEClient"),
                false,
            ),
            (
                "release is not",
                MessageType::Release,
                pxe_opts("PXEClient"),
                false,
            ),
            (
                "other class",
                MessageType::Discover,
                pxe_opts("udhcp 1.35.0"),
                false,
            ),
            (
                "class case matters",
                MessageType::Discover,
                pxe_opts("pxeclient"),
                false,
            ),
            (
                "no option 60",
                MessageType::Discover,
                pxe_opts("PXEClient")[1..].to_vec(),
                false,
            ),
            (
                "no option 93",
                MessageType::Discover,
                vec![
                    pxe_opts("PXEClient")[0].clone(),
                    pxe_opts("PXEClient")[2].clone(),
                ],
                false,
            ),
            (
                "no option 94",
                MessageType::Discover,
                pxe_opts("PXEClient")[..2].to_vec(),
                false,
            ),
            (
                "guid ok",
                MessageType::Discover,
                [pxe_opts("PXEClient"), vec![guid_ok]].concat(),
                true,
            ),
            (
                "guid 16 bytes",
                MessageType::Discover,
                [pxe_opts("PXEClient"), vec![guid_short]].concat(),
                false,
            ),
            (
                "guid type 1",
                MessageType::Discover,
                [pxe_opts("PXEClient"), vec![guid_bad_type]].concat(),
                false,
            ),
        ];
        for (name, t, opts, want) in cases {
            assert_eq!(is_netboot_client(&req(t, opts)), want, "{name}");
        }
    }

    #[test]
    fn arch_map_table() {
        let none = BTreeMap::new();
        let cases: &[(u16, Option<&str>)] = &[
            (0, Some("undionly.kpxe")),
            (5, Some("undionly.kpxe")),
            (6, Some("ipxe.efi")),
            (7, Some("ipxe.efi")),
            (9, Some("ipxe.efi")),
            (10, Some("snp-arm64.efi")),
            (11, Some("snp-arm64.efi")),
            (15, Some("ipxe.efi")),
            (16, Some("ipxe.efi")),
            (18, Some("snp-arm64.efi")),
            (19, Some("snp-arm64.efi")),
            (20, Some("undionly.kpxe")),
            (41, Some("snp-arm64.efi")),
            (12, None),
            (99, None),
        ];
        for (arch, want) in cases {
            assert_eq!(
                binary_for(*arch, &none, None).as_deref(),
                *want,
                "arch {arch}"
            );
        }
        let ov = parse_arch_overrides("7=snp-x86_64.efi, 11=custom.efi").unwrap();
        assert_eq!(binary_for(7, &ov, None).as_deref(), Some("snp-x86_64.efi"));
        assert_eq!(binary_for(6, &ov, None).as_deref(), Some("ipxe.efi"));
        assert_eq!(
            binary_for(7, &ov, Some("mine.efi")).as_deref(),
            Some("mine.efi")
        );
        assert_eq!(
            binary_for(7, &ov, Some("")).as_deref(),
            Some("snp-x86_64.efi")
        );
        assert!(parse_arch_overrides("x=1").is_err());
        assert!(parse_arch_overrides("7").is_err());
        assert!(parse_arch_overrides("7=../../etc").is_err());
    }

    #[test]
    fn rpi_ouis_force_arch_41() {
        let m = req(MessageType::Discover, pxe_opts("PXEClient"));
        assert_eq!(client_arch(&m, &MAC), Some(7));
        for oui in RPI_OUIS {
            let mac = [oui[0], oui[1], oui[2], 1, 2, 3];
            assert_eq!(client_arch(&m, &mac), Some(ARCH_RPI));
            assert!(is_rpi(&mac));
        }
    }

    #[test]
    fn classification_order() {
        let tb = DhcpOption::UserClass(b"Tinkerbell".to_vec());
        let ipxe = DhcpOption::UserClass(b"iPXE".to_vec());
        let custom = DhcpOption::UserClass(b"Lab".to_vec());
        let cases: Vec<(&str, Vec<DhcpOption>, Option<&str>, ClientKind)> = vec![
            (
                "tinkerbell",
                [pxe_opts("PXEClient"), vec![tb.clone()]].concat(),
                None,
                ClientKind::Tinkerbell,
            ),
            (
                "tinkerbell beats http",
                [pxe_opts("HTTPClient"), vec![tb]].concat(),
                None,
                ClientKind::Tinkerbell,
            ),
            (
                "custom class",
                [pxe_opts("PXEClient"), vec![custom.clone()]].concat(),
                Some("Lab"),
                ClientKind::Tinkerbell,
            ),
            (
                "custom class not configured",
                [pxe_opts("PXEClient"), vec![custom]].concat(),
                None,
                ClientKind::Pxe,
            ),
            (
                "http beats ipxe",
                [pxe_opts("HTTPClient"), vec![ipxe.clone()]].concat(),
                None,
                ClientKind::HttpClient,
            ),
            (
                "ipxe",
                [pxe_opts("PXEClient"), vec![ipxe]].concat(),
                None,
                ClientKind::Ipxe,
            ),
            ("pxe", pxe_opts("PXEClient"), None, ClientKind::Pxe),
        ];
        for (name, opts, custom, want) in cases {
            assert_eq!(
                classify(&req(MessageType::Discover, opts), custom),
                want,
                "{name}"
            );
        }
    }

    fn sources() -> BootSources {
        BootSources {
            tftp_ip: Ipv4Addr::new(10, 0, 0, 1),
            tftp_port: 69,
            binary_base: "http://10.0.0.2:7080/ipxe/binary".into(),
            binary_ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
            script_base: Some("http://10.0.0.3:7080/ipxe/script".into()),
            script_prepend_mac: true,
            mac_format: MacFormat::Colon,
            public_ip: Ipv4Addr::new(10, 0, 0, 9),
        }
    }

    #[test]
    fn bootfile_table() {
        let s = sources();
        let t = Ipv4Addr::new(10, 0, 0, 1);
        let cases: Vec<(ClientKind, Option<&str>, &str, Ipv4Addr)> = vec![
            (
                ClientKind::Tinkerbell,
                None,
                "http://10.0.0.3:7080/ipxe/script/52:54:00:12:34:56/auto.ipxe",
                t,
            ),
            (
                ClientKind::Tinkerbell,
                Some("https://x/y.ipxe"),
                "https://x/y.ipxe",
                t,
            ),
            (
                ClientKind::HttpClient,
                None,
                "http://10.0.0.2:7080/ipxe/binary/52:54:00:12:34:56/ipxe.efi",
                Ipv4Addr::new(10, 0, 0, 2),
            ),
            (
                ClientKind::Ipxe,
                None,
                "tftp://10.0.0.1:69/52:54:00:12:34:56/ipxe.efi",
                t,
            ),
            (ClientKind::Pxe, None, "ipxe.efi", t),
        ];
        for (kind, url, file, ns) in cases {
            let b = boot_info(kind, &MAC, "ipxe.efi", &s, url);
            assert_eq!(b.file, file, "{kind:?}");
            assert_eq!(b.next_server, ns, "{kind:?}");
        }
        let mut s2 = s.clone();
        s2.script_base = None;
        assert_eq!(
            boot_info(ClientKind::Tinkerbell, &MAC, "x", &s2, None).file,
            "/no-ipxe-script-defined"
        );
        s2.script_base = Some("http://h/s".into());
        s2.script_prepend_mac = false;
        assert_eq!(
            boot_info(ClientKind::Tinkerbell, &MAC, "x", &s2, None).file,
            "http://h/s/auto.ipxe"
        );
        s2.binary_ip = None;
        s2.mac_format = MacFormat::Empty;
        let b = boot_info(ClientKind::HttpClient, &MAC, "ipxe.efi", &s2, None);
        assert_eq!(b.file, "http://10.0.0.2:7080/ipxe/binary/ipxe.efi");
        assert_eq!(b.next_server, Ipv4Addr::new(10, 0, 0, 9));
    }

    #[test]
    fn mac_formats() {
        assert_eq!(MacFormat::Colon.format(&MAC), "52:54:00:12:34:56");
        assert_eq!(MacFormat::Dot.format(&MAC), "5254.0012.3456");
        assert_eq!(MacFormat::Dash.format(&MAC), "52-54-00-12-34-56");
        assert_eq!(MacFormat::NoDelimiter.format(&MAC), "525400123456");
        assert_eq!(MacFormat::Empty.format(&MAC), "");
        assert_eq!(
            MacFormat::parse("no-delimiter"),
            Some(MacFormat::NoDelimiter)
        );
        assert_eq!(MacFormat::parse("nope"), None);
    }

    #[test]
    fn vendor_option_bytes() {
        assert_eq!(vendor_options(false, None), vec![6, 1, 8, 255]);
        assert_eq!(
            vendor_options(false, Some("42")),
            vec![6, 1, 8, 116, 2, b'4', b'2', 255]
        );
        let rpi = vendor_options(true, None);
        assert_eq!(&rpi[..5], &[6, 1, 8, 9, 20]);
        assert_eq!(&rpi[5..25], b"\x00\x00\x11Raspberry Pi Boot");
        assert_eq!(&rpi[25..], &[10, 4, 0, b'P', b'X', b'E', 255]);
    }
}
