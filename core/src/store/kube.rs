//! The Kubernetes backend: the Tinkerbell CRDs (and core/v1 Secrets) on an API server.
//!
//! This is upstream's `backend-kube`: the same objects, in the same API groups, so a cluster
//! managed by upstream Tinkerbell (or EKS Anywhere) can be served by tinkerbell-rs unchanged.
//!
//! How the [`Store`] contract maps onto the Kubernetes API, and why:
//! * **Scope.** A [`KubeStore`] is scoped to one namespace (upstream's
//!   `backend-kube-namespace`); the empty namespace means every namespace. Reads with an
//!   explicit namespace go to that namespace; reads with `None` use the scope. Writes always go
//!   to the object's own namespace (an object without one gets the scope's namespace, or the
//!   client's default namespace when the scope is every namespace).
//! * **Optimistic concurrency is the API server's.** `update`/`update_status` send the object's
//!   `resourceVersion` in the body and `delete` sends it as `preconditions.resourceVersion`;
//!   the server refuses a stale write with 409, mapped to [`StoreError::Conflict`]. An
//!   `update` without a resourceVersion is made unconditional by reading the current one first
//!   (custom resources refuse a PUT without it) and retrying a few times on conflict.
//! * **Errors** are mapped from the server's `Status`: 404 → [`StoreError::NotFound`], 409
//!   `AlreadyExists` → [`StoreError::AlreadyExists`], other 409 → [`StoreError::Conflict`]
//!   (`current` is only known for delete preconditions, whose message carries it), 410 →
//!   [`StoreError::Expired`], 422 → [`StoreError::Invalid`] with the first cause's field;
//!   everything else is [`StoreError::Kube`]. A 404 on a list or watch means the CRD is not
//!   installed and stays a [`StoreError::Kube`].
//! * **Watches** are Kubernetes watches. One started without a resourceVersion lists first and
//!   delivers every item as `Added`, then watches from the list's resourceVersion (as the
//!   embedded store does). When the server ends a watch (it does after `timeoutSeconds`), the
//!   stream re-watches from the last resourceVersion seen (events and bookmarks), so the
//!   consumer sees one unbroken stream; a 410 becomes [`StoreError::Expired`] and ends it.
//! * **`apply_all` is not atomic.** Kubernetes has no multi-object transaction. The batch is
//!   first validated by the server object by object with `dryRun=All` (create, or replace at
//!   the current resourceVersion); if any object fails nothing is written. Only then is each
//!   object written for real, in order. A failure in that second phase (rare after a
//!   successful dry run: a concurrent writer, a lost connection) leaves the earlier objects
//!   applied; `apply_all` is idempotent, so running it again converges. A replace keeps the
//!   `finalizers` and `ownerReferences` that controllers added when the applied document does
//!   not set them, and an object whose labels, annotations, spec/data (and status, when
//!   given) already match is reported `Unchanged` without a write.
//! * **Lookups are answered from memory.** Boots asks for a Hardware by MAC on every DHCP
//!   packet; a round trip to the API server per packet is not acceptable. A background task
//!   keeps a [`LookupIndex`] of every Hardware and Workflow in the scope, fed by list + watch
//!   (upstream indexes the same fields: interface MAC and IP, `spec.agentID`, instance id).
//!   Until the first list has loaded, lookups wait for it (at most
//!   [`KubeStore::with_sync_timeout`], then a 503 error naming the last failure); after that
//!   they never wait, and a relist after an expired watch swaps the data in atomically.
//! * **Identity uniqueness is best effort.** The API server cannot enforce that two Hardware
//!   never claim the same MAC, IP, agent ID or instance id, so `create`/`update`/`apply_all`
//!   check the index first and refuse with [`StoreError::Duplicate`]. Another writer (kubectl,
//!   an upstream controller) racing with us can still create a duplicate; the index then keeps
//!   the first claimer.
//! * **Lifetime.** The index runs on [`runtime::watcher`]s (the controller runtime's) owned by
//!   the store: they stop when the last clone of the [`KubeStore`] is dropped. Watch streams returned by [`Store::watch`] are independent
//!   and stop when the consumer drops them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::Client;
use kube::api::{
    Api, DeleteParams, ListParams, PostParams, Preconditions, WatchEvent as KubeEvent, WatchParams,
};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::index::{ClaimKind, LookupIndex, check_hardware_claims, owner};
use super::shared::{async_stream, server_view};
use super::{
    Applied, HardwareLookup, Kind, Object, ObjectKey, ObjectList, Store, StoreError, Typed,
    WatchEvent, WatchStream,
};
use crate::by_kind;
use crate::model::{Hardware, Workflow};
use crate::runtime;

/// How long lookups wait for the first full list by default.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of an unconditional update that keeps hitting conflicts.
const UNCONDITIONAL_ATTEMPTS: usize = 3;
/// A watch the server ends at once is reopened no sooner than this.
const BACKOFF_MIN: Duration = Duration::from_secs(1);

/// A Kubernetes-API-backed [`Store`] + [`HardwareLookup`]. Cheap to clone; clones share the
/// client and the lookup index, and the index task stops when the last clone is dropped.
#[derive(Clone)]
pub struct KubeStore {
    inner: Arc<Inner>,
    sync_timeout: Duration,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("namespace", &self.inner.namespace)
            .field("sync_timeout", &self.sync_timeout)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: Client,
    /// The API server's URL, for messages (unknown when built from a bare client).
    server: Option<String>,
    namespace: String,
    shared: Arc<Shared>,
    /// Stops the index's watchers when the last store clone goes (`None` in the handle the
    /// index itself lists and watches through, so it keeps no store alive).
    _index: Option<tokio_util::sync::DropGuard>,
}

/// State shared between the store and its index task.
struct Shared {
    index: RwLock<IndexState>,
    sync: watch::Sender<SyncStatus>,
}

/// The indexed kinds that have been listed once, and the index task's last error.
#[derive(Debug, Default, Clone)]
struct SyncStatus {
    synced: HashSet<Kind>,
    last_error: Option<String>,
}

#[derive(Debug, Default)]
struct IndexState {
    index: LookupIndex,
    /// `namespace/name` of every indexed object, per kind (to replace a kind on relist).
    members: HashMap<Kind, HashSet<String>>,
    /// The newest resourceVersion applied per object (present or deleted). Our own writes reach
    /// the index before the watch reports them, so the watch can still deliver an older state
    /// of the object afterwards (or, after our delete, its last update): that state must not
    /// replace the newer one or bring a deleted object back.
    newest: HashMap<(Kind, String), Newest>,
}

/// The newest version of one object the index applied.
#[derive(Debug, Clone, Copy, Default)]
struct Newest {
    rv: u64,
    /// It was a deletion: the object's state at `rv` is gone, so that same state seen again
    /// (a late watch event of our own last write) is stale too.
    deleted: bool,
}

/// A resourceVersion as a number. Kubernetes calls them opaque, but every API server backed by
/// etcd issues its revision; anything else is never treated as older.
fn rv_number(obj: &Object) -> Option<u64> {
    obj.resource_version()?.parse().ok()
}

impl IndexState {
    /// Whether `obj` is older than what the index has applied for it (and so must be ignored);
    /// otherwise remembers its version, and whether it is a deletion.
    fn is_stale(&mut self, obj: &Object, deleting: bool) -> bool {
        let Some(rv) = rv_number(obj) else {
            return false;
        };
        let slot = self.newest.entry((obj.kind(), owner(obj))).or_default();
        if rv < slot.rv || (slot.deleted && rv == slot.rv) {
            return true;
        }
        *slot = Newest {
            rv,
            deleted: deleting,
        };
        false
    }

    /// Apply a newer state of `obj` (older states are ignored).
    fn upsert(&mut self, obj: &Object) {
        if self.is_stale(obj, false) {
            return;
        }
        self.upsert_unchecked(obj);
    }

    /// Remove `obj` given its last state (or the deletion's), unless a newer one was applied;
    /// whether it was removed.
    fn delete(&mut self, obj: &Object) -> bool {
        let fresh = !self.is_stale(obj, true);
        if fresh {
            self.remove(obj.kind(), &owner(obj));
        }
        fresh
    }

    /// The watch reports `obj` deleted. The watch is ordered, so nothing older about it can
    /// follow: its version record goes too (records of deleted objects never pile up).
    fn delete_watched(&mut self, obj: &Object) {
        if self.delete(obj) {
            self.newest.remove(&(obj.kind(), owner(obj)));
        }
    }

    fn upsert_unchecked(&mut self, obj: &Object) {
        if self.index.upsert(obj) {
            let members = self.members.entry(obj.kind()).or_default();
            members.insert(owner(obj));
        }
    }

    fn remove(&mut self, kind: Kind, owner: &str) {
        if self.index.remove(kind, owner)
            && let Some(m) = self.members.get_mut(&kind)
        {
            m.remove(owner);
        }
    }

    /// A relist: the list is the whole truth at its resourceVersion.
    fn replace_all(&mut self, kind: Kind, items: &[Object]) {
        for old in self.members.remove(&kind).unwrap_or_default() {
            self.remove(kind, &old);
        }
        self.newest.retain(|(k, _), _| *k != kind);
        for obj in items {
            self.upsert(obj);
        }
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexState> {
        // Updates are single calls on LookupIndex; a poisoned lock is still usable.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_synced(&self, kind: Kind) {
        self.sync.send_modify(|s| {
            s.synced.insert(kind);
            s.last_error = None;
        });
    }

    fn record_error(&self, what: String) {
        tracing::warn!(error = %what, "kube backend index");
        self.sync.send_modify(|s| s.last_error = Some(what));
    }
}

impl KubeStore {
    /// A store on `client`, scoped to `namespace` ("" = every namespace). Spawns the lookup
    /// index task, so it must be called within a tokio runtime; the task runs until the last
    /// clone of the store is dropped.
    pub fn new(client: Client, namespace: &str) -> KubeStore {
        KubeStore::with_server(client, namespace, None)
    }

    /// [`KubeStore::new`], naming the API server's URL in messages.
    fn with_server(client: Client, namespace: &str, server: Option<String>) -> KubeStore {
        let (sync, _) = watch::channel(SyncStatus::default());
        let shared = Arc::new(Shared {
            index: RwLock::new(IndexState::default()),
            sync,
        });
        let store = |index| KubeStore {
            inner: Arc::new(Inner {
                client: client.clone(),
                server: server.clone(),
                namespace: namespace.to_string(),
                shared: shared.clone(),
                _index: index,
            }),
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
        };
        let lister: Arc<dyn Store> = Arc::new(store(None));
        let stop = CancellationToken::new();
        for kind in [Kind::Hardware, Kind::Workflow] {
            let events = runtime::watcher(lister.clone(), kind, None, stop.clone());
            tokio::spawn(run_index(kind, events, shared.clone()));
        }
        store(Some(stop.drop_guard()))
    }

    /// A store from a kubeconfig file, or (with `None`) from the environment: `$KUBECONFIG` or
    /// `~/.kube/config`, else the in-cluster service account. See [`KubeStore::new`].
    pub async fn from_kubeconfig(
        path: Option<&Path>,
        namespace: &str,
    ) -> Result<KubeStore, StoreError> {
        let (client, server) = client_and_server(path).await?;
        Ok(KubeStore::with_server(client, namespace, Some(server)))
    }

    /// Check, before a service starts, that it can do its job here: the API server answers, it
    /// takes our credentials, the scope's namespace exists, and each of `kinds` can be listed
    /// (its CRD is installed and RBAC allows it). The error names the cause — unreachable,
    /// credentials refused (expired or invalid), RBAC forbidden (with the server's message,
    /// which names the user and the resource), CRDs not installed, wrong namespace — instead of
    /// a service retrying forever.
    pub async fn preflight(&self, kinds: &[Kind]) -> Result<(), StoreError> {
        Preflight {
            client: &self.inner.client,
            server: self.inner.server.as_deref(),
            namespace: &self.inner.namespace,
        }
        .run(kinds)
        .await
    }

    /// A store from a kubeconfig (as [`KubeStore::from_kubeconfig`]) for a service that reads
    /// `kinds`, checked with [`KubeStore::preflight`] *before* the store starts its lookup index
    /// (which would otherwise log its own retries first).
    pub async fn connect(
        path: Option<&Path>,
        namespace: &str,
        kinds: &[Kind],
    ) -> Result<KubeStore, StoreError> {
        let (client, server) = client_and_server(path).await?;
        Preflight {
            client: &client,
            server: Some(&server),
            namespace,
        }
        .run(kinds)
        .await?;
        Ok(KubeStore::with_server(client, namespace, Some(server)))
    }
}

/// The start-up check of [`KubeStore::preflight`].
struct Preflight<'a> {
    client: &'a Client,
    server: Option<&'a str>,
    namespace: &'a str,
}

impl Preflight<'_> {
    async fn run(&self, kinds: &[Kind]) -> Result<(), StoreError> {
        let ns = self.namespace.to_string();
        if !ns.is_empty() {
            let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
            match api.get(&ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    return Err(StoreError::KubeAccess {
                        what: format!("namespace {ns:?}"),
                        cause: "it does not exist (check --backend-kube-namespace, TINKERBELL_BACKEND_KUBE_NAMESPACE)".into(),
                    });
                }
                // Reading namespaces is not every service's right: only the lists below decide.
                Err(kube::Error::Api(s)) if s.code == 403 => {}
                Err(e) => return Err(self.access_error(format!("namespace {ns:?}"), e)),
            }
        }
        let mut missing = Vec::new();
        for &kind in kinds {
            let lp = ListParams::default().limit(1);
            let what = if ns.is_empty() {
                format!("listing {} in every namespace", kind.plural())
            } else {
                format!("listing {} in namespace {ns:?}", kind.plural())
            };
            let res = by_kind!(kind, K => scoped_api::<K>(self.client, &ns).list_metadata(&lp).await.map(|_| ()));
            match res {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 && !kind.group().is_empty() => {
                    missing.push(format!("{}.{}", kind.plural(), kind.group()));
                }
                Err(e) => return Err(self.access_error(what, e)),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::CrdsMissing { missing })
        }
    }

    /// A preflight failure, said in the operator's terms.
    fn access_error(&self, what: String, e: kube::Error) -> StoreError {
        let server = self.server.unwrap_or("the API server");
        let cause = match &e {
            kube::Error::Api(s) if s.code == 401 => format!(
                "{server} refused the credentials (expired or invalid; check the kubeconfig's user): {}",
                s.message
            ),
            kube::Error::Api(s) if s.code == 403 => {
                format!("RBAC forbids it: {}", s.message)
            }
            kube::Error::Api(s) => format!("{server} answered {}: {}", s.code, s.message),
            other => format!("cannot reach {server}: {}", crate::api::error_chain(other)),
        };
        StoreError::KubeAccess { what, cause }
    }
}

impl KubeStore {
    /// How long a lookup (or a Hardware write, which checks identities) waits for the index's
    /// first full list before failing. Default [`DEFAULT_SYNC_TIMEOUT`].
    #[must_use]
    pub fn with_sync_timeout(mut self, timeout: Duration) -> KubeStore {
        self.sync_timeout = timeout;
        self
    }

    /// The namespace this store is scoped to ("" = every namespace).
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Wait until the index has listed `kind` (Hardware or Workflow) at least once.
    async fn wait_synced(&self, kind: Kind) -> Result<(), StoreError> {
        let sync = &self.inner.shared.sync;
        if sync.borrow().synced.contains(&kind) {
            return Ok(());
        }
        let mut rx = sync.subscribe();
        match tokio::time::timeout(self.sync_timeout, rx.wait_for(|s| s.synced.contains(&kind)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => {
                let last = sync.borrow().last_error.clone();
                Err(StoreError::Remote {
                    status: 503,
                    message: format!(
                        "the Kubernetes backend has not loaded {kind} objects of namespace {:?} within {:?}{}",
                        self.inner.namespace,
                        self.sync_timeout,
                        last.map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    ),
                })
            }
        }
    }

    /// Namespace for an object-level call: the given one, else the scope's, else the
    /// client's default.
    fn object_ns(&self, ns: &str) -> String {
        if !ns.is_empty() {
            ns.to_string()
        } else if !self.inner.namespace.is_empty() {
            self.inner.namespace.clone()
        } else {
            self.inner.client.default_namespace().to_string()
        }
    }

    /// Namespace for a collection call: the given one, else the scope ("" = all).
    fn collection_ns<'a>(&'a self, ns: Option<&'a str>) -> &'a str {
        ns.unwrap_or(&self.inner.namespace)
    }

    fn with_namespace(&self, mut obj: Object) -> Object {
        if obj.namespace().is_empty() {
            obj.meta_mut().namespace = Some(self.object_ns(""));
        }
        obj
    }

    fn api<K: Typed>(&self, ns: &str) -> Api<K> {
        scoped_api(&self.inner.client, ns)
    }

    /// Whether the index task watches `obj`'s namespace.
    fn in_scope(&self, obj: &Object) -> bool {
        self.inner.namespace.is_empty() || obj.namespace() == self.inner.namespace
    }

    /// Reflect our own successful write in the index at once (the watch confirms it later), so
    /// back-to-back writes see each other's identities.
    fn note_written(&self, obj: &Object) {
        if matches!(obj.kind(), Kind::Hardware | Kind::Workflow) && self.in_scope(obj) {
            self.inner.shared.write().upsert(obj);
        }
    }

    /// Refuse a Hardware whose identities are malformed or claimed by another Hardware.
    async fn check_hardware(&self, obj: &Object) -> Result<(), StoreError> {
        if obj.kind() != Kind::Hardware {
            return Ok(());
        }
        self.wait_synced(Kind::Hardware).await?;
        check_hardware_claims(&self.inner.shared.read().index, obj)
    }

    async fn get_typed<K: Typed>(&self, ns: &str, name: &str) -> Result<Object, StoreError> {
        let key = ObjectKey::new(K::KIND, ns, name);
        self.api::<K>(ns)
            .get(name)
            .await
            .map(K::into_object)
            .map_err(|e| api_err(e, K::KIND, Some(&key), None))
    }

    async fn list_typed<K: Typed>(&self, ns: &str) -> Result<ObjectList, StoreError> {
        let list = self
            .api::<K>(ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| api_err(e, K::KIND, None, None))?;
        let mut items: Vec<Object> = list.items.into_iter().map(K::into_object).collect();
        items.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
        Ok(ObjectList {
            items,
            resource_version: list.metadata.resource_version.unwrap_or_default(),
        })
    }

    async fn watch_typed<K: Typed>(
        &self,
        ns: &str,
        since: Option<&str>,
    ) -> Result<WatchStream, StoreError> {
        let api = self.api::<K>(ns);
        let (initial, rv) = match since.filter(|s| !s.is_empty() && *s != "0") {
            Some(rv) => (Vec::new(), rv.to_string()),
            None => {
                let list = self.list_typed::<K>(ns).await?;
                let added = list.items.into_iter().map(WatchEvent::Added).collect();
                (added, list.resource_version)
            }
        };
        let first = api
            .watch(&WatchParams::default(), &rv)
            .await
            .map_err(|e| api_err(e, K::KIND, None, Some(&rv)))?
            .boxed();
        Ok(async_stream(move |tx| follow(api, initial, first, rv, tx)))
    }

    async fn create_typed<K: Typed>(&self, obj: Object) -> Result<Object, StoreError> {
        let key = obj.key();
        let created = self
            .api::<K>(&key.namespace)
            .create(&PostParams::default(), &K::from_object(obj))
            .await
            .map_err(|e| api_err(e, K::KIND, Some(&key), None))?;
        Ok(created.into_object())
    }

    /// PUT the object (or its status). Conditional on its resourceVersion when it has one;
    /// otherwise made unconditional by reading the current resourceVersion first.
    async fn replace_typed<K: Typed>(
        &self,
        obj: Object,
        status: bool,
    ) -> Result<Object, StoreError> {
        let key = obj.key();
        let api = self.api::<K>(&key.namespace);
        let given = obj
            .resource_version()
            .filter(|rv| !rv.is_empty())
            .map(str::to_string);
        let mut k = K::from_object(obj);
        for attempt in 1.. {
            let rv = match &given {
                Some(rv) => rv.clone(),
                None => api
                    .get(&key.name)
                    .await
                    .map_err(|e| api_err(e, K::KIND, Some(&key), None))?
                    .meta()
                    .resource_version
                    .clone()
                    .unwrap_or_default(),
            };
            k.meta_mut().resource_version = Some(rv.clone());
            let pp = PostParams::default();
            let res = if status {
                api.replace_status(&key.name, &pp, &k).await
            } else {
                api.replace(&key.name, &pp, &k).await
            };
            let err = match res {
                Ok(o) => return Ok(o.into_object()),
                Err(e) => api_err(e, K::KIND, Some(&key), Some(&rv)),
            };
            if !retry_unconditional(given.is_some(), attempt, &err) {
                return Err(err);
            }
        }
        unreachable!("attempts are bounded")
    }

    /// DELETE, returning the object's last state. An API server answers a delete that takes
    /// effect at once with a `Status` rather than the object (custom resources do), so the
    /// object is read first and deleted on the condition that it is still that version; an
    /// unconditional delete that loses that race reads again (a few times).
    async fn delete_typed<K: Typed>(
        &self,
        ns: &str,
        name: &str,
        rv: Option<&str>,
    ) -> Result<Object, StoreError> {
        let key = ObjectKey::new(K::KIND, ns, name);
        let api = self.api::<K>(ns);
        let given = rv.filter(|rv| !rv.is_empty());
        for attempt in 1.. {
            let current = api
                .get(name)
                .await
                .map_err(|e| api_err(e, K::KIND, Some(&key), given))?;
            let current_rv = current.meta().resource_version.clone().unwrap_or_default();
            let condition = given.map(str::to_string).unwrap_or(current_rv);
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(condition.clone()),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            let err = match api.delete(name, &dp).await {
                Ok(res) => return Ok(res.left().unwrap_or(current).into_object()),
                Err(e) => api_err(e, K::KIND, Some(&key), Some(&condition)),
            };
            if !retry_unconditional(given.is_some(), attempt, &err) {
                return Err(err);
            }
        }
        unreachable!("attempts are bounded")
    }

    /// Phase 1 of `apply_all` for one object: read it, decide what to write, dry-run it.
    async fn plan_typed<K: Typed>(&self, obj: Object) -> Result<Plan, StoreError> {
        let key = obj.key();
        let api = self.api::<K>(&key.namespace);
        let current = match api.get(&key.name).await {
            Ok(k) => Some(k.into_object()),
            Err(e) => match api_err(e, K::KIND, Some(&key), None) {
                StoreError::NotFound(_) => None,
                other => return Err(other),
            },
        };
        // A resourceVersion in the applied object is a precondition, as on the embedded store.
        if let Some(given) = obj.resource_version().filter(|rv| !rv.is_empty()) {
            let now = current
                .as_ref()
                .and_then(|c| c.resource_version())
                .unwrap_or("");
            if now != given {
                return Err(StoreError::Conflict {
                    key,
                    current: now.to_string(),
                    given: given.to_string(),
                });
            }
        }
        let status = obj.status_json();
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        match current {
            None => {
                let desired = strip_server_meta(obj);
                api.create(&dry, &K::from_object(desired.clone()))
                    .await
                    .map_err(|e| api_err(e, K::KIND, Some(&key), None))?;
                Ok(Plan {
                    write_status: !status.is_null(),
                    write_spec: true,
                    desired,
                    status,
                    current: None,
                })
            }
            Some(cur) => {
                let desired = carry_over(obj, &cur);
                let write_spec = comparable(&desired) != comparable(&cur);
                let write_status = !status.is_null() && status != cur.status_json();
                let rv = cur.resource_version().map(str::to_string);
                if write_spec {
                    api.replace(&key.name, &dry, &K::from_object(desired.clone()))
                        .await
                        .map_err(|e| api_err(e, K::KIND, Some(&key), rv.as_deref()))?;
                }
                if write_status {
                    api.replace_status(&key.name, &dry, &K::from_object(desired.clone()))
                        .await
                        .map_err(|e| api_err(e, K::KIND, Some(&key), rv.as_deref()))?;
                }
                Ok(Plan {
                    desired,
                    status,
                    current: Some(cur),
                    write_spec,
                    write_status,
                })
            }
        }
    }

    /// Phase 2 of `apply_all` for one object. `written` holds the resourceVersion of objects
    /// this batch already wrote (an object listed twice is replaced the second time).
    async fn execute_typed<K: Typed>(
        &self,
        plan: Plan,
        written: &mut HashMap<ObjectKey, String>,
    ) -> Result<(Object, Applied), StoreError> {
        let key = plan.desired.key();
        let api = self.api::<K>(&key.namespace);
        let pp = PostParams::default();
        let err = |rv: Option<&str>| {
            let key = key.clone();
            let rv = rv.map(str::to_string);
            move |e| api_err(e, K::KIND, Some(&key), rv.as_deref())
        };
        let earlier = written.get(&key).cloned();
        let mut write_status = plan.write_status;
        let (mut result, mut applied) = match (&plan.current, earlier) {
            (None, None) => match api
                .create(&pp, &K::from_object(plan.desired.clone()))
                .await
                .map_err(err(None))
            {
                Ok(created) => (created.into_object(), Applied::Created),
                // Created since phase 1: by another writer, or by an earlier run of this batch
                // whose response was lost. The same content is not an error (and not a
                // duplicate); other content is replaced at the version found.
                Err(StoreError::AlreadyExists(_)) => {
                    let cur = api.get(&key.name).await.map_err(err(None))?.into_object();
                    write_status = !plan.status.is_null() && plan.status != cur.status_json();
                    if comparable(&plan.desired) == comparable(&cur) {
                        (cur, Applied::Unchanged)
                    } else {
                        let desired = carry_over(plan.desired.clone(), &cur);
                        let rv = desired.resource_version().map(str::to_string);
                        let replaced = api
                            .replace(&key.name, &pp, &K::from_object(desired))
                            .await
                            .map_err(err(rv.as_deref()))?;
                        (replaced.into_object(), Applied::Configured)
                    }
                }
                Err(e) => return Err(e),
            },
            (_, Some(rv)) => {
                let mut desired = plan.desired.clone();
                desired.meta_mut().resource_version = Some(rv.clone());
                let replaced = api
                    .replace(&key.name, &pp, &K::from_object(desired))
                    .await
                    .map_err(err(Some(&rv)))?;
                (replaced.into_object(), Applied::Configured)
            }
            (Some(cur), None) if !plan.write_spec && !plan.write_status => {
                return Ok((cur.clone(), Applied::Unchanged));
            }
            (Some(cur), None) if !plan.write_spec => (cur.clone(), Applied::Configured),
            (Some(_), None) => {
                let rv = plan.desired.resource_version().map(str::to_string);
                let replaced = api
                    .replace(&key.name, &pp, &K::from_object(plan.desired.clone()))
                    .await
                    .map_err(err(rv.as_deref()))?;
                (replaced.into_object(), Applied::Configured)
            }
        };
        if write_status {
            if applied == Applied::Unchanged {
                applied = Applied::Configured;
            }
            // Status is a subresource: written separately, at the version just written.
            let with = result.with_status_json(plan.status.clone())?;
            let rv = with.resource_version().map(str::to_string);
            result = api
                .replace_status(&key.name, &pp, &K::from_object(with))
                .await
                .map_err(err(rv.as_deref()))?
                .into_object();
        }
        if let Some(rv) = result.resource_version() {
            written.insert(key, rv.to_string());
        }
        Ok((result, applied))
    }
}

/// What phase 2 of `apply_all` writes for one object.
#[derive(Debug)]
struct Plan {
    /// The object to write (metadata reconciled with the current object).
    desired: Object,
    /// The applied object's status (Null when it has none).
    status: Value,
    /// The object as it was in phase 1, when it existed.
    current: Option<Object>,
    /// Whether metadata/spec differ from `current` (always true for a create).
    write_spec: bool,
    /// Whether the status must be written.
    write_status: bool,
}

/// A Kubernetes client from a kubeconfig file, or (with `None`) from the environment:
/// `$KUBECONFIG` or `~/.kube/config`, else the in-cluster service account.
pub async fn client_from_kubeconfig(path: Option<&Path>) -> Result<Client, StoreError> {
    Ok(client_and_server(path).await?.0)
}

/// [`client_from_kubeconfig`], and the API server's URL.
async fn client_and_server(path: Option<&Path>) -> Result<(Client, String), StoreError> {
    tinkerbell_edge::tls::install_crypto_provider();
    let config = match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| StoreError::Kube(kube::Error::InferKubeconfig(e)))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| StoreError::Kube(kube::Error::InferKubeconfig(e)))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| StoreError::Kube(kube::Error::InferConfig(e)))?,
    };
    let server = config.cluster_url.to_string();
    Ok((Client::try_from(config).map_err(StoreError::Kube)?, server))
}

fn scoped_api<K: Typed>(client: &Client, ns: &str) -> Api<K> {
    if ns.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), ns)
    }
}

/// Whether a write that failed with `err` on `attempt` is tried again: only an unconditional
/// one (no resourceVersion `given`) that lost a race, a few times.
fn retry_unconditional(given: bool, attempt: usize, err: &StoreError) -> bool {
    !given && attempt < UNCONDITIONAL_ATTEMPTS && matches!(err, StoreError::Conflict { .. })
}

/// Map a client error to the store's vocabulary. `key` is the object for object-level calls
/// (None for list/watch), `given` the resourceVersion the call carried.
fn api_err(e: kube::Error, kind: Kind, key: Option<&ObjectKey>, given: Option<&str>) -> StoreError {
    let kube::Error::Api(status) = &e else {
        return StoreError::Kube(e);
    };
    StoreError::from_status(status, Some(kind), key, given).unwrap_or(StoreError::Kube(e))
}

/// Drop metadata the server owns (an exported document may carry it; a create refuses
/// `resourceVersion`).
fn strip_server_meta(mut obj: Object) -> Object {
    let m = obj.meta_mut();
    m.resource_version = None;
    m.uid = None;
    m.creation_timestamp = None;
    m.generation = None;
    m.managed_fields = None;
    m.deletion_timestamp = None;
    obj
}

/// The applied object, made into a replace of `cur`: the current resourceVersion and uid,
/// and the controllers' finalizers/ownerReferences unless the document sets its own.
fn carry_over(obj: Object, cur: &Object) -> Object {
    let mut obj = strip_server_meta(obj);
    let c = cur.meta();
    let m = obj.meta_mut();
    m.resource_version = c.resource_version.clone();
    m.uid = c.uid.clone();
    if m.finalizers.is_none() {
        m.finalizers = c.finalizers.clone();
    }
    if m.owner_references.is_none() {
        m.owner_references = c.owner_references.clone();
    }
    obj
}

/// What `apply_all` compares to decide Unchanged: the [`server_view`] without status and
/// server-set metadata.
fn comparable(obj: &Object) -> Value {
    let mut v = server_view(obj);
    if let Value::Object(map) = &mut v {
        map.remove("status");
        let meta = map.remove("metadata").unwrap_or(Value::Null);
        let mut kept = serde_json::Map::new();
        for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
            match meta.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) if m.is_empty() => {}
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(x) => {
                    kept.insert(field.into(), x.clone());
                }
            }
        }
        map.insert("metadata".into(), Value::Object(kept));
    }
    v
}

type KubeStream<K> = BoxStream<'static, kube::Result<KubeEvent<K>>>;

/// Feed a store watch: the initial events, then the Kubernetes watch, re-watching from the
/// last resourceVersion whenever the server ends it. Stops when the consumer goes away.
async fn follow<K: Typed>(
    api: Api<K>,
    initial: Vec<WatchEvent>,
    mut stream: KubeStream<K>,
    mut rv: String,
    tx: mpsc::Sender<Result<WatchEvent, StoreError>>,
) {
    for ev in initial {
        if tx.send(Ok(ev)).await.is_err() {
            return;
        }
    }
    loop {
        let started = Instant::now();
        let mut delivered = false;
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                () = tx.closed() => return,
            };
            let Some(next) = next else { break };
            delivered = true;
            let (k, event): (K, fn(Object) -> WatchEvent) = match next {
                Ok(KubeEvent::Added(k)) => (k, WatchEvent::Added),
                Ok(KubeEvent::Modified(k)) => (k, WatchEvent::Modified),
                Ok(KubeEvent::Deleted(k)) => (k, WatchEvent::Deleted),
                Ok(KubeEvent::Bookmark(b)) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                Ok(KubeEvent::Error(status)) => {
                    let err = StoreError::from_status(&status, Some(K::KIND), None, Some(&rv))
                        .unwrap_or(StoreError::Kube(kube::Error::Api(status)));
                    let _ = tx.send(Err(err)).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(api_err(e, K::KIND, None, Some(&rv)))).await;
                    return;
                }
            };
            rv = k.meta().resource_version.clone().unwrap_or(rv);
            if tx.send(Ok(event(k.into_object()))).await.is_err() {
                return;
            }
        }
        // The server ended the watch (normal after timeoutSeconds). Don't spin on a server or
        // proxy that ends every watch at once.
        if !delivered && started.elapsed() < BACKOFF_MIN {
            tokio::select! {
                () = tokio::time::sleep(BACKOFF_MIN) => {}
                () = tx.closed() => return,
            }
        }
        let wp = WatchParams::default();
        let next = tokio::select! {
            r = api.watch(&wp, &rv) => r,
            () = tx.closed() => return,
        };
        stream = match next {
            Ok(s) => s.boxed(),
            Err(e) => {
                let _ = tx.send(Err(api_err(e, K::KIND, None, Some(&rv)))).await;
                return;
            }
        };
    }
}

/// Keep one kind (Hardware or Workflow) of the index up to date from its [`runtime::watcher`]
/// (which lists, watches, relists when the history is gone and backs off on errors). Errors are
/// recorded for lookups that time out. Ends when the watcher does (the store was dropped).
async fn run_index(
    kind: Kind,
    mut events: BoxStream<'static, Result<runtime::Event, StoreError>>,
    shared: Arc<Shared>,
) {
    while let Some(event) = events.next().await {
        match event {
            Ok(runtime::Event::Restarted(items)) => {
                shared.write().replace_all(kind, &items);
                shared.mark_synced(kind);
            }
            Ok(runtime::Event::Applied(obj)) => shared.write().upsert(&obj),
            Ok(runtime::Event::Deleted(obj)) => shared.write().delete_watched(&obj),
            Err(e) => shared.record_error(format!("watching {kind}: {}", crate::error_chain(&e))),
        }
    }
}

#[async_trait]
impl Store for KubeStore {
    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, StoreError> {
        let ns = self.object_ns(namespace);
        by_kind!(kind, K => self.get_typed::<K>(&ns, name).await)
    }

    async fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        let ns = self.collection_ns(namespace);
        by_kind!(kind, K => self.list_typed::<K>(ns).await)
    }

    async fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        since: Option<&str>,
    ) -> Result<WatchStream, StoreError> {
        let ns = self.collection_ns(namespace);
        by_kind!(kind, K => self.watch_typed::<K>(ns, since).await)
    }

    async fn create(&self, obj: Object) -> Result<Object, StoreError> {
        let obj = self.with_namespace(obj);
        if obj.resource_version().is_some_and(|rv| !rv.is_empty()) {
            return Err(StoreError::Invalid {
                key: obj.key(),
                field: "metadata.resourceVersion".into(),
                message: "must not be set on create".into(),
            });
        }
        self.check_hardware(&obj).await?;
        let created = by_kind!(obj.kind(), K => self.create_typed::<K>(obj).await)?;
        self.note_written(&created);
        Ok(created)
    }

    async fn update(&self, obj: Object) -> Result<Object, StoreError> {
        let obj = self.with_namespace(obj);
        self.check_hardware(&obj).await?;
        let updated = by_kind!(obj.kind(), K => self.replace_typed::<K>(obj, false).await)?;
        self.note_written(&updated);
        Ok(updated)
    }

    async fn update_status(&self, obj: Object) -> Result<Object, StoreError> {
        let obj = self.with_namespace(obj);
        let updated = by_kind!(obj.kind(), K => self.replace_typed::<K>(obj, true).await)?;
        self.note_written(&updated);
        Ok(updated)
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Object, StoreError> {
        let ns = self.object_ns(namespace);
        let gone = by_kind!(kind, K => self.delete_typed::<K>(&ns, name, resource_version).await)?;
        if matches!(kind, Kind::Hardware | Kind::Workflow) {
            let mut index = self.inner.shared.write();
            // The object's last state: a watch event older than it must not bring it back.
            if gone.resource_version().is_some() {
                index.delete(&gone);
            } else {
                index.remove(kind, &format!("{ns}/{name}"));
            }
        }
        Ok(gone)
    }

    async fn apply_all(&self, objs: Vec<Object>) -> Result<Vec<(Object, Applied)>, StoreError> {
        let objs: Vec<Object> = objs.into_iter().map(|o| self.with_namespace(o)).collect();

        // Identities, checked against the index plus the batch's earlier Hardware.
        if objs.iter().any(|o| o.kind() == Kind::Hardware) {
            self.wait_synced(Kind::Hardware).await?;
            let mut overlay = self.inner.shared.read().index.clone();
            for obj in &objs {
                if let Object::Hardware(h) = obj {
                    check_hardware_claims(&overlay, obj)?;
                    overlay.upsert_hardware(h.clone());
                }
            }
        }

        // Phase 1: read and dry-run everything; nothing is written if any object fails.
        let mut plans = Vec::with_capacity(objs.len());
        for obj in objs {
            let plan = by_kind!(obj.kind(), K => self.plan_typed::<K>(obj).await)?;
            plans.push(plan);
        }

        // Phase 2: write for real, in order (see the module docs for partial failure).
        let mut written = HashMap::new();
        let mut out = Vec::with_capacity(plans.len());
        for plan in plans {
            let kind = plan.desired.kind();
            let (obj, applied) =
                by_kind!(kind, K => self.execute_typed::<K>(plan, &mut written).await)?;
            if applied != Applied::Unchanged {
                self.note_written(&obj);
            }
            out.push((obj, applied));
        }
        Ok(out)
    }
}

#[async_trait]
impl HardwareLookup for KubeStore {
    async fn hardware_by(
        &self,
        claim: ClaimKind,
        value: &str,
    ) -> Result<Option<Arc<Hardware>>, StoreError> {
        self.wait_synced(Kind::Hardware).await?;
        Ok(self.inner.shared.read().index.lookup(claim, value))
    }

    async fn workflows_by_agent_id(
        &self,
        agent_id: &str,
    ) -> Result<Vec<Arc<Workflow>>, StoreError> {
        self.wait_synced(Kind::Workflow).await?;
        Ok(self.inner.shared.read().index.workflows_by_agent(agent_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparable_ignores_server_metadata_and_status() {
        let a = Object::from_typed_json(serde_json::json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
            "metadata": {"name": "t", "namespace": "ns", "labels": {}},
            "spec": {"data": "x"}
        }))
        .unwrap();
        let b = Object::from_typed_json(serde_json::json!({
            "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Template",
            "metadata": {"name": "t", "namespace": "ns", "resourceVersion": "9", "uid": "u",
                         "generation": 3, "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"data": "x"}, "status": {"state": "Ready"}
        }))
        .unwrap();
        assert_eq!(comparable(&a), comparable(&b));
        let secret_string = Object::from_typed_json(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "ns"},
            "stringData": {"password": "pw"}
        }))
        .unwrap();
        let secret_stored = Object::from_typed_json(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s", "namespace": "ns", "resourceVersion": "2"},
            "data": {"password": "cHc="}
        }))
        .unwrap();
        assert_eq!(comparable(&secret_string), comparable(&secret_stored));
    }
}
