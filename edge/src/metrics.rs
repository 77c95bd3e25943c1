//! Metrics: one prometheus-client [`Registry`] a process's services register into, served as
//! one exposition (OpenMetrics text).
//!
//! Counters on hot paths (a DHCP packet, a metadata read) stay relaxed atomics over fixed
//! label sets; their owners implement [`Collector`] with the helpers here, which read the
//! atomics at scrape time. Names follow Prometheus conventions: a counter is declared without
//! its `_total` suffix, which the exposition adds (`boots_dhcp_sent` → `boots_dhcp_sent_total`).

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

pub use prometheus_client;
pub use prometheus_client::collector::Collector;
pub use prometheus_client::registry::Registry;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry's exposition, as a response.
pub fn respond(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A `GET` route serving `registry`.
pub fn route(registry: Arc<Registry>) -> axum::routing::MethodRouter {
    axum::routing::get(move || {
        let registry = registry.clone();
        async move { respond(&registry) }
    })
}

/// A counter family over one label: one sample per `(label value, count)`; zero counts are
/// left out (a label value appears once something happened).
pub fn counter_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        if n > 0 {
            let labels = [(label, value)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// A counter family over label pairs: one sample per `(labels, count)`; zero counts left out.
pub fn counter_family2<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: [&'static str; 2],
    values: impl IntoIterator<Item = ([&'a str; 2], u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for ([a, b], n) in values {
        if n > 0 {
            let set = [(labels[0], a), (labels[1], b)];
            ConstCounter::new(n).encode(family.encode_family(&set)?)?;
        }
    }
    Ok(())
}

/// One counter without labels.
pub fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    n: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(n).encode(metric)
}

/// One gauge without labels.
pub fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(metric)
}

/// A gauge family over one label: every `(label value, value)`, zeros included.
pub fn gauge_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, v) in values {
        let labels = [(label, value)];
        ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct Hits([AtomicU64; 2]);

    impl Collector for Hits {
        fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let n = |i: usize| self.0[i].load(Ordering::Relaxed);
            counter_family(
                &mut e,
                "x_hits",
                "Hits.",
                "kind",
                [("a", n(0)), ("b", n(1))],
            )?;
            counter_family2(
                &mut e,
                "x_pairs",
                "Pairs.",
                ["p", "q"],
                [(["1", "2"], n(0))],
            )?;
            counter(&mut e, "x_all", "All.", n(0) + n(1))?;
            gauge(&mut e, "x_now", "Now.", -3)?;
            gauge_family(&mut e, "x_held", "Held.", "by", [("k", 0), ("u", 5)])
        }
    }

    #[test]
    fn collectors_render_with_conventional_names() {
        let hits = Arc::new(Hits::default());
        hits.0[0].fetch_add(2, Ordering::Relaxed);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(hits.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        for want in [
            "# TYPE x_hits counter\n",
            "x_hits_total{kind=\"a\"} 2\n",
            "x_pairs_total{p=\"1\",q=\"2\"} 2\n",
            "x_all_total 2\n",
            "x_now -3\n",
            "x_held{by=\"k\"} 0\n",
            "x_held{by=\"u\"} 5\n",
        ] {
            assert!(out.contains(want), "{want:?} in {out}");
        }
        // Zero counts are left out; the exposition ends once.
        assert!(!out.contains("kind=\"b\""), "{out}");
        assert_eq!(out.matches("# EOF").count(), 1);
    }
}
