//! HTTP request counters by route and status (prometheus-client). Routes are a fixed enum,
//! never the raw path, so probing random URLs cannot grow the label set.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The counted routes.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Route {
    /// `/ipxe/binary/...`
    Binary,
    /// `/ipxe/script/...`
    Script,
    /// `/hookos/...`
    Hookos,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    route: Route,
    status: u16,
}

/// The HTTP metrics. Clones share the counters.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    requests: Family<Labels, Counter>,
}

impl HttpMetrics {
    /// Register under `boots_http_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.sub_registry_with_prefix("boots_http").register(
            "requests",
            "HTTP requests answered, by route and status",
            self.requests.clone(),
        );
    }

    /// Count one answered request.
    pub fn record(&self, route: Route, status: u16) {
        self.requests.get_or_create(&Labels { route, status }).inc();
    }

    /// The count for a route and status (tests).
    pub fn get(&self, route: Route, status: u16) -> u64 {
        self.requests.get_or_create(&Labels { route, status }).get()
    }
}
