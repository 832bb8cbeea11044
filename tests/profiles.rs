//! Profiles over HTTP (`/v1/profiles/{key}`) against real servers on SQLite and PostgreSQL:
//! publish and read back, forged signatures, replays, sizes, malformed documents, and the
//! TTL with its high-water mark under paused time.
#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::http::{request, Resp};
use common::server::{start_with, test_config, TestServer};
use ed25519_dalek::{Signer, SigningKey};
use megatorrent::proto::{MailboxKey, Profile, ProfileLimits, PublicKey, UnsignedProfile};
use megatorrent::server::Config;
use serde_json::{json, Map, Value};

fn sk(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn path(k: &SigningKey) -> String {
    format!("/v1/profiles/{}", PublicKey::from(k).to_hex())
}

fn now() -> u64 {
    u64::try_from(megatorrent::now_ms()).unwrap()
}

fn signed(k: &SigningKey, sequence: u64, name: &str, avatar: Option<Vec<u8>>) -> Vec<u8> {
    UnsignedProfile {
        sequence,
        timestamp: now(),
        name: name.into(),
        avatar,
        mailbox_key: Some(MailboxKey::from([5; 32])),
    }
    .sign(k, &ProfileLimits::default())
    .unwrap()
    .into_canonical_bytes()
}

/// Sign an arbitrary object with `k` the way profiles are signed (for hand-built documents
/// the client would refuse to make).
fn sign_raw(k: &SigningKey, mut obj: Map<String, Value>) -> Vec<u8> {
    obj.remove("signature");
    let sig = k.sign(&serde_jcs::to_vec(&obj).unwrap());
    obj.insert("signature".into(), json!(hex::encode(sig.to_bytes())));
    serde_json::to_vec(&obj).unwrap()
}

fn as_obj(bytes: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(bytes).unwrap()
}

async fn put(s: &TestServer, k: &SigningKey, body: &[u8]) -> Resp {
    request(s.addr, "PUT", &path(k), &[], body).await.unwrap()
}

async fn get(s: &TestServer, k: &SigningKey) -> Resp {
    request(s.addr, "GET", &path(k), &[], b"").await.unwrap()
}

fn code(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

async fn start(pg: bool, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut cfg = test_config();
    tweak(&mut cfg);
    if pg {
        let db = common::pg::PgTestDb::create().await;
        cfg.database.url = db.url.clone();
        start_with(cfg, Some(db)).await
    } else {
        start_with(cfg, None).await
    }
}

macro_rules! both {
    ($flavor:meta; $($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[$flavor]
            async fn $name() { super::$name(false).await; }
        )* }
        mod postgres { $(
            #[$flavor]
            async fn $name() { super::$name(true).await; }
        )* }
    };
}

both!(
    tokio::test(flavor = "multi_thread", worker_threads = 2);
    publish_and_read_back,
    forged_and_mismatched_documents_are_refused,
    older_and_replayed_sequences_conflict,
    sizes_are_capped,
);

mod paused {
    use super::expiry_keeps_the_high_water_mark;
    both!(tokio::test; expiry_keeps_the_high_water_mark);
}

async fn publish_and_read_back(pg: bool) {
    let s = start(pg, |_| {}).await;
    let a = sk(1);
    assert_eq!(get(&s, &a).await.status, 404);
    let doc = signed(&a, 1, "Alice ✓", Some(vec![0x89, b'P', b'N', b'G']));
    let r = put(&s, &a, &doc).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["sequence"], 1);
    let expires = r.json()["expiresAt"].as_i64().unwrap();
    let ttl = Config::default().profiles.ttl_ms();
    assert!(
        (expires - megatorrent::now_ms() - ttl).abs() < 60_000,
        "{expires}"
    );
    // The same document again is idempotent.
    assert_eq!(put(&s, &a, &doc).await.status, 200);

    let r = get(&s, &a).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, doc, "served byte for byte as stored");
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("x-expires-at"), Some(expires.to_string().as_str()));
    let p = Profile::verify(&r.body, &ProfileLimits::default()).unwrap();
    assert_eq!(p.name(), "Alice ✓");
    assert_eq!(p.avatar(), Some(&[0x89, b'P', b'N', b'G'][..]));
    let r = request(s.addr, "GET", &path(&a), &[("If-None-Match", "\"1\"")], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 304);

    // A newer one replaces it; manifests under the same key are untouched.
    let doc2 = signed(&a, 2, "Alice", None);
    assert_eq!(put(&s, &a, &doc2).await.status, 200);
    assert_eq!(get(&s, &a).await.body, doc2);
    let manifest = format!("/v1/manifests/{}", PublicKey::from(&a));
    let m = request(s.addr, "GET", &manifest, &[], b"").await.unwrap();
    assert_eq!(m.status, 404);

    // An avatar at the default cap fits (the body is over the manifest cap).
    let full = signed(&a, 3, "Alice", Some(vec![7; 65536]));
    assert!(full.len() > 65536);
    assert_eq!(put(&s, &a, &full).await.status, 200);
    assert_eq!(get(&s, &a).await.body, full);

    let info = request(s.addr, "GET", "/v1/info", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(info["profiles"]["ttlDays"], 7);
    assert_eq!(info["profiles"]["maxAvatarBytes"], 65536);
    assert_eq!(info["profiles"]["maxProfileBytes"], 95576);
    assert!(info["features"]
        .as_array()
        .unwrap()
        .contains(&json!("profiles")));
    // Metered like manifest writes: publish kind, route template, store operations.
    let m = request(s.metrics_addr, "GET", "/metrics", &[], b"")
        .await
        .unwrap();
    let text = String::from_utf8(m.body).unwrap();
    for want in [
        "megatorrent_publishes_total{kind=\"profile\",result=\"created\"} 1",
        "megatorrent_publishes_total{kind=\"profile\",result=\"unchanged\"} 1",
        "megatorrent_publishes_total{kind=\"profile\",result=\"updated\"} 2",
        "route=\"/v1/profiles/{key}\"",
        "operation=\"put_profile\"",
        "operation=\"get_profile\"",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    s.stop().await;
}

async fn forged_and_mismatched_documents_are_refused(pg: bool) {
    let s = start(pg, |_| {}).await;
    let (a, b) = (sk(1), sk(2));
    // Tampered after signing.
    let mut o = as_obj(&signed(&a, 1, "Alice", None));
    o.insert("name".into(), json!("Mallory"));
    let r = put(&s, &a, &serde_json::to_vec(&o).unwrap()).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "bad-signature"));
    // Names a's key but signed by b.
    let r = put(&s, &a, &sign_raw(&b, as_obj(&signed(&a, 1, "Alice", None)))).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "bad-signature"));
    // Validly signed by b, sent to a's slot.
    let r = put(&s, &a, &signed(&b, 1, "Bob", None)).await;
    assert_eq!((r.status, code(&r).as_str()), (400, "key-mismatch"));
    // Malformed documents, each with its reason.
    let base = as_obj(&signed(&a, 1, "Alice", None));
    let cases: Vec<(&str, Value, &str)> = vec![
        ("name", json!(""), "invalid-name"),
        ("name", json!("a\u{7}b"), "invalid-name"),
        ("avatar", json!("not base64!"), "invalid-avatar"),
        ("mailboxKey", json!("xyz"), "invalid-hex"),
        ("type", json!("manifest"), "invalid-profile"),
        ("collections", json!([]), "invalid-profile"),
        ("timestamp", json!(now() + 3_600_000), "timestamp-in-future"),
    ];
    for (member, value, want) in cases {
        let mut o = base.clone();
        o.insert(member.into(), value);
        let r = put(&s, &a, &sign_raw(&a, o)).await;
        assert_eq!((r.status, code(&r).as_str()), (400, want), "{member}");
    }
    for (body, want) in [
        (&b"{\"a\":1,\"a\":2}"[..], "duplicate-member"),
        (b"not json", "invalid-json"),
        (b"{\"sequence\":1.5}", "not-an-integer"),
    ] {
        let r = put(&s, &a, body).await;
        assert_eq!((r.status, code(&r).as_str()), (400, want));
    }
    let r = request(s.addr, "GET", "/v1/profiles/ABC", &[], b"")
        .await
        .unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "invalid-key"));
    assert_eq!(get(&s, &a).await.status, 404, "nothing was stored");
    s.stop().await;
}

async fn older_and_replayed_sequences_conflict(pg: bool) {
    let s = start(pg, |_| {}).await;
    let a = sk(1);
    let old = signed(&a, 4, "Old", None);
    assert_eq!(put(&s, &a, &old).await.status, 201);
    assert_eq!(put(&s, &a, &signed(&a, 5, "New", None)).await.status, 200);
    for doc in [
        old,
        signed(&a, 5, "Other", None),
        signed(&a, 1, "Older", None),
    ] {
        let r = put(&s, &a, &doc).await;
        assert_eq!((r.status, code(&r).as_str()), (409, "conflict"));
        assert_eq!(r.json()["currentSequence"], 5);
    }
    let p = Profile::verify(&get(&s, &a).await.body, &ProfileLimits::default()).unwrap();
    assert_eq!((p.sequence(), p.name()), (5, "New"));
    s.stop().await;
}

async fn sizes_are_capped(pg: bool) {
    let s = start(pg, |c| c.profiles.max_avatar_bytes = 2048).await;
    let a = sk(1);
    assert_eq!(
        put(&s, &a, &signed(&a, 1, "A", Some(vec![1; 2048])))
            .await
            .status,
        201
    );
    // Accepted by the signer's default cap, over this server's.
    let r = put(&s, &a, &signed(&a, 2, "A", Some(vec![1; 2049]))).await;
    assert_eq!((r.status, code(&r).as_str()), (413, "avatar-too-large"));
    // A document over the whole cap (the avatar's base64 length + 8 KiB).
    let mut o = as_obj(&signed(&a, 3, "A", None));
    let b64 = base64::engine::general_purpose::STANDARD.encode(vec![1; 2048]);
    o.insert("avatar".into(), json!(b64));
    o.insert("padding".into(), json!("x".repeat(9000)));
    let r = put(&s, &a, &sign_raw(&a, o)).await;
    assert_eq!((r.status, code(&r).as_str()), (413, "too-large"));
    let p = Profile::verify(&get(&s, &a).await.body, &ProfileLimits::default()).unwrap();
    assert_eq!(p.sequence(), 1);
    s.stop().await;
}

/// Profile writes share the per-key write quota (checked once the signature verified).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_writes_are_rate_limited_per_key() {
    let s = start(false, |c| {
        c.limits.key_write_quota = "2r/m".parse().unwrap()
    })
    .await;
    let (a, b) = (sk(1), sk(2));
    for seq in 1..=2 {
        assert!(put(&s, &a, &signed(&a, seq, "A", None)).await.status < 300);
    }
    let r = put(&s, &a, &signed(&a, 3, "A", None)).await;
    assert_eq!((r.status, code(&r).as_str()), (429, "rate-limited"));
    assert!(r.header("retry-after").is_some());
    // Another key is not affected.
    assert_eq!(put(&s, &b, &signed(&b, 1, "B", None)).await.status, 201);
    s.stop().await;
}

/// Under paused time: a profile is served until its TTL, then answers 404 and is purged by
/// the server's own task, but its sequence still refuses older (and equal) documents; a
/// higher sequence publishes it again. Time is paused only while it is advanced.
async fn expiry_keeps_the_high_water_mark(pg: bool) {
    let s = start(pg, |c| c.profiles.ttl_days = 2).await;
    let a = sk(1);
    let doc = signed(&a, 3, "Alice", None);
    assert_eq!(put(&s, &a, &doc).await.status, 201);
    let advance = |secs| async move {
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(secs)).await;
        tokio::time::resume();
    };
    // One day in: still there.
    advance(86_400).await;
    assert_eq!(get(&s, &a).await.status, 200);
    // Past two days and a purge interval: gone, and purged from the table.
    advance(86_400 + 301).await;
    let r = get(&s, &a).await;
    assert_eq!((r.status, code(&r).as_str()), (404, "not-found"));
    let mut purged = false;
    for _ in 0..100 {
        if s.state.store().stats().await.unwrap().profiles == 0 {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(purged, "the purge task never dropped the expired profile");
    for old in [doc, signed(&a, 2, "Alice", None)] {
        let r = put(&s, &a, &old).await;
        assert_eq!((r.status, code(&r).as_str()), (409, "conflict"));
        assert_eq!(r.json()["currentSequence"], 3);
    }
    let r = put(&s, &a, &signed(&a, 4, "Alice again", None)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let p = Profile::verify(&get(&s, &a).await.body, &ProfileLimits::default()).unwrap();
    assert_eq!((p.sequence(), p.name()), (4, "Alice again"));
    s.stop().await;
}
