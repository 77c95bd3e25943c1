//! Asset files in memory, shared by the transfers that serve them.
//!
//! A transfer used to read its whole file (up to 16 MiB) into memory of its own, so the 512
//! transfers a flood can start pinned up to 8 GiB. Now:
//!
//! * every request still opens its file beneath the asset directory (`openat2`, [`files`]);
//!   the copy is looked up by the identity and version of the file opened (device, inode,
//!   size, mtime and ctime of its `fstat`), so a replaced or rewritten file is read afresh and
//!   a path never reaches bytes it could not open;
//! * concurrent transfers of one version share one copy: the first reads it, the others wait
//!   for that read and take the same bytes;
//! * a copy lives while a transfer uses it: the cache keeps no copy of its own, and the memory
//!   is freed when the last transfer holding it ends;
//! * **bound**: the copies together hold at most the configured budget
//!   ([`Config::max_file_cache_bytes`](super::Config::max_file_cache_bytes), 64 MiB by
//!   default), and no file larger than [`READ_WHOLE`] is read whole. A file that does not fit
//!   is streamed from its open file instead, with a fixed-size read buffer per transfer.
//!
//! [`files`]: super::files

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OnceCell;

use super::metrics::TftpMetrics;

/// Asset files up to this size may be read whole and shared from memory; larger ones are
/// always streamed from their file.
pub(crate) const READ_WHOLE: u64 = 16 << 20;

/// One version of one file: what `fstat` says about the open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    /// The key of the file `meta` describes.
    pub(crate) fn of(meta: &Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The shared copy of one file version; filled by the first transfer that needs it.
#[derive(Debug, Default)]
struct Entry {
    data: OnceCell<Bytes>,
}

/// A transfer's share of a copy: while one exists, further transfers of the same file version
/// find the copy instead of reading the file again.
#[derive(Debug)]
pub(crate) struct FileHold {
    _entry: Arc<Entry>,
}

/// Where a transfer takes its bytes from.
#[derive(Debug)]
pub(crate) enum Cached {
    /// The shared copy; keep the hold as long as the bytes are in use.
    Memory(FileHold, Bytes),
    /// Too large for memory, or the budget is spent: read the file as it goes.
    Stream(File),
}

/// Bytes counted against the budget until dropped.
#[derive(Debug)]
struct Reservation {
    bytes: u64,
    held: Arc<AtomicU64>,
    gauge: Gauge,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::AcqRel);
        self.gauge.dec_by(self.bytes as i64);
    }
}

/// A file's bytes and their place in the budget, freed together when the last [`Bytes`]
/// pointing into them is dropped.
struct Accounted {
    data: Vec<u8>,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Accounted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Why no shared copy was made.
enum LoadError {
    /// The budget has no room: the caller streams this file.
    OverBudget(File),
    /// Reading failed.
    Io(io::Error),
}

/// The asset files held in memory; see the module documentation.
#[derive(Debug)]
pub(crate) struct FileCache {
    budget: u64,
    held: Arc<AtomicU64>,
    metrics: TftpMetrics,
    entries: Mutex<HashMap<FileKey, Weak<Entry>>>,
}

impl FileCache {
    /// A cache holding at most `budget` bytes, reporting through `metrics`.
    pub(crate) fn new(budget: u64, metrics: TftpMetrics) -> FileCache {
        FileCache {
            budget,
            held: Arc::default(),
            metrics,
            entries: Mutex::default(),
        }
    }

    /// The bytes of `file` (whose `fstat` gave `key`): the copy other transfers already hold,
    /// a new shared copy if it fits the budget, or else the file itself to stream.
    pub(crate) async fn get(&self, key: FileKey, file: File) -> io::Result<Cached> {
        if key.len > READ_WHOLE.min(self.budget) {
            return Ok(Cached::Stream(file));
        }
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            match entries.get(&key).and_then(Weak::upgrade) {
                Some(e) => e,
                None => {
                    // Forget the copies nobody holds any more: the map stays as small as the
                    // number of files in use.
                    entries.retain(|_, e| e.strong_count() > 0);
                    let e = Arc::new(Entry::default());
                    entries.insert(key, Arc::downgrade(&e));
                    e
                }
            }
        };
        let loaded = entry
            .data
            .get_or_try_init(|| self.load(key.len, file))
            .await
            .cloned();
        match loaded {
            Ok(data) => Ok(Cached::Memory(FileHold { _entry: entry }, data)),
            Err(LoadError::OverBudget(file)) => {
                tracing::debug!(len = key.len, "tftp: file cache full, streaming");
                Ok(Cached::Stream(file))
            }
            Err(LoadError::Io(e)) => Err(e),
        }
    }

    /// Read `len` bytes of `file` into a new copy, if the budget has room for them.
    async fn load(&self, len: u64, file: File) -> Result<Bytes, LoadError> {
        let budget = self.budget;
        if self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                h.checked_add(len).filter(|t| *t <= budget)
            })
            .is_err()
        {
            return Err(LoadError::OverBudget(file));
        }
        self.metrics.cache_bytes().inc_by(len as i64);
        let reservation = Reservation {
            bytes: len,
            held: self.held.clone(),
            gauge: self.metrics.cache_bytes().clone(),
        };
        // The reservation travels with the read: if this future is dropped (shutdown), the
        // blocking read still ends and its result, dropped, gives the bytes back.
        let read = tokio::task::spawn_blocking(move || {
            let mut data = Vec::with_capacity(len as usize);
            (&file).take(len).read_to_end(&mut data)?;
            Ok::<_, io::Error>(Bytes::from_owner(Accounted {
                data,
                _reservation: reservation,
            }))
        })
        .await;
        match read {
            Ok(Ok(data)) => {
                self.metrics.file_loaded();
                Ok(data)
            }
            Ok(Err(e)) => Err(LoadError::Io(e)),
            Err(e) => Err(LoadError::Io(io::Error::other(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> (FileKey, File) {
        let f = File::open(path).unwrap();
        let key = FileKey::of(&f.metadata().unwrap());
        (key, f)
    }

    fn memory(c: Cached) -> (FileHold, Bytes) {
        match c {
            Cached::Memory(h, b) => (h, b),
            Cached::Stream(_) => panic!("streamed, not shared"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_transfers_share_one_copy_until_the_last_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &body).unwrap();
        let m = TftpMetrics::default();
        let cache = Arc::new(FileCache::new(1 << 20, m.clone()));

        // 16 at once: one read, one copy.
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (key, f) = open(&path);
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move { cache.get(key, f).await }));
        }
        let mut held = Vec::new();
        for t in tasks {
            held.push(memory(t.await.unwrap().unwrap()));
        }
        assert_eq!(m.file_loads(), 1);
        assert_eq!(m.file_cache_bytes(), body.len() as i64);
        assert!(held.iter().all(|(_, b)| b.as_ptr() == held[0].1.as_ptr()));
        assert_eq!(held[0].1, body);

        // A slice outliving its hold keeps the bytes, not the sharing.
        let slice = held[0].1.slice(10..20);
        held.clear();
        assert_eq!(m.file_cache_bytes(), body.len() as i64);
        drop(slice);
        assert_eq!(m.file_cache_bytes(), 0);
        assert_eq!(cache.held.load(Ordering::Acquire), 0);

        // Nobody holds it: the next transfer reads again.
        let (key, f) = open(&path);
        let (_h, b) = memory(cache.get(key, f).await.unwrap());
        assert_eq!(b, body);
        assert_eq!(m.file_loads(), 2);
        assert_eq!(cache.entries.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_rewritten_file_is_read_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old contents").unwrap();
        let m = TftpMetrics::default();
        let cache = FileCache::new(1 << 20, m.clone());
        let (key, f) = open(&path);
        let (_old_hold, old) = memory(cache.get(key, f).await.unwrap());
        // Replaced (new inode) while a transfer of the old version runs.
        std::fs::write(dir.path().join("g"), b"new!").unwrap();
        std::fs::rename(dir.path().join("g"), &path).unwrap();
        let (key, f) = open(&path);
        let (_new_hold, new) = memory(cache.get(key, f).await.unwrap());
        assert_eq!(&old[..], b"old contents");
        assert_eq!(&new[..], b"new!");
        assert_eq!(m.file_loads(), 2);
        assert_eq!(m.file_cache_bytes(), 16);
    }

    #[tokio::test]
    async fn beyond_the_budget_files_are_streamed() {
        let dir = tempfile::tempdir().unwrap();
        for (n, len) in [("a", 600), ("b", 600), ("c", 2000)] {
            std::fs::write(dir.path().join(n), vec![7u8; len]).unwrap();
        }
        let m = TftpMetrics::default();
        let cache = FileCache::new(1000, m.clone());
        let (key, f) = open(&dir.path().join("a"));
        let a = memory(cache.get(key, f).await.unwrap());
        // Fits alone, not next to `a`.
        let (key, f) = open(&dir.path().join("b"));
        assert!(matches!(cache.get(key, f).await, Ok(Cached::Stream(_))));
        // Never fits.
        let (key, f) = open(&dir.path().join("c"));
        assert!(matches!(cache.get(key, f).await, Ok(Cached::Stream(_))));
        assert_eq!(m.file_cache_bytes(), 600);
        drop(a);
        let (key, f) = open(&dir.path().join("b"));
        let _b = memory(cache.get(key, f).await.unwrap());
        assert_eq!(m.file_cache_bytes(), 600);
        // A budget of 0 streams everything.
        let none = FileCache::new(0, TftpMetrics::default());
        let (key, f) = open(&dir.path().join("a"));
        assert!(matches!(none.get(key, f).await, Ok(Cached::Stream(_))));
    }
}
