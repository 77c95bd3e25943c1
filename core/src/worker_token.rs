//! Worker tokens: which tink-worker may fetch and report which workflow.
//!
//! Upstream Tinkerbell lets any client that reaches the gRPC port claim any worker ID. Here a
//! worker (a Hardware's `agentID`, or its MAC when it has none) proves its ID with a token that
//! boots hands to the machine itself (on the HookOS kernel command line as `worker_token=`) and
//! the tink server requires as `authorization: Bearer <token>` gRPC metadata. Tokens are
//! derived rather than stored, from a 32-byte key in the data directory (`worker-token-key`,
//! mode 0600) or a shared key file, so boots and the tink server agree without sharing any
//! per-machine state, and rotating the key revokes every token at once.
//!
//! A token expires, and is either
//! * **plain**: `v2.<expiry>.<mac>` with `mac = hex(HMAC-SHA256(key, "tinkerbell-worker-token-v2\0"
//!   || worker_id || "\0" || expiry))`. boots issues it only to the address the Hardware
//!   reserves for that interface, so no other host obtains it; or
//! * **address-bound**: `v2.<expiry>.<address>.<mac>`, the address inside the HMAC too. boots
//!   issues it when the Hardware reserves no address (proxy DHCP, discovery of unknown
//!   machines) to the address that asked, and the tink server accepts it only from that
//!   address, so the token is tied to that boot and useless elsewhere.
//!
//! `expiry` is in Unix seconds. Worker IDs are compared lowercased and trimmed, since MACs
//! arrive in either case (the store's agentID uniqueness is case-insensitive to match).

use std::fmt;
use std::path::Path;

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// How long a token boots issues stays valid: a day, longer than any workflow's
/// `global_timeout` we have seen, short enough that a token from a log or a screenshot of
/// yesterday's boot is worthless.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

const DOMAIN: &[u8] = b"tinkerbell-worker-token-v2\0";
const VERSION: &str = "v2";

/// Why a token was refused (said to the worker, never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    /// Not a token of this key for this worker ID (or not a token at all).
    #[error("the bearer token is not valid for worker {0:?}")]
    Invalid(String),
    /// A valid token whose lifetime is over.
    #[error("the bearer token of worker {0:?} has expired; boot the machine again for a new one")]
    Expired(String),
    /// An address-bound token used from another address.
    #[error(
        "the bearer token of worker {worker:?} is bound to {bound}, the request came from {from}"
    )]
    WrongAddress {
        /// The worker ID.
        worker: String,
        /// The address the token was issued to.
        bound: IpAddr,
        /// Where the request came from (`unknown` without a peer address).
        from: String,
    },
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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

    fn mac(&self, worker_id: &str, expiry: u64, bound: Option<IpAddr>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(worker_id.trim().to_ascii_lowercase().as_bytes());
        mac.update(b"\0");
        mac.update(expiry.to_string().as_bytes());
        if let Some(ip) = bound {
            mac.update(b"\0");
            mac.update(ip.to_string().as_bytes());
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A plain token of `worker_id` valid until `expiry` (Unix seconds): for the machine
    /// itself only (boots checks the caller's address against the Hardware's reservation).
    pub fn issue(&self, worker_id: &str, expiry: u64) -> String {
        format!("{VERSION}.{expiry}.{}", self.mac(worker_id, expiry, None))
    }

    /// A token of `worker_id` valid until `expiry` and only for requests from `addr`.
    pub fn issue_bound(&self, worker_id: &str, expiry: u64, addr: IpAddr) -> String {
        let addr = canonical(addr);
        format!(
            "{VERSION}.{expiry}.{addr}.{}",
            self.mac(worker_id, expiry, Some(addr))
        )
    }

    /// A plain token of `worker_id` valid for [`TOKEN_TTL`] from now.
    pub fn token_for(&self, worker_id: &str) -> String {
        self.issue(worker_id, unix_now() + TOKEN_TTL.as_secs())
    }

    /// Whether `token` is `worker_id`'s, unexpired at `now` and, when address-bound, used from
    /// that address (`peer`). The comparison is constant time in the token's MAC.
    pub fn check(
        &self,
        worker_id: &str,
        token: &str,
        peer: Option<IpAddr>,
        now: u64,
    ) -> Result<(), TokenRejected> {
        let invalid = || TokenRejected::Invalid(worker_id.to_string());
        let token = token.trim();
        let rest = token
            .strip_prefix(VERSION)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(invalid)?;
        let (expiry, rest) = rest.split_once('.').ok_or_else(invalid)?;
        let expiry: u64 = expiry.parse().map_err(|_| invalid())?;
        let (bound, given) = match rest.rsplit_once('.') {
            Some((addr, mac)) => (Some(addr.parse::<IpAddr>().map_err(|_| invalid())?), mac),
            None => (None, rest),
        };
        let want = self.mac(worker_id, expiry, bound);
        if !token::constant_time_eq(want.as_bytes(), given.as_bytes()) {
            return Err(invalid());
        }
        if now >= expiry {
            return Err(TokenRejected::Expired(worker_id.to_string()));
        }
        if let Some(bound) = bound
            && peer.map(canonical) != Some(bound)
        {
            return Err(TokenRejected::WrongAddress {
                worker: worker_id.to_string(),
                bound,
                from: peer.map_or_else(|| "unknown".into(), |p| canonical(p).to_string()),
            });
        }
        Ok(())
    }

    /// Whether `token` is `worker_id`'s and unexpired now (address-bound tokens need
    /// [`WorkerTokenKey::check`] with the peer's address).
    pub fn verify(&self, worker_id: &str, token: &str) -> bool {
        self.check(worker_id, token, None, unix_now()).is_ok()
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address (a dual-stack listener's peers).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
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
        assert!(a.starts_with("v2."), "{a}");
        assert!(k1.verify("00:11:22:33:44:55", &a));
        assert!(k1.verify(" 00:11:22:33:44:55 ", &a), "trimmed");
        assert!(
            k1.verify("00:11:22:33:44:55".to_uppercase().as_str(), &a),
            "case"
        );
        assert!(!k1.verify("00:11:22:33:44:56", &a));
        assert!(!k2.verify("00:11:22:33:44:55", &a));
        assert!(!k1.verify("00:11:22:33:44:55", ""));
        assert!(WorkerTokenKey::from_bytes(*b"short").is_none());
    }

    #[test]
    fn tokens_expire_and_cannot_be_extended() {
        let k = WorkerTokenKey::from_bytes(*b"0123456789abcdef0123").unwrap();
        let t = k.issue("w", 1000);
        assert_eq!(k.check("w", &t, None, 999), Ok(()));
        assert_eq!(
            k.check("w", &t, None, 1000),
            Err(TokenRejected::Expired("w".into()))
        );
        // Another expiry with the same MAC: refused.
        let forged = t.replacen("1000", "9999", 1);
        assert_eq!(
            k.check("w", &forged, None, 999),
            Err(TokenRejected::Invalid("w".into()))
        );
        // The old deterministic (v1) form is no longer accepted.
        assert!(k.check("w", &"0".repeat(64), None, 0).is_err());
    }

    #[test]
    fn bound_tokens_only_from_their_address() {
        let k = WorkerTokenKey::from_bytes(*b"0123456789abcdef0123").unwrap();
        let at: IpAddr = "10.0.0.5".parse().unwrap();
        let t = k.issue_bound("w", 1000, at);
        assert_eq!(k.check("w", &t, Some(at), 10), Ok(()));
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        assert_eq!(
            k.check("w", &t, Some(mapped), 10),
            Ok(()),
            "dual-stack peer"
        );
        let other: IpAddr = "10.0.0.6".parse().unwrap();
        assert!(matches!(
            k.check("w", &t, Some(other), 10),
            Err(TokenRejected::WrongAddress { .. })
        ));
        assert!(matches!(
            k.check("w", &t, None, 10),
            Err(TokenRejected::WrongAddress { .. })
        ));
        // Rebinding to another address breaks the MAC.
        let moved = t.replace("10.0.0.5", "10.0.0.6");
        assert_eq!(
            k.check("w", &moved, Some(other), 10),
            Err(TokenRejected::Invalid("w".into()))
        );
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let t6 = k.issue_bound("w", 1000, v6);
        assert_eq!(k.check("w", &t6, Some(v6), 10), Ok(()));
        assert!(!k.verify("w", &t6), "a bound token needs the peer address");
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
            own.issue("52:54:00:99:00:01", 1000),
            shared.issue("52:54:00:99:00:01", 1000)
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
        assert_eq!(k1.issue("w", 7), k2.issue("w", 7));
        assert_eq!(format!("{k1:?}"), "WorkerTokenKey(<redacted>)");
    }
}
