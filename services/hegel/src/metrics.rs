//! Request counters by route and status, read at scrape time ([`crate::http::Scrape`]).
//!
//! Route labels are the static route templates (`/meta-data/hostname`,
//! `/meta-data/public-keys/{n}/openssh-key`, …), never the raw path, so a caller probing random
//! paths cannot grow the label set. The set is fixed ([`ROUTES`]), so counting is one relaxed
//! atomic add on the hot path, no lock.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use tinkerbell_edge::metrics::prometheus_client::encoding::DescriptorEncoder;
use tinkerbell_edge::metrics::{counter_family2, gauge};

/// Every route label, sorted (the render order).
pub const ROUTES: &[&str] = &[
    "/",
    "/dynamic",
    "/dynamic/instance-identity",
    "/dynamic/instance-identity/document",
    "/healthz",
    "/latest/api/token",
    "/meta-data",
    "/meta-data/facility",
    "/meta-data/hostname",
    "/meta-data/instance-id",
    "/meta-data/iqn",
    "/meta-data/local-hostname",
    "/meta-data/local-ipv4",
    "/meta-data/operating-system",
    "/meta-data/operating-system/distro",
    "/meta-data/operating-system/image_tag",
    "/meta-data/operating-system/license_activation",
    "/meta-data/operating-system/license_activation/state",
    "/meta-data/operating-system/slug",
    "/meta-data/operating-system/version",
    "/meta-data/plan",
    "/meta-data/public-ipv4",
    "/meta-data/public-ipv6",
    "/meta-data/public-keys",
    "/meta-data/public-keys/{n}",
    "/meta-data/public-keys/{n}/openssh-key",
    "/meta-data/tags",
    "/metadata",
    "/user-data",
    "/vendor-data",
    "unmatched",
];

/// Status codes counted individually; anything else is counted as `other`.
const STATUSES: &[u16] = &[200, 400, 401, 403, 404, 405, 500, 503];
const BUCKETS: usize = STATUSES.len() + 1;

fn route_index(route: &str) -> usize {
    static INDEX: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    let index = INDEX.get_or_init(|| ROUTES.iter().enumerate().map(|(i, r)| (*r, i)).collect());
    // An unknown label (a bug) is counted as unmatched rather than lost.
    index.get(route).copied().unwrap_or(ROUTES.len() - 1)
}

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len())
}

/// The counters.
#[derive(Debug)]
pub struct Metrics {
    requests: Vec<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: (0..ROUTES.len() * BUCKETS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Metrics {
    /// Count one answered request.
    pub fn record(&self, route: &str, status: u16) {
        let i = route_index(route) * BUCKETS + status_index(status);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The count for one route and status (for tests).
    pub fn get(&self, route: &str, status: u16) -> u64 {
        let i = route_index(route) * BUCKETS + status_index(status);
        self.requests[i].load(Ordering::Relaxed)
    }

    /// The counters and `tokens_held`, for the registry (names as Prometheus has them:
    /// `hegel_http_requests_total`, `hegel_session_tokens`).
    pub fn encode(
        &self,
        mut e: DescriptorEncoder,
        tokens_held: usize,
    ) -> Result<(), std::fmt::Error> {
        let statuses: Vec<String> = STATUSES
            .iter()
            .map(ToString::to_string)
            .chain(["other".to_string()])
            .collect();
        let samples = ROUTES.iter().enumerate().flat_map(|(r, route)| {
            let statuses = &statuses;
            (0..BUCKETS).map(move |b| {
                let n = self.requests[r * BUCKETS + b].load(Ordering::Relaxed);
                ([*route, statuses[b].as_str()], n)
            })
        });
        counter_family2(
            &mut e,
            "hegel_http_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            samples,
        )?;
        gauge(
            &mut e,
            "hegel_session_tokens",
            "Session tokens currently held.",
            i64::try_from(tokens_held).unwrap_or(i64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_sorted_and_unique() {
        let mut sorted = ROUTES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ROUTES);
    }

    #[test]
    fn renders_counters() {
        #[derive(Debug)]
        struct C(Metrics);
        impl tinkerbell_edge::metrics::Collector for C {
            fn encode(&self, e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                self.0.encode(e, 1)
            }
        }
        let m = Metrics::default();
        m.record("/meta-data/hostname", 200);
        m.record("/meta-data/hostname", 200);
        m.record("/meta-data/hostname", 404);
        m.record("/meta-data/tags", 418);
        assert_eq!(m.get("/meta-data/hostname", 200), 2);
        let mut registry = tinkerbell_edge::metrics::Registry::default();
        registry.register_collector(Box::new(C(m)));
        let mut out = String::new();
        tinkerbell_edge::metrics::prometheus_client::encoding::text::encode(&mut out, &registry)
            .unwrap();
        assert_eq!(
            out,
            "# HELP hegel_http_requests HTTP requests answered, by route and status.\n\
             # TYPE hegel_http_requests counter\n\
             hegel_http_requests_total{route=\"/meta-data/hostname\",status=\"200\"} 2\n\
             hegel_http_requests_total{route=\"/meta-data/hostname\",status=\"404\"} 1\n\
             hegel_http_requests_total{route=\"/meta-data/tags\",status=\"other\"} 1\n\
             # HELP hegel_session_tokens Session tokens currently held.\n\
             # TYPE hegel_session_tokens gauge\n\
             hegel_session_tokens 1\n\
             # EOF\n"
        );
    }
}
