//! IMDSv2-style session tokens, as EC2 and firecracker's MMDS issue them.
//!
//! A token is 32 random bytes (hex), kept only in memory with the IP address it was issued to and
//! its expiry. It is valid only from that address and only until it expires, so a token leaked
//! through a proxy or a log is useless elsewhere. Time is `tokio::time::Instant`, so tests can
//! pause the clock.
//!
//! Anyone who can reach hegel can ask for tokens, so the table is bounded, and bounded so that
//! one caller minting tokens in a loop can only ever lose its own:
//!
//! * Expired tokens are dropped first (an expiry index makes that cheap on every issue).
//! * Each address holds at most `per_address` live tokens; a new token for an address at its
//!   quota replaces that address's oldest one.
//! * The whole table holds at most `cap`. When it is full, an address that holds tokens
//!   replaces its own oldest one; an address that holds none is refused ([`IssueError::Full`])
//!   until tokens expire. No address can ever make another address's valid token go away;
//!   filling the table takes `cap / per_address` addresses, and what they get is new addresses
//!   refused for a while, not machines losing the tokens they hold.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The random part of a token; its hex form is what callers see.
type Key = [u8; 32];

/// The token table.
pub struct TokenStore {
    cap: usize,
    per_address: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<Key, Entry>,
    /// Every token by (expiry, issue number): the expired ones are at the front.
    by_expiry: BTreeMap<(Instant, u64), Key>,
    /// Each address's tokens, oldest first.
    by_address: HashMap<IpAddr, VecDeque<Key>>,
    issued: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    ip: IpAddr,
    expires: Instant,
    seq: u64,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// Issued to this address and not expired.
    Valid,
    /// Not a token we issued (or it was evicted).
    Unknown,
    /// Issued to another address.
    WrongAddress,
    /// Past its lifetime.
    Expired,
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The table is full of other addresses' live tokens (see the module docs).
    #[error("the session token table is full")]
    Full,
    /// The system random source failed (`getrandom::Error` is no `std::error::Error` here,
    /// so it is shown rather than chained).
    #[error("cannot generate a token: {0}")]
    Random(getrandom::Error),
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("TokenStore")
            .field("cap", &self.cap)
            .field("per_address", &self.per_address)
            .field("len", &self.len())
            .finish()
    }
}

impl Inner {
    /// Forget `key` everywhere.
    fn remove(&mut self, key: &Key) {
        let Some(e) = self.tokens.remove(key) else {
            return;
        };
        self.by_expiry.remove(&(e.expires, e.seq));
        if let Some(q) = self.by_address.get_mut(&e.ip) {
            q.retain(|k| k != key);
            if q.is_empty() {
                self.by_address.remove(&e.ip);
            }
        }
    }

    /// Drop every token expired at `now`.
    fn sweep(&mut self, now: Instant) {
        while let Some((&(expires, _), &key)) = self.by_expiry.first_key_value() {
            if expires > now {
                break;
            }
            self.remove(&key);
        }
    }

    fn held_by(&self, ip: IpAddr) -> usize {
        self.by_address.get(&ip).map_or(0, VecDeque::len)
    }

    /// Drop `ip`'s oldest token.
    fn evict_oldest_of(&mut self, ip: IpAddr) {
        if let Some(key) = self.by_address.get(&ip).and_then(|q| q.front().copied()) {
            self.remove(&key);
        }
    }
}

/// The key of a token as issued (64 lower-case hex digits); anything else is no token of ours.
fn from_hex(token: &str) -> Option<Key> {
    let mut key = [0u8; 32];
    let lower = token
        .bytes()
        .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    (lower && hex::decode_to_slice(token, &mut key).is_ok()).then_some(key)
}

impl TokenStore {
    /// An empty table holding at most `cap` tokens, at most `per_address` of them for any one
    /// address (both at least 1).
    pub fn new(cap: usize, per_address: usize) -> TokenStore {
        TokenStore {
            cap: cap.max(1),
            per_address: per_address.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every operation leaves the three maps consistent before anything can panic (only
        // allocation can), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of tokens held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.lock().tokens.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of tokens held for `ip` (expired ones included until swept).
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.lock().held_by(ip)
    }

    /// Issue a token for `ip`, valid for `ttl`: within `ip`'s quota (its own oldest token makes
    /// room) and the table's cap (refused when the table is full and `ip` holds nothing to
    /// replace).
    pub fn issue(&self, ip: IpAddr, ttl: Duration) -> Result<String, IssueError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(IssueError::Random)?;
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        let held = inner.held_by(ip);
        if held >= self.per_address {
            inner.evict_oldest_of(ip);
        } else if inner.tokens.len() >= self.cap {
            if held == 0 {
                return Err(IssueError::Full);
            }
            inner.evict_oldest_of(ip);
        }
        let seq = inner.issued;
        inner.issued += 1;
        let expires = now + ttl;
        inner.tokens.insert(key, Entry { ip, expires, seq });
        inner.by_expiry.insert((expires, seq), key);
        inner.by_address.entry(ip).or_default().push_back(key);
        Ok(hex::encode(key))
    }

    /// Check a presented token against the caller's address. An expired token is removed.
    pub fn check(&self, token: &str, ip: IpAddr) -> TokenCheck {
        let Some(key) = from_hex(token) else {
            return TokenCheck::Unknown;
        };
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(entry) = inner.tokens.get(&key).copied() else {
            return TokenCheck::Unknown;
        };
        if entry.expires <= now {
            inner.remove(&key);
            return TokenCheck::Expired;
        }
        if entry.ip != ip {
            return TokenCheck::WrongAddress;
        }
        TokenCheck::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));
    const LONG: Duration = Duration::from_secs(21_600);

    #[tokio::test(start_paused = true)]
    async fn bound_to_address_and_expires() {
        let s = TokenStore::new(10, 4);
        let t = s.issue(A, Duration::from_secs(5)).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(s.check(&t, A), TokenCheck::Valid);
        assert_eq!(s.check(&t, B), TokenCheck::WrongAddress);
        assert_eq!(s.check("nope", A), TokenCheck::Unknown);
        assert_eq!(s.check(&t.to_uppercase(), A), TokenCheck::Unknown);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(s.check(&t, A), TokenCheck::Expired);
        assert_eq!(
            s.check(&t, A),
            TokenCheck::Unknown,
            "expired tokens are removed"
        );
        assert!(s.is_empty());
        assert_eq!(s.held_by(A), 0);
    }

    /// An address at its quota replaces its own oldest token, never another address's.
    #[test]
    fn per_address_quota() {
        let s = TokenStore::new(100, 3);
        let b = s.issue(B, LONG).unwrap();
        let a: Vec<_> = (0..5).map(|_| s.issue(A, LONG).unwrap()).collect();
        assert_eq!(s.held_by(A), 3);
        assert_eq!(s.len(), 4);
        for t in &a[..2] {
            assert_eq!(s.check(t, A), TokenCheck::Unknown, "A's oldest went");
        }
        for t in &a[2..] {
            assert_eq!(s.check(t, A), TokenCheck::Valid);
        }
        assert_eq!(s.check(&b, B), TokenCheck::Valid);
    }

    /// 70,000 tokens for one address with the default limits (65,536 in all, 16 per address):
    /// an earlier token of another address still works, and the flood holds 16.
    #[test]
    fn flood_from_one_address_spares_the_others() {
        let s = TokenStore::new(65_536, 16);
        let b = s.issue(B, LONG).unwrap();
        let first = s.issue(A, LONG).unwrap();
        for _ in 1..70_000 {
            s.issue(A, LONG).unwrap();
        }
        assert_eq!(s.check(&b, B), TokenCheck::Valid);
        assert_eq!(s.check(&first, A), TokenCheck::Unknown);
        assert_eq!(s.held_by(A), 16);
        assert_eq!(s.len(), 17);
    }

    /// A full table: an address holding tokens replaces its own oldest, an address holding
    /// none is refused; once tokens expire, there is room again.
    #[tokio::test(start_paused = true)]
    async fn full_table_refuses_newcomers_and_evicts_nobody_else() {
        let s = TokenStore::new(4, 3);
        let a: Vec<_> = (0..2)
            .map(|_| s.issue(A, Duration::from_secs(10)).unwrap())
            .collect();
        let b: Vec<_> = (0..2).map(|_| s.issue(B, LONG).unwrap()).collect();
        assert!(matches!(s.issue(C, LONG), Err(IssueError::Full)));
        // A is under its quota but the table is full: A's own oldest makes room.
        let a2 = s.issue(A, Duration::from_secs(10)).unwrap();
        assert_eq!(s.check(&a[0], A), TokenCheck::Unknown);
        for t in [&a[1], &a2] {
            assert_eq!(s.check(t, A), TokenCheck::Valid);
        }
        for t in &b {
            assert_eq!(s.check(t, B), TokenCheck::Valid);
        }
        assert_eq!(s.len(), 4);
        // A's tokens expire: swept before anything else is considered.
        tokio::time::advance(Duration::from_secs(10)).await;
        let c = s.issue(C, LONG).unwrap();
        assert_eq!(s.check(&c, C), TokenCheck::Valid);
        assert_eq!(s.held_by(A), 0);
        assert_eq!(s.len(), 3);
        for t in &b {
            assert_eq!(s.check(t, B), TokenCheck::Valid);
        }
    }

    #[test]
    fn debug_hides_tokens() {
        let s = TokenStore::new(2, 2);
        let t = s.issue(A, Duration::from_secs(10)).unwrap();
        assert!(!format!("{s:?}").contains(&t));
    }
}
