//! What `inbox --keep` already showed on this device, so a letter left on the server for the
//! identity's other devices is not shown here twice.
//!
//! Stored in `inbox-seen.json` under the home directory (mode 0600, replaced atomically):
//! `{"version": 1, "seen": ["<32 hex server message id>", …]}`, oldest first. The server's
//! message ids are remembered (not the letter ids inside), so a seen message is not even
//! fetched again. Each pass forgets the ids the server no longer lists (deleted by another
//! device or expired), so the list never outgrows the mailbox; it holds at most
//! [`MAX_SEEN`] ids all the same (the oldest are forgotten first, and could be shown again).

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::identity::Home;
use super::localfile::{self, LocalFileError};
use super::mailbox::MailEntry;
use crate::proto::mailbox::valid_message_id;

/// File name inside the home directory.
pub const SEEN_FILE: &str = "inbox-seen.json";
/// Most message ids remembered (far above the server's default quota of 200 per mailbox).
pub const MAX_SEEN: usize = 10_000;
/// Largest `inbox-seen.json` accepted (a full one is about 360 KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    seen: Vec<String>,
}

/// The message ids shown here, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    order: Vec<String>,
    set: HashSet<String>,
    changed: bool,
}

impl Seen {
    fn path(home: &Home) -> PathBuf {
        home.dir().join(SEEN_FILE)
    }

    /// Load the list (empty if there is none).
    pub fn load(home: &Home) -> Result<Self, LocalFileError> {
        let path = Self::path(home);
        let Some(file) = localfile::load::<File>(&path, MAX_FILE_BYTES)? else {
            return Ok(Self::default());
        };
        let corrupt = |reason: String| LocalFileError::corrupt(&path, reason);
        if file.version != VERSION {
            return Err(corrupt(format!("unknown version {}", file.version)));
        }
        if file.seen.len() > MAX_SEEN {
            return Err(corrupt(format!("more than {MAX_SEEN} ids")));
        }
        let mut out = Self::default();
        for id in file.seen {
            if !valid_message_id(&id) {
                return Err(corrupt("an entry is not a message id".into()));
            }
            out.insert(&id);
        }
        out.changed = false;
        Ok(out)
    }

    /// Store it if it changed since it was loaded or last saved.
    pub fn save_if_changed(&mut self, home: &Home) -> Result<(), LocalFileError> {
        if !self.changed {
            return Ok(());
        }
        let file = File {
            version: VERSION,
            seen: self.order.clone(),
        };
        localfile::save(home, &Self::path(home), &file)?;
        self.changed = false;
        Ok(())
    }

    /// Whether `id` was shown here.
    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// Remember `id` (forgetting the oldest beyond [`MAX_SEEN`]).
    pub fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_owned()) {
            self.order.push(id.to_owned());
            self.changed = true;
        }
        if self.order.len() > MAX_SEEN {
            let excess = self.order.len() - MAX_SEEN;
            for old in self.order.drain(..excess) {
                self.set.remove(&old);
            }
        }
    }

    /// Forget `id`.
    pub fn remove(&mut self, id: &str) {
        if self.set.remove(id) {
            self.order.retain(|x| x != id);
            self.changed = true;
        }
    }

    /// Forget every id the server no longer lists.
    pub fn retain_listed(&mut self, listed: &[MailEntry]) {
        let listed: HashSet<&str> = listed.iter().map(|e| e.id.as_str()).collect();
        let before = self.order.len();
        self.order.retain(|id| listed.contains(id.as_str()));
        if self.order.len() != before {
            self.set = self.order.iter().cloned().collect();
            self.changed = true;
        }
    }

    /// How many ids are remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none are.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mid(i: usize) -> String {
        format!("{i:032x}")
    }

    fn entry(id: String) -> MailEntry {
        MailEntry {
            id,
            size: 561,
            received_at: 1,
            expires_at: 2,
        }
    }

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("h"));
        let mut seen = Seen::load(&home).unwrap();
        assert!(seen.is_empty());
        seen.save_if_changed(&home).unwrap();
        assert!(!home.dir().join(SEEN_FILE).exists(), "nothing to store");
        for i in 0..3 {
            seen.insert(&mid(i));
        }
        seen.insert(&mid(1));
        assert_eq!(seen.len(), 3);
        seen.save_if_changed(&home).unwrap();
        let mut back = Seen::load(&home).unwrap();
        assert_eq!(back, seen);
        back.retain_listed(&[entry(mid(2)), entry(mid(7))]);
        assert!(!back.contains(&mid(0)) && back.contains(&mid(2)));
        back.remove(&mid(2));
        assert!(back.is_empty());
        back.save_if_changed(&home).unwrap();
        assert!(Seen::load(&home).unwrap().is_empty());

        let mut full = Seen::default();
        for i in 0..MAX_SEEN + 5 {
            full.insert(&mid(i));
        }
        assert_eq!(full.len(), MAX_SEEN);
        assert!(!full.contains(&mid(4)) && full.contains(&mid(5)));
        full.save_if_changed(&home).unwrap();
        let size = std::fs::metadata(home.dir().join(SEEN_FILE)).unwrap().len();
        assert!(size < MAX_FILE_BYTES, "{size}");
        assert_eq!(Seen::load(&home).unwrap().len(), MAX_SEEN);
    }

    #[test]
    fn corrupt_files_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        let path = home.dir().join(SEEN_FILE);
        let too_many = serde_json::json!({"version": 1, "seen": vec![mid(1); MAX_SEEN + 1]});
        for (text, needle) in [
            ("{not json".to_owned(), "not valid JSON"),
            (r#"{"version":3,"seen":[]}"#.to_owned(), "unknown version 3"),
            (
                r#"{"version":1,"seen":["nope"]}"#.to_owned(),
                "not a message id",
            ),
            (too_many.to_string(), "more than 10000"),
        ] {
            std::fs::write(&path, text).unwrap();
            let msg = Seen::load(&home).unwrap_err().to_string();
            assert!(msg.contains(SEEN_FILE) && msg.contains(needle), "{msg}");
        }
    }
}
