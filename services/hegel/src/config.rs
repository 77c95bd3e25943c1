//! Configuration: plain values built by the binary (or a test), validated before anything binds.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tinkerbell_core::timeline::Timeline;

/// The longest session token lifetime EC2 (and firecracker's MMDS) accept: six hours.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(21_600);

/// The largest connection cap [`Config::validate`] accepts.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// Where and how hegel serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address of the standalone server (port 0 picks a free port). Not used by
    /// [`crate::router`], whose caller owns the listener.
    pub listen: SocketAddr,
    /// Peers whose `X-Forwarded-For` is believed. Empty: the header is always ignored.
    pub trusted_proxies: Vec<Cidr>,
    /// Serve `/tootles/instanceID/<id>/2009-04-04/...` (lookup by instance ID instead of by IP).
    pub instance_endpoint: bool,
    /// IMDSv2-only: every metadata GET needs a valid session token.
    pub require_tokens: bool,
    /// The longest lifetime a session token may ask for (1 s ..= 6 h).
    pub token_ttl_max: Duration,
    /// How many session tokens are kept at most. When the table is full, an address holding
    /// tokens replaces its own oldest one and an address holding none is refused (503) until
    /// tokens expire: nobody's valid token is evicted by another address (see
    /// [`crate::tokens`]).
    pub max_tokens: usize,
    /// How many live session tokens one address may hold; its next one replaces its oldest.
    pub max_tokens_per_address: usize,
    /// How long a client has to send a request's headers (from connecting, or from the end of
    /// its previous response on a kept-alive connection) before it is disconnected.
    pub header_read_timeout: Duration,
    /// How many connections are served at once. At the cap the listener accepts nothing more
    /// until a connection ends; new ones wait in the kernel's (bounded) listen backlog.
    pub max_connections: usize,
    /// How long in-flight requests get after cancellation.
    pub shutdown_grace: Duration,
    /// Where the first metadata read of each burst is recorded (`tinkerbell timeline`).
    pub timeline: Option<Arc<Timeline>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 50061)),
            trusted_proxies: Vec::new(),
            instance_endpoint: false,
            require_tokens: false,
            token_ttl_max: MAX_TOKEN_TTL,
            max_tokens: 65_536,
            max_tokens_per_address: 16,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(5),
            timeline: None,
        }
    }
}

/// A configuration value that cannot work. Every problem is reported at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl Config {
    /// Check every value; all problems are reported together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.token_ttl_max < Duration::from_secs(1) || self.token_ttl_max > MAX_TOKEN_TTL {
            problems.push(format!(
                "token TTL maximum must be between 1 and {} seconds, not {}",
                MAX_TOKEN_TTL.as_secs(),
                self.token_ttl_max.as_secs()
            ));
        }
        if self.max_tokens == 0 {
            problems.push("the token cap must be at least 1".to_string());
        }
        if self.max_tokens_per_address == 0 {
            problems.push("the per-address token cap must be at least 1".to_string());
        }
        if self.header_read_timeout.is_zero() {
            problems.push("the header read timeout must be more than zero".to_string());
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            problems.push(format!(
                "the connection cap must be between 1 and {MAX_CONNECTIONS}, not {}",
                self.max_connections
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn validate_reports_all_problems() {
        let c = Config {
            token_ttl_max: Duration::from_secs(21_601),
            max_tokens: 0,
            max_tokens_per_address: 0,
            header_read_timeout: Duration::ZERO,
            max_connections: 0,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().problems.len(), 5);
        let c = Config {
            max_connections: MAX_CONNECTIONS + 1,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().problems.len(), 1);
        assert!(Config::default().validate().is_ok());
    }
}
