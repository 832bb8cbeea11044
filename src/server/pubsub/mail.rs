//! Mailbox arrival pushes: the sockets that proved they hold a mailbox's key (a signed
//! challenge, see `ws::mailbox`) get `{"action":"mail","mailbox":<key>,"id":<id>}` when an
//! envelope for that key is stored, on this replica or (with PostgreSQL) on another one.
//!
//! The frame carries no sender and no content: the client then lists and fetches its
//! mailbox with signed HTTP requests, as without the push.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Frame, Outbox};
use crate::proto::PublicKey;

/// How many sockets may watch one mailbox at once (one person's devices). A further
/// subscription is refused with `too-large:`.
pub const MAX_WATCHERS_PER_MAILBOX: usize = 16;

/// Why a watch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchError {
    /// [`MAX_WATCHERS_PER_MAILBOX`] sockets already watch this mailbox.
    Full,
}

/// Mailbox key → the sockets watching it. Cheap to clone.
#[derive(Clone, Default)]
pub struct MailWatchers {
    inner: Arc<Mutex<HashMap<PublicKey, Vec<Outbox>>>>,
}

impl MailWatchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, Vec<Outbox>>> {
        // A panic while holding the lock cannot leave the map half-updated (each update
        // is one push/retain), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Let `outbox` watch `key` (idempotent per socket).
    pub fn watch(&self, key: &PublicKey, outbox: &Outbox) -> Result<(), WatchError> {
        let mut map = self.lock();
        let list = map.entry(*key).or_default();
        if list.iter().any(|o| o.id() == outbox.id()) {
            return Ok(());
        }
        if list.len() >= MAX_WATCHERS_PER_MAILBOX {
            return Err(WatchError::Full);
        }
        list.push(outbox.clone());
        Ok(())
    }

    /// Stop socket `id` watching `key`; returns whether it was watching.
    pub fn unwatch(&self, key: &PublicKey, id: u64) -> bool {
        let mut map = self.lock();
        let Some(list) = map.get_mut(key) else {
            return false;
        };
        let before = list.len();
        list.retain(|o| o.id() != id);
        let removed = list.len() != before;
        if list.is_empty() {
            map.remove(key);
        }
        removed
    }

    /// Push the arrival of message `id` to every socket watching `key`; returns how many
    /// got it (a socket with a full queue is closed as a slow reader).
    pub fn arrived(&self, key: &PublicKey, id: &str) -> usize {
        let targets: Vec<Outbox> = match self.lock().get(key) {
            Some(list) => list.clone(),
            None => return 0,
        };
        let frame = Frame::from(arrival_frame(key, id));
        targets
            .iter()
            .filter(|o| o.send_or_close(frame.clone()))
            .count()
    }
}

/// `{"action":"mail","mailbox":<key hex>,"id":<message id>}`.
#[must_use]
pub fn arrival_frame(key: &PublicKey, id: &str) -> String {
    serde_json::json!({"action": "mail", "mailbox": key.to_hex(), "id": id}).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::server::pubsub::{Closer, HubStats};
    use tokio::sync::mpsc;

    fn outbox(id: u64, cap: usize) -> (Outbox, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(cap);
        let ob = Outbox::new(
            id,
            tx,
            Arc::new(Closer::default()),
            Arc::new(HubStats::default()),
        );
        (ob, rx)
    }

    #[test]
    fn watchers_get_arrivals_of_their_mailbox_only() {
        let w = MailWatchers::default();
        let a = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        let b = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[2; 32]));
        let (o1, mut r1) = outbox(1, 4);
        let (o2, mut r2) = outbox(2, 4);
        w.watch(&a, &o1).unwrap();
        w.watch(&a, &o1).unwrap();
        w.watch(&b, &o2).unwrap();
        assert_eq!(w.arrived(&a, "00"), 1);
        let got = r1.try_recv().unwrap();
        assert!(got.as_str().contains(&a.to_hex()), "{}", got.as_str());
        assert!(r1.try_recv().is_err(), "one frame per socket");
        assert!(r2.try_recv().is_err());
        assert!(w.unwatch(&a, 1));
        assert!(!w.unwatch(&a, 1));
        assert_eq!(w.arrived(&a, "00"), 0);
        // The other mailbox is still watched, and its watcher now gets its arrival.
        assert_eq!(w.arrived(&b, "00"), 1);
        assert!(r2.try_recv().is_ok());
    }

    #[test]
    fn a_mailbox_has_a_bounded_number_of_watchers() {
        let w = MailWatchers::default();
        let a = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        let mut keep = Vec::new();
        for id in 0..MAX_WATCHERS_PER_MAILBOX as u64 {
            let (o, r) = outbox(id, 1);
            w.watch(&a, &o).unwrap();
            keep.push(r);
        }
        let (extra, _r) = outbox(999, 1);
        assert_eq!(w.watch(&a, &extra), Err(WatchError::Full));
    }
}
