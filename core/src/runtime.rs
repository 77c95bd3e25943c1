//! The controller runtime every controller runs on, shaped like kube-runtime's:
//!
//! * [`watcher`]: one kind's objects as a stream of [`Event`]s — a full list first
//!   ([`Event::Restarted`]), then every change; on an expired resourceVersion or a broken watch
//!   it lists again (with backoff), so a consumer never misses a state.
//! * [`Controller`]: watches kinds ([`Watch::own`]: the object itself is reconciled;
//!   [`Watch::related`]: each change is mapped to the keys to reconcile), keeps a deduplicating queue with due times, runs at most one reconcile per
//!   key at once and at most `concurrency` in all, and reschedules by the reconcile's
//!   [`Action`] or, on error, by the error policy's backoff. The reconcile gets the key and
//!   the object as the watchers last saw it ([`Cache`]), so neither a change nor a periodic
//!   resync makes it GET what a list or watch already returned.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::{Kind, Object, ObjectKey, Store, StoreError, WatchEvent};

/// What a [`watcher`] reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// Every object, as a (re)list found them: replace what you knew.
    Restarted(Vec<Object>),
    /// An object was created or changed.
    Applied(Object),
    /// An object was deleted (its last state).
    Deleted(Object),
}

/// Backoff between failed lists/watches: 0.5 s doubling to 30 s.
fn watch_backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)).min(30_000))
}

/// Report `e` to the watcher's consumer, then wait out the backoff. False: stop (the
/// consumer is gone or `cancel` fired).
async fn report_and_wait(
    tx: &mpsc::Sender<Result<Event, StoreError>>,
    e: StoreError,
    failures: &mut u32,
    cancel: &CancellationToken,
) -> bool {
    if tx.send(Err(e)).await.is_err() {
        return false;
    }
    let wait = watch_backoff(*failures);
    *failures = failures.saturating_add(1);
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// List and watch `kind` (in `namespace`, or all), relisting when the watch ends or its
/// resourceVersion expired. Errors are reported in the stream (for logs) and retried with
/// backoff; the stream ends only when `cancel` fires.
pub fn watcher(
    store: Arc<dyn Store>,
    kind: Kind,
    namespace: Option<String>,
    cancel: CancellationToken,
) -> BoxStream<'static, Result<Event, StoreError>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut failures = 0u32;
        'relist: loop {
            let ns = namespace.as_deref();
            let listed = tokio::select! {
                () = cancel.cancelled() => return,
                l = store.list(kind, ns) => l,
            };
            // The list is the truth now: hand it on before opening the watch (whose answer
            // may take as long as the server likes).
            let rv = match listed {
                Ok(list) => {
                    if tx.send(Ok(Event::Restarted(list.items))).await.is_err() {
                        return;
                    }
                    list.resource_version
                }
                Err(e) => {
                    if !report_and_wait(&tx, e, &mut failures, &cancel).await {
                        return;
                    }
                    continue 'relist;
                }
            };
            let opened = tokio::select! {
                () = cancel.cancelled() => return,
                w = store.watch(kind, ns, Some(&rv)) => w,
            };
            let mut stream = match opened {
                Ok(w) => w,
                Err(e) => {
                    if !report_and_wait(&tx, e, &mut failures, &cancel).await {
                        return;
                    }
                    continue 'relist;
                }
            };
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    n = stream.next() => n,
                };
                let event = match next {
                    Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => Event::Applied(o),
                    Some(Ok(WatchEvent::Deleted(o))) => Event::Deleted(o),
                    // The history is gone: list again at once (the list is the new truth).
                    Some(Err(StoreError::Expired { .. })) | None => continue 'relist,
                    // Broken: list again after the backoff, which grows while the watch keeps
                    // failing before it delivers anything.
                    Some(Err(e)) => {
                        if !report_and_wait(&tx, e, &mut failures, &cancel).await {
                            return;
                        }
                        continue 'relist;
                    }
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                failures = 0;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long (polling something outside the store).
    Requeue(Duration),
    /// Nothing until a watched object changes (or the next resync).
    AwaitChange,
}

/// Which keys a change of a watched object should reconcile.
pub type Mapper = Arc<dyn Fn(&Object) -> Vec<ObjectKey> + Send + Sync>;

/// Whether a change is worth a reconcile (e.g. not a controller's own status write).
pub type Filter = Arc<dyn Fn(Option<&Object>, &Object) -> bool + Send + Sync>;

/// One kind a [`Controller`] watches, and which keys its changes queue.
pub struct Watch {
    kind: Kind,
    map: Mapper,
    filter: Option<Filter>,
    resync: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("kind", &self.kind)
            .field("filtered", &self.filter.is_some())
            .field("resync", &self.resync)
            .finish()
    }
}

impl Watch {
    /// Objects of `kind` are reconciled themselves: each change queues its own key.
    pub fn own(kind: Kind) -> Watch {
        Watch::related(kind, Arc::new(|o: &Object| vec![o.key()]))
    }

    /// Objects of `kind` queue the keys `map` gives (an owner, say).
    pub fn related(kind: Kind, map: Mapper) -> Watch {
        Watch {
            kind,
            map,
            filter: None,
            resync: true,
        }
    }

    /// Only changes `filter(previous, current)` accepts queue anything (new objects and
    /// deletions always do).
    pub fn filter(mut self, filter: Filter) -> Watch {
        self.filter = Some(filter);
        self
    }

    /// Left out of the periodic resync (objects that requeue themselves).
    pub fn no_resync(mut self) -> Watch {
        self.resync = false;
        self
    }
}

/// What the watchers of one [`Controller`] last saw of every object, by key.
pub type Cache = Arc<std::sync::RwLock<HashMap<ObjectKey, Object>>>;

/// A controller: what it watches and how it queues; [`Controller::run`] drives a reconcile
/// function with it.
pub struct Controller {
    store: Arc<dyn Store>,
    namespace: Option<String>,
    watches: Vec<Watch>,
    concurrency: usize,
    resync: Option<Duration>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("namespace", &self.namespace)
            .field("watches", &self.watches)
            .field("concurrency", &self.concurrency)
            .field("resync", &self.resync)
            .finish()
    }
}

impl Controller {
    /// A controller over `store`, in `namespace` or all; add what it watches with
    /// [`Controller::watch`].
    pub fn new(store: Arc<dyn Store>, namespace: Option<String>) -> Controller {
        Controller {
            store,
            namespace,
            watches: Vec::new(),
            concurrency: 16,
            resync: None,
        }
    }

    /// Watch a kind.
    pub fn watch(mut self, watch: Watch) -> Controller {
        self.watches.push(watch);
        self
    }

    /// At most `n` reconciles at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Controller {
        self.concurrency = n.max(1);
        self
    }

    /// Every `every`, queue every known object of the watches that take part in resyncs.
    pub fn resync(mut self, every: Duration) -> Controller {
        self.resync = Some(every);
        self
    }

    /// Run until `cancel` fires: `reconcile(key, object)` for each queued key, with the
    /// object as the watchers last saw it (`None`: gone, or of a kind nobody watches); an
    /// `Err` is logged and retried after `error_policy(&error, consecutive failures of that
    /// key)`. The cached object may be older than the reconciler's own last write: a write
    /// from it that conflicts is for the reconciler to redo on a fresh read.
    pub async fn run<R, Fut, E, P>(self, reconcile: R, error_policy: P, cancel: CancellationToken)
    where
        R: Fn(ObjectKey, Option<Object>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
        P: Fn(&E, u32) -> Duration + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel::<(ObjectKey, Instant)>();
        let cache = Cache::default();
        let mut feeders = JoinSet::new();
        for w in self.watches {
            let stream = watcher(
                self.store.clone(),
                w.kind,
                self.namespace.clone(),
                cancel.clone(),
            );
            let resync = self.resync.filter(|_| w.resync);
            feeders.spawn(feed(
                stream,
                w.map,
                w.filter,
                resync,
                tx.clone(),
                cache.clone(),
                cancel.clone(),
            ));
        }
        drop(tx);
        let reconcile = move |key: ObjectKey| {
            let cached = cache.read().ok().and_then(|c| c.get(&key).cloned());
            reconcile(key, cached)
        };
        run_queue(rx, self.concurrency, reconcile, error_policy, cancel).await;
        feeders.shutdown().await;
    }
}

/// Turn one watcher's events into queue requests; keep what it knows for filters and resyncs,
/// and in `cache` for the reconciles.
async fn feed(
    mut stream: BoxStream<'static, Result<Event, StoreError>>,
    map: Mapper,
    filter: Option<Filter>,
    resync: Option<Duration>,
    tx: mpsc::UnboundedSender<(ObjectKey, Instant)>,
    cache: Cache,
    cancel: CancellationToken,
) {
    let mut known: HashMap<ObjectKey, Object> = HashMap::new();
    // Mirror one change into the shared cache (`None`: gone).
    let mirror = |key: ObjectKey, o: Option<&Object>| {
        if let Ok(mut c) = cache.write() {
            match o {
                Some(o) => c.insert(key, o.clone()),
                None => c.remove(&key),
            };
        }
    };
    let period = resync.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    let send = |o: &Object| {
        for key in map(o) {
            let _ = tx.send((key, Instant::now()));
        }
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick(), if resync.is_some() => known.values().for_each(send),
            event = stream.next() => match event {
                None => return,
                Some(Err(e)) => tracing::info!(error = %crate::error_chain(&e), "watch failed; listing again"),
                Some(Ok(Event::Restarted(objects))) => {
                    let before = std::mem::take(&mut known);
                    for o in objects {
                        let changed = before.get(&o.key()).is_none_or(|prev| {
                            filter.as_ref().is_none_or(|f| f(Some(prev), &o))
                        });
                        mirror(o.key(), Some(&o));
                        if changed {
                            send(&o);
                        }
                        known.insert(o.key(), o);
                    }
                    // Deleted while nobody watched: their dependents may care.
                    for (key, gone) in before {
                        if !known.contains_key(&key) {
                            mirror(key, None);
                            send(&gone);
                        }
                    }
                }
                Some(Ok(Event::Applied(o))) => {
                    mirror(o.key(), Some(&o));
                    let prev = known.get(&o.key());
                    if filter.as_ref().is_none_or(|f| f(prev, &o)) {
                        send(&o);
                    }
                    known.insert(o.key(), o);
                }
                Some(Ok(Event::Deleted(o))) => {
                    mirror(o.key(), None);
                    known.remove(&o.key());
                    send(&o);
                }
            },
        }
    }
}

/// The queue: deduplicated keys with due times, at most one reconcile per key at once, at
/// most `concurrency` in all.
async fn run_queue<R, Fut, E, P>(
    mut rx: mpsc::UnboundedReceiver<(ObjectKey, Instant)>,
    concurrency: usize,
    reconcile: R,
    error_policy: P,
    cancel: CancellationToken,
) where
    R: Fn(ObjectKey) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
    P: Fn(&E, u32) -> Duration + Send + Sync + 'static,
{
    let mut due: HashMap<ObjectKey, Instant> = HashMap::new();
    let mut running: HashMap<tokio::task::Id, ObjectKey> = HashMap::new();
    let mut busy: HashSet<ObjectKey> = HashSet::new();
    let mut failures: HashMap<ObjectKey, u32> = HashMap::new();
    let mut set: JoinSet<Result<Action, E>> = JoinSet::new();
    let mut open = true;
    loop {
        let now = Instant::now();
        let mut ready: Vec<(Instant, ObjectKey)> = due
            .iter()
            .filter(|(k, at)| **at <= now && !busy.contains(*k))
            .map(|(k, at)| (*at, k.clone()))
            .collect();
        // Oldest first, as many as the limit lets run.
        ready.sort();
        for (_, key) in ready
            .into_iter()
            .take(concurrency.saturating_sub(busy.len()))
        {
            due.remove(&key);
            busy.insert(key.clone());
            let span = tracing::info_span!("reconcile", kind = %key.kind, namespace = %key.namespace, name = %key.name);
            let h = set.spawn(tracing::Instrument::instrument(
                reconcile(key.clone()),
                span,
            ));
            running.insert(h.id(), key);
        }
        let next = due
            .iter()
            .filter(|(k, _)| !busy.contains(*k))
            .map(|(_, at)| *at)
            .min()
            .filter(|_| busy.len() < concurrency);
        if !open && due.is_empty() && set.is_empty() {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            msg = rx.recv(), if open => match msg {
                Some((key, at)) => {
                    let e = due.entry(key).or_insert(at);
                    *e = (*e).min(at);
                }
                None => open = false,
            },
            Some(joined) = set.join_next_with_id(), if !set.is_empty() => {
                let (id, result) = match joined {
                    Ok((id, r)) => (id, Some(r)),
                    Err(e) => (e.id(), None),
                };
                let Some(key) = running.remove(&id) else { continue };
                busy.remove(&key);
                let again = match result {
                    Some(Ok(Action::Requeue(d))) => {
                        failures.remove(&key);
                        Some(d)
                    }
                    Some(Ok(Action::AwaitChange)) => {
                        failures.remove(&key);
                        None
                    }
                    Some(Err(e)) => {
                        let n = failures.entry(key.clone()).or_insert(0);
                        *n += 1;
                        let wait = error_policy(&e, *n);
                        tracing::warn!(object = %key, error = %e, retry_in = ?wait, "reconcile failed");
                        Some(wait)
                    }
                    None => {
                        let n = failures.entry(key.clone()).or_insert(0);
                        *n += 1;
                        let wait = Duration::from_secs(1u64 << (*n).min(6));
                        tracing::error!(object = %key, retry_in = ?wait, "reconcile panicked");
                        Some(wait)
                    }
                };
                if let Some(d) = again {
                    let at = Instant::now() + d;
                    let e = due.entry(key).or_insert(at);
                    *e = (*e).min(at);
                }
            }
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
        }
    }
    set.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use std::sync::Mutex;

    fn template(name: &str, data: &str) -> Object {
        Object::from_typed_json(serde_json::json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"data": data},
        }))
        .unwrap()
    }

    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every object is reconciled once at start and again on each change, each time with the
    /// object as last watched; a failing key is retried by the error policy; a key never runs
    /// twice at once.
    #[tokio::test]
    async fn reconciles_changes_retries_errors_and_never_overlaps_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store.create(template("a", "1")).await.unwrap();
        store.create(template("bad", "1")).await.unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let active: Arc<Mutex<HashSet<String>>> = Arc::default();
        let overlap = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let c = Controller::new(store.clone(), Some("ns".into()))
            .watch(Watch::own(Kind::Template))
            .concurrency(4);
        let (seen2, active2, overlap2) = (seen.clone(), active.clone(), overlap.clone());
        let run = tokio::spawn(c.run(
            move |key: ObjectKey, cached: Option<Object>| {
                let (seen, active, overlap) = (seen2.clone(), active2.clone(), overlap2.clone());
                let data = match cached {
                    Some(Object::Template(t)) => t.spec.data.clone().unwrap_or_default(),
                    _ => "none".into(),
                };
                async move {
                    if !active.lock().unwrap().insert(key.name.clone()) {
                        overlap.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    active.lock().unwrap().remove(&key.name);
                    seen.lock().unwrap().push(format!("{}={data}", key.name));
                    if key.name == "bad" {
                        Err("broken".to_string())
                    } else {
                        Ok(Action::AwaitChange)
                    }
                }
            },
            |_e: &String, _n| Duration::from_millis(50),
            cancel.clone(),
        ));
        let count = |name: &str| seen.lock().unwrap().iter().filter(|n| *n == name).count();
        eventually("a reconciled", || count("a=1") == 1).await;
        eventually("bad retried", || count("bad=1") >= 3).await;
        store.update(template("a", "2")).await.unwrap();
        eventually("a reconciled after its change", || count("a=2") == 1).await;
        assert_eq!(count("a=1"), 1);
        assert!(!overlap.load(std::sync::atomic::Ordering::SeqCst));
        cancel.cancel();
        run.await.unwrap();
    }
}
