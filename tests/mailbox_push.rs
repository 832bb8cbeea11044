//! Mailbox arrival pushes over the WebSocket: a signed challenge proves the key, every stored
//! envelope for it is announced (never its content or sender), across PostgreSQL replicas
//! too; bad proofs, spent challenges and bounds are refused.
#![cfg(all(feature = "server", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::pg::PgTestDb;
use common::server::{start_with, test_config, TestServer};
use common::ws::{connect, WsClient};
use ed25519_dalek::SigningKey;
use megatorrent::proto::mailbox::sign_subscribe;
use megatorrent::proto::PublicKey;
use serde_json::{json, Value};

fn sk(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn hex(k: &SigningKey) -> String {
    PublicKey::from(k).to_hex()
}

async fn challenge(c: &mut WsClient) -> String {
    c.send(&json!({"action": "challenge"})).await;
    let v = c.recv().await;
    assert_eq!(v["action"], "challenge", "{v}");
    v["challenge"].as_str().unwrap().to_owned()
}

/// Subscribe `c` to `key`'s mailbox, signing the socket's challenge with `signer`.
async fn subscribe_signed(c: &mut WsClient, key: &SigningKey, signer: &SigningKey) -> Value {
    let ch = challenge(c).await;
    let sig = sign_subscribe(signer, &ch);
    c.send(
        &json!({"action": "subscribe", "mailbox": hex(key), "challenge": ch,
                   "signature": sig.to_hex()}),
    )
    .await;
    c.recv().await
}

async fn post(s: &TestServer, to: &SigningKey, body: &[u8]) -> String {
    let path = format!("/v1/mailbox/{}", hex(to));
    let r = common::http::request(s.addr, "POST", &path, &[], body)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_owned()
}

/// Nothing arrives on `c` for a moment (a push that should not happen).
async fn quiet(c: &mut WsClient) {
    let next = tokio::time::timeout(Duration::from_millis(500), c.recv()).await;
    assert!(next.is_err(), "unexpected frame: {next:?}");
}

/// Wait until `n` connections LISTEN in database `name` (each replica's listener), so a
/// notification sent now is heard.
async fn wait_for_listeners(url: &str, name: &str, n: i64) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND query ILIKE '%LISTEN%' \
         AND pid <> pg_backend_pid()"
    );
    for _ in 0..200 {
        let got: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if got >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the replicas did not start listening in time");
}

async fn sqlite_server() -> TestServer {
    start_with(test_config(), None).await
}

#[tokio::test]
async fn a_proven_key_gets_arrivals_of_its_mailbox_only() {
    let s = sqlite_server().await;
    let (b, c) = (sk(2), sk(3));
    let mut ws = connect(s.addr, "/").await;
    let ok = subscribe_signed(&mut ws, &b, &b).await;
    assert_eq!(ok["status"], "ok", "{ok}");
    assert_eq!(ok["mailbox"], hex(&b));

    let id = post(&s, &b, b"sealed envelope bytes").await;
    let v = ws.recv().await;
    assert_eq!(v, json!({"action": "mail", "mailbox": hex(&b), "id": id}));
    // The push carries neither the envelope nor anything about who sent it.
    assert!(!v.to_string().contains("sealed"));

    // Mail for someone else is not announced here.
    post(&s, &c, b"for c").await;
    quiet(&mut ws).await;

    // After unsubscribing, arrivals stop.
    ws.send(&json!({"action": "unsubscribe", "mailbox": hex(&b)}))
        .await;
    assert_eq!(ws.recv().await["status"], "ok");
    post(&s, &b, b"later").await;
    quiet(&mut ws).await;
    s.stop().await;
}

#[tokio::test]
async fn bad_proofs_are_refused_and_challenges_are_single_use() {
    let s = sqlite_server().await;
    let (b, other) = (sk(2), sk(9));
    let mut ws = connect(s.addr, "/").await;

    // Signed by another key.
    let v = subscribe_signed(&mut ws, &b, &other).await;
    assert!(
        v["failure reason"]
            .as_str()
            .unwrap()
            .starts_with("bad-signature:"),
        "{v}"
    );
    post(&s, &b, b"x").await;
    quiet(&mut ws).await;

    // No challenge issued on this socket (or a made-up one).
    let made_up = "0".repeat(32);
    let sig = sign_subscribe(&b, &made_up);
    ws.send(
        &json!({"action": "subscribe", "mailbox": hex(&b), "challenge": made_up,
                    "signature": sig.to_hex()}),
    )
    .await;
    let v = ws.recv().await;
    assert!(
        v["failure reason"]
            .as_str()
            .unwrap()
            .contains("unknown or spent challenge"),
        "{v}"
    );

    // A valid subscription frame replayed: the challenge was spent by the first use.
    let ch = challenge(&mut ws).await;
    let frame = json!({"action": "subscribe", "mailbox": hex(&b), "challenge": ch,
                       "signature": sign_subscribe(&b, &ch).to_hex()});
    ws.send(&frame).await;
    assert_eq!(ws.recv().await["status"], "ok");
    ws.send(&frame).await;
    let v = ws.recv().await;
    assert!(
        v["failure reason"].as_str().unwrap().contains("spent"),
        "{v}"
    );

    // The same frame on another socket is worthless there (its challenge differs).
    let mut other_ws = connect(s.addr, "/").await;
    let _ = challenge(&mut other_ws).await;
    other_ws.send(&frame).await;
    let v = other_ws.recv().await;
    assert!(
        v["failure reason"].as_str().unwrap().contains("spent"),
        "{v}"
    );
    post(&s, &b, b"y").await;
    assert_eq!(ws.recv().await["action"], "mail");
    quiet(&mut other_ws).await;

    // Malformed members.
    for (mailbox, challenge_text, sig) in [
        ("nothex", "0".repeat(32), "0".repeat(128)),
        (&*hex(&b), "short".to_owned(), "0".repeat(128)),
    ] {
        other_ws
            .send(&json!({"action": "subscribe", "mailbox": mailbox,
                          "challenge": challenge_text, "signature": sig}))
            .await;
        let v = other_ws.recv().await;
        assert!(
            v["failure reason"]
                .as_str()
                .unwrap()
                .starts_with("invalid:"),
            "{v}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_socket_watches_a_bounded_number_of_mailboxes() {
    let s = sqlite_server().await;
    let mut ws = connect(s.addr, "/").await;
    for n in 0..4u8 {
        let k = sk(20 + n);
        assert_eq!(subscribe_signed(&mut ws, &k, &k).await["status"], "ok");
    }
    let k = sk(30);
    let v = subscribe_signed(&mut ws, &k, &k).await;
    assert!(
        v["failure reason"]
            .as_str()
            .unwrap()
            .starts_with("too-large:"),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test]
async fn arrivals_cross_postgresql_replicas() {
    let pg = PgTestDb::create().await;
    let (url, name) = (pg.url.clone(), pg.name.clone());
    let mut cfg = test_config();
    cfg.database.url = url.clone();
    let a = start_with(cfg.clone(), Some(pg)).await;
    let b_server = start_with(cfg, None).await;
    wait_for_listeners(&url, &name, 2).await;
    let b = sk(2);
    let mut ws = connect(b_server.addr, "/").await;
    assert_eq!(subscribe_signed(&mut ws, &b, &b).await["status"], "ok");
    // Posted on replica A, announced on replica B's socket.
    let id = post(&a, &b, b"across").await;
    let v = ws.recv().await;
    assert_eq!(v["action"], "mail", "{v}");
    assert_eq!(v["id"], id);
    b_server.stop().await;
    a.stop().await;
}
