//! Worker tokens: which tink-worker may fetch and report which workflow.
//!
//! Upstream Tinkerbell lets any client that reaches the gRPC port claim any worker ID. Here
//! every worker ID (a Hardware's `agentID`, or its MAC when it has none) has a token, derived
//! rather than stored: `hex(HMAC-SHA256(key, "tinkerbell-worker-token-v1\0" || worker_id))`.
//! The key is 32 random bytes kept in the data directory (`worker-token-key`, mode 0600), so
//! boots (which puts the token on the HookOS kernel command line as `worker_token=`) and the
//! tink server (which requires it as `authorization: Bearer <token>` gRPC metadata) agree
//! without sharing any per-machine state, and rotating the key revokes every token at once.
//!
//! Worker IDs are compared lowercased and trimmed, since MACs arrive in either case.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::api::token::{self, TokenError};

/// The key file's name inside the data directory.
pub const KEY_FILE_NAME: &str = "worker-token-key";

/// The kernel command-line parameter that carries the token to HookOS.
pub const CMDLINE_PARAM: &str = "worker_token";

/// The environment variable a worker reads its token from.
pub const ENV_VAR: &str = "TINKERBELL_WORKER_TOKEN";

/// The shortest key [`WorkerTokenKey::from_file`] accepts, in bytes (after trimming): 32 hex
/// digits or alphanumerics carry at least 128 bits when generated at random.
pub const MIN_KEY_FILE_LEN: usize = 32;

/// Why a key file (`--worker-token-key-file`, e.g. a Kubernetes Secret mounted into tink-server
/// and boots) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("worker token key file {path}: cannot read it")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key is too short (or empty).
    #[error(
        "worker token key file {path}: the key is {len} bytes, at least {MIN_KEY_FILE_LEN} are needed (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// The file.
        path: String,
        /// Its trimmed length.
        len: usize,
    },
}

const DOMAIN: &[u8] = b"tinkerbell-worker-token-v1\0";

/// The secret every worker token is derived from. `Debug` never shows it.
#[derive(Clone)]
pub struct WorkerTokenKey(Vec<u8>);

impl fmt::Debug for WorkerTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkerTokenKey(<redacted>)")
    }
}

impl WorkerTokenKey {
    /// Use `key` (at least 16 bytes) as the secret.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Option<WorkerTokenKey> {
        let key = key.into();
        (key.len() >= 16).then_some(WorkerTokenKey(key))
    }

    /// Read the key in `data_dir`, creating it (mode 0600) when absent.
    pub fn load_or_create(data_dir: &Path) -> Result<WorkerTokenKey, TokenError> {
        let hex = token::load_or_create_named(data_dir, KEY_FILE_NAME)?;
        Ok(WorkerTokenKey(hex.into_bytes()))
    }

    /// Read the key in `data_dir` (another process of the appliance created it).
    pub fn load(data_dir: &Path) -> Result<WorkerTokenKey, TokenError> {
        let hex = token::load_named(data_dir, KEY_FILE_NAME)?;
        Ok(WorkerTokenKey(hex.into_bytes()))
    }

    /// Read the key from `path`: its content without surrounding whitespace, at least
    /// [`MIN_KEY_FILE_LEN`] bytes. The data directory's own key file (64 hex digits) qualifies,
    /// so one key can be shared by copying that file into a Secret, or the other way round.
    pub fn from_file(path: &Path) -> Result<WorkerTokenKey, KeyFileError> {
        let text = std::fs::read(path).map_err(|source| KeyFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let key = text.trim_ascii();
        if key.len() < MIN_KEY_FILE_LEN {
            return Err(KeyFileError::TooShort {
                path: path.display().to_string(),
                len: key.len(),
            });
        }
        Ok(WorkerTokenKey(key.to_vec()))
    }

    /// The token of `worker_id`.
    pub fn token_for(&self, worker_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(worker_id.trim().to_ascii_lowercase().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `token` is `worker_id`'s token (constant time in the token's contents).
    pub fn verify(&self, worker_id: &str, token: &str) -> bool {
        token::constant_time_eq(
            self.token_for(worker_id).as_bytes(),
            token.trim().as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_worker_and_per_key() {
        let k1 = WorkerTokenKey::from_bytes(*b"0123456789abcdef0123").unwrap();
        let k2 = WorkerTokenKey::from_bytes(*b"fedcba98765432100123").unwrap();
        let a = k1.token_for("00:11:22:33:44:55");
        assert_eq!(a.len(), 64);
        assert!(k1.verify("00:11:22:33:44:55", &a));
        assert!(k1.verify("00:11:22:33:44:AA".replace("AA", "55").as_str(), &a));
        assert!(k1.verify(" 00:11:22:33:44:55 ", &a), "trimmed");
        assert_eq!(a, k1.token_for("00:11:22:33:44:55".to_uppercase().as_str()));
        assert!(!k1.verify("00:11:22:33:44:56", &a));
        assert!(!k2.verify("00:11:22:33:44:55", &a));
        assert!(!k1.verify("00:11:22:33:44:55", ""));
        assert!(WorkerTokenKey::from_bytes(*b"short").is_none());
    }

    #[test]
    fn key_from_a_file_agrees_with_the_data_dir_key() {
        let dir = tempfile::tempdir().unwrap();
        let own = WorkerTokenKey::load_or_create(dir.path()).unwrap();
        // A Secret mounted as a file, with a trailing newline.
        let secret = dir.path().join("secret-key");
        let text = std::fs::read_to_string(dir.path().join(KEY_FILE_NAME)).unwrap();
        std::fs::write(&secret, format!("{}\n", text.trim())).unwrap();
        let shared = WorkerTokenKey::from_file(&secret).unwrap();
        assert_eq!(
            own.token_for("52:54:00:99:00:01"),
            shared.token_for("52:54:00:99:00:01")
        );

        std::fs::write(&secret, "too-short\n").unwrap();
        let e = WorkerTokenKey::from_file(&secret).unwrap_err();
        assert!(matches!(e, KeyFileError::TooShort { len: 9, .. }), "{e}");
        assert!(e.to_string().contains("at least 32"), "{e}");
        let e = WorkerTokenKey::from_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, KeyFileError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn key_file_is_created_once_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = WorkerTokenKey::load_or_create(dir.path()).unwrap();
        let k2 = WorkerTokenKey::load(dir.path()).unwrap();
        assert_eq!(k1.token_for("w"), k2.token_for("w"));
        assert_eq!(format!("{k1:?}"), "WorkerTokenKey(<redacted>)");
    }
}
