//! Secrets at rest: the data directory and every file holding secrets are private to the
//! appliance's user whatever the umask — the directory 0700, files 0600. The embedded store
//! (`store.redb` holds every `bmc-*-auth` Secret), the token and key files and `tinkerbell
//! export --show-secrets -o FILE` all go through here. A directory or file found with looser
//! modes (an appliance from before this rule, or a copy) is tightened, and the caller says so.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A directory or file whose mode was narrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// What was changed.
    pub path: PathBuf,
    /// Its mode before (permission bits).
    pub from: u32,
    /// Its mode now.
    pub to: u32,
}

impl std::fmt::Display for Tightened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} was mode {:04o}, readable by others; now {:04o}",
            self.path.display(),
            self.from,
            self.to
        )
    }
}

fn narrow(path: &Path, want: u32) -> io::Result<Option<Tightened>> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    if let Err(e) = std::fs::set_permissions(path, Permissions::from_mode(want)) {
        // Not ours to change (a volume mounted with another owner): say so, carry on — the
        // files inside are still created 0600.
        if e.kind() == io::ErrorKind::PermissionDenied {
            tracing::warn!(path = %path.display(), mode = format!("{mode:04o}"),
                "readable by others and not ours to tighten; protect it yourself");
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(Tightened {
        path: path.to_path_buf(),
        from: mode,
        to: want,
    }))
}

/// Creates `dir` (and missing parents) with mode 0700, or narrows an existing one that group
/// or others can access to 0700.
pub fn dir(dir: &Path) -> io::Result<Option<Tightened>> {
    if !dir.exists() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        // DirBuilder's mode is filtered by the umask; 0700 has nothing the umask removes
        // that matters, but make it exact.
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))?;
        return Ok(None);
    }
    narrow(dir, 0o700)
}

/// Creates `path` empty with mode 0600 when absent, or narrows an existing file that group or
/// others can access to 0600.
pub fn file(path: &Path) -> io::Result<Option<Tightened>> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => narrow(path, 0o600),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` atomically (a 0600 temporary file beside it, then a rename): the
/// result is 0600 whatever the umask and whatever mode an earlier `path` had.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.set_permissions(Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_dirs_and_files_are_private_and_loose_ones_are_narrowed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        assert_eq!(dir(&d).unwrap(), None);
        assert_eq!(mode(&d), 0o700);
        let f = d.join("store.redb");
        assert_eq!(file(&f).unwrap(), None);
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&d, Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        let t1 = dir(&d).unwrap().expect("narrowed");
        assert_eq!((t1.from, t1.to), (0o755, 0o700));
        let t2 = file(&f).unwrap().expect("narrowed");
        assert_eq!((t2.from, t2.to), (0o644, 0o600));
        assert!(t2.to_string().contains("0644"), "{t2}");
        assert_eq!((mode(&d), mode(&f)), (0o700, 0o600));
        assert_eq!(file(&f).unwrap(), None, "already private");
    }

    #[test]
    fn write_is_private_over_an_older_readable_file() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("export.yaml");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        write(&f, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        assert_eq!(mode(&f), 0o600);
    }
}
