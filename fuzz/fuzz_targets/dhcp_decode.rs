//! The whole path boots runs on a DHCP datagram from the network: defensive decode, the
//! pre-lookup checks, and the reply for every mode (with and without a Hardware), encoded
//! again. Nothing may panic.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use tinkerbell_boots::dhcp::{self, handler, wire, Mode};
use tinkerbell_core::model::{Dhcp, Hardware, HardwareSpec, Interface, Ip, Netboot};

fn hardware(mac: &[u8; 6]) -> Hardware {
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
                    vlan_id: Some("7".into()),
                    ..Dhcp::default()
                }),
                netboot: Some(Netboot { allow_pxe: Some(true), ..Netboot::default() }),
                ..Interface::default()
            }]),
            ..HardwareSpec::default()
        },
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = wire::decode(data) else { return };
    for mode in [Mode::Reservation, Mode::Proxy, Mode::AutoProxy] {
        let cfg = dhcp::Config { mode, ..dhcp::Config::default() };
        let Ok(mac) = handler::precheck(&cfg, &req) else { continue };
        let hw = hardware(&mac);
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
