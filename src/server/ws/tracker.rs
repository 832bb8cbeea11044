//! The WebTorrent tracker: swarms of WebSocket peers kept in memory, relaying WebRTC
//! offers and answers between them.
//!
//! # Locking
//!
//! Swarms live in [`SHARDS`] `std::sync::Mutex`-guarded maps chosen by the info-hash's
//! first byte; a lock is held only for map updates and non-blocking `try_send`s. A peer is
//! the pair (info-hash, peer id) bound to the socket that announced it; it leaves on
//! `event: stopped` or when that socket closes. Empty swarms are removed.
//!
//! Behaviour follows the reference JavaScript tracker: an announce is answered with the
//! swarm counts (not when it only carries an answer); each offer goes to a different random
//! other peer of the swarm (at most `numwant` of them); an answer goes to the peer named by
//! `to_peer_id`, and is dropped if that peer is gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use rand::seq::IteratorRandom;

use crate::proto::tracker::{AnnounceEvent, PeerId, ScrapeStats};
use crate::proto::webtorrent::{
    Announce, AnnounceResponse, Outgoing, RelayedAnswer, RelayedOffer, ScrapeResponse,
};
use crate::proto::InfoHash;
use crate::server::pubsub::{Frame, Outbox};

/// Number of lock shards.
pub const SHARDS: usize = 64;

struct Peer {
    outbox: Outbox,
    seeder: bool,
}

#[derive(Default)]
struct Torrent {
    peers: HashMap<PeerId, Peer>,
    /// `completed` events seen.
    downloaded: u32,
}

impl Torrent {
    fn stats(&self) -> ScrapeStats {
        let complete = self.peers.values().filter(|p| p.seeder).count();
        let complete = u32::try_from(complete).unwrap_or(u32::MAX);
        let total = u32::try_from(self.peers.len()).unwrap_or(u32::MAX);
        ScrapeStats {
            complete,
            downloaded: self.downloaded,
            incomplete: total.saturating_sub(complete),
        }
    }
}

type Shard = HashMap<InfoHash, Torrent>;

/// What an announce did, for the caller to reply with.
#[derive(Debug)]
pub struct AnnounceOutcome {
    /// The reply to send (none for an announce that only carries an answer).
    pub reply: Option<Outgoing>,
    /// Offers handed to other peers.
    pub offers_relayed: usize,
    /// Whether the answer (if any) found its peer.
    pub answer_relayed: bool,
    /// Whether the socket now has a peer in this swarm (false after `stopped`).
    pub joined: bool,
}

/// Offers and answers relayed since start (see [`Swarms::relay_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounts {
    /// Offers queued to another peer of the swarm.
    pub offers: u64,
    /// Answers queued to the peer named by `to_peer_id`.
    pub answers: u64,
}

/// All WebSocket swarms. Share it behind an `Arc`.
pub struct Swarms {
    shards: Box<[Mutex<Shard>]>,
    offers_relayed: AtomicU64,
    answers_relayed: AtomicU64,
}

impl Default for Swarms {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            offers_relayed: AtomicU64::new(0),
            answers_relayed: AtomicU64::new(0),
        }
    }
}

impl Swarms {
    fn shard(&self, ih: &InfoHash) -> MutexGuard<'_, Shard> {
        let i = usize::from(ih.as_bytes()[0]) % SHARDS;
        // Every update is one map operation, so a poisoned lock holds consistent data.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Handle an announce from the socket behind `outbox`.
    pub fn announce(&self, a: &Announce, outbox: &Outbox, interval: u32) -> AnnounceOutcome {
        let mut shard = self.shard(&a.info_hash);
        let stopped = a.event == AnnounceEvent::Stopped;
        if stopped {
            if let Some(t) = shard.get_mut(&a.info_hash) {
                if t.peers
                    .get(&a.peer_id)
                    .is_some_and(|p| p.outbox.id() == outbox.id())
                {
                    t.peers.remove(&a.peer_id);
                }
            }
        } else {
            let t = shard.entry(a.info_hash).or_default();
            if a.event == AnnounceEvent::Completed {
                t.downloaded = t.downloaded.saturating_add(1);
            }
            // A peer becomes a seeder on `left: 0` or `completed` and stays one (an
            // announce that only carries an answer has no `left`).
            let seeder = a.left == Some(0) || a.event == AnnounceEvent::Completed;
            let was_seeder = t.peers.get(&a.peer_id).is_some_and(|p| p.seeder);
            t.peers.insert(
                a.peer_id,
                Peer {
                    outbox: outbox.clone(),
                    seeder: seeder || was_seeder,
                },
            );
        }
        let mut offers_relayed = 0;
        let mut answer_relayed = false;
        let stats = shard
            .get(&a.info_hash)
            .map(Torrent::stats)
            .unwrap_or_default();
        if let Some(t) = shard.get(&a.info_hash) {
            if !stopped && !a.offers.is_empty() {
                offers_relayed = relay_offers(t, a);
            }
            if let Some(ans) = &a.answer {
                if let Some(to) = t.peers.get(&ans.to_peer_id) {
                    let msg = Outgoing::Answer(RelayedAnswer {
                        info_hash: a.info_hash,
                        peer_id: a.peer_id,
                        answer: ans.answer.clone(),
                        offer_id: ans.offer_id,
                    });
                    answer_relayed = to.outbox.send_or_close(Frame::from(msg.to_json()));
                }
            }
        }
        if shard.get(&a.info_hash).is_some_and(|t| t.peers.is_empty()) {
            shard.remove(&a.info_hash);
        }
        drop(shard);
        if offers_relayed > 0 {
            let n = u64::try_from(offers_relayed).unwrap_or(u64::MAX);
            self.offers_relayed.fetch_add(n, Ordering::Relaxed);
        }
        if answer_relayed {
            self.answers_relayed.fetch_add(1, Ordering::Relaxed);
        }
        let reply = a.answer.is_none().then_some({
            Outgoing::AnnounceResponse(AnnounceResponse {
                info_hash: a.info_hash,
                interval,
                complete: stats.complete,
                incomplete: stats.incomplete,
                tracker_id: None,
                warning_message: None,
            })
        });
        AnnounceOutcome {
            reply,
            offers_relayed,
            answer_relayed,
            joined: !stopped,
        }
    }

    /// Counters of each of `hashes` (zeros for unknown torrents).
    #[must_use]
    pub fn scrape(&self, hashes: &[InfoHash]) -> ScrapeResponse {
        let files = hashes
            .iter()
            .map(|ih| {
                let st = self
                    .shard(ih)
                    .get(ih)
                    .map(Torrent::stats)
                    .unwrap_or_default();
                (*ih, st)
            })
            .collect();
        ScrapeResponse { files }
    }

    /// Remove the peers the socket `id` announced (it closed).
    pub fn leave(&self, id: u64, joined: &[(InfoHash, PeerId)]) {
        for (ih, peer_id) in joined {
            let mut shard = self.shard(ih);
            if let Some(t) = shard.get_mut(ih) {
                if t.peers.get(peer_id).is_some_and(|p| p.outbox.id() == id) {
                    t.peers.remove(peer_id);
                }
                if t.peers.is_empty() {
                    shard.remove(ih);
                }
            }
        }
    }

    /// Offers and answers relayed so far (for metrics and tests).
    #[must_use]
    pub fn relay_counts(&self) -> RelayCounts {
        RelayCounts {
            offers: self.offers_relayed.load(Ordering::Relaxed),
            answers: self.answers_relayed.load(Ordering::Relaxed),
        }
    }

    /// Number of swarms (for tests).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    /// Whether there are no swarms.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hand each offer to a different random other peer; returns how many were sent.
fn relay_offers(t: &Torrent, a: &Announce) -> usize {
    let want = a
        .numwant
        .map_or(a.offers.len(), |n| usize::try_from(n).unwrap_or(usize::MAX))
        .min(a.offers.len());
    let targets = t
        .peers
        .iter()
        .filter(|(id, _)| **id != a.peer_id)
        .choose_multiple(&mut rand::thread_rng(), want);
    let mut sent = 0;
    for ((_, peer), offer) in targets.into_iter().zip(&a.offers) {
        let msg = Outgoing::Offer(RelayedOffer {
            info_hash: a.info_hash,
            peer_id: a.peer_id,
            offer: offer.offer.clone(),
            offer_id: offer.offer_id,
        });
        if peer.outbox.send_or_close(Frame::from(msg.to_json())) {
            sent += 1;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio::sync::mpsc;

    use super::*;
    use crate::proto::webtorrent::{Answer, Offer, OfferId};
    use crate::server::pubsub::{Closer, HubStats};

    fn peer(id: u64) -> (Outbox, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(8);
        let stats = Arc::new(HubStats::default());
        (Outbox::new(id, tx, Arc::new(Closer::default()), stats), rx)
    }

    fn announce(pid: u8, offers: usize) -> Announce {
        Announce {
            info_hash: InfoHash::from([7; 20]),
            peer_id: PeerId::from([pid; 20]),
            event: AnnounceEvent::Started,
            numwant: Some(10),
            uploaded: None,
            downloaded: None,
            left: Some(u64::from(pid % 2)),
            offers: (0..offers)
                .map(|i| Offer {
                    offer: json!({"type": "offer", "sdp": format!("o{i}")}),
                    offer_id: OfferId::from([u8::try_from(i).unwrap(); 20]),
                })
                .collect(),
            answer: None,
            tracker_id: None,
        }
    }

    #[test]
    fn offers_reach_other_peers_and_answers_come_back() {
        let swarms = Swarms::default();
        let (a, mut rx_a) = peer(1);
        let (b, mut rx_b) = peer(2);
        let out = swarms.announce(&announce(1, 0), &a, 120);
        assert!(matches!(out.reply, Some(Outgoing::AnnounceResponse(_))));
        let out = swarms.announce(&announce(2, 3), &b, 120);
        // Only one other peer: one offer relayed, never back to the sender.
        assert_eq!(out.offers_relayed, 1);
        let Some(Outgoing::AnnounceResponse(r)) = out.reply else {
            panic!("no reply")
        };
        assert_eq!((r.complete, r.incomplete), (1, 1));
        let _ = rx_a.try_recv().unwrap(); // nothing else for a yet: b's offer
        assert!(rx_b.try_recv().is_err());

        let mut reply = announce(1, 0);
        reply.answer = Some(Answer {
            answer: json!({"type": "answer", "sdp": "a"}),
            to_peer_id: PeerId::from([2; 20]),
            offer_id: OfferId::from([0; 20]),
        });
        let out = swarms.announce(&reply, &a, 120);
        assert!(out.reply.is_none() && out.answer_relayed);
        let got = Outgoing::parse(rx_b.try_recv().unwrap().as_str()).unwrap();
        assert!(matches!(got, Outgoing::Answer(x) if x.peer_id == PeerId::from([1; 20])));
        let counts = swarms.relay_counts();
        assert_eq!((counts.offers, counts.answers), (1, 1));

        let st = swarms.scrape(&[InfoHash::from([7; 20]), InfoHash::from([8; 20])]);
        assert_eq!(st.files[0].1.complete + st.files[0].1.incomplete, 2);
        assert_eq!(st.files[1].1, ScrapeStats::default());

        let mut stop = announce(2, 0);
        stop.event = AnnounceEvent::Stopped;
        assert!(!swarms.announce(&stop, &b, 120).joined);
        swarms.leave(1, &[(InfoHash::from([7; 20]), PeerId::from([1; 20]))]);
        assert!(swarms.is_empty());
    }

    #[test]
    fn a_peer_id_taken_over_by_a_new_socket_is_not_removed_by_the_old_one() {
        let swarms = Swarms::default();
        let (old, _rx1) = peer(1);
        let (new, _rx2) = peer(2);
        swarms.announce(&announce(3, 0), &old, 120);
        swarms.announce(&announce(3, 0), &new, 120);
        swarms.leave(1, &[(InfoHash::from([7; 20]), PeerId::from([3; 20]))]);
        assert_eq!(swarms.len(), 1);
        swarms.leave(2, &[(InfoHash::from([7; 20]), PeerId::from([3; 20]))]);
        assert!(swarms.is_empty());
    }
}
