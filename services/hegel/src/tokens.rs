//! IMDSv2-style session tokens, as EC2 and firecracker's MMDS issue them.
//!
//! A token is 32 random bytes (hex), kept only in memory with the IP address it was issued to and
//! its expiry. It is valid only from that address and only until it expires, so a token leaked
//! through a proxy or a log is useless elsewhere. The table is bounded: expired tokens are swept
//! when it fills, and if it is still full the token closest to expiry is dropped, so a caller
//! minting tokens in a loop cannot grow memory without bound. Time is `tokio::time::Instant`,
//! so tests can pause the clock.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The token table.
pub struct TokenStore {
    cap: usize,
    tokens: Mutex<HashMap<String, Entry>>,
}

#[derive(Clone, Copy)]
struct Entry {
    ip: IpAddr,
    expires: Instant,
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

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("TokenStore")
            .field("cap", &self.cap)
            .field("len", &self.len())
            .finish()
    }
}

impl TokenStore {
    /// An empty table holding at most `cap` tokens.
    pub fn new(cap: usize) -> TokenStore {
        TokenStore {
            cap: cap.max(1),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves a consistent map (every operation is a single
        // insert/remove), so poisoning is ignored.
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of tokens held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Issue a token for `ip`, valid for `ttl`.
    pub fn issue(&self, ip: IpAddr, ttl: Duration) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= self.cap {
            map.retain(|_, e| e.expires > now);
        }
        while map.len() >= self.cap {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            token.clone(),
            Entry {
                ip,
                expires: now + ttl,
            },
        );
        Ok(token)
    }

    /// Check a presented token against the caller's address. An expired token is removed.
    pub fn check(&self, token: &str, ip: IpAddr) -> TokenCheck {
        let now = Instant::now();
        let mut map = self.lock();
        let Some(entry) = map.get(token).copied() else {
            return TokenCheck::Unknown;
        };
        if entry.expires <= now {
            map.remove(token);
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

    #[tokio::test(start_paused = true)]
    async fn bound_to_address_and_expires() {
        let s = TokenStore::new(10);
        let t = s.issue(A, Duration::from_secs(5)).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(s.check(&t, A), TokenCheck::Valid);
        assert_eq!(s.check(&t, B), TokenCheck::WrongAddress);
        assert_eq!(s.check("nope", A), TokenCheck::Unknown);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(s.check(&t, A), TokenCheck::Expired);
        assert_eq!(
            s.check(&t, A),
            TokenCheck::Unknown,
            "expired tokens are removed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bounded() {
        let s = TokenStore::new(3);
        let short = s.issue(A, Duration::from_secs(1)).unwrap();
        let long: Vec<_> = (0..2)
            .map(|_| s.issue(A, Duration::from_secs(100)).unwrap())
            .collect();
        // Full: the token closest to expiry goes first.
        let newest = s.issue(A, Duration::from_secs(100)).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.check(&short, A), TokenCheck::Unknown);
        for t in long.iter().chain([&newest]) {
            assert_eq!(s.check(t, A), TokenCheck::Valid);
        }
        // Expired tokens are swept before anything valid is evicted.
        tokio::time::advance(Duration::from_secs(200)).await;
        for _ in 0..3 {
            s.issue(B, Duration::from_secs(10)).unwrap();
        }
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn debug_hides_tokens() {
        let s = TokenStore::new(2);
        let t = s.issue(A, Duration::from_secs(10)).unwrap();
        assert!(!format!("{s:?}").contains(&t));
    }
}
