//! TFTP counters (prometheus-client). Label values are fixed sets, so a client cannot grow
//! the label space.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How a request ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    /// Every block acknowledged.
    Completed,
    /// No such file.
    NotFound,
    /// Refused: write request, path outside the root, mail mode.
    Refused,
    /// The client stopped answering (retries exhausted).
    TimedOut,
    /// The client sent an ERROR (e.g. refused our options, or cancelled).
    ClientAborted,
    /// A local I/O error.
    Failed,
    /// Stopped by shutdown.
    Cancelled,
}

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum DropReason {
    /// Not decodable as TFTP.
    Malformed,
    /// A valid packet that is not a request, sent to the request port.
    Unexpected,
    /// All transfer slots were busy.
    Busy,
    /// A read request from a client that already had its maximum of transfers in progress.
    ClientBusy,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: DropReason,
}

/// The TFTP metrics. Clones share the counters.
#[derive(Debug, Clone, Default)]
pub struct TftpMetrics {
    transfers: Family<OutcomeLabels, Counter>,
    dropped: Family<DropLabels, Counter>,
    active: Gauge,
    bytes: Counter,
    retransmits: Counter,
    cache_bytes: Gauge,
    file_loads: Counter,
}

impl TftpMetrics {
    /// Register under `boots_tftp_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("boots_tftp");
        r.register(
            "transfers",
            "TFTP requests by outcome",
            self.transfers.clone(),
        );
        r.register(
            "dropped_packets",
            "Datagrams dropped without an answer, by reason",
            self.dropped.clone(),
        );
        r.register(
            "active_transfers",
            "Transfers in progress",
            self.active.clone(),
        );
        r.register(
            "sent_bytes",
            "File bytes sent in DATA packets",
            self.bytes.clone(),
        );
        r.register(
            "retransmits",
            "Packets sent again after a timeout",
            self.retransmits.clone(),
        );
        r.register(
            "file_cache_bytes",
            "Bytes of asset files held in memory, shared by the transfers serving them",
            self.cache_bytes.clone(),
        );
        r.register(
            "file_loads",
            "Asset files read whole into memory (a transfer of a file already held shares it)",
            self.file_loads.clone(),
        );
    }

    pub(crate) fn outcome(&self, outcome: Outcome) {
        self.transfers
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        self.dropped.get_or_create(&DropLabels { reason }).inc();
    }

    pub(crate) fn active(&self) -> &Gauge {
        &self.active
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.bytes.inc_by(bytes as u64);
    }

    pub(crate) fn retransmit(&self, n: u64) {
        self.retransmits.inc_by(n);
    }

    pub(crate) fn cache_bytes(&self) -> &Gauge {
        &self.cache_bytes
    }

    pub(crate) fn file_loaded(&self) {
        self.file_loads.inc();
    }

    /// Transfers in progress (tests).
    pub fn active_transfers(&self) -> i64 {
        self.active.get()
    }

    /// Bytes of asset files held in memory now (tests).
    pub fn file_cache_bytes(&self) -> i64 {
        self.cache_bytes.get()
    }

    /// Asset files read whole into memory so far (tests).
    pub fn file_loads(&self) -> u64 {
        self.file_loads.get()
    }

    /// The count for `outcome` (tests).
    pub fn outcomes(&self, outcome: Outcome) -> u64 {
        self.transfers
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }

    /// The count for `reason` (tests).
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.dropped.get_or_create(&DropLabels { reason }).get()
    }
}
