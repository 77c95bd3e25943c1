//! When each provisioning phase of a machine happened, as seen by the services of one appliance.
//!
//! Every service that takes part in provisioning a machine records the phases it sees into one
//! shared [`Timeline`]: rufio the BMC power-on, boots the DHCP answer, the TFTP download, the
//! iPXE script and the HookOS kernel and initramfs, the tink server the worker connecting and
//! each action, hegel the first metadata read. `tinkerbell timeline MACHINE` prints them in
//! order, which is how an operator sees where a slow or stuck provisioning spends its time.
//!
//! Why in memory and per process: the events are a diagnostic, cheap to record on every hot
//! path (one short mutex hold, no I/O), and `tinkerbell serve` runs every service in one process,
//! so one `Arc<Timeline>` sees them all. Retention is bounded: [`MAX_EVENTS_PER_MACHINE`] per
//! machine (oldest dropped first) and [`MAX_MACHINES`] machines (the machine with the oldest
//! newest event dropped first), so a flood of unknown clients cannot grow it.
//!
//! Events are keyed by the Hardware (namespace/name). Phases a BMC controller sees are keyed by
//! the bmc Machine ([`Subject::Bmc`]); readers merge them with the Hardware whose `bmcRef`
//! names that Machine ([`Timeline::events`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Events kept per machine.
pub const MAX_EVENTS_PER_MACHINE: usize = 512;
/// Machines kept.
pub const MAX_MACHINES: usize = 4096;

/// A provisioning phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// A BMC powered the machine on (rufio).
    PowerOn,
    /// A BMC powered the machine off (rufio).
    PowerOff,
    /// A BMC set the next boot device (rufio).
    BootDevice,
    /// DHCP answered a DISCOVER (boots).
    DhcpOffer,
    /// DHCP answered a REQUEST (boots).
    DhcpAck,
    /// A TFTP download finished (boots).
    Tftp,
    /// An iPXE binary was served over HTTP (boots).
    IpxeBinary,
    /// The iPXE script was served (boots).
    IpxeScript,
    /// The HookOS kernel was served (boots).
    Kernel,
    /// The HookOS initramfs was served (boots).
    Initramfs,
    /// The worker asked for its workflow for the first time in a boot (tink server).
    WorkerConnected,
    /// An action started (tink server).
    ActionStarted,
    /// An action finished: succeeded, failed or timed out (tink server).
    ActionFinished,
    /// The workflow reached a final state (tink server).
    WorkflowFinished,
    /// The machine was rebooted (the reboot action, or a BMC reset).
    Reboot,
    /// The machine read its metadata or user-data (hegel).
    MetadataRead,
}

impl Phase {
    /// The name printed and serialized (`power-on`, `dhcp-ack`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PowerOn => "power-on",
            Phase::PowerOff => "power-off",
            Phase::BootDevice => "boot-device",
            Phase::DhcpOffer => "dhcp-offer",
            Phase::DhcpAck => "dhcp-ack",
            Phase::Tftp => "tftp",
            Phase::IpxeBinary => "ipxe-binary",
            Phase::IpxeScript => "ipxe-script",
            Phase::Kernel => "kernel",
            Phase::Initramfs => "initramfs",
            Phase::WorkerConnected => "worker-connected",
            Phase::ActionStarted => "action-started",
            Phase::ActionFinished => "action-finished",
            Phase::WorkflowFinished => "workflow-finished",
            Phase::Reboot => "reboot",
            Phase::MetadataRead => "metadata-read",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose event it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Subject {
    /// A Hardware.
    Hardware {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A bmc Machine (events rufio sees).
    Bmc {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

impl Subject {
    /// A Hardware subject.
    pub fn hardware(namespace: &str, name: &str) -> Subject {
        Subject::Hardware {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The subject of a Hardware object (namespace `default` when unset).
    pub fn of_hardware(hw: &crate::model::Hardware) -> Subject {
        Subject::hardware(
            hw.metadata.namespace.as_deref().unwrap_or("default"),
            hw.metadata.name.as_deref().unwrap_or(""),
        )
    }

    /// A bmc Machine subject.
    pub fn bmc(namespace: &str, name: &str) -> Subject {
        Subject::Bmc {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Hardware { namespace, name } => write!(f, "{namespace}/{name}"),
            Subject::Bmc { namespace, name } => write!(f, "bmc:{namespace}/{name}"),
        }
    }
}

/// One recorded phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When (RFC 3339, UTC, nanoseconds).
    pub at: String,
    /// Unix time in nanoseconds, for ordering and durations.
    pub at_unix_nanos: u128,
    /// The phase.
    pub phase: Phase,
    /// Whose.
    pub subject: Subject,
    /// The service that saw it (`boots`, `tink-server`, `hegel`, `rufio`).
    pub source: String,
    /// What exactly (a file name, an action name and state, an address).
    pub detail: String,
}

/// The shared recorder. Cheap to call from any service; see the module docs.
#[derive(Debug, Default)]
pub struct Timeline {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keys shared with `by_recency`: a new machine costs one allocation, not a copy of its
    /// names.
    machines: HashMap<Arc<Subject>, Machine>,
    /// Every machine by the sequence number of its newest event, so the one to evict is the
    /// first entry: O(log n) per record even when every event is for a new machine (a DHCP
    /// flood over more Hardware than `MAX_MACHINES`), instead of a scan of the map.
    by_recency: BTreeMap<u64, Arc<Subject>>,
    next_seq: u64,
}

/// An event as kept: the subject is the map key and the RFC 3339 text is made when read,
/// so recording (on every DHCP reply) formats and clones nothing it need not.
#[derive(Debug)]
struct Stored {
    at_unix_nanos: u128,
    phase: Phase,
    source: &'static str,
    detail: String,
}

impl Stored {
    fn event(&self, subject: &Subject) -> Event {
        Event {
            at: jiff::Timestamp::from_nanosecond(self.at_unix_nanos as i128)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            at_unix_nanos: self.at_unix_nanos,
            phase: self.phase,
            subject: subject.clone(),
            source: self.source.to_string(),
            detail: self.detail.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Machine {
    events: VecDeque<Stored>,
    /// Key in `by_recency`.
    seq: u64,
}

impl Machine {
    fn push(&mut self, seq: u64, e: Stored) {
        self.seq = seq;
        if self.events.len() >= MAX_EVENTS_PER_MACHINE {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Record `phase` for `subject` now.
    pub fn record(
        &self,
        subject: Subject,
        phase: Phase,
        source: &'static str,
        detail: impl Into<String>,
    ) {
        self.record_at(
            SystemTime::now(),
            subject,
            phase,
            source,
            detail.into(),
            false,
        );
    }

    /// Record `phase` unless the subject's newest event already is this phase: for phases that
    /// come in bursts (metadata reads, worker polls), where the first of a burst is what
    /// matters.
    pub fn record_first(
        &self,
        subject: Subject,
        phase: Phase,
        source: &'static str,
        detail: impl Into<String>,
    ) {
        self.record_at(
            SystemTime::now(),
            subject,
            phase,
            source,
            detail.into(),
            true,
        );
    }

    fn record_at(
        &self,
        at: SystemTime,
        subject: Subject,
        phase: Phase,
        source: &'static str,
        detail: String,
        first_only: bool,
    ) {
        let nanos = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        let stored = Stored {
            at_unix_nanos: nanos,
            phase,
            source,
            detail,
        };
        let seq = inner.next_seq;
        // One hash lookup for a machine already kept (the common case).
        if let Some(m) = inner.machines.get_mut(&subject) {
            if first_only && m.events.back().is_some_and(|e| e.phase == phase) {
                return;
            }
            inner.next_seq += 1;
            if let Some(key) = inner.by_recency.remove(&m.seq) {
                inner.by_recency.insert(seq, key);
            }
            m.push(seq, stored);
            return;
        }
        if inner.machines.len() >= MAX_MACHINES
            && let Some((_, oldest)) = inner.by_recency.pop_first()
        {
            // Drop the machine whose newest event is the oldest.
            inner.machines.remove(&oldest);
        }
        inner.next_seq += 1;
        let key = Arc::new(subject);
        inner.by_recency.insert(seq, key.clone());
        inner.machines.entry(key).or_default().push(seq, stored);
    }

    /// The events of every subject given, merged oldest first.
    pub fn events(&self, subjects: &[Subject]) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Event> = subjects
            .iter()
            .filter_map(|s| Some((s, inner.machines.get(s)?)))
            .flat_map(|(s, m)| m.events.iter().map(move |e| e.event(s)))
            .collect();
        out.sort_by_key(|e| e.at_unix_nanos);
        out
    }

    /// Every subject with events, and how many.
    pub fn subjects(&self) -> Vec<(Subject, usize)> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<(Subject, usize)> = inner
            .machines
            .iter()
            .map(|(k, m)| (Subject::clone(k), m.events.len()))
            .collect();
        v.sort();
        v
    }
}

/// HTTP route prefix: `GET /tinkerbell/v1/timeline/{name}?namespace=NS` returns the events of
/// the Hardware `name` and of the bmc Machine its `bmcRef` names, oldest first, as a JSON array
/// of [`Event`]; `GET /tinkerbell/v1/timeline` lists the subjects with events.
pub const TIMELINE_PATH: &str = "/tinkerbell/v1/timeline";

/// The timeline's read routes for a listener the caller owns. With `token`, every request needs
/// `Authorization: Bearer <token>` (the events name machines, addresses and files).
pub fn router(
    timeline: std::sync::Arc<Timeline>,
    store: std::sync::Arc<dyn crate::store::Store>,
    token: Option<String>,
) -> axum::Router {
    use axum::Json;
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use std::sync::Arc;

    #[derive(Deserialize)]
    struct Q {
        namespace: Option<String>,
    }
    type St = Arc<(Arc<Timeline>, Arc<dyn crate::store::Store>, Option<String>)>;
    fn denied(token: &Option<String>, headers: &HeaderMap) -> Option<Response> {
        let want = token.as_ref()?;
        let got = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if crate::api::token::constant_time_eq(got.as_bytes(), want.as_bytes()) {
            None
        } else {
            Some(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(serde_json::json!({"error": "unauthorized"})),
                )
                    .into_response(),
            )
        }
    }
    async fn list(State(st): State<St>, headers: HeaderMap) -> Response {
        if let Some(r) = denied(&st.2, &headers) {
            return r;
        }
        let v: Vec<serde_json::Value> =
            st.0.subjects()
                .into_iter()
                .map(|(s, n)| serde_json::json!({"subject": s.to_string(), "events": n}))
                .collect();
        Json(v).into_response()
    }
    async fn events(
        State(st): State<St>,
        headers: HeaderMap,
        Path(name): Path<String>,
        Query(q): Query<Q>,
    ) -> Response {
        if let Some(r) = denied(&st.2, &headers) {
            return r;
        }
        let ns = q.namespace.unwrap_or_else(|| "default".to_string());
        let mut subjects = vec![Subject::hardware(&ns, &name)];
        // The Hardware's BMC, whose power changes rufio records under the bmc Machine.
        match st.1.get(crate::store::Kind::Hardware, &ns, &name).await {
            Ok(obj) => {
                if let Some(r) = obj
                    .as_hardware()
                    .and_then(|hw| hw.spec.bmc_ref.as_ref())
                    .and_then(|r| r.name.clone())
                {
                    subjects.push(Subject::bmc(&ns, &r));
                }
            }
            Err(crate::store::StoreError::NotFound(_)) => {
                return (
                    StatusCode::NOT_FOUND,
                    Json(serde_json::json!({"error": format!("no Hardware {ns}/{name}")})),
                )
                    .into_response();
            }
            Err(e) => {
                tracing::warn!(error = %e, "timeline: reading the Hardware failed");
            }
        }
        Json(st.0.events(&subjects)).into_response()
    }
    let st: St = Arc::new((timeline, store, token));
    axum::Router::new()
        .route(TIMELINE_PATH, get(list))
        .route(&format!("{TIMELINE_PATH}/{{name}}"), get(events))
        .with_state(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hw(n: &str) -> Subject {
        Subject::hardware("default", n)
    }

    #[test]
    fn merges_subjects_in_time_order() {
        let t = Timeline::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let bmc = Subject::bmc("default", "m1-bmc");
        t.record_at(
            t0 + Duration::from_millis(20),
            hw("m1"),
            Phase::DhcpOffer,
            "boots",
            "10.0.0.5".into(),
            false,
        );
        t.record_at(
            t0,
            bmc.clone(),
            Phase::PowerOn,
            "rufio",
            String::new(),
            false,
        );
        t.record_at(
            t0 + Duration::from_millis(5),
            hw("m2"),
            Phase::DhcpOffer,
            "boots",
            String::new(),
            false,
        );
        let e = t.events(&[hw("m1"), bmc]);
        let phases: Vec<Phase> = e.iter().map(|e| e.phase).collect();
        assert_eq!(phases, [Phase::PowerOn, Phase::DhcpOffer]);
        assert_eq!(e[1].detail, "10.0.0.5");
        assert!(e[0].at.starts_with("2023-11-14T22:13:20"), "{}", e[0].at);
    }

    #[test]
    fn record_first_skips_a_burst_but_not_a_later_one() {
        let t = Timeline::new();
        t.record_first(hw("m1"), Phase::MetadataRead, "hegel", "/meta-data");
        t.record_first(hw("m1"), Phase::MetadataRead, "hegel", "/user-data");
        t.record(hw("m1"), Phase::Reboot, "tink-server", "");
        t.record_first(hw("m1"), Phase::MetadataRead, "hegel", "/meta-data");
        let phases: Vec<Phase> = t.events(&[hw("m1")]).iter().map(|e| e.phase).collect();
        assert_eq!(
            phases,
            [Phase::MetadataRead, Phase::Reboot, Phase::MetadataRead]
        );
    }

    #[test]
    fn retention_is_bounded_per_machine_and_in_machines() {
        let t = Timeline::new();
        for i in 0..(MAX_EVENTS_PER_MACHINE + 10) {
            t.record(hw("m1"), Phase::DhcpOffer, "boots", i.to_string());
        }
        let e = t.events(&[hw("m1")]);
        assert_eq!(e.len(), MAX_EVENTS_PER_MACHINE);
        assert_eq!(e[0].detail, "10", "the oldest go first");
        for i in 0..(MAX_MACHINES + 5) {
            t.record(hw(&format!("x{i}")), Phase::DhcpOffer, "boots", "");
        }
        assert_eq!(t.subjects().len(), MAX_MACHINES);
        assert!(
            t.events(&[hw("m1")]).is_empty(),
            "the stalest machine went first"
        );
        assert!(t.events(&[hw("x4")]).is_empty());
        // A machine with a new event is no longer the stalest: x5 stays, x6 goes.
        t.record(hw("x5"), Phase::DhcpAck, "boots", "");
        t.record(hw("new"), Phase::DhcpOffer, "boots", "");
        assert_eq!(t.events(&[hw("x5")]).len(), 2);
        assert!(t.events(&[hw("x6")]).is_empty());
        assert_eq!(t.events(&[hw("new")]).len(), 1);
        assert_eq!(t.subjects().len(), MAX_MACHINES);
    }

    #[test]
    fn phases_serialize_as_their_names() {
        for p in [Phase::PowerOn, Phase::WorkerConnected, Phase::MetadataRead] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }
}
