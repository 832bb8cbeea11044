use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;

use super::*;
use crate::proto::{bencode, InfoHash};

const IH: &str = "%04%0bkV%3f%5cr%14%a6%b7%98%adC%c3%c5S%0a%bdq%e9";
const IH_HEX: &str = "040b6b563f5c7214a6b798ad43c3c5530abd71e9";
const ONION: &str = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";

fn query(extra: &str) -> Vec<u8> {
    format!("info_hash={IH}&peer_id=-qB4650-abcdefghijkl&port=6881{extra}").into_bytes()
}

#[test]
fn real_client_info_hash_decodes_to_the_right_bytes() {
    let req = AnnounceRequest::parse_query(&query("")).unwrap();
    assert_eq!(req.info_hash.to_hex(), IH_HEX);
    assert_eq!(req.peer_id.as_bytes(), b"-qB4650-abcdefghijkl");
}

#[test]
fn announce_defaults() {
    let req = AnnounceRequest::parse_query(&query("")).unwrap();
    assert_eq!(req.port, 6881);
    assert_eq!((req.uploaded, req.downloaded, req.left), (0, 0, None));
    assert_eq!(req.event, AnnounceEvent::None);
    assert!(req.compact);
    assert!(!req.no_peer_id);
    assert_eq!(req.numwant, None);
    assert_eq!((req.key, req.tracker_id, req.ip), (None, None, None));
}

#[test]
fn announce_all_fields_and_unknown_params() {
    let req = AnnounceRequest::parse_query(&query(&format!(
        "&uploaded=1&downloaded=2&left=-3&event=started&compact=0&no_peer_id=1\
         &numwant=-1&key=A1%2Bb&trackerid=t+1&ip={ONION}&supportcrypto=1&&corrupt"
    )))
    .unwrap();
    assert_eq!((req.uploaded, req.downloaded, req.left), (1, 2, Some(0)));
    assert_eq!(req.event, AnnounceEvent::Started);
    assert!(!req.compact);
    assert!(req.no_peer_id);
    assert_eq!(req.numwant, Some(-1));
    assert_eq!(req.key.unwrap().as_bytes(), b"A1+b");
    assert_eq!(req.tracker_id.unwrap().as_bytes(), b"t+1");
    assert_eq!(req.ip, Some(PeerHost::parse(ONION.as_bytes()).unwrap()));
}

#[test]
fn announce_errors_and_dispositions() {
    let cases: Vec<(Vec<u8>, &str, Disposition)> = vec![
        (
            b"peer_id=x&port=1".to_vec(),
            "bad-length",
            Disposition::TellPeer,
        ),
        (
            b"peer_id=01234567890123456789&port=1".to_vec(),
            "missing-param",
            Disposition::TellPeer,
        ),
        (query("&port=2"), "duplicate-param", Disposition::TellPeer),
        (query("&event=bogus"), "bad-value", Disposition::TellPeer),
        (query("&compact=yes"), "bad-value", Disposition::TellPeer),
        (query("&ip=example.com"), "bad-ip", Disposition::TellPeer),
        (query("&key=%zz"), "bad-encoding", Disposition::TellPeer),
        (
            query(&format!("&key={}", "a".repeat(65))),
            "bad-value",
            Disposition::TellPeer,
        ),
        (
            query(&format!("&x={}", "a".repeat(5000))),
            "query-too-long",
            Disposition::Drop,
        ),
        (
            b"info_hash=%04&peer_id=-qB4650-abcdefghijkl&port=1".to_vec(),
            "bad-length",
            Disposition::TellPeer,
        ),
        (
            query("&port=70000"),
            "duplicate-param",
            Disposition::TellPeer,
        ),
    ];
    for (q, code, disp) in cases {
        let err = AnnounceRequest::parse_query(&q).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert_eq!(err.disposition(), disp, "{err}");
    }
    let q = format!("info_hash={IH}&peer_id=-qB4650-abcdefghijkl&port=70000");
    assert_eq!(
        AnnounceRequest::parse_query(q.as_bytes()),
        Err(RequestError::BadValue("port"))
    );
    let err = AnnounceRequest::parse_query(&query("&ip=foo.onion")).unwrap_err();
    assert_eq!(
        err.failure_reason(),
        "invalid ip: onion name must be 56 base32 characters (v3)"
    );
}

#[test]
fn scrape_parses_many_and_caps() {
    let q = format!("info_hash={IH}&info_hash=bbbbbbbbbbbbbbbbbbbb&info_hash={IH}&passkey=x");
    let req = ScrapeRequest::parse_query(q.as_bytes()).unwrap();
    assert_eq!(req.info_hashes.len(), 2);
    assert_eq!(req.info_hashes[0].to_hex(), IH_HEX);
    assert!(ScrapeRequest::parse_query(b"")
        .unwrap()
        .info_hashes
        .is_empty());

    let many = vec!["info_hash=aaaaaaaaaaaaaaaaaaaa"; 300].join("&");
    let err = ScrapeRequest::parse_query(many.as_bytes()).unwrap_err();
    assert_eq!(err, RequestError::TooManyInfoHashes { max: 256 });
    assert_eq!(err.disposition(), Disposition::TellPeer);

    let huge = vec![format!("info_hash={IH}"); 10_000].join("&");
    let err = ScrapeRequest::parse_query(huge.as_bytes()).unwrap_err();
    assert_eq!(err.disposition(), Disposition::Drop);
    let err = ScrapeRequest::parse_query_capped(huge.as_bytes(), 100_000).unwrap();
    assert_eq!(err.info_hashes.len(), 1);
}

fn v4(a: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, a), port)
}

#[test]
fn compact_reply_bytes_are_pinned() {
    let head = AnnounceResponse {
        interval: 1800,
        min_interval: Some(900),
        complete: 2,
        incomplete: 3,
        tracker_id: None,
        warning_message: None,
    };
    let mut out = Vec::new();
    head.write_compact(&mut out, [v4(1, 0x1ae1)], []);
    let mut want =
        b"d8:completei2e10:incompletei3e8:intervali1800e12:min intervali900e5:peers6:".to_vec();
    want.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1]);
    want.push(b'e');
    assert_eq!(out, want);

    let mut out = Vec::new();
    let v6 = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 1, 0, 0);
    let with_text = AnnounceResponse {
        tracker_id: Some(b"tid"),
        warning_message: Some("slow down"),
        ..head
    };
    with_text.write_compact(&mut out, [], [v6]);
    assert!(out.windows(13).any(|w| w == b"5:peers0:6:pe"));
    assert!(out.ends_with(b"10:tracker id3:tid15:warning message9:slow downe"));
    assert!(bencode::Value::parse(&out).is_ok());
}

#[test]
fn dict_reply_carries_names_and_honours_no_peer_id() {
    let onion = PeerAddr::new(PeerHost::parse(ONION.as_bytes()).unwrap(), 443);
    let ip = PeerAddr::V4(v4(9, 80));
    let id = PeerId::from([b'p'; 20]);
    let head = AnnounceResponse {
        interval: 60,
        ..AnnounceResponse::default()
    };
    let mut out = Vec::new();
    head.write_dict(&mut out, [(&onion, &id), (&ip, &id)], true);
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        text.contains(&format!("d2:ip62:{ONION}4:porti443ee")),
        "{text}"
    );
    assert!(text.contains("d2:ip8:10.0.0.94:porti80ee"), "{text}");
    assert!(!text.contains("peer id"));
    let AnnounceReply::Success(reply) = AnnounceReply::parse(&out).unwrap() else {
        panic!("not a success");
    };
    assert_eq!(reply.peers.len(), 2);
    assert_eq!(reply.peers[0].addr, onion);
}

#[test]
fn failure_and_scrape_bytes() {
    let mut out = Vec::new();
    write_failure(&mut out, "unregistered torrent");
    assert_eq!(out, b"d14:failure reason20:unregistered torrente");
    assert_eq!(
        AnnounceReply::parse(&out),
        Ok(AnnounceReply::Failure("unregistered torrent".into()))
    );

    let a = InfoHash::from([b'a'; 20]);
    let b = InfoHash::from([b'b'; 20]);
    let s = |n| ScrapeStats {
        complete: n,
        downloaded: n + 1,
        incomplete: n + 2,
    };
    let mut out = Vec::new();
    write_scrape(&mut out, &[(b, s(5)), (a, s(1)), (b, s(9))]);
    let want = format!(
        "d5:filesd20:{}d8:completei1e10:downloadedi2e10:incompletei3ee20:{}d8:completei5e10:downloadedi6e10:incompletei7eeee",
        "a".repeat(20),
        "b".repeat(20)
    );
    assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
    assert_eq!(
        ScrapeReply::parse(&out),
        Ok(ScrapeReply::Success(vec![(a, s(1)), (b, s(5))]))
    );
}

// ---- property tests ----

pub(crate) fn arb_host() -> impl Strategy<Value = PeerHost> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| PeerHost::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| PeerHost::from_ip(Ipv6Addr::from(b).into())),
        any::<[u8; 32]>().prop_map(|k| PeerHost::Onion(OnionName::from_public_key(&k))),
        any::<[u8; 32]>().prop_map(|h| PeerHost::I2p(I2pName::from_destination_hash(&h))),
        "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,2}\\.i2p"
            .prop_filter("b32 suffix is a different form", |s| !s
                .ends_with(".b32.i2p"))
            .prop_map(|s| PeerHost::I2p(I2pName::Host(s.into()))),
    ]
}

fn arb_event() -> impl Strategy<Value = AnnounceEvent> {
    prop::sample::select(vec![
        AnnounceEvent::None,
        AnnounceEvent::Completed,
        AnnounceEvent::Started,
        AnnounceEvent::Stopped,
        AnnounceEvent::Paused,
    ])
}

fn arb_token() -> impl Strategy<Value = Option<Token>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..=Token::MAX_LEN))
        .prop_map(|b| b.and_then(|b| Token::new(&b)))
}

fn arb_announce() -> impl Strategy<Value = AnnounceRequest> {
    (
        (any::<[u8; 20]>(), any::<[u8; 20]>(), any::<u16>()),
        (
            any::<u64>(),
            any::<u64>(),
            any::<Option<u64>>(),
            arb_event(),
        ),
        (any::<bool>(), any::<bool>(), any::<Option<i64>>()),
        (arb_token(), arb_token(), prop::option::of(arb_host())),
    )
        .prop_map(
            |(
                (ih, pid, port),
                (uploaded, downloaded, left, event),
                (compact, no_peer_id, numwant),
                (key, tracker_id, ip),
            )| AnnounceRequest {
                info_hash: InfoHash::from(ih),
                peer_id: PeerId::from(pid),
                port,
                uploaded,
                downloaded,
                left,
                event,
                compact,
                no_peer_id,
                numwant,
                key,
                tracker_id,
                ip,
            },
        )
}

fn arb_addr() -> impl Strategy<Value = PeerAddr> {
    (arb_host(), any::<u16>()).prop_map(|(h, p)| PeerAddr::new(h, p))
}

proptest! {
    #[test]
    fn announce_query_round_trips(req in arb_announce()) {
        let mut q = Vec::new();
        req.write_query(&mut q);
        prop_assert_eq!(AnnounceRequest::parse_query(&q), Ok(req));
    }

    #[test]
    fn scrape_query_round_trips(hashes in prop::collection::vec(any::<[u8; 20]>(), 0..40)) {
        let mut sorted: Vec<InfoHash> = hashes.into_iter().map(InfoHash::from).collect();
        let req = ScrapeRequest { info_hashes: sorted.clone() };
        let mut q = Vec::new();
        req.write_query(&mut q);
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(
            ScrapeRequest::parse_query(&q),
            Ok(ScrapeRequest { info_hashes: sorted })
        );
    }

    #[test]
    fn compact_reply_round_trips(
        v4s in prop::collection::vec(any::<([u8; 4], u16)>(), 0..20),
        v6s in prop::collection::vec(any::<([u8; 16], u16)>(), 0..20),
        interval in any::<u32>(), min in any::<Option<u32>>(),
        complete in any::<u32>(), incomplete in any::<u32>(),
        tid in prop::option::of(prop::collection::vec(any::<u8>(), 0..10)),
        warning in prop::option::of(".{0,20}"),
    ) {
        let v4s: Vec<_> = v4s.into_iter().map(|(ip, p)| SocketAddrV4::new(ip.into(), p)).collect();
        let v6s: Vec<_> = v6s.into_iter()
            .map(|(ip, p)| SocketAddrV6::new(ip.into(), p, 0, 0)).collect();
        let head = AnnounceResponse {
            interval, min_interval: min, complete, incomplete,
            tracker_id: tid.as_deref(), warning_message: warning.as_deref(),
        };
        let mut out = Vec::new();
        head.write_compact(&mut out, v4s.iter().copied(), v6s.iter().copied());
        let want_peers: Vec<ReplyPeer> = v4s.iter().map(|a| PeerAddr::V4(*a))
            .chain(v6s.iter().map(|a| PeerAddr::V6(*a)))
            .map(|addr| ReplyPeer { addr, peer_id: None })
            .collect();
        prop_assert_eq!(AnnounceReply::parse(&out), Ok(AnnounceReply::Success(AnnounceSuccess {
            interval, min_interval: min, complete: Some(complete), incomplete: Some(incomplete),
            tracker_id: tid.clone(), warning_message: warning.clone(), peers: want_peers,
        })));
    }

    #[test]
    fn dict_reply_round_trips(
        peers in prop::collection::vec((arb_addr(), any::<[u8; 20]>()), 0..12),
        no_peer_id in any::<bool>(),
    ) {
        let peers: Vec<(PeerAddr, PeerId)> =
            peers.into_iter().map(|(a, id)| (a, PeerId::from(id))).collect();
        let head = AnnounceResponse { interval: 5, ..AnnounceResponse::default() };
        let mut out = Vec::new();
        head.write_dict(&mut out, peers.iter().map(|(a, id)| (a, id)), no_peer_id);
        let AnnounceReply::Success(reply) = AnnounceReply::parse(&out).unwrap() else {
            panic!("not a success");
        };
        let want: Vec<ReplyPeer> = peers.into_iter()
            .map(|(addr, id)| ReplyPeer { addr, peer_id: (!no_peer_id).then_some(id) })
            .collect();
        prop_assert_eq!(reply.peers, want);
    }

    #[test]
    fn scrape_reply_round_trips(
        files in prop::collection::btree_map(any::<[u8; 20]>(), any::<(u32, u32, u32)>(), 0..20)
    ) {
        let files: Vec<(InfoHash, ScrapeStats)> = files.into_iter()
            .map(|(k, (c, d, i))| (InfoHash::from(k),
                ScrapeStats { complete: c, downloaded: d, incomplete: i }))
            .collect();
        let mut reversed = files.clone();
        reversed.reverse();
        let mut out = Vec::new();
        write_scrape(&mut out, &reversed);
        prop_assert_eq!(ScrapeReply::parse(&out), Ok(ScrapeReply::Success(files)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = AnnounceRequest::parse_query(&bytes);
        let _ = ScrapeRequest::parse_query(&bytes);
        let _ = AnnounceReply::parse(&bytes);
        let _ = ScrapeReply::parse(&bytes);
        let _ = PeerHost::parse(&bytes);
    }

    #[test]
    fn query_shaped_garbage_never_panics(
        parts in prop::collection::vec(
            (prop::sample::select(vec![
                "info_hash", "peer_id", "port", "left", "numwant", "ip", "key", "event", "x",
            ]), "[%0-9a-fA-F.:+\\-]{0,70}"),
            0..12)
    ) {
        let q = parts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let _ = AnnounceRequest::parse_query(q.as_bytes());
        let _ = ScrapeRequest::parse_query(q.as_bytes());
    }
}
