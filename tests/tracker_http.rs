//! The HTTP tracker over real sockets: announce/scrape replies, hostname peers, hostile
//! input, access lists, private mode and `/v1/info`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use megatorrent::proto::tracker::{
    AnnounceEvent, AnnounceReply, AnnounceRequest, AnnounceSuccess, PeerAddr, PeerHost, PeerId,
    ScrapeReply, ScrapeRequest, ScrapeStats,
};
use megatorrent::proto::InfoHash;
use megatorrent::server::config::AccessMode;
use megatorrent::server::tracker::{Outcome, Protocol};

use common::http::{request, Resp};
use common::server::{start_sqlite, start_with, TestServer};

/// A real, published v3 onion service name (valid checksum).
const ONION: &str = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";

fn announce(ih: u8, peer: u8, port: u16) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash::from([ih; 20]),
        peer_id: PeerId::from([peer; 20]),
        port,
        uploaded: 0,
        downloaded: 0,
        left: Some(100),
        event: AnnounceEvent::Started,
        compact: true,
        no_peer_id: false,
        numwant: None,
        key: None,
        tracker_id: None,
        ip: None,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").await.unwrap()
}

async fn send(addr: SocketAddr, path: &str, req: &AnnounceRequest) -> Resp {
    let mut q = Vec::new();
    req.write_query(&mut q);
    get(addr, &format!("{path}?{}", String::from_utf8(q).unwrap())).await
}

async fn ok(server: &TestServer, req: &AnnounceRequest) -> AnnounceSuccess {
    let resp = send(server.addr, "/announce", req).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    match AnnounceReply::parse(&resp.body).unwrap() {
        AnnounceReply::Success(s) => s,
        AnnounceReply::Failure(f) => panic!("announce failed: {f}"),
    }
}

async fn failure(addr: SocketAddr, path_and_query: &str) -> String {
    let resp = get(addr, path_and_query).await;
    assert_eq!(resp.status, 200, "{path_and_query}");
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    match AnnounceReply::parse(&resp.body).unwrap() {
        AnnounceReply::Failure(f) => f,
        AnnounceReply::Success(s) => panic!("{path_and_query} succeeded: {s:?}"),
    }
}

fn loopback(port: u16) -> PeerAddr {
    PeerAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

#[tokio::test]
async fn announce_returns_the_connection_address_and_counts() {
    let server = start_sqlite().await;
    let mut seed = announce(1, 1, 6001);
    seed.left = Some(0);
    let first = ok(&server, &seed).await;
    assert_eq!(first.interval, 1800);
    assert_eq!(first.min_interval, Some(300));
    assert_eq!((first.complete, first.incomplete), (Some(1), Some(0)));
    assert!(
        first.peers.is_empty(),
        "the requester is never its own peer"
    );

    let second = ok(&server, &announce(1, 2, 6002)).await;
    assert_eq!((second.complete, second.incomplete), (Some(1), Some(1)));
    let addrs: Vec<_> = second.peers.iter().map(|p| p.addr.clone()).collect();
    assert_eq!(addrs, vec![loopback(6001)]);

    // An `ip=` literal is ignored (trust_ip_param is off) and the client is told so.
    let mut spoof = announce(1, 3, 6003);
    spoof.ip = Some(PeerHost::parse(b"203.0.113.9").unwrap());
    let reply = ok(&server, &spoof).await;
    assert!(reply.warning_message.unwrap().contains("ignored"));
    let mut dict = announce(1, 4, 6004);
    dict.compact = false;
    let reply = ok(&server, &dict).await;
    assert!(reply
        .peers
        .iter()
        .all(|p| p.addr.host() == PeerHost::V4(Ipv4Addr::LOCALHOST)));
    assert!(reply.peers.iter().all(|p| p.peer_id.is_some()));
    assert_eq!(reply.peers.len(), 3);

    let mut stop = announce(1, 2, 6002);
    stop.event = AnnounceEvent::Stopped;
    let reply = ok(&server, &stop).await;
    assert_eq!((reply.complete, reply.incomplete), (Some(1), Some(2)));

    let mut done = announce(1, 4, 6004);
    done.event = AnnounceEvent::Completed;
    done.left = Some(0);
    ok(&server, &done).await;
    let scrape = ScrapeRequest {
        info_hashes: vec![InfoHash::from([1; 20]), InfoHash::from([9; 20])],
    };
    let mut q = Vec::new();
    scrape.write_query(&mut q);
    let resp = get(
        server.addr,
        &format!("/scrape?{}", String::from_utf8(q).unwrap()),
    )
    .await;
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    let ScrapeReply::Success(files) = ScrapeReply::parse(&resp.body).unwrap() else {
        panic!("scrape failed");
    };
    assert_eq!(
        files,
        vec![
            (
                InfoHash::from([1; 20]),
                ScrapeStats {
                    complete: 2,
                    downloaded: 1,
                    incomplete: 1
                }
            ),
            (InfoHash::from([9; 20]), ScrapeStats::default()),
        ]
    );

    let stats = server.state.tracker().stats();
    assert_eq!(stats.announces_total(Protocol::Http, Outcome::Ok), 6);
    assert_eq!(stats.scrapes(Protocol::Http, Outcome::Ok), 1);
    assert_eq!(stats.gauges().seeders, 2);
    server.stop().await;
}

#[tokio::test]
async fn onion_peers_reach_only_dictionary_lists() {
    let server = start_sqlite().await;
    let mut tor = announce(7, 1, 9001);
    tor.ip = Some(PeerHost::parse(ONION.as_bytes()).unwrap());
    tor.compact = false;
    tor.left = Some(0);
    ok(&server, &tor).await;
    ok(&server, &announce(7, 2, 9002)).await;

    // Another compact=0 announcer gets the onion peer by name, with its port and id.
    let mut asker = announce(7, 3, 9003);
    asker.compact = false;
    let reply = ok(&server, &asker).await;
    let onion = reply
        .peers
        .iter()
        .find(|p| p.addr.is_name())
        .expect("onion peer in dictionary list");
    assert_eq!(onion.addr.to_string(), format!("{ONION}:9001"));
    assert_eq!(onion.peer_id, Some(PeerId::from([1; 20])));
    assert_eq!(reply.peers.len(), 2);
    // The raw reply carries the name as text.
    let mut q = Vec::new();
    asker.write_query(&mut q);
    let raw = get(
        server.addr,
        &format!("/announce?{}", String::from_utf8(q).unwrap()),
    )
    .await;
    assert!(raw.body.windows(ONION.len()).any(|w| w == ONION.as_bytes()));

    // A compact announcer never sees it: only the IPv4 peer, 6 bytes.
    let reply = ok(&server, &announce(7, 4, 9004)).await;
    assert_eq!((reply.complete, reply.incomplete), (Some(1), Some(3)));
    assert!(reply.peers.iter().all(|p| !p.addr.is_name()));
    assert_eq!(reply.peers.len(), 2);
    let mut q = Vec::new();
    announce(7, 4, 9004).write_query(&mut q);
    let raw = get(
        server.addr,
        &format!("/announce?{}", String::from_utf8(q).unwrap()),
    )
    .await;
    assert!(!raw.body.windows(10).any(|w| w == &ONION.as_bytes()[..10]));

    // Names that are not valid onion/i2p hosts are refused, not resolved.
    let mut bad = announce(7, 5, 9005);
    bad.compact = false;
    let mut q = Vec::new();
    bad.write_query(&mut q);
    let q = String::from_utf8(q).unwrap();
    let f = failure(server.addr, &format!("/announce?{q}&ip=example.com")).await;
    assert!(f.contains("invalid ip"), "{f}");
    let bad_onion = ONION.replace("duck", "duke");
    let f = failure(server.addr, &format!("/announce?{q}&ip={bad_onion}")).await;
    assert!(f.contains("checksum"), "{f}");
    server.stop().await;
}

#[tokio::test]
async fn hostile_queries_get_failures_or_caps_never_a_hang() {
    let server = start_sqlite().await;
    let addr = server.addr;
    let mut q = Vec::new();
    announce(3, 1, 7000).write_query(&mut q);
    let base = String::from_utf8(q).unwrap();

    for (query, needle) in [
        ("", "missing info_hash"),
        (
            "info_hash=abc&peer_id=12345678901234567890&port=1",
            "info_hash must be 20 bytes",
        ),
        ("info_hash=%zz", "bad percent-encoding"),
        (&format!("{base}&port=2"), "port given more than once"),
        (&format!("{base}&numwant=lots"), "invalid numwant"),
        (
            &base.replace("event=started", "event=exploded"),
            "invalid event",
        ),
        (&base.replace("compact=1", "compact=2"), "invalid compact"),
    ] {
        let f = failure(addr, &format!("/announce?{query}")).await;
        assert!(f.contains(needle), "{query}: {f}");
    }
    let zero = base.replace("port=7000", "port=0");
    assert_eq!(
        failure(addr, &format!("/announce?{zero}")).await,
        "invalid port 0"
    );
    let big_port = base.replace("port=7000", "port=70000");
    assert!(failure(addr, &format!("/announce?{big_port}"))
        .await
        .contains("port"));

    // An over-long query is dropped with a bare 400.
    let long = format!("/announce?{base}&pad={}", "x".repeat(5000));
    let resp = get(addr, &long).await;
    assert_eq!(resp.status, 400);
    assert!(resp.body.is_empty());

    // Huge and negative numwant: capped, and the default respectively.
    for p in 10..40u8 {
        ok(&server, &announce(3, p, 7000 + u16::from(p))).await;
    }
    for (numwant, expected) in [
        ("99999999999999999999999999", 30),
        ("-5", 30),
        ("-99999999999999999999999999", 30),
        ("0", 0),
        ("3", 3),
    ] {
        let resp = get(addr, &format!("/announce?{base}&numwant={numwant}")).await;
        let AnnounceReply::Success(s) = AnnounceReply::parse(&resp.body).unwrap() else {
            panic!("numwant={numwant} failed");
        };
        assert_eq!(s.peers.len(), expected, "numwant={numwant}");
    }

    // Scrape: 10 000 info-hashes in one query is refused by the HTTP layer (request head
    // over `http.max_header_bytes`); 1 000 reach the handler and are dropped unread; one
    // over the cap is a failure; an empty (full) scrape is refused.
    let many = |n: usize| -> String { (0..n).map(|i| format!("info_hash={i:020}&")).collect() };
    let resp = get(addr, &format!("/scrape?{}", many(10_000))).await;
    assert!(matches!(resp.status, 400 | 414 | 431), "{}", resp.status);
    let resp = get(addr, &format!("/scrape?{}", many(1_000))).await;
    assert_eq!(resp.status, 400);
    assert!(resp.body.is_empty());
    let over: String = (0..257).map(|i| format!("info_hash={i:020}&")).collect();
    let f = failure(addr, &format!("/scrape?{over}")).await;
    assert!(f.contains("too many info_hash"), "{f}");
    let f = failure(addr, "/scrape").await;
    assert!(f.contains("full scrape"), "{f}");
    let cap: String = (0..256).map(|i| format!("info_hash={i:020}&")).collect();
    let resp = get(addr, &format!("/scrape?{cap}")).await;
    let ScrapeReply::Success(files) = ScrapeReply::parse(&resp.body).unwrap() else {
        panic!("scrape at the cap failed");
    };
    assert_eq!(files.len(), 256);

    // A ~700 KB request line is refused by the HTTP layer; the server keeps serving.
    let huge: String = (0..10_000)
        .map(|i| format!("info_hash=%{:02X}{}&", i % 256, "%41".repeat(19)))
        .collect();
    if let Ok(resp) = request(addr, "GET", &format!("/scrape?{huge}"), &[], b"").await {
        assert!(resp.status >= 400, "{}", resp.status);
    }
    ok(&server, &announce(3, 1, 7000)).await;

    // The proof-of-concept POST /announce still answers on the same path.
    let resp = request(addr, "POST", "/announce", &[], b"{}")
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
    assert!(resp.json()["error"].is_string());
    assert!(server.state.tracker().stats().invalid(Protocol::Http) >= 5);
    server.stop().await;
}

#[tokio::test]
async fn allowlist_refuses_other_torrents() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("allow.txt");
    std::fs::write(&list, format!("# allowed\n{}\n", hex::encode([5u8; 20]))).unwrap();
    let mut cfg = common::server::test_config();
    cfg.tracker.access = AccessMode::Allowlist;
    cfg.tracker.access_list_file = Some(list.clone());
    let server = start_with(cfg, None).await;
    ok(&server, &announce(5, 1, 1000)).await;
    let mut q = Vec::new();
    announce(6, 1, 1000).write_query(&mut q);
    let f = failure(
        server.addr,
        &format!("/announce?{}", String::from_utf8(q).unwrap()),
    )
    .await;
    assert_eq!(f, "torrent not allowed on this tracker");

    // Reloading with hash 6 allowed and 5 removed drops torrent 5's peers at once.
    std::fs::write(&list, format!("{}\n", hex::encode([6u8; 20]))).unwrap();
    assert_eq!(server.state.reload().unwrap(), 1);
    ok(&server, &announce(6, 1, 1000)).await;
    assert_eq!(server.state.tracker().stats().gauges().torrents, 1);
    server.stop().await;
}

#[tokio::test]
async fn private_mode_needs_a_known_passkey() {
    let mut cfg = common::server::test_config();
    cfg.tracker.private = true;
    let server = start_with(cfg, None).await;
    let passkey = "abcdefghijklmnop0123";
    assert!(server.state.store().add_passkey(passkey, 0).await.unwrap());
    let req = announce(8, 1, 1000);
    let mut q = Vec::new();
    req.write_query(&mut q);
    let q = String::from_utf8(q).unwrap();

    let f = failure(server.addr, &format!("/announce?{q}")).await;
    assert!(f.contains("/announce/<passkey>"), "{f}");
    let f = failure(server.addr, &format!("/announce/nopenopenopenope?{q}")).await;
    assert_eq!(f, "unknown passkey");
    let f = failure(server.addr, &format!("/announce/bad!?{q}")).await;
    assert_eq!(f, "unknown passkey");
    let resp = send(server.addr, &format!("/announce/{passkey}"), &req).await;
    assert!(matches!(
        AnnounceReply::parse(&resp.body).unwrap(),
        AnnounceReply::Success(_)
    ));
    let ih = format!("info_hash={}", "%08".repeat(20));
    let f = failure(server.addr, &format!("/scrape?{ih}")).await;
    assert!(f.contains("passkey"), "{f}");
    let resp = get(server.addr, &format!("/scrape/{passkey}?{ih}")).await;
    let ScrapeReply::Success(files) = ScrapeReply::parse(&resp.body).unwrap() else {
        panic!("private scrape failed");
    };
    assert_eq!(files[0].1.incomplete, 1);
    server.stop().await;
}

#[tokio::test]
async fn info_advertises_the_tracker() {
    let server = start_sqlite().await;
    let info = get(server.addr, "/v1/info").await.json();
    assert!(info["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "tracker"));
    assert_eq!(info["limits"]["announceIntervalSecs"], 1800);
    assert_eq!(info["limits"]["maxNumwant"], 200);
    assert_eq!(info["limits"]["maxScrapeInfoHashes"], 256);
    assert_eq!(info["tracker"]["udp"], true);
    assert_eq!(info["tracker"]["private"], false);
    server.stop().await;
}
