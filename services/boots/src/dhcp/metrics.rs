//! DHCP counters, one relaxed atomic add per event, read at scrape time by a
//! [`Collector`](tinkerbell_edge::metrics::Collector).
//!
//! Labels come from fixed sets (message types, [`Reason`]s, drop causes), so no packet content
//! can grow the label space.

use std::sync::atomic::{AtomicU64, Ordering};

use dhcproto::v4::MessageType;

use super::handler::Reason;

/// Why a packet was dropped before or after the handler (as opposed to a deliberate silence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not a decodable DHCPv4 packet.
    Malformed,
    /// Too many lookups in flight.
    Busy,
    /// The backend failed.
    LookupError,
    /// The backend did not answer in time.
    LookupTimeout,
    /// The reply could not be encoded or sent.
    SendError,
}

impl Drop {
    const ALL: [Drop; 5] = [
        Drop::Malformed,
        Drop::Busy,
        Drop::LookupError,
        Drop::LookupTimeout,
        Drop::SendError,
    ];

    #[cfg(feature = "server")]
    fn as_str(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::Busy => "busy",
            Drop::LookupError => "lookup_error",
            Drop::LookupTimeout => "lookup_timeout",
            Drop::SendError => "send_error",
        }
    }
}

const TYPES: [&str; 9] = [
    "discover", "offer", "request", "decline", "ack", "nak", "release", "inform", "other",
];

fn type_index(t: Option<MessageType>) -> usize {
    match t {
        Some(MessageType::Discover) => 0,
        Some(MessageType::Offer) => 1,
        Some(MessageType::Request) => 2,
        Some(MessageType::Decline) => 3,
        Some(MessageType::Ack) => 4,
        Some(MessageType::Nak) => 5,
        Some(MessageType::Release) => 6,
        Some(MessageType::Inform) => 7,
        _ => 8,
    }
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// The DHCP server's counters.
#[derive(Debug)]
pub struct DhcpMetrics {
    received: Vec<AtomicU64>,
    sent: Vec<AtomicU64>,
    silent: Vec<AtomicU64>,
    dropped: Vec<AtomicU64>,
    in_flight: AtomicU64,
}

impl Default for DhcpMetrics {
    fn default() -> Self {
        DhcpMetrics {
            received: counters(TYPES.len()),
            sent: counters(TYPES.len()),
            silent: counters(Reason::ALL.len()),
            dropped: counters(Drop::ALL.len()),
            in_flight: AtomicU64::new(0),
        }
    }
}

impl DhcpMetrics {
    /// A decoded request of type `t`.
    pub fn received(&self, t: Option<MessageType>) {
        self.received[type_index(t)].fetch_add(1, Ordering::Relaxed);
    }
    /// A reply of type `t` was sent.
    pub fn sent(&self, t: Option<MessageType>) {
        self.sent[type_index(t)].fetch_add(1, Ordering::Relaxed);
    }
    /// A request was deliberately not answered.
    pub fn silent(&self, r: Reason) {
        let i = Reason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.silent[i].fetch_add(1, Ordering::Relaxed);
    }
    /// A packet was dropped.
    pub fn dropped(&self, d: Drop) {
        let i = Drop::ALL.iter().position(|x| *x == d).unwrap_or(0);
        self.dropped[i].fetch_add(1, Ordering::Relaxed);
    }
    /// Lookups running in spawned tasks (gauge).
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n as u64, Ordering::Relaxed);
    }

    /// Count of dropped packets for `d` (tests, health).
    pub fn dropped_count(&self, d: Drop) -> u64 {
        let i = Drop::ALL.iter().position(|x| *x == d).unwrap_or(0);
        self.dropped[i].load(Ordering::Relaxed)
    }
    /// Count of silences for `r`.
    pub fn silent_count(&self, r: Reason) -> u64 {
        let i = Reason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.silent[i].load(Ordering::Relaxed)
    }
    /// Count of replies of type `t`.
    pub fn sent_count(&self, t: MessageType) -> u64 {
        self.sent[type_index(Some(t))].load(Ordering::Relaxed)
    }
}

#[cfg(feature = "server")]
impl tinkerbell_edge::metrics::Collector for DhcpMetrics {
    fn encode(
        &self,
        mut e: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use tinkerbell_edge::metrics::{counter_family, gauge};
        let load =
            |v: &[AtomicU64]| -> Vec<u64> { v.iter().map(|c| c.load(Ordering::Relaxed)).collect() };
        let (received, sent) = (load(&self.received), load(&self.sent));
        counter_family(
            &mut e,
            "boots_dhcp_received",
            "DHCP requests received, by message type.",
            "type",
            TYPES.iter().copied().zip(received),
        )?;
        counter_family(
            &mut e,
            "boots_dhcp_sent",
            "DHCP replies sent, by message type.",
            "type",
            TYPES.iter().copied().zip(sent),
        )?;
        counter_family(
            &mut e,
            "boots_dhcp_not_answered",
            "DHCP requests deliberately not answered, by reason.",
            "reason",
            Reason::ALL
                .iter()
                .map(|r| r.as_str())
                .zip(load(&self.silent)),
        )?;
        counter_family(
            &mut e,
            "boots_dhcp_dropped",
            "DHCP packets dropped (malformed, overload, backend or send errors).",
            "reason",
            Drop::ALL
                .iter()
                .map(|d| d.as_str())
                .zip(load(&self.dropped)),
        )?;
        gauge(
            &mut e,
            "boots_dhcp_lookups_in_flight",
            "Hardware lookups waiting in spawned tasks.",
            i64::try_from(self.in_flight.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "server")]
    #[test]
    fn renders_only_nonzero_labels() {
        let m = std::sync::Arc::new(DhcpMetrics::default());
        m.received(Some(MessageType::Discover));
        m.received(Some(MessageType::Discover));
        m.sent(Some(MessageType::Offer));
        m.silent(Reason::UnknownMac);
        m.dropped(Drop::Malformed);
        let mut registry = tinkerbell_edge::metrics::Registry::default();
        registry.register_collector(Box::new(m.clone()));
        let mut r = String::new();
        prometheus_client::encoding::text::encode(&mut r, &registry).unwrap();
        assert!(
            r.contains("boots_dhcp_received_total{type=\"discover\"} 2\n"),
            "{r}"
        );
        assert!(
            r.contains("boots_dhcp_sent_total{type=\"offer\"} 1\n"),
            "{r}"
        );
        assert!(
            r.contains("boots_dhcp_not_answered_total{reason=\"unknown_mac\"} 1\n"),
            "{r}"
        );
        assert!(
            r.contains("boots_dhcp_dropped_total{reason=\"malformed\"} 1\n"),
            "{r}"
        );
        assert!(!r.contains("type=\"ack\""), "{r}");
        assert_eq!(m.dropped_count(Drop::Malformed), 1);
    }
}
