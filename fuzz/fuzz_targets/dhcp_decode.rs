//! The whole path boots runs on a DHCP datagram from the network: defensive decode, the
//! pre-lookup checks, and the reply for every mode (with and without a Hardware), encoded
//! again. Nothing may panic.
//!
//! The Hardware's boot-related fields come from the input too (whatever a store holds reaches
//! the reply): the last two bytes give a trailer length (little endian); the trailer, split at
//! `\n`, is the iPXE script URL, the iPXE binary, option 67 / option 66 (`boot_file_name`,
//! `tftp_server_name`), the host name, the domain name and the VLAN ID. The datagram is the
//! whole input (a DHCP decoder ignores what follows the END option), so raw packets stay
//! valid seeds.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use tinkerbell_boots::dhcp::{self, handler, wire, Mode};
use tinkerbell_model::{Dhcp, Hardware, HardwareSpec, Interface, Ip, Ipxe, Netboot};

/// The Hardware fields of the input's trailer (empty ones stay unset).
fn fields(data: &[u8]) -> Vec<Option<String>> {
    let n = data.len();
    let want = match data {
        [.., lo, hi] => u16::from_le_bytes([*lo, *hi]) as usize,
        _ => 0,
    };
    let trailer = &data[n.saturating_sub(2).saturating_sub(want)..n.saturating_sub(2)];
    let mut out: Vec<Option<String>> = trailer
        .split(|&b| b == b'\n')
        .map(|f| Some(String::from_utf8_lossy(f).into_owned()).filter(|s| !s.is_empty()))
        .collect();
    out.resize(7, None);
    out
}

fn hardware(mac: &[u8; 6], f: &[Option<String>]) -> Hardware {
    let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    Hardware::new(
        "fuzz",
        HardwareSpec {
            interfaces: Some(vec![Interface {
                dhcp: Some(Dhcp {
                    mac: Some(mac),
                    ip: Some(Ip {
                        address: Some("10.0.0.5".into()),
                        netmask: Some("255.255.255.0".into()),
                        gateway: Some("10.0.0.1".into()),
                        family: Some(4),
                    }),
                    boot_file_name: f[2].clone(),
                    tftp_server_name: f[3].clone(),
                    hostname: f[4].clone(),
                    domain_name: f[5].clone(),
                    vlan_id: f[6].clone().or_else(|| Some("7".into())),
                    ..Dhcp::default()
                }),
                netboot: Some(Netboot {
                    allow_pxe: Some(true),
                    ipxe: Some(Ipxe { url: f[0].clone(), binary: f[1].clone(), ..Ipxe::default() }),
                    ..Netboot::default()
                }),
                ..Interface::default()
            }]),
            ..HardwareSpec::default()
        },
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = wire::decode(data) else { return };
    let f = fields(data);
    for mode in [Mode::Reservation, Mode::Proxy, Mode::AutoProxy] {
        let cfg = dhcp::Config { mode, ..dhcp::Config::default() };
        let Ok(mac) = handler::precheck(&cfg, &req) else { continue };
        let hw = hardware(&mac, &f);
        for h in [None, Some(&hw)] {
            if let handler::Outcome::Reply(m) =
                handler::respond(&cfg, &req, &mac, Ipv4Addr::new(10, 0, 0, 1), h)
            {
                let bytes = wire::encode(&m).expect("replies encode");
                let _ = wire::decode(&bytes);
            }
        }
    }
});
