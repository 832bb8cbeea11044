//! The announce hot path: parse the request, update the swarm and choose peers, write the
//! reply. `cargo bench --bench announce`.
//!
//! Cases:
//! * `http/typical`: 10 000 torrents of 50 peers; a compact re-announce asking for 50.
//! * `http/1m_peers`: one torrent holding 1 000 000 peers (the table is filled once).
//! * `udp/typical`: the same as `http/typical` over the BEP 15 codec.
//! * `scrape/http_20`: an HTTP scrape of 20 info-hashes.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use megatorrent::proto::tracker::{
    write_scrape, AnnounceEvent, AnnounceRequest, AnnounceResponse, PeerId, ScrapeRequest,
};
use megatorrent::proto::udp;
use megatorrent::proto::InfoHash;
use megatorrent::server::config::TrackerConfig;
use megatorrent::server::tracker::{Selection, Tracker};

fn info_hash(n: u32) -> InfoHash {
    let mut b = [0u8; 20];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[4..8].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
    InfoHash::from(b)
}

fn peer_id(n: u32) -> PeerId {
    let mut b = *b"-BN0001-000000000000";
    b[12..16].copy_from_slice(&n.to_be_bytes());
    PeerId::from(b)
}

fn addr(n: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff));
    SocketAddr::from((ip, 6881))
}

fn request(ih: InfoHash, pid: PeerId) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: ih,
        peer_id: pid,
        port: 6881,
        uploaded: 1000,
        downloaded: 2000,
        left: Some(3000),
        event: AnnounceEvent::None,
        compact: true,
        no_peer_id: true,
        numwant: Some(50),
        key: None,
        tracker_id: None,
        ip: None,
    }
}

fn tracker(max_per_torrent: u32) -> Tracker {
    Tracker::new(&TrackerConfig {
        max_peers_per_torrent: max_per_torrent,
        max_peers: 10_000_000,
        ..TrackerConfig::default()
    })
}

/// Announce `peers` peers into each of `torrents` torrents.
fn fill(t: &Tracker, torrents: u32, peers: u32) {
    let mut sel = Selection::default();
    for p in 0..peers {
        for i in 0..torrents {
            let (input, _) = t
                .http_input(&request(info_hash(i), peer_id(p)), addr(p))
                .unwrap();
            t.announce(input, &mut sel).unwrap();
        }
    }
}

/// One HTTP announce end to end (minus the socket): parse, normalise, swarm, write.
fn http_announce(
    t: &Tracker,
    query: &[u8],
    remote: SocketAddr,
    sel: &mut Selection,
    out: &mut Vec<u8>,
) {
    let req = AnnounceRequest::parse_query(query).unwrap();
    let (input, warning) = t.http_input(&req, remote).unwrap();
    let counts = t.announce(input, sel).unwrap();
    out.clear();
    AnnounceResponse {
        interval: 1800,
        min_interval: Some(300),
        complete: counts.complete,
        incomplete: counts.incomplete,
        tracker_id: None,
        warning_message: warning,
    }
    .write_compact(out, sel.v4.iter().copied(), sel.v6.iter().copied());
}

fn query_of(req: &AnnounceRequest) -> Vec<u8> {
    let mut q = Vec::new();
    req.write_query(&mut q);
    q
}

fn bench_http(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(1));

    let t = tracker(100_000);
    fill(&t, 10_000, 50);
    let queries: Vec<(Vec<u8>, SocketAddr)> = (0..1024u32)
        .map(|i| {
            (
                query_of(&request(info_hash(i * 7 % 10_000), peer_id(i % 50))),
                addr(i % 50),
            )
        })
        .collect();
    let (mut sel, mut out) = (Selection::default(), Vec::with_capacity(1024));
    let mut i = 0usize;
    g.bench_function("typical", |b| {
        b.iter(|| {
            let (q, remote) = &queries[i % queries.len()];
            i += 1;
            http_announce(&t, q, *remote, &mut sel, &mut out);
            black_box(out.len())
        });
    });

    let big = tracker(2_000_000);
    fill(&big, 1, 1_000_000);
    let queries: Vec<(Vec<u8>, SocketAddr)> = (0..1024u32)
        .map(|i| {
            (
                query_of(&request(info_hash(0), peer_id(i * 977))),
                addr(i * 977),
            )
        })
        .collect();
    g.bench_function("1m_peers", |b| {
        b.iter(|| {
            let (q, remote) = &queries[i % queries.len()];
            i += 1;
            http_announce(&big, q, *remote, &mut sel, &mut out);
            black_box(out.len())
        });
    });
    g.finish();
}

fn bench_udp(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp");
    g.throughput(Throughput::Elements(1));
    let t = tracker(100_000);
    fill(&t, 10_000, 50);
    let packets: Vec<(Vec<u8>, SocketAddr)> = (0..1024u32)
        .map(|i| {
            let req = udp::Request::Announce(udp::AnnounceRequest {
                connection_id: udp::ConnectionId(1),
                transaction_id: udp::TransactionId(i),
                info_hash: info_hash(i * 7 % 10_000),
                peer_id: peer_id(i % 50),
                downloaded: 0,
                left: 100,
                uploaded: 0,
                event: AnnounceEvent::None,
                ip: Ipv4Addr::UNSPECIFIED,
                key: i,
                num_want: 50,
                port: 6881,
                url_data: Vec::new(),
            });
            let mut p = Vec::new();
            req.write(&mut p);
            (p, addr(i % 50))
        })
        .collect();
    let (mut sel, mut out) = (Selection::default(), Vec::with_capacity(1500));
    let mut i = 0usize;
    g.bench_function("typical", |b| {
        b.iter(|| {
            let (p, remote) = &packets[i % packets.len()];
            i += 1;
            let udp::Request::Announce(a) = udp::Request::parse(p).unwrap() else {
                unreachable!()
            };
            let input = t.udp_input(&a, *remote).unwrap();
            let counts = t.announce(input, &mut sel).unwrap();
            out.clear();
            udp::write_announce_header(
                &mut out,
                a.transaction_id,
                1800,
                counts.incomplete,
                counts.complete,
            );
            sel.v4.iter().for_each(|p| udp::write_peer_v4(&mut out, *p));
            black_box(out.len())
        });
    });
    // The connection-id check every UDP request pays.
    let ids = t.connection_ids();
    let ip = addr(1).ip();
    let id = ids.mint(ip);
    g.bench_function("verify_connection_id", |b| {
        b.iter(|| black_box(ids.verify(id, ip)))
    });
    g.finish();
}

fn bench_scrape(c: &mut Criterion) {
    let t = tracker(100_000);
    fill(&t, 1_000, 10);
    let req = ScrapeRequest {
        info_hashes: (0..20).map(|i| info_hash(i * 31)).collect(),
    };
    let mut q = Vec::new();
    req.write_query(&mut q);
    let mut out = Vec::new();
    c.bench_function("scrape/http_20", |b| {
        b.iter_batched_ref(
            Vec::new,
            |files| {
                let parsed = ScrapeRequest::parse_query(&q).unwrap();
                files.extend(
                    parsed
                        .info_hashes
                        .iter()
                        .map(|ih| (*ih, t.swarm().scrape(ih))),
                );
                out.clear();
                write_scrape(&mut out, files);
                black_box(out.len())
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, bench_http, bench_udp, bench_scrape);
criterion_main!(benches);
