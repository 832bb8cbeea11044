//! Swarm state in memory: which peers are in which torrent.
//!
//! # Layout and locking
//!
//! Torrents live in [`Swarm::SHARDS`] shards, each a `std::sync::Mutex<HashMap<InfoHash,
//! Torrent>>`; an info-hash picks its shard with a per-process keyed hash, so crafted hashes
//! cannot pile onto one shard predictably. A lock is held only for the in-memory work of one
//! announce or scrape entry (never across an `.await`, never two at once).
//!
//! A torrent keeps three insertion-ordered maps keyed by peer id (IPv4, IPv6, names), so a
//! peer of one family is found with one lookup and peers can be sampled by index. Sampling
//! takes up to `numwant` consecutive entries from a random starting index, wrapping around,
//! skipping the requester and expired entries. A re-announce updates its entry in place;
//! removal is `swap_remove` (the last entry fills the gap), so the order drifts as peers
//! come and go.
//!
//! # Expiry
//!
//! Times are whole seconds since the swarm was created, read from `tokio::time::Instant` (so
//! tests can pause time). A peer expires `max_peer_age` after its last announce. Expired
//! peers are never handed out; they are removed by [`Swarm::sweep`] (run periodically) and
//! lazily, at most once a second per torrent, when a torrent at its cap sees a new peer.
//! Seeder/leecher counts include expired peers until they are removed.
//!
//! # Caps
//!
//! A new peer is refused, never an existing one evicted, when its torrent holds
//! `max_peers_per_torrent` peers or the whole swarm holds `max_peers` (the global check reads
//! a shared counter without locking other shards, so concurrent announces may overshoot it by
//! at most one peer per worker thread).

use std::collections::hash_map::{Entry as MapEntry, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::net::{SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::stats::{Delta, TrackerStats};
use super::Refusal;
use crate::proto::tracker::{AnnounceEvent, PeerAddr, PeerId, ScrapeStats};
use crate::proto::InfoHash;

mod torrent;

#[cfg(test)]
mod tests;

use torrent::{family, Torrent};

/// Limits the swarm enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwarmLimits {
    /// Peers one torrent may hold.
    pub max_peers_per_torrent: usize,
    /// Peers the whole swarm may hold.
    pub max_peers: u64,
    /// How long a peer stays after its last announce.
    pub max_peer_age: Duration,
}

/// An opaque digest of a client's `key` (0 = no key), used to let a client that changes
/// address keep its peer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyTag(u64);

impl KeyTag {
    /// No key was sent.
    pub const NONE: KeyTag = KeyTag(0);

    /// Whether a key was sent.
    #[must_use]
    pub fn is_some(self) -> bool {
        self.0 != 0
    }
}

/// Which peers an announce wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// HTTP compact: IPv4 and IPv6 peers (the requester's family first); never names.
    Compact,
    /// HTTP dictionary list: names first, then IP peers (the requester's family first).
    Dict,
    /// UDP over IPv4: IPv4 peers only.
    V4,
    /// UDP over IPv6: IPv6 peers only.
    V6,
}

/// One announce, already authorised and normalised by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceInput {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// Where other peers should connect to it.
    pub addr: PeerAddr,
    /// Digest of its `key`.
    pub key: KeyTag,
    /// The event.
    pub event: AnnounceEvent,
    /// Whether it has the whole torrent (`left` = 0).
    pub seeder: bool,
    /// How many peers to return (already clamped).
    pub numwant: usize,
    /// Which peers to return.
    pub want: Want,
}

/// Peers chosen for a reply. Reuse one across requests: [`Swarm::announce`] clears it.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// IPv4 peers (compact lists and UDP over IPv4).
    pub v4: Vec<SocketAddrV4>,
    /// IPv6 peers (compact `peers6` and UDP over IPv6).
    pub v6: Vec<SocketAddrV6>,
    /// Dictionary-list peers, names included.
    pub dict: Vec<(PeerAddr, PeerId)>,
}

impl Selection {
    fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
        self.dict.clear();
    }

    /// Peers selected, all lists together.
    #[must_use]
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len() + self.dict.len()
    }

    /// Whether no peer was selected.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Seeders and leechers of one torrent, as an announce reply reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// Count one peer in (`by` = 1) or out (`by` = -1) of `t`'s seeders or leechers.
fn count(t: &mut Torrent, delta: &mut Delta, seeder: bool, by: i64) {
    if seeder {
        t.seeders = t.seeders.saturating_add_signed(if by > 0 { 1 } else { -1 });
        delta.seeders += by;
    } else {
        delta.leechers += by;
    }
}

type Shard = HashMap<InfoHash, Torrent>;

/// All torrents and their peers. See the module docs for locking and expiry.
#[derive(Debug)]
pub struct Swarm {
    shards: Box<[Mutex<Shard>]>,
    shard_hasher: RandomState,
    key_hasher: RandomState,
    epoch: Instant,
    limits: SwarmLimits,
    stats: Arc<TrackerStats>,
}

impl Swarm {
    /// Number of shards.
    pub const SHARDS: usize = 128;

    /// An empty swarm that reports its gauges to `stats`.
    #[must_use]
    pub fn new(limits: SwarmLimits, stats: Arc<TrackerStats>) -> Self {
        Self {
            shards: (0..Self::SHARDS).map(|_| Mutex::default()).collect(),
            shard_hasher: RandomState::new(),
            key_hasher: RandomState::new(),
            epoch: Instant::now(),
            limits,
            stats,
        }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &SwarmLimits {
        &self.limits
    }

    /// Digest a client's `key` bytes (HTTP `key=`, or the UDP key's 4 bytes).
    #[must_use]
    pub fn key_tag(&self, key: &[u8]) -> KeyTag {
        // 0 is reserved for "no key"; a real digest of 0 becomes 1.
        KeyTag(self.key_hasher.hash_one(key).max(1))
    }

    fn now(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn shard(&self, ih: &InfoHash) -> MutexGuard<'_, Shard> {
        let h = self.shard_hasher.hash_one(ih);
        // The shard count is a small constant, so the modulo fits any usize.
        let i = usize::try_from(h % Self::SHARDS as u64).unwrap_or(0);
        let m = &self.shards[i % self.shards.len()];
        // A panic while holding a shard lock cannot leave a torrent half-updated in a way
        // that breaks later readers (every update is a few field writes), so keep serving.
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record an announce and choose peers for the reply into `out` (cleared first).
    ///
    /// `stopped` removes the peer and selects nothing; `completed` marks it a seeder and
    /// counts one download (once per peer). Returns the torrent's counts after the update.
    pub fn announce(&self, a: AnnounceInput, out: &mut Selection) -> Result<Counts, Refusal> {
        out.clear();
        let now = self.now();
        let expires = now
            .saturating_add(u32::try_from(self.limits.max_peer_age.as_secs()).unwrap_or(u32::MAX));
        let mut shard = self.shard(&a.info_hash);
        let mut delta = Delta::default();
        let torrent = match shard.entry(a.info_hash) {
            MapEntry::Occupied(o) => o.into_mut(),
            MapEntry::Vacant(_) if a.event == AnnounceEvent::Stopped => {
                return Ok(Counts::default());
            }
            MapEntry::Vacant(v) => {
                if self.stats.peers() >= self.limits.max_peers {
                    return Err(Refusal::TrackerFull);
                }
                delta.torrents = 1;
                v.insert(Torrent::default())
            }
        };
        let result = self.upsert(torrent, &a, now, expires, &mut delta);
        if result.is_ok() && a.event != AnnounceEvent::Stopped {
            torrent.select(&a, now, &mut rand::thread_rng(), out);
        }
        let counts = torrent.counts();
        if !delta.is_zero() {
            self.stats.adjust(delta);
        }
        result.map(|()| counts)
    }

    fn upsert(
        &self,
        t: &mut Torrent,
        a: &AnnounceInput,
        now: u32,
        expires: u32,
        delta: &mut Delta,
    ) -> Result<(), Refusal> {
        let stopped = a.event == AnnounceEvent::Stopped;
        let completed = a.event == AnnounceEvent::Completed;
        let seeder = a.seeder || completed;
        let Some(old) = t.find(&a.peer_id, &a.addr) else {
            if stopped {
                return Ok(());
            }
            self.make_room(t, now, delta)?;
            if completed {
                t.downloaded = t.downloaded.saturating_add(1);
            }
            t.insert(a.peer_id, a.addr.clone(), expires, seeder, a.key);
            count(t, delta, seeder, 1);
            return Ok(());
        };
        let owner = old.same_host || (old.key.is_some() && old.key == a.key);
        if !owner {
            return Err(Refusal::PeerIdInUse);
        }
        if stopped {
            t.remove(&a.peer_id, old.family);
            count(t, delta, old.seeder, -1);
            return Ok(());
        }
        if completed && !old.seeder {
            t.downloaded = t.downloaded.saturating_add(1);
        }
        // A client may drop its key; keep the one that proved ownership.
        let key = if a.key.is_some() { a.key } else { old.key };
        if old.family == family(&a.addr) {
            // The common case, a re-announce: update in place.
            t.refresh(&a.peer_id, &a.addr, expires, seeder, key);
        } else {
            t.remove(&a.peer_id, old.family);
            t.insert(a.peer_id, a.addr.clone(), expires, seeder, key);
        }
        if old.seeder != seeder {
            count(t, delta, old.seeder, -1);
            count(t, delta, seeder, 1);
        }
        Ok(())
    }

    /// Check the caps for one more peer in `t`, purging expired peers first when `t` is full.
    fn make_room(&self, t: &mut Torrent, now: u32, delta: &mut Delta) -> Result<(), Refusal> {
        if t.len() >= self.limits.max_peers_per_torrent && t.last_purge != Some(now) {
            t.last_purge = Some(now);
            let d = t.purge(now);
            delta.seeders += d.seeders;
            delta.leechers += d.leechers;
        }
        if t.len() >= self.limits.max_peers_per_torrent {
            return Err(Refusal::TorrentFull);
        }
        let held =
            i64::try_from(self.stats.peers()).unwrap_or(i64::MAX) + delta.seeders + delta.leechers;
        if u64::try_from(held).unwrap_or(0) >= self.limits.max_peers {
            return Err(Refusal::TrackerFull);
        }
        Ok(())
    }

    /// Counters for one torrent (zeros if unknown).
    #[must_use]
    pub fn scrape(&self, ih: &InfoHash) -> ScrapeStats {
        let shard = self.shard(ih);
        shard.get(ih).map_or_else(ScrapeStats::default, |t| {
            let c = t.counts();
            ScrapeStats {
                complete: c.complete,
                downloaded: t.downloaded,
                incomplete: c.incomplete,
            }
        })
    }

    /// Remove expired peers everywhere, and torrents left without peers. Returns the number
    /// of peers removed.
    pub fn sweep(&self) -> u64 {
        self.retain(|_| true)
    }

    /// As [`Swarm::sweep`], also dropping every torrent for which `keep` is false (used
    /// when the access list changes).
    pub fn retain(&self, keep: impl Fn(&InfoHash) -> bool) -> u64 {
        let now = self.now();
        let mut removed = 0u64;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let mut delta = Delta::default();
            shard.retain(|ih, t| {
                let d = if keep(ih) { t.purge(now) } else { t.clear() };
                delta.seeders += d.seeders;
                delta.leechers += d.leechers;
                let live = t.len() > 0;
                if !live {
                    delta.torrents -= 1;
                }
                live
            });
            removed += u64::try_from(-(delta.seeders + delta.leechers)).unwrap_or(0);
            if !delta.is_zero() {
                self.stats.adjust(delta);
            }
        }
        removed
    }
}
