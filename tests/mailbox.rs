//! The mailbox over HTTP (`/v1/mailbox/…`) against real servers on SQLite and PostgreSQL:
//! store-and-forward, signed access, replays, quotas, sizes and expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::http::{request, Resp};
use common::server::{start_with, test_config, TestServer};
use ed25519_dalek::SigningKey;
use megatorrent::proto::mailbox::{MailAuth, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use megatorrent::proto::PublicKey;
use megatorrent::server::mailbox::{run_purger, MailClock};
use megatorrent::server::Config;
use megatorrent::store::{MailQuota, MailRecord};
use tokio_util::sync::CancellationToken;

fn sk(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(k: &SigningKey) -> String {
    PublicKey::from(k).to_hex()
}

fn now() -> u64 {
    u64::try_from(megatorrent::now_ms()).unwrap()
}

fn headers(a: &MailAuth) -> Vec<(&'static str, String)> {
    vec![
        (HEADER_TIMESTAMP, a.timestamp_ms.to_string()),
        (HEADER_NONCE, a.nonce.clone()),
        (HEADER_SIGNATURE, a.signature.to_hex()),
    ]
}

async fn send_auth(s: &TestServer, method: &str, path: &str, a: &MailAuth) -> Resp {
    let h = headers(a);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    request(s.addr, method, path, &h, b"").await.unwrap()
}

/// A request to `path` signed by `key` now.
async fn signed(s: &TestServer, key: &SigningKey, method: &str, path: &str) -> Resp {
    let a = MailAuth::sign(key, method, path, now(), b"");
    send_auth(s, method, path, &a).await
}

async fn post(s: &TestServer, to: &SigningKey, body: &[u8]) -> Resp {
    let path = format!("/v1/mailbox/{}", pk(to));
    request(s.addr, "POST", &path, &[], body).await.unwrap()
}

async fn list_ids(s: &TestServer, key: &SigningKey) -> Vec<String> {
    let r = signed(s, key, "GET", &format!("/v1/mailbox/{}", pk(key))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
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

on_both_stores!(
    store_list_fetch_ack,
    replays_are_refused,
    wrong_key_and_bad_headers_are_refused,
    expired_timestamps_are_refused,
    quotas_and_sizes_are_enforced,
    expired_messages_vanish_and_are_purged,
);

async fn store_list_fetch_ack(pg: bool) {
    let s = start(pg, |_| {}).await;
    let (b, c) = (sk(2), sk(3));
    for i in 0..3 {
        let r = post(&s, &b, format!("sealed-{i}").as_bytes()).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["id"].as_str().unwrap().len(), 32);
    }
    assert_eq!(post(&s, &c, b"for c").await.status, 201);
    let ids = list_ids(&s, &b).await;
    assert_eq!(ids.len(), 3);
    for (i, id) in ids.iter().enumerate() {
        let path = format!("/v1/mailbox/{}/{id}", pk(&b));
        let r = signed(&s, &b, "GET", &path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.body, format!("sealed-{i}").as_bytes());
        // C cannot read B's message even by id, signing for its own mailbox path.
        let other = format!("/v1/mailbox/{}/{id}", pk(&c));
        assert_eq!(signed(&s, &c, "GET", &other).await.status, 404);
    }
    for id in &ids {
        let path = format!("/v1/mailbox/{}/{id}", pk(&b));
        assert_eq!(signed(&s, &b, "DELETE", &path).await.status, 204);
        assert_eq!(signed(&s, &b, "DELETE", &path).await.status, 404);
    }
    assert!(list_ids(&s, &b).await.is_empty());
    let key_b = PublicKey::from(&b);
    let left = s
        .state
        .store()
        .list_mail(&key_b, i64::MAX - 1)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(list_ids(&s, &c).await.len(), 1);
    // Bad ids and keys.
    let bad_id = format!("/v1/mailbox/{}/XYZ", pk(&b));
    let r = signed(&s, &b, "GET", &bad_id).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid-id"))
    );
    let r = request(s.addr, "POST", "/v1/mailbox/abc", &[], b"x")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid-key"))
    );
    let r = post(&s, &b, b"").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("empty-envelope"))
    );
    let info = request(s.addr, "GET", "/v1/info", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(info["mailbox"]["ttlDays"], 7);
    s.stop().await;
}

async fn replays_are_refused(pg: bool) {
    let s = start(pg, |_| {}).await;
    let b = sk(2);
    assert_eq!(post(&s, &b, b"x").await.status, 201);
    let path = format!("/v1/mailbox/{}", pk(&b));
    let a = MailAuth::sign(&b, "GET", &path, now(), b"");
    assert_eq!(send_auth(&s, "GET", &path, &a).await.status, 200);
    let r = send_auth(&s, "GET", &path, &a).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (401, Some("replay"))
    );

    let id = list_ids(&s, &b).await.remove(0);
    let ack = format!("/v1/mailbox/{}/{id}", pk(&b));
    let a = MailAuth::sign(&b, "DELETE", &ack, now(), b"");
    assert_eq!(send_auth(&s, "DELETE", &ack, &a).await.status, 204);
    let r = send_auth(&s, "DELETE", &ack, &a).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (401, Some("replay"))
    );
    // A signature for one method or path does not work for another.
    let a = MailAuth::sign(&b, "GET", &ack, now(), b"");
    let r = send_auth(&s, "DELETE", &ack, &a).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("bad-signature"))
    );
    s.stop().await;
}

async fn wrong_key_and_bad_headers_are_refused(pg: bool) {
    let s = start(pg, |_| {}).await;
    let (b, c) = (sk(2), sk(3));
    assert_eq!(post(&s, &b, b"x").await.status, 201);
    let path = format!("/v1/mailbox/{}", pk(&b));
    let r = signed(&s, &c, "GET", &path).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("bad-signature"))
    );
    let r = request(s.addr, "GET", &path, &[], b"").await.unwrap();
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (401, Some("auth-missing"))
    );
    let r = request(
        s.addr,
        "GET",
        &path,
        &[
            (HEADER_TIMESTAMP, "soon"),
            (HEADER_NONCE, "00"),
            (HEADER_SIGNATURE, "00"),
        ],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("auth-malformed"))
    );
    s.stop().await;
}

async fn expired_timestamps_are_refused(pg: bool) {
    let s = start(pg, |c| c.mailbox.auth_skew_secs = 60).await;
    let b = sk(2);
    let path = format!("/v1/mailbox/{}", pk(&b));
    for ts in [now() - 61_000, now() + 61_000] {
        let a = MailAuth::sign(&b, "GET", &path, ts, b"");
        let r = send_auth(&s, "GET", &path, &a).await;
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (401, Some("auth-expired"))
        );
    }
    let a = MailAuth::sign(&b, "GET", &path, now() - 50_000, b"");
    assert_eq!(send_auth(&s, "GET", &path, &a).await.status, 200);
    s.stop().await;
}

async fn quotas_and_sizes_are_enforced(pg: bool) {
    let s = start(pg, |c| {
        c.mailbox.max_envelope_bytes = 1000;
        c.mailbox.max_messages_per_recipient = 3;
        c.mailbox.max_bytes_per_recipient = 2500;
    })
    .await;
    let (b, c) = (sk(2), sk(3));
    let r = post(&s, &b, &[7; 1001]).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (413, Some("too-large"))
    );
    assert_eq!(post(&s, &b, &[7; 1000]).await.status, 201);
    assert_eq!(post(&s, &b, &[7; 1000]).await.status, 201);
    // 2000 + 600 bytes is over the byte quota; 2000 + 500 fits.
    let r = post(&s, &b, &[7; 600]).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (507, Some("mailbox-full"))
    );
    assert_eq!(post(&s, &b, &[7; 500]).await.status, 201);
    let r = post(&s, &b, &[7; 1]).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (507, Some("mailbox-full"))
    );
    // Quotas are per recipient.
    assert_eq!(post(&s, &c, &[7; 10]).await.status, 201);
    // Acknowledging frees room.
    let id = list_ids(&s, &b).await.remove(0);
    let ack = format!("/v1/mailbox/{}/{id}", pk(&b));
    assert_eq!(signed(&s, &b, "DELETE", &ack).await.status, 204);
    assert_eq!(post(&s, &b, &[7; 1]).await.status, 201);
    s.stop().await;
}

async fn expired_messages_vanish_and_are_purged(pg: bool) {
    let s = start(pg, |_| {}).await;
    let b = sk(2);
    let key = PublicKey::from(&b);
    let now_ms = s.state.mail_clock().now_ms();
    let quota = MailQuota {
        max_messages: 10,
        max_bytes: 1 << 20,
    };
    let old = MailRecord {
        recipient: key,
        id: "ab".repeat(16),
        envelope: b"old".to_vec(),
        received_at_ms: now_ms - 8 * 86_400_000,
        expires_at_ms: now_ms - 86_400_000,
    };
    s.state
        .store()
        .put_mail(&old, &quota, now_ms)
        .await
        .unwrap();
    assert_eq!(post(&s, &b, b"fresh").await.status, 201);
    let ids = list_ids(&s, &b).await;
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], old.id);
    let path = format!("/v1/mailbox/{}/{}", pk(&b), old.id);
    assert_eq!(signed(&s, &b, "GET", &path).await.status, 404);
    // The server's own purge task may have got there first.
    assert!(s.state.store().purge_mail(now_ms).await.unwrap() <= 1);
    let rows = s.state.store().list_mail(&key, i64::MIN).await.unwrap();
    assert_eq!(rows.len(), 1, "only the fresh message is left in the table");
    assert_eq!(rows[0].id, ids[0]);
    s.stop().await;
}

/// The purge task under paused time: a message expires after the TTL and the background
/// task deletes it on its next tick. Time is paused only while it is advanced, so the
/// database pool's own timers never fire spuriously.
#[tokio::test]
async fn purge_task_deletes_expired_messages_under_paused_time() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let store = megatorrent::store::open(&url, &Default::default())
        .await
        .unwrap();
    let clock = MailClock::new();
    let key = PublicKey::from(&sk(2));
    let ttl_ms = Config::default().mailbox.ttl_ms();
    let t0 = clock.now_ms();
    let rec = MailRecord {
        recipient: key,
        id: "cd".repeat(16),
        envelope: b"sealed".to_vec(),
        received_at_ms: t0,
        expires_at_ms: t0 + ttl_ms,
    };
    let quota = MailQuota {
        max_messages: 10,
        max_bytes: 1 << 20,
    };
    store.put_mail(&rec, &quota, t0).await.unwrap();
    let stop = CancellationToken::new();
    let gauges = std::sync::Arc::new(megatorrent::server::mailbox::MailGauges::default());
    let task = tokio::spawn(run_purger(
        store.clone(),
        clock,
        Duration::from_secs(300),
        gauges.clone(),
        stop.clone(),
    ));
    let settle = || tokio::time::sleep(Duration::from_millis(200));
    settle().await;
    // The first pass counted what is stored (the metrics gauges).
    use std::sync::atomic::Ordering::Relaxed;
    assert!(gauges.known.load(Relaxed));
    assert_eq!(gauges.messages.load(Relaxed), 1);
    assert_eq!(gauges.bytes.load(Relaxed), 6);
    // Six days in: the purge runs and keeps it.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(6 * 86_400)).await;
    tokio::time::resume();
    settle().await;
    assert!(clock.now_ms() >= t0 + 6 * 86_400_000);
    assert_eq!(store.list_mail(&key, i64::MIN).await.unwrap().len(), 1);
    // Past seven days and one purge interval: gone from the table itself.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(86_400 + 301)).await;
    tokio::time::resume();
    let mut gone = false;
    for _ in 0..100 {
        if store.list_mail(&key, i64::MIN).await.unwrap().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the purge task never deleted the expired message");
    settle().await;
    assert_eq!(gauges.messages.load(Relaxed), 0);
    assert_eq!(gauges.bytes.load(Relaxed), 0);
    stop.cancel();
    task.await.unwrap();
    store.close().await;
}
