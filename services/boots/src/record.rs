//! Recording boots' provisioning phases into the appliance's shared
//! [`Timeline`](tinkerbell_core::timeline::Timeline).
//!
//! Every phase is keyed by the Hardware the request belongs to. DHCP and the iPXE script
//! already hold that Hardware when they answer; TFTP and the HookOS downloads only know a MAC
//! (in the path) or the client's address, so [`Recorder`] looks the Hardware up by those. The
//! lookups answer from the backend's in-memory index, and a request without a Hardware records
//! nothing, so a flood of unknown clients never grows the timeline.

use std::fmt;
use std::sync::Arc;

use tinkerbell_core::store::HardwareLookup;
use tinkerbell_core::timeline::{Phase, Subject, Timeline};
use tinkerbell_model::Hardware;

/// The `source` boots' events carry.
pub const SOURCE: &str = "boots";

/// Records phases for the Hardware a request belongs to. Clones share the timeline.
#[derive(Clone)]
pub struct Recorder {
    timeline: Arc<Timeline>,
    lookup: Arc<dyn HardwareLookup>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

/// The timeline subject of a Hardware.
pub fn subject(hw: &Hardware) -> Subject {
    Subject::hardware(
        hw.metadata.namespace.as_deref().unwrap_or("default"),
        hw.metadata.name.as_deref().unwrap_or(""),
    )
}

impl Recorder {
    /// A recorder writing into `timeline`, finding Hardware through `lookup`.
    pub fn new(timeline: Arc<Timeline>, lookup: Arc<dyn HardwareLookup>) -> Recorder {
        Recorder { timeline, lookup }
    }

    /// The timeline written to.
    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.timeline
    }

    /// Record `phase` for `hw`.
    pub fn hardware(&self, hw: &Hardware, phase: Phase, detail: impl Into<String>) {
        let (subject, detail) = (subject(hw), detail.into());
        tracing::debug!(%subject, %phase, %detail, "timeline");
        self.timeline.record(subject, phase, SOURCE, detail);
    }

    /// Record `phase` for `hw` unless its newest event already is this phase (HTTP range
    /// requests come in bursts; the first of a burst is what matters).
    pub fn hardware_first(&self, hw: &Hardware, phase: Phase, detail: impl Into<String>) {
        let (subject, detail) = (subject(hw), detail.into());
        tracing::debug!(%subject, %phase, %detail, "timeline");
        self.timeline.record_first(subject, phase, SOURCE, detail);
    }

    /// The Hardware holding `mac` if given and known, else the one holding `ip`.
    pub async fn find(&self, mac: Option<&str>, ip: Option<&str>) -> Option<Arc<Hardware>> {
        if let Some(mac) = mac
            && let Ok(Some(hw)) = self.lookup.hardware_by_mac(mac).await
        {
            return Some(hw);
        }
        match ip {
            Some(ip) => self.lookup.hardware_by_ip(ip).await.ok().flatten(),
            None => None,
        }
    }

    /// Record `phase` for the Hardware found by [`Recorder::find`]; nothing when none is.
    pub async fn by_mac_or_ip(
        &self,
        mac: Option<&str>,
        ip: Option<&str>,
        phase: Phase,
        detail: impl Into<String>,
        first_only: bool,
    ) {
        if let Some(hw) = self.find(mac, ip).await {
            if first_only {
                self.hardware_first(&hw, phase, detail);
            } else {
                self.hardware(&hw, phase, detail);
            }
        }
    }
}
