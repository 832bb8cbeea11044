//! The UDP tracker (BEP 15) over real sockets: round trips, connection-id checks, hostile
//! packets, caps and private mode.
//!
//! Servers here run one receive loop (`udp.workers = 1`), so datagrams are handled in the
//! order they arrive: to prove a packet got no answer, send it, then a `connect`, and check
//! that the first reply is the `connect`'s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use megatorrent::proto::tracker::{AnnounceEvent, PeerId, ScrapeStats};
use megatorrent::proto::udp::{
    AnnounceRequest, ConnectRequest, ConnectionId, IpVersion, Request, Response, ResponsePeers,
    ScrapeRequest, TransactionId, PROTOCOL_ID,
};
use megatorrent::proto::InfoHash;
use megatorrent::server::tracker::{Outcome, Protocol};
use tokio::net::UdpSocket;

use common::server::{start_with, TestServer};

struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    next_tid: std::cell::Cell<u32>,
}

impl Client {
    async fn new(server: SocketAddr) -> Self {
        Self::bound(server, "127.0.0.1:0").await
    }

    async fn bound(server: SocketAddr, local: &str) -> Self {
        Self {
            sock: UdpSocket::bind(local).await.unwrap(),
            server,
            next_tid: std::cell::Cell::new(1),
        }
    }

    fn tid(&self) -> TransactionId {
        let t = self.next_tid.get();
        self.next_tid.set(t + 1);
        TransactionId(t)
    }

    async fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.unwrap();
    }

    async fn send(&self, req: &Request) {
        let mut out = Vec::new();
        req.write(&mut out);
        self.send_raw(&out).await;
    }

    /// The next reply (10 s at most).
    async fn recv(&self) -> Response {
        let mut buf = vec![0u8; 4096];
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(10), self.sock.recv_from(&mut buf))
                .await
                .expect("no reply within 10 s")
                .unwrap();
        assert_eq!(from, self.server);
        Response::parse(&buf[..n], IpVersion::V4).unwrap()
    }

    async fn connect(&self) -> ConnectionId {
        let tid = self.tid();
        self.send(&Request::Connect(ConnectRequest {
            transaction_id: tid,
        }))
        .await;
        match self.recv().await {
            Response::Connect(c) => {
                assert_eq!(c.transaction_id, tid);
                c.connection_id
            }
            other => panic!("expected connect, got {other:?}"),
        }
    }

    /// Assert that whatever was sent before got no answer: a `connect` sent now is the
    /// first thing answered.
    async fn assert_no_reply(&self) {
        let tid = self.tid();
        self.send(&Request::Connect(ConnectRequest {
            transaction_id: tid,
        }))
        .await;
        match self.recv().await {
            Response::Connect(c) => assert_eq!(c.transaction_id, tid),
            other => panic!("expected no reply, got {other:?}"),
        }
    }

    fn announce(&self, cid: ConnectionId, ih: u8, peer: u8, port: u16) -> AnnounceRequest {
        AnnounceRequest {
            connection_id: cid,
            transaction_id: self.tid(),
            info_hash: InfoHash::from([ih; 20]),
            peer_id: PeerId::from([peer; 20]),
            downloaded: 0,
            left: 10,
            uploaded: 0,
            event: AnnounceEvent::Started,
            ip: Ipv4Addr::UNSPECIFIED,
            key: u32::from(peer),
            num_want: -1,
            port,
            url_data: Vec::new(),
        }
    }

    async fn announce_ok(&self, req: AnnounceRequest) -> (u32, u32, Vec<SocketAddrV4>) {
        let tid = req.transaction_id;
        self.send(&Request::Announce(req)).await;
        match self.recv().await {
            Response::Announce(a) => {
                assert_eq!(a.transaction_id, tid);
                let ResponsePeers::V4(peers) = a.peers else {
                    panic!("v6 peers to a v4 client")
                };
                (a.seeders, a.leechers, peers)
            }
            other => panic!("expected announce, got {other:?}"),
        }
    }

    async fn expect_error(&self, containing: &str) {
        match self.recv().await {
            Response::Error(e) => assert!(e.message.contains(containing), "{}", e.message),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

async fn server(private: bool) -> TestServer {
    let mut cfg = common::server::test_config();
    cfg.udp.workers = 1;
    cfg.tracker.private = private;
    start_with(cfg, None).await
}

#[tokio::test]
async fn connect_announce_scrape_round_trip() {
    let server = server(false).await;
    let c = Client::new(server.udp_addr.unwrap()).await;
    let cid = c.connect().await;
    let mut seed = c.announce(cid, 1, 1, 6001);
    seed.left = 0;
    assert_eq!(c.announce_ok(seed).await, (1, 0, vec![]));
    let (seeders, leechers, peers) = c.announce_ok(c.announce(cid, 1, 2, 6002)).await;
    assert_eq!((seeders, leechers), (1, 1));
    assert_eq!(peers, vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6001)]);

    let mut done = c.announce(cid, 1, 2, 6002);
    done.event = AnnounceEvent::Completed;
    done.left = 0;
    c.announce_ok(done).await;
    let tid = c.tid();
    c.send(&Request::Scrape(ScrapeRequest {
        connection_id: cid,
        transaction_id: tid,
        info_hashes: vec![InfoHash::from([9; 20]), InfoHash::from([1; 20])],
    }))
    .await;
    let Response::Scrape(s) = c.recv().await else {
        panic!("expected scrape")
    };
    assert_eq!(s.transaction_id, tid);
    assert_eq!(
        s.stats,
        vec![
            ScrapeStats::default(),
            ScrapeStats {
                complete: 2,
                downloaded: 1,
                incomplete: 0
            }
        ]
    );
    let stats = server.state.tracker().stats();
    assert_eq!(stats.announces_total(Protocol::Udp, Outcome::Ok), 3);
    assert_eq!(
        stats.announces(Protocol::Udp, AnnounceEvent::Completed, Outcome::Ok),
        1
    );
    assert_eq!(stats.scrapes(Protocol::Udp, Outcome::Ok), 1);
    assert_eq!(stats.udp_connects(), 1);
    server.stop().await;
}

#[tokio::test]
async fn forged_and_foreign_connection_ids_are_refused() {
    let server = server(false).await;
    let udp = server.udp_addr.unwrap();
    let c = Client::new(udp).await;
    let cid = c.connect().await;
    for forged in [
        ConnectionId(0),
        ConnectionId(PROTOCOL_ID),
        ConnectionId(cid.0 ^ 1),
    ] {
        c.send(&Request::Announce(c.announce(forged, 1, 1, 1000)))
            .await;
        c.assert_no_reply().await;
    }
    // A malformed packet with a forged id is not answered either.
    let mut bad = Vec::new();
    bad.extend_from_slice(&12345u64.to_be_bytes());
    bad.extend_from_slice(&1u32.to_be_bytes());
    bad.extend_from_slice(&7u32.to_be_bytes());
    c.send_raw(&bad).await;
    c.assert_no_reply().await;

    // An id is bound to the client's IP: another loopback address cannot use it.
    let other = Client::bound(udp, "127.0.0.2:0").await;
    other
        .send(&Request::Announce(other.announce(cid, 1, 2, 1000)))
        .await;
    other.assert_no_reply().await;
    // …but the same IP from another port can (NATs may change ports).
    let same_ip = Client::new(udp).await;
    let (_, leechers, _) = same_ip.announce_ok(same_ip.announce(cid, 1, 3, 1000)).await;
    assert_eq!(leechers, 1);
    assert!(server.state.tracker().stats().udp_bad_connection_ids() >= 4);
    assert_eq!(server.state.tracker().stats().gauges().leechers, 1);
    server.stop().await;
}

#[tokio::test]
async fn malformed_packets_are_dropped_or_answered_never_fatal() {
    let server = server(false).await;
    let c = Client::new(server.udp_addr.unwrap()).await;
    let cid = c.connect().await;
    let mut full = Vec::new();
    Request::Announce(c.announce(cid, 4, 1, 1000)).write(&mut full);

    // Shorter than a header: nothing to answer.
    for len in [0, 1, 8, 15] {
        c.send_raw(&full[..len]).await;
        c.assert_no_reply().await;
    }
    // A verified header but a truncated body: an error naming the problem.
    for len in [16, 17, 50, 97] {
        c.send_raw(&full[..len]).await;
        c.expect_error("needs at least 98").await;
    }
    // A connect without the magic is dropped.
    let mut connect = Vec::new();
    Request::Connect(ConnectRequest {
        transaction_id: TransactionId(1),
    })
    .write(&mut connect);
    connect[0] ^= 0xff;
    c.send_raw(&connect).await;
    c.assert_no_reply().await;

    let mut unknown = full[..16].to_vec();
    unknown[8..12].copy_from_slice(&9u32.to_be_bytes());
    c.send_raw(&unknown).await;
    c.expect_error("unknown action").await;

    let mut bad_event = full.clone();
    bad_event[80..84].copy_from_slice(&77u32.to_be_bytes());
    c.send_raw(&bad_event).await;
    c.expect_error("unknown event").await;

    // Oversized datagrams are capped, not parsed.
    let mut huge = full.clone();
    huge.resize(4000, 1);
    c.send_raw(&huge).await;
    c.expect_error("cap").await;

    // Scrapes: none, too many, misaligned.
    let scrape = |n: usize, extra: usize| {
        let mut p = Vec::new();
        p.extend_from_slice(&cid.0.to_be_bytes());
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(&5u32.to_be_bytes());
        p.resize(16 + 20 * n + extra, 3);
        p
    };
    c.send_raw(&scrape(0, 0)).await;
    c.expect_error("without info-hashes").await;
    c.send_raw(&scrape(74, 0)).await;
    assert!(matches!(c.recv().await, Response::Scrape(s) if s.stats.len() == 74));
    c.send_raw(&scrape(2, 7)).await;
    c.expect_error("whole number").await;
    c.send_raw(&scrape(70, 7)).await;
    c.expect_error("whole number").await;

    // Random garbage of every length up to the cap never takes the server down.
    let mut seed = 0x1234_5678u32;
    for len in (0..1600).step_by(37) {
        let mut p = cid.0.to_be_bytes().to_vec();
        while p.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            p.push(seed.to_le_bytes()[0]);
        }
        p.truncate(len);
        c.send_raw(&p).await;
    }
    // Drain whatever errors those produced, then prove the loop still serves.
    let tid = c.tid();
    c.send(&Request::Connect(ConnectRequest {
        transaction_id: tid,
    }))
    .await;
    loop {
        if let Response::Connect(r) = c.recv().await {
            if r.transaction_id == tid {
                break;
            }
        }
    }
    // Port 0 is refused with a reason.
    c.send(&Request::Announce(c.announce(cid, 4, 1, 0))).await;
    c.expect_error("port 0").await;
    assert!(server.state.tracker().stats().invalid(Protocol::Udp) > 10);
    server.stop().await;
}

#[tokio::test]
async fn numwant_is_capped_and_negative_means_default() {
    let server = server(false).await;
    let c = Client::new(server.udp_addr.unwrap()).await;
    let cid = c.connect().await;
    for p in 0..230u8 {
        c.announce_ok(c.announce(cid, 2, p, 2000 + u16::from(p)))
            .await;
    }
    for (num_want, expected) in [(i32::MAX, 200), (-1, 50), (i32::MIN, 50), (0, 0), (7, 7)] {
        let mut req = c.announce(cid, 2, 250, 3000);
        req.num_want = num_want;
        let (_, leechers, peers) = c.announce_ok(req).await;
        assert_eq!(peers.len(), expected, "num_want={num_want}");
        assert_eq!(leechers, 231);
        let unique: std::collections::HashSet<_> = peers.iter().collect();
        assert_eq!(unique.len(), peers.len());
        assert!(!peers.contains(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3000)));
    }
    server.stop().await;
}

#[tokio::test]
async fn private_mode_reads_the_passkey_from_bep41_url_data() {
    let server = server(true).await;
    let passkey = "udp-passkey-0123456789";
    server.state.store().add_passkey(passkey, 0).await.unwrap();
    let c = Client::new(server.udp_addr.unwrap()).await;
    let cid = c.connect().await;

    c.send(&Request::Announce(c.announce(cid, 3, 1, 1000)))
        .await;
    c.expect_error("/announce/<passkey>").await;

    let mut unknown = c.announce(cid, 3, 1, 1000);
    unknown.url_data = b"/announce/unknown-passkey-00000?x=1".to_vec();
    c.send(&Request::Announce(unknown.clone())).await;
    c.expect_error("unknown passkey").await;
    // Cached now: answered inline.
    c.send(&Request::Announce(unknown)).await;
    c.expect_error("unknown passkey").await;

    let mut known = c.announce(cid, 3, 1, 1000);
    known.url_data = format!("/announce/{passkey}").into_bytes();
    assert_eq!(c.announce_ok(known.clone()).await.1, 1);
    known.transaction_id = c.tid();
    assert_eq!(c.announce_ok(known).await.1, 1);

    c.send(&Request::Scrape(ScrapeRequest {
        connection_id: cid,
        transaction_id: c.tid(),
        info_hashes: vec![InfoHash::from([3; 20])],
    }))
    .await;
    c.expect_error("passkey").await;
    server.stop().await;
}

/// A burst from many sockets at once (so the server takes several datagrams per receive
/// call and answers them with one send call): every request gets exactly its own answer at
/// its own sender, and junk inside the burst is dropped without disturbing the rest.
#[tokio::test]
async fn a_burst_from_many_sockets_gets_every_answer_at_its_sender() {
    const CLIENTS: usize = 8;
    const EACH: u32 = 24;
    let server = server(false).await;
    let addr = server.udp_addr.unwrap();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let c = Client::new(addr).await;
        // Transaction ids unique across clients, so a reply sent to the wrong socket shows.
        c.next_tid.set(1000 * u32::try_from(i).unwrap() + 1);
        clients.push(c);
    }
    for round in 0..EACH {
        for (i, c) in clients.iter().enumerate() {
            if round == EACH / 2 && i % 2 == 0 {
                // Junk: too short to carry a connection id, so dropped unanswered.
                c.send_raw(b"\x00\x01").await;
            }
            c.send(&Request::Connect(ConnectRequest {
                transaction_id: c.tid(),
            }))
            .await;
        }
    }
    for (i, c) in clients.iter().enumerate() {
        let base = 1000 * u32::try_from(i).unwrap() + 1;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..EACH {
            match c.recv().await {
                Response::Connect(r) => assert!(seen.insert(r.transaction_id.0), "{r:?} twice"),
                other => panic!("expected a connect answer, got {other:?}"),
            }
        }
        assert_eq!(
            seen,
            (base..base + EACH).collect(),
            "every request answered once"
        );
        c.assert_no_reply().await;
    }
}
