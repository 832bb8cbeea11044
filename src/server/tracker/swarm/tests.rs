//! Swarm unit tests: expiry (under paused time), caps, counts, events and selection.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::proto::tracker::PeerHost;
use crate::server::tracker::stats::Gauges;

const DDG: &[u8] = b"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";

fn limits(per_torrent: usize, total: u64) -> SwarmLimits {
    SwarmLimits {
        max_peers_per_torrent: per_torrent,
        max_peers: total,
        max_peer_age: Duration::from_secs(100),
    }
}

fn swarm(per_torrent: usize, total: u64) -> (Swarm, Arc<TrackerStats>) {
    let stats = Arc::new(TrackerStats::default());
    (Swarm::new(limits(per_torrent, total), stats.clone()), stats)
}

fn ih(n: u8) -> InfoHash {
    InfoHash::from([n; 20])
}

fn pid(n: u8) -> PeerId {
    PeerId::from([n; 20])
}

fn v4(last: u8, port: u16) -> PeerAddr {
    PeerAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port))
}

fn ann(t: u8, p: u8, addr: PeerAddr) -> AnnounceInput {
    AnnounceInput {
        info_hash: ih(t),
        peer_id: pid(p),
        addr,
        key: KeyTag::NONE,
        event: AnnounceEvent::None,
        seeder: false,
        numwant: 50,
        want: Want::Compact,
    }
}

fn go(s: &Swarm, a: AnnounceInput) -> Result<(Counts, Selection), Refusal> {
    let mut sel = Selection::default();
    s.announce(a, &mut sel).map(|c| (c, sel))
}

fn counts(complete: u32, incomplete: u32) -> Counts {
    Counts {
        complete,
        incomplete,
    }
}

#[tokio::test(start_paused = true)]
async fn peers_expire_after_max_age_and_sweep_removes_them() {
    let (s, stats) = swarm(100, 100);
    go(&s, ann(1, 1, v4(1, 1000))).unwrap();
    tokio::time::advance(Duration::from_secs(99)).await;
    let (c, sel) = go(&s, ann(1, 2, v4(2, 1000))).unwrap();
    assert_eq!(
        sel.v4,
        vec![SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1000)]
    );
    assert_eq!(c, counts(0, 2));

    tokio::time::advance(Duration::from_secs(1)).await;
    // Peer 1 is now expired: never handed out, though still counted until swept.
    let (_, sel) = go(&s, ann(1, 2, v4(2, 1000))).unwrap();
    assert!(sel.is_empty());
    assert_eq!(s.sweep(), 1);
    assert_eq!(s.scrape(&ih(1)).incomplete, 1);
    assert_eq!(stats.gauges().leechers, 1);

    tokio::time::advance(Duration::from_secs(100)).await;
    assert_eq!(s.sweep(), 1);
    assert_eq!(s.scrape(&ih(1)), ScrapeStats::default());
    assert_eq!(
        stats.gauges(),
        Gauges::default(),
        "empty torrents are dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn reannouncing_refreshes_expiry() {
    let (s, _) = swarm(100, 100);
    go(&s, ann(1, 1, v4(1, 1000))).unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    go(&s, ann(1, 1, v4(1, 1000))).unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(s.sweep(), 0);
    assert_eq!(s.scrape(&ih(1)).incomplete, 1);
}

#[tokio::test]
async fn seeders_leechers_completed_and_stopped() {
    let (s, stats) = swarm(100, 100);
    let mut seed = ann(1, 1, v4(1, 1));
    seed.seeder = true;
    assert_eq!(go(&s, seed).unwrap().0, counts(1, 0));
    assert_eq!(go(&s, ann(1, 2, v4(2, 1))).unwrap().0, counts(1, 1));
    assert_eq!(go(&s, ann(1, 3, v4(3, 1))).unwrap().0, counts(1, 2));

    let mut done = ann(1, 2, v4(2, 1));
    done.event = AnnounceEvent::Completed;
    assert_eq!(go(&s, done.clone()).unwrap().0, counts(2, 1));
    // A repeated `completed` from the same peer is not another download.
    go(&s, done).unwrap();
    assert_eq!(
        s.scrape(&ih(1)),
        ScrapeStats {
            complete: 2,
            downloaded: 1,
            incomplete: 1
        }
    );

    let mut stop = ann(1, 3, v4(3, 1));
    stop.event = AnnounceEvent::Stopped;
    let (c, sel) = go(&s, stop).unwrap();
    assert_eq!(c, counts(2, 0));
    assert!(sel.is_empty(), "a stopping peer gets no peers");
    assert_eq!(
        stats.gauges(),
        Gauges {
            seeders: 2,
            leechers: 0,
            torrents: 1
        }
    );

    // A seeder that goes back to leeching (e.g. files deleted) is counted again.
    assert_eq!(go(&s, ann(1, 1, v4(1, 1))).unwrap().0, counts(1, 1));
}

#[tokio::test]
async fn stopped_for_an_unknown_torrent_creates_nothing() {
    let (s, stats) = swarm(100, 100);
    let mut stop = ann(9, 1, v4(1, 1));
    stop.event = AnnounceEvent::Stopped;
    assert_eq!(go(&s, stop).unwrap().0, Counts::default());
    assert_eq!(stats.gauges(), Gauges::default());
}

#[tokio::test(start_paused = true)]
async fn caps_refuse_new_peers_but_keep_existing_ones() {
    let (s, stats) = swarm(2, 3);
    go(&s, ann(1, 1, v4(1, 1))).unwrap();
    go(&s, ann(1, 2, v4(2, 1))).unwrap();
    assert_eq!(
        go(&s, ann(1, 3, v4(3, 1))).unwrap_err(),
        Refusal::TorrentFull
    );
    // Existing peers keep announcing.
    go(&s, ann(1, 1, v4(1, 1))).unwrap();
    go(&s, ann(2, 1, v4(1, 1))).unwrap();
    assert_eq!(
        go(&s, ann(3, 1, v4(1, 1))).unwrap_err(),
        Refusal::TrackerFull
    );
    assert_eq!(
        go(&s, ann(2, 2, v4(2, 1))).unwrap_err(),
        Refusal::TrackerFull
    );
    assert_eq!(stats.peers(), 3);

    // Once a peer expires, the full torrent purges lazily and admits a newcomer.
    tokio::time::advance(Duration::from_secs(50)).await;
    go(&s, ann(1, 1, v4(1, 1))).unwrap();
    go(&s, ann(2, 1, v4(1, 1))).unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    go(&s, ann(1, 3, v4(3, 1))).unwrap();
    assert_eq!(s.scrape(&ih(1)).incomplete, 2);
    assert_eq!(stats.peers(), 3);
}

#[tokio::test]
async fn selection_excludes_the_requester_and_honours_numwant() {
    let (s, _) = swarm(1000, 1000);
    for p in 1..=30u8 {
        go(&s, ann(1, p, v4(p, 1))).unwrap();
    }
    let mut a = ann(1, 5, v4(5, 1));
    a.numwant = 10;
    let (_, sel) = go(&s, a.clone()).unwrap();
    assert_eq!(sel.v4.len(), 10);
    let mut seen = std::collections::HashSet::new();
    assert!(sel.v4.iter().all(|p| seen.insert(*p)), "no duplicates");
    a.numwant = 100;
    let (_, sel) = go(&s, a.clone()).unwrap();
    assert_eq!(sel.v4.len(), 29);
    assert!(!sel
        .v4
        .contains(&SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 5), 1)));
    a.numwant = 0;
    assert!(go(&s, a).unwrap().1.is_empty());
}

#[tokio::test]
async fn names_only_reach_dictionary_lists() {
    let (s, _) = swarm(100, 100);
    let onion = PeerAddr::new(PeerHost::parse(DDG).unwrap(), 9000);
    let v6 = PeerAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 7, 0, 0));
    go(&s, ann(1, 1, onion.clone())).unwrap();
    go(&s, ann(1, 2, v6)).unwrap();
    go(&s, ann(1, 3, v4(3, 3))).unwrap();

    let (c, sel) = go(&s, ann(1, 4, v4(4, 4))).unwrap();
    assert_eq!(c, counts(0, 4));
    assert_eq!((sel.v4.len(), sel.v6.len(), sel.dict.len()), (1, 1, 0));

    let mut dict = ann(1, 4, v4(4, 4));
    dict.want = Want::Dict;
    let (_, sel) = go(&s, dict).unwrap();
    assert_eq!(sel.dict.len(), 3);
    assert_eq!(sel.dict[0], (onion, pid(1)), "names come first");

    let mut udp4 = ann(1, 4, v4(4, 4));
    udp4.want = Want::V4;
    let (_, sel) = go(&s, udp4).unwrap();
    assert_eq!((sel.v4.len(), sel.v6.len(), sel.dict.len()), (1, 0, 0));
}

#[tokio::test]
async fn a_peer_id_moves_address_only_with_its_key() {
    let (s, _) = swarm(100, 100);
    let key = s.key_tag(b"secret");
    let mut first = ann(1, 1, v4(1, 1));
    first.key = key;
    go(&s, first).unwrap();
    // Same host, new port: fine without a key.
    go(&s, ann(1, 1, v4(1, 2))).unwrap();
    // Another host without the key: refused, the original stays.
    assert_eq!(
        go(&s, ann(1, 1, v4(9, 1))).unwrap_err(),
        Refusal::PeerIdInUse
    );
    let mut stop = ann(1, 1, v4(9, 1));
    stop.event = AnnounceEvent::Stopped;
    assert_eq!(go(&s, stop).unwrap_err(), Refusal::PeerIdInUse);
    // With the key it may move, even to another family.
    let mut moved = ann(
        1,
        1,
        PeerAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 5, 0, 0)),
    );
    moved.key = key;
    assert_eq!(go(&s, moved).unwrap().0, counts(0, 1));
    let (_, sel) = go(&s, ann(1, 2, v4(2, 1))).unwrap();
    assert_eq!((sel.v4.len(), sel.v6.len()), (0, 1));
}

#[tokio::test]
async fn retain_drops_torrents_no_longer_allowed() {
    let (s, stats) = swarm(100, 100);
    go(&s, ann(1, 1, v4(1, 1))).unwrap();
    go(&s, ann(2, 1, v4(1, 1))).unwrap();
    assert_eq!(s.retain(|h| *h == ih(1)), 1);
    assert_eq!(s.scrape(&ih(2)), ScrapeStats::default());
    assert_eq!(s.scrape(&ih(1)).incomplete, 1);
    assert_eq!(stats.gauges().torrents, 1);
}

#[tokio::test]
async fn name_peers_are_matched_by_name() {
    let (s, _) = swarm(100, 100);
    let onion = |port| PeerAddr::new(PeerHost::parse(DDG).unwrap(), port);
    go(&s, ann(1, 1, onion(1))).unwrap();
    // The same service on a new port is the same peer.
    assert_eq!(go(&s, ann(1, 1, onion(2))).unwrap().0, counts(0, 1));
    let i2p = PeerAddr::new(PeerHost::parse(b"tracker.postman.i2p").unwrap(), 2);
    assert_eq!(go(&s, ann(1, 1, i2p)).unwrap_err(), Refusal::PeerIdInUse);
    let mut dict = ann(1, 2, v4(2, 2));
    dict.want = Want::Dict;
    let (_, sel) = go(&s, dict).unwrap();
    assert_eq!(sel.dict, vec![(onion(2), pid(1))]);
}
