//! Tracker counters and gauges: plain atomics a metrics exporter can read.
//!
//! Every label comes from a small closed enum ([`Protocol`], [`AnnounceEvent`],
//! [`Outcome`]); nothing here is keyed by info-hash, peer id or address.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::tracker::AnnounceEvent;

/// Which tracker protocol a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP `GET /announce` and `/scrape`.
    Http,
    /// BEP 15 UDP.
    Udp,
}

impl Protocol {
    /// Every protocol, in index order.
    pub const ALL: [Protocol; 2] = [Protocol::Http, Protocol::Udp];

    /// A label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Udp => "udp",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Http => 0,
            Self::Udp => 1,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Answered with peers or counts.
    Ok,
    /// Refused (access list, caps, passkey) or failed.
    Error,
}

impl Outcome {
    /// Both outcomes, in index order.
    pub const ALL: [Outcome; 2] = [Outcome::Ok, Outcome::Error];

    /// A label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Ok => 0,
            Self::Error => 1,
        }
    }
}

/// Every announce event, in index order (for exporters iterating the counters).
pub const EVENTS: [AnnounceEvent; 5] = [
    AnnounceEvent::None,
    AnnounceEvent::Started,
    AnnounceEvent::Completed,
    AnnounceEvent::Stopped,
    AnnounceEvent::Paused,
];

fn event_index(e: AnnounceEvent) -> usize {
    match e {
        AnnounceEvent::None => 0,
        AnnounceEvent::Started => 1,
        AnnounceEvent::Completed => 2,
        AnnounceEvent::Stopped => 3,
        AnnounceEvent::Paused => 4,
    }
}

/// Counters (monotonic) and gauges (current values) of the tracker.
///
/// Updates use relaxed atomics: each number is exact, but a reader may see two numbers from
/// slightly different instants.
#[derive(Debug, Default)]
pub struct TrackerStats {
    announces: [[[AtomicU64; 2]; 5]; 2],
    scrapes: [[AtomicU64; 2]; 2],
    invalid: [AtomicU64; 2],
    udp_connects: AtomicU64,
    udp_bad_connection_ids: AtomicU64,
    seeders: AtomicU64,
    leechers: AtomicU64,
    torrents: AtomicU64,
}

/// A copy of the gauges at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Peers with nothing left to download.
    pub seeders: u64,
    /// Other peers.
    pub leechers: u64,
    /// Torrents with at least one peer (or swept since their last peer left).
    pub torrents: u64,
}

impl TrackerStats {
    /// Count one announce that was parsed (whatever its outcome).
    pub fn record_announce(&self, protocol: Protocol, event: AnnounceEvent, outcome: Outcome) {
        self.announces[protocol.index()][event_index(event)][outcome.index()]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Count one scrape that was parsed.
    pub fn record_scrape(&self, protocol: Protocol, outcome: Outcome) {
        self.scrapes[protocol.index()][outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Count one request that could not be parsed at all.
    pub fn record_invalid(&self, protocol: Protocol) {
        self.invalid[protocol.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Count one UDP `connect`.
    pub fn record_udp_connect(&self) {
        self.udp_connects.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one UDP request dropped for a forged or expired connection id.
    pub fn record_udp_bad_connection_id(&self) {
        self.udp_bad_connection_ids.fetch_add(1, Ordering::Relaxed);
    }

    /// Announces so far with these labels.
    #[must_use]
    pub fn announces(&self, protocol: Protocol, event: AnnounceEvent, outcome: Outcome) -> u64 {
        self.announces[protocol.index()][event_index(event)][outcome.index()]
            .load(Ordering::Relaxed)
    }

    /// Announces so far over `protocol` with `outcome`, all events together.
    #[must_use]
    pub fn announces_total(&self, protocol: Protocol, outcome: Outcome) -> u64 {
        EVENTS
            .iter()
            .map(|&e| self.announces(protocol, e, outcome))
            .sum()
    }

    /// Scrapes so far with these labels.
    #[must_use]
    pub fn scrapes(&self, protocol: Protocol, outcome: Outcome) -> u64 {
        self.scrapes[protocol.index()][outcome.index()].load(Ordering::Relaxed)
    }

    /// Unparseable requests so far.
    #[must_use]
    pub fn invalid(&self, protocol: Protocol) -> u64 {
        self.invalid[protocol.index()].load(Ordering::Relaxed)
    }

    /// UDP `connect`s so far.
    #[must_use]
    pub fn udp_connects(&self) -> u64 {
        self.udp_connects.load(Ordering::Relaxed)
    }

    /// UDP requests dropped for a bad connection id so far.
    #[must_use]
    pub fn udp_bad_connection_ids(&self) -> u64 {
        self.udp_bad_connection_ids.load(Ordering::Relaxed)
    }

    /// The current peer and torrent gauges.
    #[must_use]
    pub fn gauges(&self) -> Gauges {
        Gauges {
            seeders: self.seeders.load(Ordering::Relaxed),
            leechers: self.leechers.load(Ordering::Relaxed),
            torrents: self.torrents.load(Ordering::Relaxed),
        }
    }

    /// Peers currently held (seeders + leechers).
    #[must_use]
    pub fn peers(&self) -> u64 {
        let g = self.gauges();
        g.seeders.saturating_add(g.leechers)
    }

    /// Apply a change in held peers and torrents (called by the swarm under its shard lock).
    pub(crate) fn adjust(&self, delta: Delta) {
        add_signed(&self.seeders, delta.seeders);
        add_signed(&self.leechers, delta.leechers);
        add_signed(&self.torrents, delta.torrents);
    }
}

/// A change to the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    pub seeders: i64,
    pub leechers: i64,
    pub torrents: i64,
}

impl Delta {
    pub(crate) fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

fn add_signed(a: &AtomicU64, d: i64) {
    if d > 0 {
        a.fetch_add(d.unsigned_abs(), Ordering::Relaxed);
    } else if d < 0 {
        a.fetch_sub(d.unsigned_abs(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_labelled_and_gauges_adjust() {
        let s = TrackerStats::default();
        s.record_announce(Protocol::Udp, AnnounceEvent::Started, Outcome::Ok);
        s.record_announce(Protocol::Udp, AnnounceEvent::Started, Outcome::Ok);
        s.record_announce(Protocol::Http, AnnounceEvent::Stopped, Outcome::Error);
        assert_eq!(
            s.announces(Protocol::Udp, AnnounceEvent::Started, Outcome::Ok),
            2
        );
        assert_eq!(s.announces_total(Protocol::Http, Outcome::Error), 1);
        assert_eq!(s.announces_total(Protocol::Http, Outcome::Ok), 0);
        s.adjust(Delta {
            seeders: 3,
            leechers: 2,
            torrents: 1,
        });
        s.adjust(Delta {
            seeders: -1,
            leechers: 0,
            torrents: 0,
        });
        assert_eq!(
            s.gauges(),
            Gauges {
                seeders: 2,
                leechers: 2,
                torrents: 1
            }
        );
        assert_eq!(s.peers(), 4);
        assert_eq!(Protocol::Udp.as_str(), "udp");
        assert_eq!(Outcome::Error.as_str(), "error");
    }
}
