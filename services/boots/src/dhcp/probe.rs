//! Before boots answers DHCP on a link: which IPv4 address the interface has, and whether
//! another DHCP server already answers there (`serve --netboot-interface`).
//!
//! The probe is what a client on this host would do: a DISCOVER from port 68, broadcast on
//! the interface (SO_BINDTODEVICE) with the broadcast flag set, from the interface's own MAC;
//! any OFFER for it within the timeout names a server. Two servers handing out addresses on
//! one link give machines whichever answers first, so a turnkey start refuses that link.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use socket2::{Domain, Protocol, Socket, Type};

/// Why an interface cannot be used for netboot, or the probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No interface of that name.
    #[error("no network interface named {0:?}")]
    NoInterface(String),
    /// The interface has no IPv4 address to serve from.
    #[error(
        "interface {0:?} has no IPv4 address (give it one, e.g. `ip addr add 10.0.0.1/24 dev {0}`)"
    )]
    NoIpv4(String),
    /// Its hardware address could not be read (not an Ethernet-like interface).
    #[error("interface {name:?}: no hardware address ({detail})")]
    NoMac {
        /// The interface.
        name: String,
        /// Why.
        detail: String,
    },
    /// The probe's socket could not be set up or used (another process on port 68, no
    /// privilege).
    #[error("probing for DHCP servers on {name:?}")]
    Io {
        /// The interface.
        name: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A DHCP server that answered the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherServer {
    /// Its server identifier (option 54), else the reply's source address.
    pub address: Ipv4Addr,
    /// The address it offered us.
    pub offered: Ipv4Addr,
}

/// The first IPv4 address of interface `name`.
pub fn interface_ipv4(name: &str) -> Result<Ipv4Addr, ProbeError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| ProbeError::Io {
        name: name.into(),
        source: e.into(),
    })?;
    let mut exists = false;
    for a in addrs.filter(|a| a.interface_name == name) {
        exists = true;
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            return Ok(sin.ip());
        }
    }
    // An interface without any address is listed once (AF_PACKET) when it exists.
    Err(
        if exists || std::path::Path::new("/sys/class/net").join(name).exists() {
            ProbeError::NoIpv4(name.into())
        } else {
            ProbeError::NoInterface(name.into())
        },
    )
}

fn interface_mac(name: &str) -> Result<[u8; 6], ProbeError> {
    let no_mac = |detail: String| ProbeError::NoMac {
        name: name.into(),
        detail,
    };
    let path = std::path::Path::new("/sys/class/net")
        .join(name)
        .join("address");
    let text = std::fs::read_to_string(&path).map_err(|e| no_mac(e.to_string()))?;
    let text = text.trim();
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| no_mac(format!("{text:?}")))?;
    bytes
        .try_into()
        .map_err(|_| no_mac(format!("{text:?} is not 6 bytes")))
}

/// A DISCOVER from `mac` with transaction id `xid`, asking for a broadcast reply.
fn discover(mac: [u8; 6], xid: u32) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_xid(xid)
        .set_flags(Flags::default().set_broadcast())
        .set_chaddr(&mac);
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::ServerIdentifier,
    ]));
    m
}

/// The server an OFFER for `xid` came from; `None` for anything else.
fn offer_from(buf: &[u8], xid: u32, from: SocketAddr) -> Option<OtherServer> {
    let m = Message::decode(&mut Decoder::new(buf)).ok()?;
    let offer = m.opcode() == Opcode::BootReply
        && m.xid() == xid
        && matches!(
            m.opts().get(OptionCode::MessageType),
            Some(DhcpOption::MessageType(MessageType::Offer))
        );
    if !offer {
        return None;
    }
    let address = match (m.opts().get(OptionCode::ServerIdentifier), from) {
        (Some(DhcpOption::ServerIdentifier(ip)), _) => *ip,
        (_, SocketAddr::V4(a)) => *a.ip(),
        (_, SocketAddr::V6(_)) => return None,
    };
    Some(OtherServer {
        address,
        offered: m.yiaddr(),
    })
}

/// Broadcast a DISCOVER on `interface` and wait up to `timeout` for an OFFER. `Ok(None)`: no
/// DHCP server answered. Needs port 68 free and the privilege to bind it.
pub fn probe(interface: &str, timeout: Duration) -> Result<Option<OtherServer>, ProbeError> {
    let io = |source: std::io::Error| ProbeError::Io {
        name: interface.into(),
        source,
    };
    let mac = interface_mac(interface)?;
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io)?;
    s.set_reuse_address(true).map_err(io)?;
    s.set_broadcast(true).map_err(io)?;
    s.bind_device(Some(interface.as_bytes())).map_err(io)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)).into())
        .map_err(io)?;
    let s: std::net::UdpSocket = s.into();
    let xid = transaction_id();
    let mut out = Vec::new();
    discover(mac, xid)
        .encode(&mut Encoder::new(&mut out))
        .map_err(|e| io(std::io::Error::other(e)))?;
    let deadline = Instant::now() + timeout;
    // Once more halfway, in case the first broadcast met a link still coming up.
    let mut resend = Some(Instant::now() + timeout / 2);
    s.send_to(&out, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
        .map_err(io)?;
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        if resend.is_some_and(|at| now >= at) {
            resend = None;
            s.send_to(&out, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
                .map_err(io)?;
        }
        let wait = resend.map_or(deadline, |r| r.min(deadline)) - now;
        s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(io)?;
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(server) = offer_from(&buf[..n], xid, from) {
                    return Ok(Some(server));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(io(e)),
        }
    }
}

/// A transaction id: not a secret, only unlikely to be another client's at the same moment.
fn transaction_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(xid: u32, t: MessageType, server_id: Option<Ipv4Addr>) -> Vec<u8> {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_xid(xid)
            .set_yiaddr(Ipv4Addr::new(10, 0, 0, 50));
        m.opts_mut().insert(DhcpOption::MessageType(t));
        if let Some(ip) = server_id {
            m.opts_mut().insert(DhcpOption::ServerIdentifier(ip));
        }
        let mut out = Vec::new();
        m.encode(&mut Encoder::new(&mut out)).unwrap();
        out
    }

    #[test]
    fn only_an_offer_for_our_transaction_names_a_server() {
        let from: SocketAddr = "10.0.0.2:67".parse().unwrap();
        let sid = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(
            offer_from(&reply(7, MessageType::Offer, Some(sid)), 7, from),
            Some(OtherServer {
                address: sid,
                offered: Ipv4Addr::new(10, 0, 0, 50)
            })
        );
        // No server identifier: the source address.
        assert_eq!(
            offer_from(&reply(7, MessageType::Offer, None), 7, from).map(|s| s.address),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(
            offer_from(&reply(8, MessageType::Offer, Some(sid)), 7, from),
            None
        );
        assert_eq!(
            offer_from(&reply(7, MessageType::Ack, Some(sid)), 7, from),
            None
        );
        assert_eq!(offer_from(b"not dhcp", 7, from), None);
        // Our own DISCOVER, looped back, is not an answer.
        let mut own = Vec::new();
        discover([2, 0, 0, 0, 0, 1], 7)
            .encode(&mut Encoder::new(&mut own))
            .unwrap();
        assert_eq!(offer_from(&own, 7, from), None);
    }

    #[test]
    fn a_missing_interface_is_named() {
        let e = interface_ipv4("no-such-if0").unwrap_err();
        assert!(matches!(e, ProbeError::NoInterface(_)), "{e:?}");
        assert!(e.to_string().contains("no-such-if0"), "{e}");
        // Loopback exists and has 127.0.0.1.
        assert_eq!(interface_ipv4("lo").unwrap(), Ipv4Addr::LOCALHOST);
    }
}
