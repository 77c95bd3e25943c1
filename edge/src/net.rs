//! Addresses at the edge: CIDRs, the canonical form of an address, and the client behind
//! trusted proxies.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;

/// The header proxies name the client in.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// An IP network: an address and a prefix length. A bare address means a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A string that is neither a CIDR nor an IP address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid CIDR or IP address: {0:?}")]
pub struct CidrError(pub String);

impl Cidr {
    /// The network `addr/prefix` (host bits are ignored when matching).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError(format!("{addr}/{prefix}")));
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Parse a comma-separated list of CIDRs and IPs (upstream's `--trusted-proxies` format);
    /// empty items are skipped, every bad item is reported.
    pub fn parse_list(s: &str) -> Result<Vec<Cidr>, Vec<CidrError>> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.parse() {
                Ok(c) => ok.push(c),
                Err(e) => bad.push(e),
            }
        }
        if bad.is_empty() { Ok(ok) } else { Err(bad) }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(s.to_string());
        match s.split_once('/') {
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| bad())?;
                let prefix: u8 = p.parse().map_err(|_| bad())?;
                Cidr::new(addr, prefix).map_err(|_| bad())
            }
            None => {
                let addr: IpAddr = s.parse().map_err(|_| bad())?;
                let prefix = if addr.is_ipv4() { 32 } else { 128 };
                Ok(Cidr { addr, prefix })
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack socket reports) as plain IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// An `X-Forwarded-For` from a trusted proxy that is not a list of IP addresses.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("X-Forwarded-For is not a list of IP addresses")]
pub struct ForwardedForError;

/// The client's address: `peer`, unless `peer` is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself trusted (the left-most when all are).
/// Entries from untrusted peers are never believed, so a client cannot pick its identity.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[Cidr],
) -> Result<IpAddr, ForwardedForError> {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Ok(peer);
    }
    let mut entries = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        let s = value.to_str().map_err(|_| ForwardedForError)?;
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let ip: IpAddr = item.parse().map_err(|_| ForwardedForError)?;
            entries.push(canonical(ip));
        }
    }
    if entries.is_empty() {
        return Ok(peer);
    }
    Ok(entries
        .iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(entries[0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const XFF: &str = X_FORWARDED_FOR;

    fn cidrs(s: &str) -> Vec<Cidr> {
        Cidr::parse_list(s).unwrap()
    }

    #[test]
    fn cidr_parse_and_match() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1", "::1", true),
            ("10.0.0.0/8", "fd00::1", false),
        ];
        for (net, ip, want) in cases {
            let c: Cidr = net.parse().unwrap();
            assert_eq!(
                c.contains(ip.parse().unwrap()),
                *want,
                "{net} contains {ip}"
            );
        }
    }

    #[test]
    fn cidr_list_reports_every_bad_item() {
        assert_eq!(
            Cidr::parse_list(" 10.0.0.0/8, ,127.0.0.1 ").unwrap(),
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap()
            ]
        );
        let errs = Cidr::parse_list("10.0.0.0/33,nope,1.2.3.4,::/129").unwrap_err();
        assert_eq!(
            errs,
            vec![
                CidrError("10.0.0.0/33".into()),
                CidrError("nope".into()),
                CidrError("::/129".into())
            ]
        );
    }

    #[test]
    fn xff_table() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        // (peer, xff headers, trusted, expected client)
        let cases: &[(&str, &[&str], &str, &str)] = &[
            // Untrusted peer: the header changes nothing.
            ("10.0.0.5", &["10.0.0.9"], "", "10.0.0.5"),
            ("10.0.0.5", &["10.0.0.9"], "192.168.0.0/16", "10.0.0.5"),
            // Trusted peer: the right-most untrusted entry.
            ("192.168.0.1", &["10.0.0.9"], "192.168.0.0/16", "10.0.0.9"),
            (
                "192.168.0.1",
                &["1.1.1.1, 10.0.0.9"],
                "192.168.0.0/16",
                "10.0.0.9",
            ),
            (
                "192.168.0.1",
                &["1.1.1.1, 10.0.0.9, 192.168.0.7"],
                "192.168.0.0/16",
                "10.0.0.9",
            ),
            // Spoofed left-most entries are not believed.
            (
                "192.168.0.1",
                &["10.0.0.1", "10.0.0.9"],
                "192.168.0.0/16",
                "10.0.0.9",
            ),
            // Every entry trusted: the left-most.
            (
                "192.168.0.1",
                &["192.168.0.3, 192.168.0.7"],
                "192.168.0.0/16",
                "192.168.0.3",
            ),
            // No header from a trusted peer: the peer.
            ("192.168.0.1", &[], "192.168.0.0/16", "192.168.0.1"),
            // IPv4-mapped forms compare as IPv4.
            (
                "192.168.0.1",
                &["::ffff:10.0.0.9"],
                "192.168.0.1",
                "10.0.0.9",
            ),
        ];
        for (peer, xff, trusted, want) in cases {
            let mut h = HeaderMap::new();
            for v in *xff {
                h.append(XFF, HeaderValue::from_str(v).unwrap());
            }
            let got = client_ip(ip(peer), &h, &cidrs(trusted)).unwrap();
            assert_eq!(got, ip(want), "peer {peer} xff {xff:?} trusted {trusted}");
        }
        let mut h = HeaderMap::new();
        h.insert(XFF, HeaderValue::from_static("not-an-ip"));
        assert!(matches!(
            client_ip(ip("192.168.0.1"), &h, &cidrs("192.168.0.0/16")),
            Err(ForwardedForError)
        ));
        // Garbage from an untrusted peer is ignored, not an error.
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &[]).unwrap(), ip("10.0.0.5"));
    }
}
