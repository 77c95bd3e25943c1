//! Configuration: plain values built by the binary (or a test), validated before anything binds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tinkerbell_core::timeline::Timeline;
use tinkerbell_edge::{Cidr, HttpLimits};

/// The longest session token lifetime EC2 (and firecracker's MMDS) accept: six hours.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(21_600);

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
    /// The listener's limits: how long a client has to send a request's headers (from
    /// connecting, or from the end of its previous response on a kept-alive connection), and
    /// how many connections are served at once.
    pub limits: HttpLimits,
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
            limits: HttpLimits::default(),
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
        problems.extend(self.limits.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_reports_all_problems() {
        let c = Config {
            token_ttl_max: Duration::from_secs(21_601),
            max_tokens: 0,
            max_tokens_per_address: 0,
            limits: HttpLimits {
                header_read_timeout: Duration::ZERO,
                max_connections: 0,
            },
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().problems.len(), 5);
        let c = Config {
            limits: HttpLimits {
                max_connections: tinkerbell_edge::server::MAX_CONNECTIONS + 1,
                ..HttpLimits::default()
            },
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().problems.len(), 1);
        assert!(Config::default().validate().is_ok());
    }
}
