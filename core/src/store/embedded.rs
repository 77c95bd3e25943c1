//! The embedded store: the appliance's default backend, one redb file in the data directory.
//!
//! Layout and why:
//! * **Durability.** Every write is one redb transaction committed with `Durability::Immediate`
//!   (fsync) before the caller is answered, so an acknowledged write survives `kill -9` or power
//!   loss. A batch (`apply_all`, CSV import) is one transaction: all of it lands or none.
//! * **Reads from memory.** All objects (a few KiB each; 10,000 machines are tens of MiB) are
//!   held in memory with the [`LookupIndex`], rebuilt at open. Boots' and hegel's per-packet
//!   lookups never touch the disk. Memory only changes after the commit returned, so readers never
//!   see a write that could still be lost.
//! * **One writer.** Writers are serialised by a mutex; each computes the new objects against
//!   the current state, commits, then publishes state and events under the state lock.
//! * **Watches.** Changes are kept in a bounded in-memory history and broadcast. A watch from a
//!   resourceVersion replays the history after it, then follows live. A watcher that asks for
//!   history older than what is kept, or falls behind the broadcast buffer, gets
//!   [`StoreError::Expired`] and lists again — it never silently misses a change.
//! * **Ownership and upgrades.** The file carries a format marker and a format version; a file
//!   that is not ours is refused with [`StoreError::NotOurs`] instead of being "repaired". An
//!   older version is migrated at open, every step and the new version in one transaction
//!   ([`MIGRATIONS`]; [`EmbeddedStore::plan_migration`] shows them without writing); a newer one
//!   is refused with [`StoreError::TooNew`], naming both versions, and left as it is.
//! * **Failed commits.** After a commit fails (a full disk), redb refuses every later write of
//!   that handle (`PreviousIo`). The writer therefore reopens the file before its next commit,
//!   so writes work again once space is freed; until a commit succeeds the store reports itself
//!   failing ([`EmbeddedStore::health`]: logged, counted, and `/healthz` of the store API says
//!   so with 503). Memory only changes after a successful commit, so nothing half-applied shows.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use tokio::sync::broadcast;

use super::index::{ClaimKind, LookupIndex, check_hardware_claims, owner};
use super::shared::async_stream;
use super::{
    Applied, HardwareLookup, Kind, Object, ObjectKey, ObjectList, Store, StoreError, WatchEvent,
    WatchStream,
};
use crate::model::{Hardware, Workflow, names};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";
const VERSION_KEY: &str = "version";
const WRITER_KEY: &str = "writer";
const REVISION_KEY: &str = "revision";
/// Written into every store file; a file without it is not ours. The format's version is
/// beside it, under `version`.
pub const FORMAT: &str = "tinkerbell-rs store";
/// The marker of format version 1, which had no `version` key.
const FORMAT_V1: &str = "tinkerbell-rs store v1";
/// The format version this build writes, and the newest it reads.
pub const VERSION: u32 = 2;
/// Who writes the format, recorded so that an older binary can name it.
const WRITER: &str = concat!("tinkerbell ", env!("CARGO_PKG_VERSION"));

/// One step from a format version to the next, run inside the transaction that opens the store.
#[derive(Debug)]
pub struct Migration {
    /// The version it starts from; it ends at `from + 1`.
    pub from: u32,
    /// What it changes, for the log and `serve --dry-run-migrate`.
    pub what: &'static str,
    apply: fn(&redb::WriteTransaction) -> Result<(), redb::Error>,
}

/// Every migration, oldest first. After the steps, the same transaction writes the new
/// version, the marker and the writer.
pub const MIGRATIONS: &[Migration] = &[Migration {
    from: 1,
    what: "replace the marker \"tinkerbell-rs store v1\" with \"tinkerbell-rs store\" plus a format version and the writing binary, so that binaries from now on refuse a newer store by name (objects are unchanged)",
    // The marker, version and writer are what every migration ends with.
    apply: |_| Ok(()),
}];

/// What opening a data directory's store would do to its format ([`EmbeddedStore::plan_migration`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// The store file.
    pub path: PathBuf,
    /// Its format version; `None` when there is no store yet (one of [`VERSION`] is created).
    pub found: Option<u32>,
    /// The version it would be at: [`VERSION`].
    pub target: u32,
    /// The steps, in order; empty when there is nothing to do.
    pub steps: Vec<&'static str>,
}
/// The store file's name inside the data directory.
pub const FILE_NAME: &str = "store.redb";
/// How many changes are kept for watches that resume from a resourceVersion.
const HISTORY: usize = 65_536;
/// ... and how many bytes of them at most (their objects' JSON): a few large objects (userData,
/// Secrets) must not keep gigabytes of old versions alive. A watch resuming from a version older
/// than what is kept gets `Expired` and relists, as when the count is reached.
const HISTORY_BYTES: usize = 64 << 20;
/// redb's page cache. Every object is held in memory by the store itself and the file is only
/// read at open, so a large redb cache (its default is 1 GiB) would just hold a second copy.
const REDB_CACHE: usize = 16 << 20;

/// One committed change.
#[derive(Debug)]
struct Change {
    revision: u64,
    event: WatchEvent,
    /// The object's JSON size, counted against [`HISTORY_BYTES`].
    bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    revision: u64,
    /// Watches may resume from any revision >= this.
    oldest_resumable: u64,
    objects: BTreeMap<ObjectKey, Object>,
    index: LookupIndex,
    history: VecDeque<Arc<Change>>,
    /// Sum of `bytes` over `history`.
    history_bytes: usize,
}

/// The embedded store. Cheap to clone; all clones share one database.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Writer>,
    state: RwLock<State>,
    events: broadcast::Sender<Arc<Change>>,
    /// Commits that failed since open.
    write_failures: AtomicU64,
}

/// The database handle, owned by the one writer.
#[derive(Debug)]
struct Writer {
    /// `None` only while a reopen is in progress or after it failed.
    db: Option<Database>,
    /// Why the last commit failed, until one succeeds.
    failing: Option<String>,
}

/// Whether the store can write, as [`EmbeddedStore::health`] reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Why writes are failing (the last commit's error), `None` when the last commit worked.
    pub failing: Option<String>,
    /// Commits that failed since the store was opened.
    pub write_failures: u64,
}

/// A write to perform in a transaction.
#[derive(Debug)]
enum Op {
    Create(Object),
    Update(Object),
    UpdateStatus(Object),
    Delete(ObjectKey, Option<String>),
    Apply(Object),
}

/// What a committed op produced.
#[derive(Debug)]
struct Outcome {
    object: Object,
    applied: Applied,
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn open_err(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_path_buf(),
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() != std::io::ErrorKind::InvalidData =>
        {
            db_err(path, redb::Error::Io(io))
        }
        other => StoreError::NotOurs {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// The format version of an existing store file and the binary that wrote it; a file that is
/// not ours is [`StoreError::NotOurs`], a newer one [`StoreError::TooNew`].
fn read_version(path: &Path, db: &impl ReadableDatabase) -> Result<(u32, String), StoreError> {
    let not_ours = |reason: String| not_ours(path, reason);
    let tx = db.begin_read().map_err(|e| db_err(path, e))?;
    let meta = tx
        .open_table(META)
        .map_err(|e| not_ours(format!("no meta table ({e})")))?;
    let text = |key: &str| -> Result<Option<String>, StoreError> {
        let v = meta.get(key).map_err(|e| db_err(path, e))?;
        Ok(v.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    };
    let format = text(FORMAT_KEY)?.ok_or_else(|| not_ours("no format marker".into()))?;
    let writer = text(WRITER_KEY)?.unwrap_or_else(|| "an unknown version".into());
    let found = match format.as_str() {
        FORMAT_V1 => 1,
        FORMAT => u32::from_le_bytes(meta_fixed(&meta, path, VERSION_KEY, "format version")?),
        other => return Err(not_ours(format!("format {other:?}, expected {FORMAT:?}"))),
    };
    if found > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
            writer,
            binary: WRITER.into(),
        });
    }
    Ok((found, writer))
}

/// The format version of the store file at `path`, read without writing to it. A file that
/// was not closed cleanly (a crash, `kill -9`) cannot be opened read-only, since redb must
/// repair it first: the repair then runs on a copy beside it, which is removed.
fn version_without_writing(path: &Path) -> Result<u32, StoreError> {
    match redb::Builder::new().open_read_only(path) {
        Ok(db) => return read_version(path, &db).map(|(v, _)| v),
        Err(redb::DatabaseError::RepairAborted) => {}
        Err(e) => return Err(open_err(path, e)),
    }
    let copy = path.with_extension("redb.version-check");
    let checked = (|| {
        std::fs::copy(path, &copy).map_err(|e| db_err(path, redb::Error::Io(e)))?;
        let db = Database::builder()
            .set_cache_size(REDB_CACHE)
            .open(&copy)
            .map_err(|e| open_err(path, e))?;
        read_version(path, &db).map(|(v, _)| v)
    })();
    let _ = std::fs::remove_file(&copy);
    checked
}

fn not_ours(path: &Path, reason: String) -> StoreError {
    StoreError::NotOurs {
        path: path.to_path_buf(),
        reason,
    }
}

/// The fixed-size value `key` of the meta table; a missing or odd-sized one means the file is
/// not ours (`what` names it).
fn meta_fixed<const N: usize>(
    meta: &redb::ReadOnlyTable<&str, &[u8]>,
    path: &Path,
    key: &str,
    what: &str,
) -> Result<[u8; N], StoreError> {
    let not_ours = |reason: String| not_ours(path, reason);
    let v = meta
        .get(key)
        .map_err(|e| db_err(path, e))?
        .ok_or_else(|| not_ours(format!("no {what}")))?;
    v.value()
        .try_into()
        .map_err(|_| not_ours(format!("{what} is not {N} bytes")))
}

/// The marker, version and writer of the format this build writes.
fn write_marker(meta: &mut redb::Table<&str, &[u8]>) -> Result<(), redb::StorageError> {
    meta.insert(FORMAT_KEY, FORMAT.as_bytes())?;
    meta.insert(VERSION_KEY, &VERSION.to_le_bytes()[..])?;
    meta.insert(WRITER_KEY, WRITER.as_bytes())?;
    Ok(())
}

/// Bring a store of version `found` to [`VERSION`]: every step and the new marker in one
/// durable transaction, so a crash leaves the old version whole.
fn migrate(path: &Path, db: &Database, found: u32) -> Result<(), StoreError> {
    let err = |e: redb::Error| db_err(path, e);
    let mut tx = db.begin_write().map_err(|e| err(e.into()))?;
    tx.set_durability(Durability::Immediate)
        .map_err(|e| err(e.into()))?;
    let steps: Vec<&Migration> = MIGRATIONS.iter().filter(|m| m.from >= found).collect();
    for m in &steps {
        (m.apply)(&tx).map_err(err)?;
    }
    {
        let mut meta = tx.open_table(META).map_err(|e| err(e.into()))?;
        write_marker(&mut meta).map_err(|e| err(e.into()))?;
    }
    tx.commit().map_err(|e| err(e.into()))?;
    for m in steps {
        tracing::info!(path = %path.display(), from = m.from, to = m.from + 1, "store migrated: {}", m.what);
    }
    Ok(())
}

fn key_string(k: &ObjectKey) -> String {
    format!("{}/{}/{}", k.kind.as_str(), k.namespace, k.name)
}

impl EmbeddedStore {
    /// Open (or create) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        // The store holds every BMC credential: the directory 0700, the file 0600, whatever
        // the umask; an older appliance's looser modes are tightened (and said).
        let private =
            |p: &Path, r: std::io::Result<Option<crate::private_files::Tightened>>| match r {
                Ok(Some(t)) => {
                    tracing::warn!("tightened the data directory's permissions: {t}");
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(db_err(p, redb::Error::Io(e))),
            };
        private(data_dir, crate::private_files::dir(data_dir))?;
        let path = data_dir.join(FILE_NAME);
        // An empty file is a new store to redb; created 0600 before redb writes a byte.
        private(&path, crate::private_files::file(&path))?;
        let exists = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
        // A store this binary cannot read is refused before it is opened for writing: redb
        // writes to a file on a writable open and close, and a refused store stays untouched.
        if exists {
            version_without_writing(&path)?;
        }
        let db = if exists {
            Database::builder()
                .set_cache_size(REDB_CACHE)
                .open(&path)
                .map_err(|e| open_err(&path, e))?
        } else {
            Database::builder()
                .set_cache_size(REDB_CACHE)
                .create(&path)
                .map_err(|e| db_err(&path, e))?
        };
        let mut state = State::default();
        if exists {
            let (found, _) = read_version(&path, &db)?;
            if found < VERSION {
                migrate(&path, &db, found)?;
            }
            Self::load(&path, &db, &mut state)?;
        } else {
            let mut tx = db.begin_write().map_err(|e| db_err(&path, e))?;
            tx.set_durability(Durability::Immediate)
                .map_err(|e| db_err(&path, redb::Error::from(e)))?;
            {
                let mut meta = tx.open_table(META).map_err(|e| db_err(&path, e))?;
                write_marker(&mut meta).map_err(|e| db_err(&path, e))?;
                meta.insert(REVISION_KEY, &0u64.to_le_bytes()[..])
                    .map_err(|e| db_err(&path, e))?;
                tx.open_table(OBJECTS).map_err(|e| db_err(&path, e))?;
            }
            tx.commit().map_err(|e| db_err(&path, e))?;
        }
        state.oldest_resumable = state.revision;
        let (events, _) = broadcast::channel(HISTORY);
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Writer {
                    db: Some(db),
                    failing: None,
                }),
                state: RwLock::new(state),
                events,
                write_failures: AtomicU64::new(0),
            }),
        })
    }

    fn load(path: &Path, db: &Database, state: &mut State) -> Result<(), StoreError> {
        let tx = db.begin_read().map_err(|e| db_err(path, e))?;
        let meta = tx.open_table(META).map_err(|e| db_err(path, e))?;
        state.revision = u64::from_le_bytes(meta_fixed(&meta, path, REVISION_KEY, "revision")?);
        let objects = tx.open_table(OBJECTS).map_err(|e| db_err(path, e))?;
        for entry in objects.iter().map_err(|e| db_err(path, e))? {
            let (k, v) = entry.map_err(|e| db_err(path, e))?;
            let json: Value =
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Decode {
                    what: k.value().to_string(),
                    source: e,
                })?;
            let obj = Object::from_typed_json(json)?;
            state.index.upsert(&obj);
            state.objects.insert(obj.key(), obj);
        }
        Ok(())
    }

    /// What [`EmbeddedStore::open`] would migrate in `data_dir`'s store, found without writing
    /// anything (the file is opened read-only). A store newer than this binary is
    /// [`StoreError::TooNew`], as at open.
    pub fn plan_migration(data_dir: &Path) -> Result<MigrationPlan, StoreError> {
        let path = data_dir.join(FILE_NAME);
        let mut plan = MigrationPlan {
            path: path.clone(),
            found: None,
            target: VERSION,
            steps: Vec::new(),
        };
        if !std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
            return Ok(plan);
        }
        let found = version_without_writing(&path)?;
        plan.found = Some(found);
        plan.steps = MIGRATIONS
            .iter()
            .filter(|m| m.from >= found)
            .map(|m| m.what)
            .collect();
        Ok(plan)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The current store revision.
    pub fn revision(&self) -> u64 {
        self.read_state().revision
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.read_state().objects.len()
    }

    /// True when the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated (updates are plain
        // assignments after the commit), so a poisoned lock is still consistent.
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(&self, ops: Vec<Op>) -> Result<Vec<Outcome>, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.commit(ops))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Whether writes work: the last commit's failure (until one succeeds) and the count.
    pub fn health(&self) -> StoreHealth {
        let failing = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failing
            .clone();
        StoreHealth {
            failing,
            write_failures: self.inner.write_failures.load(Ordering::Relaxed),
        }
    }

    /// Commit `writes` and the new revision in one durable transaction. After an earlier
    /// failure the handle is dropped and the file reopened first: redb answers `PreviousIo` to
    /// every write of a handle whose commit failed.
    fn persist(
        &self,
        writer: &mut Writer,
        writes: &[(ObjectKey, Option<Object>)],
        new_rev: u64,
    ) -> Result<Vec<usize>, StoreError> {
        let path = &self.inner.path;
        if writer.failing.is_some() || writer.db.is_none() {
            // redb refuses a second handle on one file: the old one goes first.
            writer.db = None;
            let db = Database::builder()
                .set_cache_size(REDB_CACHE)
                .open(path)
                .map_err(|e| db_err(path, e))?;
            writer.db = Some(db);
        }
        let db = writer
            .db
            .as_ref()
            .unwrap_or_else(|| unreachable!("opened above"));
        let mut sizes = Vec::with_capacity(writes.len());
        let mut tx = db.begin_write().map_err(|e| db_err(path, e))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| db_err(path, redb::Error::from(e)))?;
        {
            let mut table = tx.open_table(OBJECTS).map_err(|e| db_err(path, e))?;
            for (key, obj) in writes {
                let k = key_string(key);
                match obj {
                    Some(o) => {
                        let bytes = serde_json::to_vec(&o.to_json())
                            .unwrap_or_else(|e| unreachable!("JSON values serialise: {e}"));
                        sizes.push(bytes.len());
                        table
                            .insert(k.as_str(), bytes.as_slice())
                            .map_err(|e| db_err(path, e))?;
                    }
                    None => {
                        // The delete event carries the last state; its size is not known
                        // here, so the key stands for it (a deleted object's size was counted
                        // when it was written).
                        sizes.push(k.len() + 256);
                        table.remove(k.as_str()).map_err(|e| db_err(path, e))?;
                    }
                }
            }
            let mut meta = tx.open_table(META).map_err(|e| db_err(path, e))?;
            meta.insert(REVISION_KEY, &new_rev.to_le_bytes()[..])
                .map_err(|e| db_err(path, e))?;
        }
        tx.commit().map_err(|e| db_err(path, e))?;
        Ok(sizes)
    }

    /// Apply `ops` in one transaction.
    fn commit(&self, ops: Vec<Op>) -> Result<Vec<Outcome>, StoreError> {
        let mut writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        let now = Time(k8s_openapi::jiff::Timestamp::now());

        // 1. Compute the new objects against current state plus this batch's earlier ops.
        let (base_rev, outcomes, writes, index) = {
            let st = self.read_state();
            let mut overlay: HashMap<ObjectKey, Option<Object>> = HashMap::new();
            let mut index: Option<LookupIndex> = None;
            let mut outcomes = Vec::with_capacity(ops.len());
            let mut writes: Vec<(ObjectKey, Option<Object>)> = Vec::new();
            let mut rev = st.revision;
            for op in ops {
                let key = match &op {
                    Op::Create(o) | Op::Update(o) | Op::UpdateStatus(o) | Op::Apply(o) => o.key(),
                    Op::Delete(k, _) => k.clone(),
                };
                let current = match overlay.get(&key) {
                    Some(v) => v.clone(),
                    None => st.objects.get(&key).cloned(),
                };
                let next = prepare(op, current.as_ref(), &now)?;
                let Some((mut obj, applied, deleted)) = next else {
                    // Unchanged: no write, answer with the current object.
                    outcomes.push(Outcome {
                        object: current
                            .unwrap_or_else(|| unreachable!("unchanged implies present")),
                        applied: Applied::Unchanged,
                    });
                    continue;
                };
                rev += 1;
                obj.meta_mut().resource_version = Some(rev.to_string());
                if key.kind == Kind::Hardware || key.kind == Kind::Workflow {
                    let idx = index.get_or_insert_with(|| st.index.clone());
                    if let Some(old) = &current {
                        idx.remove(old.kind(), &owner(old));
                    }
                    if !deleted {
                        check_hardware_claims(idx, &obj)?;
                        idx.upsert(&obj);
                    }
                }
                let stored = if deleted { None } else { Some(obj.clone()) };
                overlay.insert(key.clone(), stored.clone());
                writes.push((key, stored));
                outcomes.push(Outcome {
                    object: obj,
                    applied,
                });
            }
            (st.revision, outcomes, writes, index)
        };
        if writes.is_empty() {
            return Ok(outcomes);
        }
        let new_rev = base_rev + writes.len() as u64;

        // 2. Make it durable.
        let sizes = match self.persist(&mut writer, &writes, new_rev) {
            Ok(sizes) => sizes,
            Err(e) => {
                let n = self.inner.write_failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(store = %self.inner.path.display(), failures = n, error = %e,
                "store commit failed; nothing was applied, the next write reopens the store");
                writer.failing = Some(e.to_string());
                return Err(e);
            }
        };
        if let Some(was) = writer.failing.take() {
            tracing::warn!(store = %self.inner.path.display(), earlier = %was, "store writes work again");
        }

        // 3. Publish.
        let mut st = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
        if let Some(index) = index {
            st.index = index;
        }
        let written = outcomes.iter().filter(|o| o.applied != Applied::Unchanged);
        for (rev, (((key, stored), outcome), bytes)) in
            (base_rev + 1..).zip(writes.into_iter().zip(written).zip(sizes))
        {
            let event = match (&stored, st.objects.contains_key(&key)) {
                (None, _) => WatchEvent::Deleted(outcome.object.clone()),
                (Some(o), true) => WatchEvent::Modified(o.clone()),
                (Some(o), false) => WatchEvent::Added(o.clone()),
            };
            match stored {
                Some(o) => st.objects.insert(key, o),
                None => st.objects.remove(&key),
            };
            let change = Arc::new(Change {
                revision: rev,
                event,
                bytes,
            });
            st.history_bytes += bytes;
            st.history.push_back(change.clone());
            while st.history.len() > HISTORY || st.history_bytes > HISTORY_BYTES {
                let Some(old) = st.history.pop_front() else {
                    break;
                };
                st.history_bytes -= old.bytes;
                st.oldest_resumable = old.revision;
            }
            // No receivers is fine.
            let _ = self.inner.events.send(change);
        }
        st.revision = new_rev;
        Ok(outcomes)
    }
}

/// Decide what `op` does to `current`. `None` means "no change".
/// Returns the object to store (or the deleted object), what happened, and whether it is a delete.
fn prepare(
    op: Op,
    current: Option<&Object>,
    now: &Time,
) -> Result<Option<(Object, Applied, bool)>, StoreError> {
    match op {
        Op::Create(mut obj) => {
            let key = obj.key();
            validate_identity(&obj)?;
            if current.is_some() {
                return Err(StoreError::AlreadyExists(key));
            }
            if obj.resource_version().is_some_and(|rv| !rv.is_empty()) {
                return Err(StoreError::Invalid {
                    key,
                    field: "metadata.resourceVersion".into(),
                    message: "must not be set on create".into(),
                });
            }
            // As the Kubernetes API does for resources with a status subresource.
            obj = obj.with_status_json(Value::Null)?;
            stamp_new(&mut obj, now);
            Ok(Some((obj, Applied::Created, false)))
        }
        Op::Update(obj) => {
            let key = obj.key();
            validate_identity(&obj)?;
            let cur = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            check_rv(&key, cur, obj.resource_version())?;
            let new = obj.with_status_json(cur.status_json())?;
            Ok(merge_existing(new, cur).map(|o| (o, Applied::Configured, false)))
        }
        Op::UpdateStatus(obj) => {
            let key = obj.key();
            let cur = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            check_rv(&key, cur, obj.resource_version())?;
            let new = cur.with_status_json(obj.status_json())?;
            Ok(merge_existing(new, cur).map(|o| (o, Applied::Configured, false)))
        }
        Op::Delete(key, rv) => {
            let cur = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            check_rv(&key, cur, rv.as_deref())?;
            Ok(Some((cur.clone(), Applied::Configured, true)))
        }
        Op::Apply(obj) => {
            validate_identity(&obj)?;
            // A resourceVersion in the applied object is a precondition, as server-side apply
            // treats it.
            let key = obj.key();
            match (current, obj.resource_version().filter(|rv| !rv.is_empty())) {
                (Some(cur), given @ Some(_)) => check_rv(&key, cur, given)?,
                (None, Some(given)) => {
                    return Err(StoreError::Conflict {
                        key,
                        current: String::new(),
                        given: given.to_string(),
                    });
                }
                _ => {}
            }
            match current {
                None => {
                    let mut obj = obj;
                    stamp_new(&mut obj, now);
                    Ok(Some((obj, Applied::Created, false)))
                }
                Some(cur) => {
                    let status = obj.status_json();
                    let new = if status.is_null() {
                        obj.with_status_json(cur.status_json())?
                    } else {
                        obj
                    };
                    Ok(merge_existing(new, cur).map(|o| (o, Applied::Configured, false)))
                }
            }
        }
    }
}

/// Fill server-owned metadata on a new object.
fn stamp_new(obj: &mut Object, now: &Time) {
    let m = obj.meta_mut();
    if m.uid.as_deref().unwrap_or("").is_empty() {
        m.uid = Some(uuid::Uuid::new_v4().to_string());
    }
    if m.creation_timestamp.is_none() {
        m.creation_timestamp = Some(now.clone());
    }
    m.generation = Some(1);
    m.resource_version = None;
    m.managed_fields = None;
}

/// Carry server-owned metadata over from the stored object; `None` when nothing would change.
fn merge_existing(mut new: Object, cur: &Object) -> Option<Object> {
    let spec_changed = new.to_json().get("spec") != cur.to_json().get("spec")
        || new.to_json().get("data") != cur.to_json().get("data")
        || new.to_json().get("stringData") != cur.to_json().get("stringData");
    {
        let c = cur.meta();
        let m = new.meta_mut();
        m.uid = c.uid.clone();
        m.creation_timestamp = c.creation_timestamp.clone();
        m.generation = c.generation;
        m.managed_fields = None;
        m.resource_version = c.resource_version.clone();
    }
    if new == *cur {
        return None;
    }
    if spec_changed {
        let m = new.meta_mut();
        m.generation = Some(m.generation.unwrap_or(0) + 1);
    }
    Some(new)
}

fn check_rv(key: &ObjectKey, cur: &Object, given: Option<&str>) -> Result<(), StoreError> {
    match given {
        Some(g) if !g.is_empty() && Some(g) != cur.resource_version() => {
            Err(StoreError::Conflict {
                key: key.clone(),
                current: cur.resource_version().unwrap_or("").to_string(),
                given: g.to_string(),
            })
        }
        _ => Ok(()),
    }
}

fn validate_identity(obj: &Object) -> Result<(), StoreError> {
    let key = obj.key();
    let invalid = |field: &str, message: String| StoreError::Invalid {
        key: key.clone(),
        field: field.into(),
        message,
    };
    if !names::is_dns1123_subdomain(obj.name()) {
        return Err(invalid(
            "metadata.name",
            format!(
                "{:?} is not a DNS-1123 subdomain (lower-case letters, digits and '-' in dot-separated labels that start and end alphanumeric; at most 253)",
                obj.name()
            ),
        ));
    }
    if !names::is_dns1123_label(obj.namespace()) {
        return Err(invalid(
            "metadata.namespace",
            format!("{:?} is not a DNS-1123 label", obj.namespace()),
        ));
    }
    Ok(())
}

fn parse_rv(rv: &str) -> Result<u64, StoreError> {
    rv.parse()
        .map_err(|_| StoreError::BadResourceVersion(rv.to_string()))
}

fn matches(key: &ObjectKey, kind: Kind, namespace: Option<&str>) -> bool {
    key.kind == kind && namespace.is_none_or(|ns| ns == key.namespace)
}

fn one(mut v: Vec<Outcome>) -> Object {
    v.pop()
        .unwrap_or_else(|| unreachable!("one op yields one outcome"))
        .object
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, StoreError> {
        let key = ObjectKey::new(kind, namespace, name);
        self.read_state()
            .objects
            .get(&key)
            .cloned()
            .ok_or(StoreError::NotFound(key))
    }

    async fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        let st = self.read_state();
        let start = ObjectKey::new(kind, namespace.unwrap_or(""), "");
        let items = st
            .objects
            .range(start..)
            .take_while(|(k, _)| matches(k, kind, namespace))
            .map(|(_, o)| o.clone())
            .collect();
        Ok(ObjectList {
            items,
            resource_version: st.revision.to_string(),
        })
    }

    async fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        since: Option<&str>,
    ) -> Result<WatchStream, StoreError> {
        let namespace = namespace.map(str::to_string);
        let since = match since {
            None | Some("") | Some("0") => None,
            Some(rv) => Some(parse_rv(rv)?),
        };
        let (backlog, mut rx, mut last) = {
            let st = self.read_state();
            let rx = self.inner.events.subscribe();
            let backlog: Vec<WatchEvent> = match since {
                None => st
                    .objects
                    .iter()
                    .filter(|(k, _)| matches(k, kind, namespace.as_deref()))
                    .map(|(_, o)| WatchEvent::Added(o.clone()))
                    .collect(),
                Some(rv) if rv < st.oldest_resumable => {
                    return Err(StoreError::Expired {
                        kind,
                        resource_version: rv.to_string(),
                    });
                }
                Some(rv) => st
                    .history
                    .iter()
                    .filter(|c| c.revision > rv)
                    .filter(|c| matches(&c.event.object().key(), kind, namespace.as_deref()))
                    .map(|c| c.event.clone())
                    .collect(),
            };
            (backlog, rx, st.revision)
        };
        let live = async_stream(move |tx| async move {
            for ev in backlog {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            loop {
                // Exit as soon as the consumer is gone, even when nothing is being written.
                let next = tokio::select! {
                    r = rx.recv() => r,
                    () = tx.closed() => return,
                };
                match next {
                    Ok(change) => {
                        if change.revision <= last {
                            continue;
                        }
                        last = change.revision;
                        if !matches(&change.event.object().key(), kind, namespace.as_deref()) {
                            continue;
                        }
                        if tx.send(Ok(change.event.clone())).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx
                            .send(Err(StoreError::Expired {
                                kind,
                                resource_version: last.to_string(),
                            }))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(live)
    }

    async fn create(&self, obj: Object) -> Result<Object, StoreError> {
        self.run(vec![Op::Create(obj)]).await.map(one)
    }

    async fn update(&self, obj: Object) -> Result<Object, StoreError> {
        self.run(vec![Op::Update(obj)]).await.map(one)
    }

    async fn update_status(&self, obj: Object) -> Result<Object, StoreError> {
        self.run(vec![Op::UpdateStatus(obj)]).await.map(one)
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Object, StoreError> {
        let key = ObjectKey::new(kind, namespace, name);
        self.run(vec![Op::Delete(key, resource_version.map(str::to_string))])
            .await
            .map(one)
    }

    async fn apply_all(&self, objs: Vec<Object>) -> Result<Vec<(Object, Applied)>, StoreError> {
        let out = self.run(objs.into_iter().map(Op::Apply).collect()).await?;
        Ok(out.into_iter().map(|o| (o.object, o.applied)).collect())
    }

    fn write_health(&self) -> StoreHealth {
        self.health()
    }
}

#[async_trait]
impl HardwareLookup for EmbeddedStore {
    async fn hardware_by(
        &self,
        claim: ClaimKind,
        value: &str,
    ) -> Result<Option<Arc<Hardware>>, StoreError> {
        Ok(self.read_state().index.lookup(claim, value))
    }
    async fn workflows_by_agent_id(
        &self,
        agent_id: &str,
    ) -> Result<Vec<Arc<Workflow>>, StoreError> {
        Ok(self.read_state().index.workflows_by_agent(agent_id))
    }
}
