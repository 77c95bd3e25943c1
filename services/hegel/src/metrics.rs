//! Request counters by route and status, in the Prometheus text exposition format.
//!
//! Route labels are the static route templates (`/meta-data/hostname`,
//! `/meta-data/public-keys/{n}/openssh-key`, …), never the raw path, so a caller probing random
//! paths cannot grow the label set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl Metrics {
    /// Count one answered request.
    pub fn record(&self, route: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route, status)).or_default() += 1;
    }

    /// The count for one route and status (for tests).
    pub fn get(&self, route: &str, status: u16) -> u64 {
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .find(|((r, s), _)| *r == route && *s == status)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// Prometheus text format (version 0.0.4).
    pub fn render(&self, tokens_held: usize) -> String {
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str(
            "# HELP hegel_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE hegel_http_requests_total counter\n");
        for ((route, status), n) in m.iter() {
            let _ = writeln!(
                out,
                "hegel_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP hegel_session_tokens Session tokens currently held.\n");
        out.push_str("# TYPE hegel_session_tokens gauge\n");
        let _ = writeln!(out, "hegel_session_tokens {tokens_held}");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.record("/meta-data/hostname", 200);
        m.record("/meta-data/hostname", 200);
        m.record("/meta-data/hostname", 404);
        assert_eq!(m.get("/meta-data/hostname", 200), 2);
        assert_eq!(
            m.render(1),
            "# HELP hegel_http_requests_total HTTP requests answered, by route and status.\n\
             # TYPE hegel_http_requests_total counter\n\
             hegel_http_requests_total{route=\"/meta-data/hostname\",status=\"200\"} 2\n\
             hegel_http_requests_total{route=\"/meta-data/hostname\",status=\"404\"} 1\n\
             # HELP hegel_session_tokens Session tokens currently held.\n\
             # TYPE hegel_session_tokens gauge\n\
             hegel_session_tokens 1\n"
        );
    }
}
