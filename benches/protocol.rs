//! Protocol hot paths that do not need the server: manifest signing and verification, and
//! WebSocket message parsing. `cargo bench --bench protocol`.
//!
//! Cases:
//! * `manifest/sign`: sign the sized manifest of the targets (one collection, five magnets).
//! * `manifest/verify`: parse, canonicalise (JCS) and `verify_strict` the same bytes.
//! * `ws/parse_announce`: a WebTorrent announce carrying 10 offers (the reference client's
//!   most).
//! * `ws/parse_publish`: a `publish` action with the sized manifest (dispatch to `Other`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use megatorrent::proto::webtorrent::Incoming;
use megatorrent::proto::{Collection, Manifest, ManifestLimits, UnsignedManifest};

fn unsigned() -> UnsignedManifest {
    UnsignedManifest {
        sequence: 42,
        timestamp: 1_700_000_000_000,
        collections: vec![Collection {
            title: "Season 1".into(),
            items: (0..5)
                .map(|n| format!("magnet:?xt=urn:btih:{:040x}&dn=Episode%20{n}", n + 1))
                .collect(),
        }],
    }
}

fn bench_manifest(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let bytes = unsigned().sign(&key).unwrap().into_canonical_bytes();
    let limits = ManifestLimits::default();
    let mut g = c.benchmark_group("manifest");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| {
        b.iter(|| black_box(unsigned().sign(&key).unwrap()))
    });
    g.bench_function("verify", |b| {
        b.iter(|| black_box(Manifest::verify(black_box(&bytes), &limits).unwrap()))
    });
    g.finish();
}

fn binary20(n: u8) -> String {
    (0..20u8)
        .map(|i| char::from(i.wrapping_mul(n) % 128))
        .collect()
}

fn bench_ws(c: &mut Criterion) {
    let offers: Vec<_> = (0..10u8)
        .map(|i| {
            serde_json::json!({
                "offer": {"type": "offer", "sdp": format!("v=0\r\no=- {i} 2 IN IP4 127.0.0.1\r\n{}", "a=candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host\r\n".repeat(6))},
                "offer_id": binary20(i + 3),
            })
        })
        .collect();
    let announce = serde_json::json!({
        "action": "announce",
        "info_hash": binary20(1),
        "peer_id": binary20(2),
        "uploaded": 0, "downloaded": 0, "left": 1000,
        "event": "started", "numwant": 10,
        "offers": offers,
    })
    .to_string();
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let manifest = unsigned().sign(&key).unwrap().to_value();
    let publish = serde_json::json!({"action": "publish", "manifest": manifest}).to_string();
    assert!(matches!(
        Incoming::parse(&announce).unwrap(),
        Incoming::Announce(_)
    ));
    let mut g = c.benchmark_group("ws");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_announce", |b| {
        b.iter(|| black_box(Incoming::parse(black_box(&announce)).unwrap()))
    });
    g.bench_function("parse_publish", |b| {
        b.iter(|| black_box(Incoming::parse(black_box(&publish)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench_manifest, bench_ws);
criterion_main!(benches);
