//! Two in-process `megatorrentd` replicas on different ports sharing one fresh PostgreSQL
//! database: publishes on one reach WebSocket subscribers and long-polls on the other
//! (`LISTEN`/`NOTIFY`), also after the listening connection is killed.
#![cfg(all(feature = "server", feature = "postgres", feature = "client"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::pg::PgTestDb;
use common::server::start_with;
use common::ws::{connect, manifest, publish, signing_key, WsClient};
use megatorrent::proto::PublicKey;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};

async fn subscribe(c: &mut WsClient, key: &PublicKey) {
    c.send(&json!({"action": "subscribe", "key": key.to_hex()}))
        .await;
    assert_eq!(c.recv().await["status"], "ok");
}

async fn next_sequence(c: &mut WsClient) -> u64 {
    let v = c.recv().await;
    assert_eq!(v["action"], "publish", "{v}");
    v["manifest"]["sequence"].as_u64().unwrap()
}

/// Kill every connection that is listening for notifications in `db`.
async fn kill_listeners(db_url: &str, db_name: &str) -> u64 {
    let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
    let sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = '{db_name}' AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
    );
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    u64::try_from(n).unwrap()
}

#[tokio::test]
async fn a_publish_on_one_replica_reaches_subscribers_on_another() {
    let pg = PgTestDb::create().await;
    let (url, name) = (pg.url.clone(), pg.name.clone());
    let mut cfg = common::server::test_config();
    cfg.database.url = url.clone();
    let a = start_with(cfg.clone(), Some(pg)).await;
    let b = start_with(cfg, None).await;

    let info = common::http::request(b.addr, "GET", "/v1/info", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(info["replication"], "multi");

    let sk = signing_key(10);
    let key = PublicKey::from(&sk);
    let mut sub_b = connect(b.addr, "/").await;
    subscribe(&mut sub_b, &key).await;
    let mut pub_a = connect(a.addr, "/").await;

    // 1. WebSocket publish on A → subscriber on B. Measure the delay.
    let mut delays = Vec::new();
    for seq in 1..=5 {
        let started = Instant::now();
        let reply = publish(&mut pub_a, &manifest(&sk, seq, 0)).await;
        let acked = started.elapsed();
        assert_eq!(reply["sequence"], seq);
        assert_eq!(next_sequence(&mut sub_b).await, seq);
        delays.push((acked, started.elapsed()));
    }
    println!("cross-replica delay, (ack on A, push on B) after sending, 5 publishes: {delays:?}");

    // 2. HTTP PUT on A → subscriber on B.
    let m = manifest(&sk, 6, 0);
    let put = common::http::request(
        a.addr,
        "PUT",
        &format!("/v1/manifests/{}", key.to_hex()),
        &[],
        m.canonical_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(put.status, 200);
    assert_eq!(next_sequence(&mut sub_b).await, 6);

    // 3. A long-poll on B is woken by a publish on A.
    let waiting = tokio::spawn({
        let (addr, k) = (b.addr, key.to_hex());
        async move {
            common::http::request(
                addr,
                "GET",
                &format!("/v1/manifests/{k}?wait=8"),
                &[("If-None-Match", "\"6\"")],
                b"",
            )
            .await
            .unwrap()
        }
    });
    let hub_b = b.state.pubsub().hub().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hub_b.interest(&key).is_some_and(|i| i.waiters) {
        assert!(Instant::now() < deadline, "long-poll never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        publish(&mut pub_a, &manifest(&sk, 7, 0)).await["sequence"],
        7
    );
    assert_eq!(next_sequence(&mut sub_b).await, 7);
    let r = waiting.await.unwrap();
    assert_eq!((r.status, r.header("etag")), (200, Some("\"7\"")));

    // 4. Kill the listening connections: the replicas reconnect and catch up.
    assert!(kill_listeners(&url, &name).await >= 2);
    assert_eq!(
        publish(&mut pub_a, &manifest(&sk, 8, 0)).await["sequence"],
        8
    );
    assert_eq!(next_sequence(&mut sub_b).await, 8);
    assert_eq!(
        publish(&mut pub_a, &manifest(&sk, 9, 0)).await["sequence"],
        9
    );
    assert_eq!(next_sequence(&mut sub_b).await, 9);
    assert!(b.state.pubsub().stats().replica_notifications >= 1);

    sub_b.close().await;
    pub_a.close().await;
    b.stop().await;
    a.stop().await;
}
