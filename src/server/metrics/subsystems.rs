//! The tracker's and the WebSocket hub's own atomic counters, exported at scrape time.
//!
//! Both subsystems count with plain atomics ([`TrackerStats`], [`HubStats`]); these
//! families read them when Prometheus scrapes, so the hot paths never touch the registry.
//! Every label value comes from a closed enum.

use std::sync::Arc;

use super::{Samples, SnapshotCollector, SnapshotKind};
use crate::proto::tracker::AnnounceEvent;
use crate::server::pubsub::{CloseReason, HubStats};
use crate::server::tracker::stats::{Outcome, Protocol, TrackerStats, EVENTS};

/// The `event` label of an announce.
fn event_label(e: AnnounceEvent) -> &'static str {
    match e {
        AnnounceEvent::None => "none",
        AnnounceEvent::Started => "started",
        AnnounceEvent::Completed => "completed",
        AnnounceEvent::Stopped => "stopped",
        AnnounceEvent::Paused => "paused",
    }
}

/// Precision is irrelevant at these magnitudes (counters below 2^53).
#[allow(clippy::cast_precision_loss)]
fn f(n: u64) -> f64 {
    n as f64
}

/// The tracker's families.
pub(crate) fn tracker(stats: &Arc<TrackerStats>) -> SnapshotCollector {
    use SnapshotKind::{Counter, Gauge};
    let s = Arc::clone(stats);
    let announces = move || -> Samples {
        let mut out = Vec::new();
        for p in Protocol::ALL {
            for e in EVENTS {
                for o in Outcome::ALL {
                    let labels = vec![p.as_str(), event_label(e), o.as_str()];
                    out.push((labels, f(s.announces(p, e, o))));
                }
            }
        }
        out
    };
    let s = Arc::clone(stats);
    let scrapes = move || -> Samples {
        let mut out = Vec::new();
        for p in Protocol::ALL {
            for o in Outcome::ALL {
                out.push((vec![p.as_str(), o.as_str()], f(s.scrapes(p, o))));
            }
        }
        out
    };
    let s = Arc::clone(stats);
    let invalid = move || -> Samples {
        Protocol::ALL
            .iter()
            .map(|p| (vec![p.as_str()], f(s.invalid(*p))))
            .collect()
    };
    let (s1, s2, s3, s4) = (
        Arc::clone(stats),
        Arc::clone(stats),
        Arc::clone(stats),
        Arc::clone(stats),
    );
    SnapshotCollector::new()
        .family(
            "megatorrent_tracker_announces_total",
            "BitTorrent announces answered, by protocol, event and result.",
            Counter,
            &["protocol", "event", "result"],
            announces,
        )
        .family(
            "megatorrent_tracker_scrapes_total",
            "BitTorrent scrapes answered, by protocol and result.",
            Counter,
            &["protocol", "result"],
            scrapes,
        )
        .family(
            "megatorrent_tracker_invalid_requests_total",
            "Tracker requests dropped as unparseable, by protocol.",
            Counter,
            &["protocol"],
            invalid,
        )
        .family(
            "megatorrent_tracker_udp_connects_total",
            "UDP tracker connect requests answered.",
            Counter,
            &[],
            move || vec![(vec![], f(s1.udp_connects()))],
        )
        .family(
            "megatorrent_tracker_udp_bad_connection_ids_total",
            "UDP tracker requests dropped for an unknown or expired connection id.",
            Counter,
            &[],
            move || vec![(vec![], f(s2.udp_bad_connection_ids()))],
        )
        .family(
            "megatorrent_tracker_torrents",
            "Torrents with at least one live peer on this replica.",
            Gauge,
            &[],
            move || vec![(vec![], f(s3.gauges().torrents))],
        )
        .family(
            "megatorrent_tracker_peers",
            "Live peers on this replica, by kind.",
            Gauge,
            &["kind"],
            move || {
                let g = s4.gauges();
                vec![
                    (vec!["seeder"], f(g.seeders)),
                    (vec!["leecher"], f(g.leechers)),
                ]
            },
        )
}

/// The WebSocket hub's families.
pub(crate) fn hub(stats: &Arc<HubStats>) -> SnapshotCollector {
    use SnapshotKind::{Counter, Gauge};
    let read = |pick: fn(&HubStats) -> u64| {
        let s = Arc::clone(stats);
        move || vec![(vec![], f(pick(&s)))]
    };
    let s = Arc::clone(stats);
    let disconnects = move || -> Samples {
        CloseReason::ALL
            .iter()
            .map(|r| (vec![r.label()], f(s.disconnects(*r))))
            .collect()
    };
    SnapshotCollector::new()
        .family(
            "megatorrent_ws_connections",
            "Open WebSockets.",
            Gauge,
            &[],
            read(|s| s.snapshot().sockets),
        )
        .family(
            "megatorrent_ws_disconnects_total",
            "WebSockets closed, by reason.",
            Counter,
            &["reason"],
            disconnects,
        )
        .family(
            "megatorrent_ws_subscriptions",
            "Live manifest subscriptions over all sockets.",
            Gauge,
            &[],
            read(|s| s.snapshot().subscriptions),
        )
        .family(
            "megatorrent_ws_fanouts_total",
            "Manifests fanned out to subscribers (one per newer sequence seen here).",
            Counter,
            &[],
            read(|s| s.snapshot().publishes),
        )
        .family(
            "megatorrent_ws_pushes_total",
            "Manifest frames queued to subscribers.",
            Counter,
            &[],
            read(|s| s.snapshot().pushes),
        )
        .family(
            "megatorrent_ws_slow_client_drops_total",
            "Sockets closed because their outbound queue was full.",
            Counter,
            &[],
            read(|s| s.snapshot().slow_disconnects),
        )
        .family(
            "megatorrent_ws_replica_notifications_total",
            "Publish notifications received from other replicas (PostgreSQL LISTEN).",
            Counter,
            &[],
            read(|s| s.snapshot().replica_notifications),
        )
}
