use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;

use super::*;
use crate::proto::tracker::{AnnounceEvent, PeerId, ScrapeStats};
use crate::proto::InfoHash;

fn announce(url_data: Vec<u8>) -> AnnounceRequest {
    AnnounceRequest {
        connection_id: ConnectionId(0x1122_3344_5566_7788),
        transaction_id: TransactionId(7),
        info_hash: InfoHash::from([1; 20]),
        peer_id: PeerId::from([2; 20]),
        downloaded: 3,
        left: 4,
        uploaded: 5,
        event: AnnounceEvent::Started,
        ip: Ipv4Addr::UNSPECIFIED,
        key: 9,
        num_want: -1,
        port: 6881,
        url_data,
    }
}

#[test]
fn connect_request_bytes_are_pinned() {
    let mut out = Vec::new();
    Request::Connect(ConnectRequest {
        transaction_id: TransactionId(0xdead_beef),
    })
    .write(&mut out);
    assert_eq!(
        out,
        [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]
    );
}

#[test]
fn announce_layout_and_bep41_options() {
    let mut out = Vec::new();
    Request::Announce(announce(Vec::new())).write(&mut out);
    assert_eq!(out.len(), ANNOUNCE_LEN);
    assert_eq!(&out[80..84], &[0, 0, 0, 2]); // started
    assert_eq!(&out[92..96], &[0xff; 4]); // num_want -1
    assert_eq!(&out[96..98], &6881u16.to_be_bytes());

    // NOP, two URLData options, end marker, then junk that must be ignored.
    let mut with_opts = out.clone();
    with_opts.extend_from_slice(&[1, 2, 5]);
    with_opts.extend_from_slice(b"/anno");
    with_opts.extend_from_slice(&[2, 9]);
    with_opts.extend_from_slice(b"unce?a=b&");
    with_opts.extend_from_slice(&[0, 2, 200]);
    let Ok(Request::Announce(a)) = Request::parse(&with_opts) else {
        panic!("announce with options refused");
    };
    assert_eq!(a.url_data, b"/announce?a=b&");
    // A truncated option is tolerated too.
    let mut truncated = out.clone();
    truncated.extend_from_slice(&[2, 50, b'x']);
    assert!(
        matches!(Request::parse(&truncated), Ok(Request::Announce(a)) if a.url_data.is_empty())
    );
}

#[test]
fn malformed_requests_are_typed() {
    let err = Request::parse(&[0; 10]).unwrap_err();
    assert_eq!(err.error.code(), "too-short");
    assert_eq!(err.reply_to(), None);

    let mut bad_magic = [0u8; 16];
    bad_magic[..8].copy_from_slice(&1u64.to_be_bytes());
    let err = Request::parse(&bad_magic).unwrap_err();
    assert_eq!(err.error, UdpError::BadProtocolId);
    assert_eq!(err.reply_to(), None);

    let mut out = Vec::new();
    Request::Announce(announce(Vec::new())).write(&mut out);
    let err = Request::parse(&out[..97]).unwrap_err();
    assert_eq!(err.error, UdpError::TooShort { len: 97, min: 98 });
    assert_eq!(
        err.reply_to(),
        Some((ConnectionId(0x1122_3344_5566_7788), TransactionId(7)))
    );
    out[83] = 9;
    assert_eq!(
        Request::parse(&out).unwrap_err().error,
        UdpError::BadEvent(9)
    );
    out[11] = 7;
    assert_eq!(
        Request::parse(&out).unwrap_err().error,
        UdpError::UnknownAction(7)
    );

    let scrape = |n: usize| {
        let mut p = vec![0u8; 16];
        p[11] = 2;
        p.resize(16 + n, 0xab);
        p
    };
    assert_eq!(
        Request::parse(&scrape(0)).unwrap_err().error,
        UdpError::NoInfoHashes
    );
    assert_eq!(
        Request::parse(&scrape(21)).unwrap_err().error.code(),
        "misaligned"
    );
    assert!(
        matches!(Request::parse(&scrape(74 * 20)), Ok(Request::Scrape(s)) if s.info_hashes.len() == 74)
    );
    assert_eq!(
        Request::parse(&scrape(75 * 20)).unwrap_err().error.code(),
        "too-long"
    );
    assert_eq!(
        Request::parse(&scrape(10_000 * 20))
            .unwrap_err()
            .error
            .code(),
        "too-long"
    );
}

#[test]
fn announce_response_families() {
    let mut out = Vec::new();
    write_announce_header(&mut out, TransactionId(1), 1800, 2, 3);
    write_peer_v4(&mut out, SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 5));
    assert_eq!(out.len(), 20 + 6);
    assert!(matches!(
        Response::parse(&out, IpVersion::V4),
        Ok(Response::Announce(AnnounceResponse { peers: ResponsePeers::V4(p), .. })) if p.len() == 1
    ));
    // Six bytes of peers are not a whole 18-byte IPv6 entry.
    assert_eq!(
        Response::parse(&out, IpVersion::V6).unwrap_err().code(),
        "misaligned"
    );
    assert_eq!(
        Response::parse(&[0, 0, 0, 9, 0, 0, 0, 0], IpVersion::V4),
        Err(UdpError::UnknownAction(9))
    );
}

fn arb_event() -> impl Strategy<Value = AnnounceEvent> {
    (0u32..5).prop_map(|c| AnnounceEvent::from_udp_code(c).unwrap_or_default())
}

fn arb_request() -> impl Strategy<Value = Request> {
    let announce = (
        (
            any::<u64>(),
            any::<u32>(),
            any::<[u8; 20]>(),
            any::<[u8; 20]>(),
        ),
        (
            0..=i64::MAX as u64,
            0..=i64::MAX as u64,
            0..=i64::MAX as u64,
            arb_event(),
        ),
        (any::<[u8; 4]>(), any::<u32>(), any::<i32>(), any::<u16>()),
        prop::collection::vec(any::<u8>(), 0..1000),
    )
        .prop_map(
            |((c, t, ih, pid), (downloaded, left, uploaded, event), (ip, key, nw, port), url)| {
                Request::Announce(AnnounceRequest {
                    connection_id: ConnectionId(c),
                    transaction_id: TransactionId(t),
                    info_hash: InfoHash::from(ih),
                    peer_id: PeerId::from(pid),
                    downloaded,
                    left,
                    uploaded,
                    event,
                    ip: ip.into(),
                    key,
                    num_want: nw,
                    port,
                    url_data: url,
                })
            },
        );
    prop_oneof![
        any::<u32>().prop_map(|t| Request::Connect(ConnectRequest {
            transaction_id: TransactionId(t)
        })),
        announce,
        (
            any::<u64>(),
            any::<u32>(),
            prop::collection::vec(any::<[u8; 20]>(), 1..=MAX_SCRAPE_HASHES)
        )
            .prop_map(|(c, t, hs)| Request::Scrape(ScrapeRequest {
                connection_id: ConnectionId(c),
                transaction_id: TransactionId(t),
                info_hashes: hs.into_iter().map(InfoHash::from).collect(),
            })),
    ]
}

fn arb_count() -> impl Strategy<Value = u32> {
    0..=i32::MAX as u32
}

fn arb_response() -> impl Strategy<Value = (Response, IpVersion)> {
    let tid = any::<u32>().prop_map(TransactionId);
    let peers = prop_oneof![
        prop::collection::vec(any::<([u8; 4], u16)>(), 0..50).prop_map(|v| ResponsePeers::V4(
            v.into_iter()
                .map(|(ip, p)| SocketAddrV4::new(ip.into(), p))
                .collect()
        )),
        prop::collection::vec(any::<([u8; 16], u16)>(), 0..50).prop_map(|v| ResponsePeers::V6(
            v.into_iter()
                .map(|(ip, p)| SocketAddrV6::new(ip.into(), p, 0, 0))
                .collect()
        )),
    ];
    prop_oneof![
        (tid.clone(), any::<u64>()).prop_map(|(t, c)| Response::Connect(ConnectResponse {
            transaction_id: t,
            connection_id: ConnectionId(c)
        })),
        (tid.clone(), arb_count(), arb_count(), arb_count(), peers).prop_map(
            |(t, interval, leechers, seeders, peers)| Response::Announce(AnnounceResponse {
                transaction_id: t,
                interval,
                leechers,
                seeders,
                peers
            })
        ),
        (
            tid.clone(),
            prop::collection::vec((arb_count(), arb_count(), arb_count()), 0..74)
        )
            .prop_map(|(t, s)| Response::Scrape(ScrapeResponse {
                transaction_id: t,
                stats: s
                    .into_iter()
                    .map(|(complete, downloaded, incomplete)| ScrapeStats {
                        complete,
                        downloaded,
                        incomplete
                    })
                    .collect(),
            })),
        (tid, ".{0,64}").prop_map(|(t, m)| Response::Error(ErrorResponse {
            transaction_id: t,
            message: m
        })),
    ]
    .prop_map(|r| {
        let family = match &r {
            Response::Announce(AnnounceResponse {
                peers: ResponsePeers::V6(_),
                ..
            }) => IpVersion::V6,
            _ => IpVersion::V4,
        };
        (r, family)
    })
}

proptest! {
    #[test]
    fn every_request_round_trips(req in arb_request()) {
        let mut out = Vec::new();
        req.write(&mut out);
        prop_assert_eq!(Request::parse(&out), Ok(req));
    }

    #[test]
    fn every_response_round_trips((resp, family) in arb_response()) {
        let mut out = Vec::new();
        resp.write(&mut out);
        prop_assert_eq!(Response::parse(&out, family), Ok(resp));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = Request::parse(&bytes);
        let _ = Response::parse(&bytes, IpVersion::V4);
        let _ = Response::parse(&bytes, IpVersion::V6);
    }

    #[test]
    fn plausible_headers_never_panic(
        action in 0u32..5, len in 0usize..1600, fill in any::<u8>(),
    ) {
        let mut p = vec![fill; len.max(16)];
        p[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
        p[8..12].copy_from_slice(&action.to_be_bytes());
        p.truncate(len);
        let _ = Request::parse(&p);
    }
}
