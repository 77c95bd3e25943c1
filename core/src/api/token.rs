//! The store API's bearer token: created at first start in the data directory with mode 0600,
//! read by the CLI from there. Whoever can read the data directory can already read the store
//! file, so the token adds no new trust boundary on the admin machine; it keeps other local users
//! and anything that can reach the port but not the disk out.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The token file's name inside the data directory.
pub const FILE_NAME: &str = "api-token";

/// The reader token's file in the data directory (mode 0600): it reads logs and timelines
/// (`/tinkerbell/v1/logs`, `/tinkerbell/v1/timeline` on the HTTP port, the tink server's
/// `ReadLogs`) and nothing else. Separate from the store API token, which can change
/// everything and never needs to cross the provisioning network.
pub const READER_FILE_NAME: &str = "reader-token";

/// Why the token could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the file failed.
    #[error("token file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is readable by others.
    #[error("token file {path} has mode {mode:o}; it must be 0600 (chmod 600 it)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The file is empty or not one line of hex.
    #[error("token file {path} does not hold a token")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// Read the token in `data_dir`, creating it (mode 0600) when absent.
pub fn load_or_create(data_dir: &Path) -> Result<String, TokenError> {
    load_or_create_named(data_dir, FILE_NAME)
}

/// Read the secret file `name` in `data_dir` (32 random bytes as hex, mode 0600), creating it
/// when absent. The store API token and the worker-token key are both made this way.
pub fn load_or_create_named(data_dir: &Path, name: &str) -> Result<String, TokenError> {
    let path = data_dir.join(name);
    let io = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    if let Some(t) = crate::private_files::dir(data_dir).map_err(io)? {
        tracing::warn!("tightened the data directory's permissions: {t}");
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(token)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => load_named(data_dir, name),
        Err(e) => Err(io(e)),
    }
}

/// Read the token in `data_dir`.
pub fn load(data_dir: &Path) -> Result<String, TokenError> {
    load_named(data_dir, FILE_NAME)
}

/// Read the secret file `name` in `data_dir`, refusing one that others can read.
pub fn load_named(data_dir: &Path, name: &str) -> Result<String, TokenError> {
    let path = data_dir.join(name);
    let meta = std::fs::metadata(&path).map_err(|source| TokenError::Io {
        path: path.clone(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Permissions { path, mode });
    }
    let s = std::fs::read_to_string(&path).map_err(|source| TokenError::Io {
        path: path.clone(),
        source,
    })?;
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed { path });
    }
    Ok(t.to_string())
}

/// Compare without leaking the position of the first difference through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = load_or_create(dir.path()).unwrap();
        let t2 = load_or_create(dir.path()).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuses_readable_token() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let p = dir.path().join(FILE_NAME);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(TokenError::Permissions { .. })
        ));
    }

    #[test]
    fn eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
