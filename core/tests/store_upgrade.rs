//! Upgrades of the embedded store: a store written by an older build (kept byte for byte in
//! `tests/upgrade/`) opens in this one with every object intact, migrated in one transaction;
//! a dry run shows the steps and writes nothing; a store written by a newer build is refused,
//! naming both versions, and left as it was.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tinkerbell_core::store::embedded::{self, EmbeddedStore};
use tinkerbell_core::store::{Kind, Store, StoreError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/upgrade")
        .join(name)
}

/// A data directory holding a copy of the v1 store fixture.
fn v1_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("store-v1.redb"),
        dir.path().join(embedded::FILE_NAME),
    )
    .unwrap();
    dir
}

/// The store file's SHA-256, to tell whether anything wrote to it.
fn bytes(dir: &Path) -> String {
    use sha2::Digest;
    let data = std::fs::read(dir.join(embedded::FILE_NAME)).unwrap();
    format!("{:x}", sha2::Sha256::digest(data))
}

/// Every object of the store as `tinkerbell export --show-secrets` writes it.
async fn exported(store: &EmbeddedStore) -> Vec<Value> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        for o in store.list(kind, None).await.unwrap().items {
            let mut v = o.to_json();
            let meta = v["metadata"].as_object_mut().unwrap();
            meta.remove("resourceVersion");
            meta.remove("managedFields");
            out.push(v);
        }
    }
    out
}

/// The objects of `tests/upgrade/export-v1.yaml`, written by the same old build from the same
/// store as the store fixture.
fn export_v1() -> Vec<Value> {
    let text = std::fs::read_to_string(fixture("export-v1.yaml")).unwrap();
    text.split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn a_v1_store_opens_with_every_object_and_is_migrated_once() {
    let dir = v1_data_dir();
    let before = bytes(dir.path());

    // The dry run names the step and changes nothing.
    let plan = EmbeddedStore::plan_migration(dir.path()).unwrap();
    assert_eq!(plan.found, Some(1));
    assert_eq!(plan.target, embedded::VERSION);
    assert_eq!(plan.steps.len(), 1, "{plan:?}");
    assert!(plan.steps[0].contains("format version"), "{plan:?}");
    assert_eq!(bytes(dir.path()), before, "the dry run wrote to the store");

    let store = EmbeddedStore::open(dir.path()).unwrap();
    let want = export_v1();
    assert_eq!(want.len(), 15);
    assert_eq!(exported(&store).await, want);
    let revision = store.revision();
    drop(store);

    // Migrated: nothing left to do, and it opens again as it is.
    let plan = EmbeddedStore::plan_migration(dir.path()).unwrap();
    assert_eq!(plan.found, Some(embedded::VERSION));
    assert!(plan.steps.is_empty(), "{plan:?}");
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.revision(), revision);
    assert_eq!(exported(&store).await, want);
}

#[test]
fn no_store_yet_plans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plan = EmbeddedStore::plan_migration(dir.path()).unwrap();
    assert_eq!(plan.found, None);
    assert!(plan.steps.is_empty());
    assert!(!dir.path().join(embedded::FILE_NAME).exists());
}

/// Make the store in `dir` look as a future build (format version 3) wrote it.
fn from_the_future(dir: &Path) {
    let path = dir.join(embedded::FILE_NAME);
    let db = redb::Database::open(&path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        let mut meta = tx.open_table(meta).unwrap();
        meta.insert("version", &3u32.to_le_bytes()[..]).unwrap();
        meta.insert("writer", "tinkerbell 9.0.0".as_bytes())
            .unwrap();
    }
    tx.commit().unwrap();
}

#[tokio::test]
async fn a_newer_store_is_refused_by_name_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());
    from_the_future(dir.path());
    let before = bytes(dir.path());
    for err in [
        EmbeddedStore::open(dir.path()).unwrap_err(),
        EmbeddedStore::plan_migration(dir.path()).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                StoreError::TooNew {
                    found: 3,
                    supported: embedded::VERSION,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in [
            "format version 3",
            "tinkerbell 9.0.0",
            concat!("tinkerbell ", env!("CARGO_PKG_VERSION")),
            &format!("up to {}", embedded::VERSION),
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
    }
    assert_eq!(bytes(dir.path()), before, "a refused store was written to");
}

/// The v1 marker without objects is what a v1 build created; one whose marker is neither
/// format is not ours, as before.
#[test]
fn a_foreign_marker_is_still_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());
    let db = redb::Database::open(dir.path().join(embedded::FILE_NAME)).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        tx.open_table(meta)
            .unwrap()
            .insert("format", "somebody else's store".as_bytes())
            .unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err:?}");
}

/// After a crash the file needs redb's repair, which a read-only open cannot do: the dry run
/// still reads the version (repairing a copy) and leaves the file as it was.
#[test]
fn a_store_left_by_a_crash_is_planned_without_writing() {
    let dir = v1_data_dir();
    let path = dir.path().join(embedded::FILE_NAME);
    // A writer that dies without closing: redb marks the file as needing repair.
    let db = redb::Database::open(&path).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table::<&str, &[u8]>(redb::TableDefinition::new("meta"))
        .unwrap();
    tx.commit().unwrap();
    std::mem::forget(db);
    let copy = std::fs::read(&path).unwrap();
    let crashed = tempfile::tempdir().unwrap();
    std::fs::write(crashed.path().join(embedded::FILE_NAME), copy).unwrap();
    let before = bytes(crashed.path());
    let plan = EmbeddedStore::plan_migration(crashed.path()).unwrap();
    assert_eq!(plan.found, Some(1), "{plan:?}");
    assert_eq!(
        bytes(crashed.path()),
        before,
        "the dry run wrote to the store"
    );
    assert_eq!(
        std::fs::read_dir(crashed.path()).unwrap().count(),
        1,
        "the repaired copy was left behind"
    );
    // And it opens (repaired, then migrated).
    let store = EmbeddedStore::open(crashed.path()).unwrap();
    assert_eq!(store.len(), 15);
}
