//! `tinkerbell move`: copy the provisioning state from one store to another — embedded data
//! directory, running appliance, or Kubernetes — the way EKS Anywhere's `clusterctl move` carries
//! Hardware, bmc Machines and their Secrets from the bootstrap cluster to the workload cluster,
//! but between any two of our backends and with the guarantees `clusterctl` does not give.
//!
//! What moves: every Hardware and bmc Machine, the Secrets the Machines reference plus any
//! Secret labelled `clusterctl.cluster.x-k8s.io/move=true`, and on request Templates and
//! Workflows. bmc Jobs and Tasks never move (upstream's CRDs do not carry the move labels
//! either). Objects keep labels (`v1alpha1.tinkerbell.org/ownerName`...), annotations
//! (`v1alpha1.tinkerbell.org/provisioned`), spec (userData, allowPXE) and status; only
//! server-owned metadata (resourceVersion, managedFields) is dropped.
//!
//! The steps, each safe to repeat, so an interrupted move converges when run again:
//! 1. **Copy.** Read the source, write everything to the target in one `apply_all` batch (one
//!    transaction on the embedded store and the store API). Hardware arrives carrying
//!    [`DHCP_HANDOFF_ANNOTATION`]`=incoming`, so the target's boots does not answer it yet.
//! 2. **Verify.** Read every object back from the target and compare a content hash
//!    (canonical JSON without server-owned fields and without the handoff annotation) with the
//!    source's. A mismatch stops the move before the source is touched. A running target's own
//!    controllers may write an object's status between the copy and the read-back (rufio puts
//!    the BMC's power state and conditions on a new bmc Machine within milliseconds): when the
//!    object read back is a newer version than the one the copy wrote, the copy as written must
//!    hash the same and the newer version may differ from it in `status` only; anything else
//!    (spec, labels, annotations) is still a mismatch.
//! 3. **Hand over DHCP.** Mark the source's Hardware `moved-out` (one batch, conditional on the
//!    version read just before; one changed on the source since the copy stops the move
//!    unmarked; its boots stops answering them), then clear `incoming` on the target (one
//!    conditional batch; its boots starts). The
//!    window in which no server answers is the time between those two commits; the report gives
//!    it. A re-run after the source was marked copies Hardware without `incoming`, since the
//!    source is already silent for them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use tinkerbell_core::model::{DHCP_HANDOFF_ANNOTATION, HANDOFF_INCOMING, HANDOFF_MOVED_OUT};
use tinkerbell_core::store::{Applied, Kind, Object, ObjectKey, Store, StoreError};

/// The label upstream puts on Secrets that `clusterctl move` carries.
pub const MOVE_LABEL: &str = "clusterctl.cluster.x-k8s.io/move";

/// What to move.
#[derive(Debug, Clone, Default)]
pub struct MoveOptions {
    /// Only this namespace (`None`: every namespace).
    pub namespace: Option<String>,
    /// Also move Templates and Workflows.
    pub include_workflows: bool,
    /// Report what would change without writing anything.
    pub dry_run: bool,
}

/// Per kind: how many objects the source had and what happened to them on the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCount {
    /// Objects read from the source.
    pub source: usize,
    /// Created on the target.
    pub created: usize,
    /// Changed on the target.
    pub configured: usize,
    /// Already identical on the target.
    pub unchanged: usize,
}

/// What a move did.
#[derive(Debug, Clone, Default)]
pub struct MoveReport {
    /// Per kind.
    pub counts: BTreeMap<Kind, KindCount>,
    /// Hash over every moved object's content hash, on the source.
    pub source_digest: String,
    /// The same over the target's copies (equal to `source_digest` after a move).
    pub target_digest: String,
    /// Secrets a Machine references that the source does not have.
    pub missing_secrets: Vec<String>,
    /// Hardware whose DHCP was handed over in this run.
    pub handed_over: usize,
    /// Upper bound of the time in which neither side answered DHCP for the moved machines
    /// (from the start of the source's commit to the end of the target's).
    pub no_server_window: Option<Duration>,
    /// Objects whose status the target changed after the copy was written (its controllers).
    pub status_changed_on_target: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl fmt::Display for MoveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would move" } else { "moved" };
        for (kind, c) in &self.counts {
            writeln!(
                f,
                "{verb} {kind}: {} ({} created, {} configured, {} unchanged)",
                c.source, c.created, c.configured, c.unchanged
            )?;
        }
        for k in &self.status_changed_on_target {
            writeln!(
                f,
                "note: {k}: the target's controllers have updated its status since the copy"
            )?;
        }
        for s in &self.missing_secrets {
            writeln!(
                f,
                "warning: Secret {s} is referenced by a Machine but missing in the source"
            )?;
        }
        if !self.dry_run {
            writeln!(
                f,
                "content digest: source {} = target {}",
                short(&self.source_digest),
                short(&self.target_digest)
            )?;
            match self.no_server_window {
                Some(w) => writeln!(
                    f,
                    "DHCP handed over for {} Hardware; no server answered them for at most {:.1} ms",
                    self.handed_over,
                    w.as_secs_f64() * 1000.0
                )?,
                None => writeln!(f, "DHCP: every Hardware was already handed over")?,
            }
        }
        Ok(())
    }
}

fn short(d: &str) -> &str {
    &d[..d.len().min(16)]
}

/// Which side of the move failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Where objects come from.
    Source,
    /// Where they go.
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// Why a move stopped. Nothing on the source is changed before verification passed.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// Reading or writing one side failed.
    #[error("{side} store: {what}")]
    Store {
        /// Which side.
        side: Side,
        /// What was being done.
        what: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The target's copies differ from the source.
    #[error("verification failed; the source was not changed: {}", .0.join("; "))]
    Verify(Vec<String>),
    /// Hardware changed on the source while moving: not handed over (the source still answers
    /// it, the target holds its copy); run the move again to carry the new version.
    #[error("changed on the source during the move, not handed over (run the move again): {}", .0.join("; "))]
    Changed(Vec<String>),
}

fn store_err(side: Side, what: impl Into<String>) -> impl FnOnce(StoreError) -> MoveError {
    let what = what.into();
    move |source| MoveError::Store { side, what, source }
}

/// Move from `src` to `dst`; `progress` is told each step.
pub async fn run(
    src: &dyn Store,
    dst: &dyn Store,
    opts: &MoveOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<MoveReport, MoveError> {
    let mut report = MoveReport {
        dry_run: opts.dry_run,
        ..MoveReport::default()
    };
    let objects = collect(src, opts, &mut report).await?;
    progress(&format!("read {} objects from the source", objects.len()));

    // Step 1: copy.
    let copies: Vec<Object> = objects.iter().map(portable_copy).collect();
    if opts.dry_run {
        for copy in &copies {
            let applied = match dst.get(copy.kind(), copy.namespace(), copy.name()).await {
                Ok(existing) if digest(&existing) == digest(copy) => Applied::Unchanged,
                Ok(_) => Applied::Configured,
                Err(StoreError::NotFound { .. }) => Applied::Created,
                Err(e) => {
                    return Err(store_err(Side::Target, format!("reading {}", copy.key()))(
                        e,
                    ));
                }
            };
            count(&mut report, copy.kind(), applied);
        }
        return Ok(report);
    }
    let applied = dst
        .apply_all(copies)
        .await
        .map_err(store_err(Side::Target, "writing the copies"))?;
    for (o, a) in &applied {
        count(&mut report, o.kind(), *a);
    }
    progress(&format!("wrote {} objects to the target", applied.len()));
    // The copies as the target stored them, by key.
    let written: BTreeMap<ObjectKey, Object> =
        applied.into_iter().map(|(o, _)| (o.key(), o)).collect();

    // Step 2: verify.
    let mut mismatches = Vec::new();
    let mut source_lines = Vec::new();
    let mut target_lines = Vec::new();
    for o in &objects {
        let want = digest(o);
        source_lines.push(format!("{} {want}", o.key()));
        match dst.get(o.kind(), o.namespace(), o.name()).await {
            Ok(got) => {
                let mut got_digest = digest(&got);
                if got_digest != want
                    && let Some(w) = written.get(&o.key())
                    && w.resource_version().is_some()
                    && w.resource_version() != got.resource_version()
                    && digest(w) == want
                    && digest(&without_status(&got)) == digest(&without_status(o))
                {
                    // Written right; since then the target's controllers updated its status.
                    report.status_changed_on_target.push(o.key().to_string());
                    got_digest = digest(w);
                }
                if got_digest != want {
                    mismatches.push(format!("{} differs on the target", o.key()));
                }
                target_lines.push(format!("{} {got_digest}", o.key()));
            }
            Err(StoreError::NotFound { .. }) => {
                mismatches.push(format!("{} is missing on the target", o.key()));
            }
            Err(e) => return Err(store_err(Side::Target, format!("reading back {}", o.key()))(e)),
        }
    }
    if !mismatches.is_empty() {
        return Err(MoveError::Verify(mismatches));
    }
    report.source_digest = hash_lines(&source_lines);
    report.target_digest = hash_lines(&target_lines);
    progress(&format!(
        "verified {} objects (digest {})",
        objects.len(),
        short(&report.source_digest)
    ));

    // Step 3: hand DHCP over, source first. Both writes are conditional on the version just
    // read: a change made meanwhile (an operator's edit on the source, the target's
    // controllers writing status) is never overwritten; the write is re-read and retried.
    let started = Instant::now();
    let marked = mark_moved_out(src, &objects).await?;
    release(dst, &objects).await?;
    if marked > 0 {
        report.handed_over = marked;
        report.no_server_window = Some(started.elapsed());
    }
    progress("DHCP handed over");
    Ok(report)
}

/// How often a conditional handoff write is retried after a conflict.
const HANDOFF_ATTEMPTS: usize = 5;

/// Marks the source's copies of the moved Hardware `moved-out`, each on the version read just
/// before (one batch, conditional). A Hardware changed on the source since the copy is not
/// marked: the move stops with [`MoveError::Changed`], the source keeps answering it, and a
/// re-run copies the new version.
async fn mark_moved_out(src: &dyn Store, objects: &[Object]) -> Result<usize, MoveError> {
    for attempt in 1..=HANDOFF_ATTEMPTS {
        let mut batch = Vec::new();
        let mut changed = Vec::new();
        for o in objects.iter().filter(|o| o.kind() == Kind::Hardware) {
            let current = match src.get(Kind::Hardware, o.namespace(), o.name()).await {
                Ok(c) => c,
                Err(StoreError::NotFound(_)) => {
                    changed.push(format!("{} was deleted on the source", o.key()));
                    continue;
                }
                Err(e) => {
                    return Err(store_err(Side::Source, format!("reading {}", o.key()))(e));
                }
            };
            if handoff(&current).as_deref() == Some(HANDOFF_MOVED_OUT) {
                continue;
            }
            if digest(&current) != digest(o) {
                changed.push(format!("{} changed on the source", o.key()));
                continue;
            }
            batch.push(with_handoff(&current, Some(HANDOFF_MOVED_OUT)));
        }
        if !changed.is_empty() {
            return Err(MoveError::Changed(changed));
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        match src.apply_all(batch).await {
            Ok(_) => return Ok(n),
            Err(StoreError::Conflict { .. }) if attempt < HANDOFF_ATTEMPTS => {}
            Err(e) => return Err(store_err(Side::Source, "marking Hardware moved-out")(e)),
        }
    }
    unreachable!("the last attempt returns")
}

/// Clears the hold on the target's copies, each on the version read just before (one batch,
/// conditional; a conflict with the target's own controllers is re-read and retried).
async fn release(dst: &dyn Store, objects: &[Object]) -> Result<(), MoveError> {
    for attempt in 1..=HANDOFF_ATTEMPTS {
        let mut batch = Vec::new();
        for o in objects.iter().filter(|o| o.kind() == Kind::Hardware) {
            let current = dst
                .get(Kind::Hardware, o.namespace(), o.name())
                .await
                .map_err(store_err(Side::Target, format!("reading {}", o.key())))?;
            if handoff(&current).is_some() {
                batch.push(with_handoff(&current, None));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        match dst.apply_all(batch).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) if attempt < HANDOFF_ATTEMPTS => {}
            Err(e) => {
                return Err(store_err(
                    Side::Target,
                    "releasing DHCP for the moved Hardware",
                )(e));
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// Read everything that moves, Secrets first (Machines reference them), then Machines,
/// Hardware, Templates and Workflows.
async fn collect(
    src: &dyn Store,
    opts: &MoveOptions,
    report: &mut MoveReport,
) -> Result<Vec<Object>, MoveError> {
    let ns = opts.namespace.as_deref();
    let list = |kind: Kind| async move {
        src.list(kind, ns)
            .await
            .map(|l| l.items)
            .map_err(store_err(Side::Source, format!("listing {kind}")))
    };
    let machines = list(Kind::Machine).await?;
    let mut wanted_secrets = BTreeSet::new();
    for m in &machines {
        if let Object::Machine(m) = m
            && let Some(r) = m
                .spec
                .connection
                .as_ref()
                .and_then(|c| c.auth_secret_ref.as_ref())
            && let Some(name) = r.name.as_deref().filter(|n| !n.is_empty())
        {
            let namespace = r
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| m.metadata.namespace.clone())
                .unwrap_or_default();
            wanted_secrets.insert((namespace, name.to_string()));
        }
    }
    let mut out = Vec::new();
    let mut found = BTreeSet::new();
    for s in list(Kind::Secret).await? {
        let labelled = s
            .meta()
            .labels
            .as_ref()
            .and_then(|l| l.get(MOVE_LABEL))
            .is_some_and(|v| v == "true");
        let key = (s.namespace().to_string(), s.name().to_string());
        if labelled || wanted_secrets.contains(&key) {
            found.insert(key);
            out.push(s);
        }
    }
    // A referenced Secret in a namespace outside the listed one.
    for (namespace, name) in &wanted_secrets {
        if found.contains(&(namespace.clone(), name.clone())) {
            continue;
        }
        match src.get(Kind::Secret, namespace, name).await {
            Ok(s) => out.push(s),
            Err(StoreError::NotFound { .. }) => {
                report.missing_secrets.push(format!("{namespace}/{name}"))
            }
            Err(e) => {
                return Err(store_err(
                    Side::Source,
                    format!("reading Secret {namespace}/{name}"),
                )(e));
            }
        }
    }
    out.extend(machines);
    out.extend(list(Kind::Hardware).await?);
    if opts.include_workflows {
        out.extend(list(Kind::Template).await?);
        out.extend(list(Kind::Workflow).await?);
    }
    for o in &out {
        report.counts.entry(o.kind()).or_default().source += 1;
    }
    Ok(out)
}

fn count(report: &mut MoveReport, kind: Kind, applied: Applied) {
    let c = report.counts.entry(kind).or_default();
    match applied {
        Applied::Created => c.created += 1,
        Applied::Configured => c.configured += 1,
        Applied::Unchanged => c.unchanged += 1,
    }
}

/// The object as the target should receive it: server-owned metadata dropped; Hardware held
/// for DHCP unless the source has already stopped answering it.
fn portable_copy(o: &Object) -> Object {
    let mut copy = o.clone();
    let m = copy.meta_mut();
    m.resource_version = None;
    m.managed_fields = None;
    if o.kind() != Kind::Hardware {
        return copy;
    }
    match handoff(o).as_deref() {
        Some(HANDOFF_MOVED_OUT) => with_handoff(&copy, None),
        _ => with_handoff(&copy, Some(HANDOFF_INCOMING)),
    }
}

/// `o` with an empty status, for comparing everything else.
fn without_status(o: &Object) -> Object {
    o.with_status_json(Value::Null)
        .unwrap_or_else(|_| o.clone())
}

fn handoff(o: &Object) -> Option<String> {
    o.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(DHCP_HANDOFF_ANNOTATION))
        .cloned()
}

fn with_handoff(o: &Object, value: Option<&str>) -> Object {
    let mut o = o.clone();
    let m = o.meta_mut();
    let annotations = m.annotations.get_or_insert_with(BTreeMap::new);
    match value {
        Some(v) => {
            annotations.insert(DHCP_HANDOFF_ANNOTATION.to_string(), v.to_string());
        }
        None => {
            annotations.remove(DHCP_HANDOFF_ANNOTATION);
        }
    }
    if annotations.is_empty() {
        m.annotations = None;
    }
    o
}

/// Content hash: canonical JSON (sorted keys) of the object as an API server stores it (CRD
/// schema defaults filled in, a Secret's `stringData` folded into `data`), without what a
/// store assigns (resourceVersion, uid, creationTimestamp, generation, managedFields) and
/// without the handoff annotation. So an object and its copy on Kubernetes hash the same even
/// though the server added `port: 623` to the copy.
pub fn digest(o: &Object) -> String {
    let mut v = tinkerbell_core::store::shared::server_view(&with_handoff(o, None));
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            meta.remove(k);
        }
        if meta
            .get("annotations")
            .is_some_and(|a| a.as_object().is_some_and(|a| a.is_empty()))
        {
            meta.remove("annotations");
        }
    }
    // Canonical: serde_json's maps keep their keys sorted (the `preserve_order` feature is off).
    hex(&Sha256::digest(v.to_string().as_bytes()))
}

fn hash_lines(lines: &[String]) -> String {
    let mut sorted = lines.to_vec();
    sorted.sort();
    hex(&Sha256::digest(sorted.join("\n").as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
