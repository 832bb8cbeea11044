//! The in-process fan-out hub: manifest key → the sockets subscribed to it.
//!
//! # Locking
//!
//! Topics live in [`SHARDS`] `std::sync::Mutex`-guarded maps, chosen by the key's first
//! byte. A lock is held only for map updates and non-blocking `try_send`s, never across an
//! `.await`. Every push for a key goes through its shard lock together with the check "is
//! this sequence newer than the last one this socket got for this key", so a socket never
//! receives an older or duplicate sequence and pushes reach each queue in sequence order.
//!
//! # Slow readers
//!
//! Each socket has a bounded [`Outbox`]. A push that finds it full closes the socket with
//! [`CloseReason::SlowReader`] and counts it in [`HubStats::slow_disconnects`]; nothing
//! ever waits for a reader, so memory stays flat whatever the subscribers do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::watch;

use super::outbox::Outbox;
use crate::proto::PublicKey;

/// Number of lock shards (a power of two).
pub const SHARDS: usize = 64;

/// A text frame, built once and shared by every subscriber it is pushed to.
pub type Frame = Utf8Bytes;

/// Counters and gauges of the real-time layer, readable without locks (for metrics).
#[derive(Debug, Default)]
pub struct HubStats {
    /// Open WebSockets (gauge).
    pub sockets: AtomicU64,
    /// Sockets refused because `websocket.max_connections` were open.
    pub rejected_sockets: AtomicU64,
    /// Live manifest subscriptions over all sockets (gauge).
    pub subscriptions: AtomicU64,
    /// Manifests fanned out (one per newer sequence seen by this replica).
    pub publishes: AtomicU64,
    /// Frames queued to subscribers by fan-out.
    pub pushes: AtomicU64,
    /// Sockets closed because their outbound queue was full.
    pub slow_disconnects: AtomicU64,
    /// Notifications received from other replicas.
    pub replica_notifications: AtomicU64,
    /// Sockets closed, by [`super::CloseReason::index`].
    pub disconnects: [AtomicU64; 7],
}

/// A plain copy of [`HubStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStatsSnapshot {
    /// See [`HubStats::sockets`].
    pub sockets: u64,
    /// See [`HubStats::rejected_sockets`].
    pub rejected_sockets: u64,
    /// See [`HubStats::subscriptions`].
    pub subscriptions: u64,
    /// See [`HubStats::publishes`].
    pub publishes: u64,
    /// See [`HubStats::pushes`].
    pub pushes: u64,
    /// See [`HubStats::slow_disconnects`].
    pub slow_disconnects: u64,
    /// See [`HubStats::replica_notifications`].
    pub replica_notifications: u64,
}

impl HubStats {
    /// Count a closed socket.
    pub fn record_close(&self, reason: super::CloseReason) {
        self.disconnects[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Sockets closed for `reason` so far.
    #[must_use]
    pub fn disconnects(&self, reason: super::CloseReason) -> u64 {
        self.disconnects[reason.index()].load(Ordering::Relaxed)
    }

    /// Read every counter.
    #[must_use]
    pub fn snapshot(&self) -> HubStatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HubStatsSnapshot {
            sockets: r(&self.sockets),
            rejected_sockets: r(&self.rejected_sockets),
            subscriptions: r(&self.subscriptions),
            publishes: r(&self.publishes),
            pushes: r(&self.pushes),
            slow_disconnects: r(&self.slow_disconnects),
            replica_notifications: r(&self.replica_notifications),
        }
    }
}

/// One subscriber of one key.
struct Sub {
    outbox: Outbox,
    /// The highest sequence pushed to this socket for this key.
    last_sent: Option<u64>,
}

#[derive(Default)]
struct Topic {
    subs: HashMap<u64, Sub>,
    /// The highest sequence fanned out here.
    latest: Option<u64>,
    /// Long-poll waiters, woken with each newer sequence.
    waiters: Option<watch::Sender<u64>>,
}

impl Topic {
    fn idle(&self) -> bool {
        self.subs.is_empty()
            && self
                .waiters
                .as_ref()
                .is_none_or(|w| w.receiver_count() == 0)
    }
}

type Shard = HashMap<PublicKey, Topic>;

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    stats: Arc<HubStats>,
}

/// What this replica knows about a key (for cross-replica notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// Some socket here is subscribed to the key.
    pub subscribers: bool,
    /// Some long-poll request here waits on the key.
    pub waiters: bool,
    /// The highest sequence already fanned out here.
    pub latest: Option<u64>,
}

/// The fan-out hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    #[must_use]
    pub fn new() -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect();
        Self {
            inner: Arc::new(Inner {
                shards,
                stats: Arc::default(),
            }),
        }
    }

    /// The shared counters.
    #[must_use]
    pub fn stats(&self) -> &Arc<HubStats> {
        &self.inner.stats
    }

    fn shard(&self, key: &PublicKey) -> MutexGuard<'_, Shard> {
        let i = usize::from(key.as_bytes()[0]) % SHARDS;
        // A panic while holding a shard lock cannot leave a topic half-updated in a way that
        // matters (every update is a single map operation), so a poisoned lock is reused.
        self.inner.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribe `outbox`'s socket to `key`. Returns false if it already was.
    pub fn subscribe(&self, key: &PublicKey, outbox: &Outbox) -> bool {
        let mut shard = self.shard(key);
        let topic = shard.entry(*key).or_default();
        if topic.subs.contains_key(&outbox.id()) {
            return false;
        }
        topic.subs.insert(
            outbox.id(),
            Sub {
                outbox: outbox.clone(),
                last_sent: None,
            },
        );
        self.inner
            .stats
            .subscriptions
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Remove socket `id`'s subscription to `key`. Returns whether it existed.
    pub fn unsubscribe(&self, key: &PublicKey, id: u64) -> bool {
        let mut shard = self.shard(key);
        let Some(topic) = shard.get_mut(key) else {
            return false;
        };
        let removed = topic.subs.remove(&id).is_some();
        if topic.idle() {
            shard.remove(key);
        }
        if removed {
            self.inner
                .stats
                .subscriptions
                .fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Fan out `frame` (the push of `key` at `sequence`) to every subscriber that has not
    /// had this or a newer sequence, and wake long-poll waiters. Returns the number of
    /// frames queued. Does nothing if this replica already fanned out `sequence` or newer.
    pub fn publish(&self, key: &PublicKey, sequence: u64, frame: &Frame) -> usize {
        let mut shard = self.shard(key);
        let Some(topic) = shard.get_mut(key) else {
            return 0;
        };
        if topic.latest.is_some_and(|l| l >= sequence) {
            return 0;
        }
        topic.latest = Some(sequence);
        self.inner.stats.publishes.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = &topic.waiters {
            w.send_replace(sequence);
        }
        let mut sent = 0;
        for sub in topic.subs.values_mut() {
            if push(sub, sequence, frame, &self.inner.stats) {
                sent += 1;
            }
        }
        sent
    }

    /// Push `frame` (`key` at `sequence`) to socket `id` alone, if it is subscribed and has
    /// not had this or a newer sequence (the catch-up push after a subscribe).
    pub fn push_one(&self, key: &PublicKey, id: u64, sequence: u64, frame: &Frame) -> bool {
        let mut shard = self.shard(key);
        let Some(sub) = shard.get_mut(key).and_then(|t| t.subs.get_mut(&id)) else {
            return false;
        };
        push(sub, sequence, frame, &self.inner.stats)
    }

    /// Whether anything here cares about `key`, and what it has seen.
    #[must_use]
    pub fn interest(&self, key: &PublicKey) -> Option<Interest> {
        let shard = self.shard(key);
        shard.get(key).map(|t| Interest {
            subscribers: !t.subs.is_empty(),
            waiters: t.waiters.as_ref().is_some_and(|w| w.receiver_count() > 0),
            latest: t.latest,
        })
    }

    /// Wake long-poll waiters of `key` about `sequence` without pushing anything.
    pub fn wake(&self, key: &PublicKey, sequence: u64) {
        if let Some(w) = self.shard(key).get(key).and_then(|t| t.waiters.as_ref()) {
            w.send_if_modified(|v| {
                let newer = *v < sequence;
                *v = (*v).max(sequence);
                newer
            });
        }
    }

    /// Every key with at least one subscriber (to resynchronise after a lost connection to
    /// the other replicas).
    #[must_use]
    pub fn subscribed_keys(&self) -> Vec<PublicKey> {
        let mut keys = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            keys.extend(
                shard
                    .iter()
                    .filter(|(_, t)| !t.subs.is_empty())
                    .map(|(k, _)| *k),
            );
        }
        keys
    }

    /// Start waiting for a sequence of `key` newer than what is stored now. Create the
    /// waiter *before* reading the store so no publish in between is missed.
    #[must_use]
    pub fn waiter(&self, key: &PublicKey) -> Waiter {
        let mut shard = self.shard(key);
        let topic = shard.entry(*key).or_default();
        let rx = match &topic.waiters {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                topic.waiters = Some(tx);
                rx
            }
        };
        Waiter {
            hub: self.clone(),
            key: *key,
            rx: Some(rx),
        }
    }

    /// Number of keys with subscribers or waiters (for tests: memory stays flat).
    #[must_use]
    pub fn topics(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

/// Queue `frame` to `sub` if `sequence` is newer than what it had.
fn push(sub: &mut Sub, sequence: u64, frame: &Frame, stats: &HubStats) -> bool {
    if sub.last_sent.is_some_and(|l| l >= sequence) {
        return false;
    }
    sub.last_sent = Some(sequence);
    let queued = sub.outbox.send_or_close(frame.clone());
    if queued {
        stats.pushes.fetch_add(1, Ordering::Relaxed);
    }
    queued
}

/// A long-poll request waiting on one key; removes itself from the hub when dropped.
pub struct Waiter {
    hub: Hub,
    key: PublicKey,
    rx: Option<watch::Receiver<u64>>,
}

impl Waiter {
    /// Resolve once a newer sequence of the key was fanned out or announced by another
    /// replica after this waiter was created (or after the last call).
    pub async fn changed(&mut self) {
        match self.rx.as_mut() {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // The topic was removed (cannot happen while we hold a receiver);
                    // never resolve rather than spin.
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut shard = self.hub.shard(&self.key);
        if shard.get(&self.key).is_some_and(Topic::idle) {
            shard.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::super::outbox::{CloseReason, Closer};
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[n; 32]))
    }

    fn outbox(id: u64, cap: usize) -> (Outbox, mpsc::Receiver<Frame>, Arc<Closer>) {
        outbox_in(&Hub::new(), id, cap)
    }

    fn outbox_in(hub: &Hub, id: u64, cap: usize) -> (Outbox, mpsc::Receiver<Frame>, Arc<Closer>) {
        let (tx, rx) = mpsc::channel(cap);
        let closer = Arc::new(Closer::default());
        let ob = Outbox::new(id, tx, closer.clone(), hub.stats().clone());
        (ob, rx, closer)
    }

    fn drain(rx: &mut mpsc::Receiver<Frame>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(f) = rx.try_recv() {
            out.push(f.as_str().to_owned());
        }
        out
    }

    #[test]
    fn pushes_newer_sequences_once_in_order() {
        let hub = Hub::new();
        let k = key(1);
        let (ob, mut rx, _) = outbox(1, 16);
        assert!(hub.subscribe(&k, &ob));
        assert!(!hub.subscribe(&k, &ob));
        assert_eq!(hub.publish(&k, 2, &Frame::from("two")), 1);
        assert_eq!(hub.publish(&k, 2, &Frame::from("two again")), 0);
        assert_eq!(hub.publish(&k, 1, &Frame::from("one")), 0);
        // A catch-up push of an older or equal sequence is refused.
        assert!(!hub.push_one(&k, 1, 2, &Frame::from("dup")));
        assert_eq!(hub.publish(&k, 3, &Frame::from("three")), 1);
        assert_eq!(drain(&mut rx), ["two", "three"]);
        let s = hub.stats().snapshot();
        assert_eq!((s.subscriptions, s.pushes, s.publishes), (1, 2, 2));
    }

    #[test]
    fn catch_up_push_then_fan_out() {
        let hub = Hub::new();
        let k = key(2);
        let (a, mut rx_a, _) = outbox(1, 16);
        let (b, mut rx_b, _) = outbox(2, 16);
        hub.subscribe(&k, &a);
        assert!(hub.push_one(&k, 1, 5, &Frame::from("five")));
        hub.subscribe(&k, &b);
        hub.publish(&k, 6, &Frame::from("six"));
        assert_eq!(drain(&mut rx_a), ["five", "six"]);
        assert_eq!(drain(&mut rx_b), ["six"]);
        assert!(!hub.push_one(&k, 3, 7, &Frame::from("not subscribed")));
    }

    #[test]
    fn full_queue_closes_the_socket_once_and_counts_it() {
        let hub = Hub::new();
        let k = key(3);
        let (slow, _rx, closer) = outbox_in(&hub, 1, 2);
        let (fast, mut rx_fast, _) = outbox_in(&hub, 2, 64);
        hub.subscribe(&k, &slow);
        hub.subscribe(&k, &fast);
        for seq in 1..=10 {
            hub.publish(&k, seq, &Frame::from(seq.to_string()));
        }
        assert_eq!(closer.reason(), Some(CloseReason::SlowReader));
        assert_eq!(hub.stats().snapshot().slow_disconnects, 1);
        assert_eq!(drain(&mut rx_fast).len(), 10);
    }

    #[test]
    fn topics_are_removed_when_unused() {
        let hub = Hub::new();
        let k = key(4);
        let (ob, _rx, _) = outbox(1, 4);
        hub.subscribe(&k, &ob);
        let w = hub.waiter(&k);
        assert_eq!(hub.topics(), 1);
        assert!(hub.unsubscribe(&k, 1));
        assert!(!hub.unsubscribe(&k, 1));
        assert_eq!(hub.topics(), 1);
        drop(w);
        assert_eq!(hub.topics(), 0);
        assert_eq!(hub.stats().snapshot().subscriptions, 0);
        // Publishing to a key nobody follows keeps nothing.
        hub.publish(&k, 1, &Frame::from("x"));
        assert_eq!(hub.topics(), 0);
    }

    #[tokio::test]
    async fn waiters_wake_on_publish_and_on_replica_news() {
        let hub = Hub::new();
        let k = key(5);
        let mut w = hub.waiter(&k);
        let i = hub.interest(&k).unwrap();
        assert!(i.waiters && !i.subscribers);
        hub.publish(&k, 1, &Frame::from("x"));
        tokio::time::timeout(std::time::Duration::from_secs(5), w.changed())
            .await
            .unwrap();
        hub.wake(&k, 2);
        tokio::time::timeout(std::time::Duration::from_secs(5), w.changed())
            .await
            .unwrap();
        assert_eq!(hub.subscribed_keys(), Vec::<PublicKey>::new());
    }
}
