//! Private-tracker passkeys: their format, and an in-memory cache of store lookups so the
//! announce path reaches the database at most once per passkey per TTL.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::RngCore;
use tokio::time::Instant;

use crate::store::{Store, StoreError};

/// A syntactically valid passkey: 16 to 64 characters of `A-Z a-z 0-9 _ -`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Passkey(String);

/// A passkey that breaks the format rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a passkey is 16 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
pub struct BadPasskey;

impl Passkey {
    /// Shortest accepted passkey.
    pub const MIN_LEN: usize = 16;
    /// Longest accepted passkey.
    pub const MAX_LEN: usize = 64;

    /// Check the format.
    pub fn parse(s: &str) -> Result<Self, BadPasskey> {
        let ok = (Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadPasskey)
        }
    }

    /// A new random passkey (32 lowercase hex characters, 128 bits).
    #[must_use]
    pub fn generate() -> Self {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(hex::encode(b))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Passkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A passkey is a credential: never print it in logs.
        f.write_str("Passkey(***)")
    }
}

/// Cached answers to "does this passkey exist?", positive and negative, for a fixed TTL.
#[derive(Debug)]
pub struct PasskeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (bool, Instant)>>,
}

impl PasskeyCache {
    /// Entries kept at most; past it, expired entries are dropped, then everything.
    pub const MAX_ENTRIES: usize = 100_000;

    /// An empty cache whose answers live for `ttl`.
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The cached answer for `passkey`, if fresh.
    #[must_use]
    pub fn cached(&self, passkey: &str) -> Option<bool> {
        let map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(passkey)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(known, _)| *known)
    }

    fn remember(&self, passkey: &str, known: bool) {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::MAX_ENTRIES {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= Self::MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(passkey.to_owned(), (known, Instant::now()));
    }

    /// Whether `passkey` is valid: malformed ones are refused without a lookup, others are
    /// answered from the cache or the store.
    pub async fn check(&self, store: &dyn Store, passkey: &str) -> Result<bool, StoreError> {
        if Passkey::parse(passkey).is_err() {
            return Ok(false);
        }
        if let Some(known) = self.cached(passkey) {
            return Ok(known);
        }
        let known = store.passkey_exists(passkey).await?;
        self.remember(passkey, known);
        Ok(known)
    }

    /// Forget everything (after passkeys were changed, e.g. on SIGHUP).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format() {
        assert!(Passkey::parse("abcdefghijklmnop").is_ok());
        assert!(Passkey::parse(&"A-_9".repeat(16)).is_ok());
        assert!(Passkey::parse("short").is_err());
        assert!(Passkey::parse(&"a".repeat(65)).is_err());
        assert!(Passkey::parse("abcdefghijklmno/").is_err());
        assert!(Passkey::parse("abcdefghijklmnoé").is_err());
        let p = Passkey::generate();
        assert_eq!(Passkey::parse(p.as_str()), Ok(p.clone()));
        assert!(!format!("{p:?}").contains(p.as_str()));
    }

    #[tokio::test(start_paused = true)]
    async fn answers_expire_after_the_ttl() {
        let cache = PasskeyCache::new(Duration::from_secs(60));
        cache.remember("k", true);
        cache.remember("n", false);
        assert_eq!(cache.cached("k"), Some(true));
        assert_eq!(cache.cached("n"), Some(false));
        assert_eq!(cache.cached("x"), None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.cached("k"), None);
        cache.remember("k", true);
        cache.clear();
        assert_eq!(cache.cached("k"), None);
    }
}
