//! Mailbox keys: X25519 key pairs whose public half a profile publishes as `mailboxKey`
//! (`profile set --mailbox-key new`), so that senders seal to it rather than to the key
//! derived from the identity. `inbox` tries the derived key and every key kept here.
//!
//! Stored in `mailbox-keys.json` under the home directory (mode 0600, replaced atomically):
//!
//! ```json
//! { "version": 1, "identity": "<64 hex>",
//!   "keys": [ { "secret": "<64 hex>", "publicKey": "<64 hex>", "created": 1764900000000 } ] }
//! ```
//!
//! `keys` are oldest first. At most [`MAX_MAILBOX_KEYS`] are kept: adding one more forgets
//! the oldest, so letters sealed to a key rotated out that long ago no longer open. The file
//! belongs to the identity it names; one written for another identity (after `keygen
//! --force`) is ignored with a warning. A file that breaks these rules is reported as corrupt
//! (its name and what is wrong, never its content).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cli::note;
use super::identity::{wipe, Home};
use super::localfile::{self, LocalFileError};
use super::mail::MailboxSecret;
use crate::proto::{MailboxKey, PublicKey};

/// File name of the mailbox keys inside the home directory.
pub const MAILBOX_KEYS_FILE: &str = "mailbox-keys.json";
/// Most mailbox keys kept (the newest ones).
pub const MAX_MAILBOX_KEYS: usize = 8;
/// Largest `mailbox-keys.json` accepted (a full one is under 2 KiB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024;
const VERSION: u32 = 1;

/// One stored key as written in `mailbox-keys.json` and in a `key export` file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Entry {
    secret: String,
    public_key: MailboxKey,
    created: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        wipe(&mut std::mem::take(&mut self.secret).into_bytes());
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    identity: PublicKey,
    keys: Vec<Entry>,
}

/// A mailbox key pair this home holds.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// The secret half.
    pub secret: MailboxSecret,
    /// The public half (what a profile publishes).
    pub public: MailboxKey,
    /// When it was generated (ms since the epoch).
    pub created_ms: u64,
}

impl StoredKey {
    /// A stored key for `secret`, created at `created_ms`.
    #[must_use]
    pub fn new(secret: MailboxSecret, created_ms: u64) -> Self {
        let public = secret.public();
        Self {
            secret,
            public,
            created_ms,
        }
    }
}

/// The mailbox keys of one identity, oldest first.
#[derive(Debug, Clone)]
pub struct MailboxKeyring {
    identity: PublicKey,
    keys: Vec<StoredKey>,
}

impl MailboxKeyring {
    /// No keys yet.
    #[must_use]
    pub fn empty(identity: PublicKey) -> Self {
        Self {
            identity,
            keys: Vec::new(),
        }
    }

    /// The file under `home`.
    #[must_use]
    pub fn path(home: &Home) -> PathBuf {
        home.dir().join(MAILBOX_KEYS_FILE)
    }

    /// Load `identity`'s keys (none if there is no file, or it belongs to another identity).
    pub fn load(home: &Home, identity: &PublicKey) -> Result<Self, LocalFileError> {
        let path = Self::path(home);
        let Some(file) = localfile::load::<File>(&path, MAX_FILE_BYTES)? else {
            return Ok(Self::empty(*identity));
        };
        if file.version != VERSION {
            return Err(LocalFileError::corrupt(
                &path,
                format!("unknown version {}", file.version),
            ));
        }
        if file.identity != *identity {
            note(&format!(
                "warning: {} holds the mailbox keys of another identity ({}); ignoring it",
                path.display(),
                file.identity
            ));
            return Ok(Self::empty(*identity));
        }
        Self::from_entries(&path, *identity, &file.keys)
    }

    /// Check entries read from `path` (this file or an export): at most
    /// [`MAX_MAILBOX_KEYS`], each secret 64 hex matching its public key, no duplicates.
    pub(crate) fn from_entries(
        path: &Path,
        identity: PublicKey,
        entries: &[Entry],
    ) -> Result<Self, LocalFileError> {
        if entries.len() > MAX_MAILBOX_KEYS {
            return Err(LocalFileError::corrupt(
                path,
                format!("more than {MAX_MAILBOX_KEYS} mailbox keys"),
            ));
        }
        let mut ring = Self::empty(identity);
        for (i, e) in entries.iter().enumerate() {
            let mut bytes = [0u8; 32];
            if e.secret.len() != 64 || hex::decode_to_slice(&e.secret, &mut bytes).is_err() {
                return Err(LocalFileError::corrupt(
                    path,
                    format!("mailbox key {}: the secret is not 64 hex characters", i + 1),
                ));
            }
            let key = StoredKey::new(MailboxSecret::from_bytes(bytes), e.created);
            wipe(&mut bytes);
            if key.public != e.public_key {
                return Err(LocalFileError::corrupt(
                    path,
                    format!(
                        "mailbox key {}: the public key does not match the secret",
                        i + 1
                    ),
                ));
            }
            if ring.holds(&key.public) {
                return Err(LocalFileError::corrupt(
                    path,
                    format!("mailbox key {} appears twice", i + 1),
                ));
            }
            ring.keys.push(key);
        }
        Ok(ring)
    }

    /// The entries to write (this file or an export).
    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.keys
            .iter()
            .map(|k| Entry {
                secret: hex::encode(k.secret.as_bytes()),
                public_key: k.public,
                created: k.created_ms,
            })
            .collect()
    }

    /// Store atomically (mode 0600).
    pub fn save(&self, home: &Home) -> Result<(), LocalFileError> {
        let file = File {
            version: VERSION,
            identity: self.identity,
            keys: self.entries(),
        };
        localfile::save(home, &Self::path(home), &file)
    }

    /// Add keys (one already held is skipped), keep them ordered by creation time, and forget
    /// the oldest beyond [`MAX_MAILBOX_KEYS`]; returns the public keys forgotten.
    pub fn add(&mut self, keys: impl IntoIterator<Item = StoredKey>) -> Vec<MailboxKey> {
        for k in keys {
            if !self.holds(&k.public) {
                self.keys.push(k);
            }
        }
        self.keys.sort_by_key(|k| k.created_ms);
        let excess = self.keys.len().saturating_sub(MAX_MAILBOX_KEYS);
        self.keys.drain(..excess).map(|k| k.public).collect()
    }

    /// The identity these keys belong to.
    #[must_use]
    pub fn identity(&self) -> &PublicKey {
        &self.identity
    }

    /// The keys, oldest first.
    #[must_use]
    pub fn keys(&self) -> &[StoredKey] {
        &self.keys
    }

    /// The newest public key, if any.
    #[must_use]
    pub fn newest(&self) -> Option<&MailboxKey> {
        self.keys.last().map(|k| &k.public)
    }

    /// Whether the secret of `key` is held here.
    #[must_use]
    pub fn holds(&self, key: &MailboxKey) -> bool {
        self.keys.iter().any(|k| k.public == *key)
    }

    /// The secrets, to try when opening envelopes.
    #[must_use]
    pub fn secrets(&self) -> Vec<MailboxSecret> {
        self.keys.iter().map(|k| k.secret.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn id(n: u8) -> PublicKey {
        PublicKey::from(&SigningKey::from_bytes(&[n; 32]))
    }

    fn home() -> (tempfile::TempDir, Home) {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("h"));
        (tmp, home)
    }

    #[test]
    fn keys_round_trip_privately_and_the_oldest_are_forgotten() {
        let (_t, home) = home();
        let mut ring = MailboxKeyring::load(&home, &id(1)).unwrap();
        assert!(ring.keys().is_empty() && ring.newest().is_none());
        let made: Vec<StoredKey> = (0..MAX_MAILBOX_KEYS as u64 + 2)
            .map(|i| StoredKey::new(MailboxSecret::generate(), 1000 + i))
            .collect();
        assert!(ring.add(made[..MAX_MAILBOX_KEYS].to_vec()).is_empty());
        // Adding a key already held changes nothing.
        assert!(ring.add([made[3].clone()]).is_empty());
        assert_eq!(ring.keys().len(), MAX_MAILBOX_KEYS);
        let dropped = ring.add(made[MAX_MAILBOX_KEYS..].to_vec());
        assert_eq!(dropped, vec![made[0].public, made[1].public]);
        assert_eq!(ring.newest(), Some(&made[MAX_MAILBOX_KEYS + 1].public));
        assert!(!ring.holds(&made[1].public) && ring.holds(&made[2].public));
        ring.save(&home).unwrap();

        let back = MailboxKeyring::load(&home, &id(1)).unwrap();
        let publics = |r: &MailboxKeyring| r.keys().iter().map(|k| k.public).collect::<Vec<_>>();
        assert_eq!(publics(&back), publics(&ring));
        assert_eq!(back.secrets().len(), MAX_MAILBOX_KEYS);
        let path = MailboxKeyring::path(&home);
        assert!(std::fs::metadata(&path).unwrap().len() < MAX_FILE_BYTES / 4);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Another identity's file is ignored, not used.
        assert!(MailboxKeyring::load(&home, &id(2))
            .unwrap()
            .keys()
            .is_empty());
    }

    #[test]
    fn corrupt_files_are_clear_errors_without_the_secret() {
        let (_t, home) = home();
        let good = StoredKey::new(MailboxSecret::generate(), 5);
        let secret = hex::encode(good.secret.as_bytes());
        let public = good.public.to_hex();
        let other = MailboxSecret::generate().public().to_hex();
        let entry =
            |s: &str, p: &str| format!(r#"{{"secret":"{s}","publicKey":"{p}","created":5}}"#);
        let file = |keys: &[String]| {
            format!(
                r#"{{"version":1,"identity":"{}","keys":[{}]}}"#,
                id(1),
                keys.join(",")
            )
        };
        let cases = [
            ("{not json".to_owned(), "not valid JSON"),
            (
                file(&[entry(&secret, &public)]).replace("\"version\":1", "\"version\":2"),
                "unknown version 2",
            ),
            (file(&[entry(&secret[..60], &public)]), "not 64 hex"),
            (file(&[entry(&secret, &other)]), "does not match"),
            (
                file(&[entry(&secret, &public), entry(&secret, &public)]),
                "appears twice",
            ),
            (
                file(&vec![entry(&secret, &public); MAX_MAILBOX_KEYS + 1]),
                "more than 8",
            ),
            (
                file(&[entry(&secret, &public)]).replace("\"created\":5", "\"created\":\"x\""),
                "unexpected content",
            ),
            (" ".repeat(MAX_FILE_BYTES as usize + 1), "over 16384 bytes"),
        ];
        let path = MailboxKeyring::path(&home);
        home.ensure_dir().unwrap();
        for (text, needle) in cases {
            std::fs::write(&path, &text).unwrap();
            let err = MailboxKeyring::load(&home, &id(1)).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, LocalFileError::Corrupt { .. }), "{msg}");
            assert!(
                msg.contains(MAILBOX_KEYS_FILE) && msg.contains(needle),
                "{msg}"
            );
            assert!(!msg.contains(&secret), "{msg}");
        }
        std::fs::write(&path, file(&[entry(&secret, &public)])).unwrap();
        let ring = MailboxKeyring::load(&home, &id(1)).unwrap();
        assert_eq!(ring.newest(), Some(&good.public));
    }
}
