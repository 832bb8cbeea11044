//! The WebSocket endpoint against a real in-process server (SQLite, 127.0.0.1:0): manifest
//! publish/subscribe, fan-out to many subscribers, slow readers, bad input, bounds,
//! long-poll and the WebTorrent tracker.
#![cfg(all(feature = "server", feature = "sqlite", feature = "client"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::server::{start_sqlite, start_with, TestServer};
use common::ws::{connect, manifest, publish, publish_frame, signing_key, WsClient};
use futures_util::SinkExt;
use megatorrent::proto::PublicKey;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Subscribe; returns the sequences pushed before the acknowledgement (the catch-up).
async fn subscribe(c: &mut WsClient, key: &PublicKey) -> Vec<u64> {
    c.send(&json!({"action": "subscribe", "key": key.to_hex()}))
        .await;
    let mut pushed = Vec::new();
    loop {
        let v = c.recv().await;
        if v == json!({"action": "subscribe", "status": "ok"}) {
            return pushed;
        }
        pushed.push(pushed_sequence(&v));
    }
}

fn pushed_sequence(v: &Value) -> u64 {
    assert_eq!(v["action"], "publish", "{v}");
    v["manifest"]["sequence"].as_u64().unwrap()
}

/// Poll `cond` until true (10 s at most).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn publish_subscribe_catch_up_http_fan_out_and_unsubscribe() {
    let server = start_sqlite().await;
    let sk = signing_key(1);
    let key = PublicKey::from(&sk);
    let mut sub = connect(server.addr, "/").await;
    let mut publisher = connect(server.addr, "/announce").await;
    subscribe(&mut sub, &key).await;

    let m1 = manifest(&sk, 1, 0);
    let reply = publish(&mut publisher, &m1).await;
    assert_eq!(
        reply,
        json!({"action": "publish", "status": "ok", "sequence": 1})
    );
    let push = sub.recv().await;
    assert_eq!(pushed_sequence(&push), 1);
    // The push carries exactly the stored canonical bytes.
    let get = common::http::request(
        server.addr,
        "GET",
        &format!("/v1/manifests/{}", key.to_hex()),
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&get.body).unwrap(),
        push["manifest"]
    );

    // Re-sending the same manifest is idempotent and pushes nothing new.
    assert_eq!(publish(&mut publisher, &m1).await["status"], "ok");
    // An older sequence is a conflict with the current one.
    let reply = publish(&mut publisher, &manifest(&sk, 1, 3)).await;
    assert!(
        reply["failure reason"]
            .as_str()
            .unwrap()
            .starts_with("conflict:"),
        "{reply}"
    );
    assert_eq!(reply["currentSequence"], 1);

    // A late subscriber gets the stored manifest at once.
    let mut late = connect(server.addr, "/").await;
    assert_eq!(subscribe(&mut late, &key).await, [1]);

    // HTTP publishes fan out too.
    let m2 = manifest(&sk, 2, 0);
    let put = common::http::request(
        server.addr,
        "PUT",
        &format!("/v1/manifests/{}", key.to_hex()),
        &[],
        m2.canonical_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(put.status, 200);
    assert_eq!(pushed_sequence(&sub.recv().await), 2);
    assert_eq!(pushed_sequence(&late.recv().await), 2);

    late.send(&json!({"action": "unsubscribe", "keys": [key.to_hex()]}))
        .await;
    assert_eq!(
        late.recv().await,
        json!({"action": "unsubscribe", "status": "ok"})
    );
    assert_eq!(
        publish(&mut publisher, &manifest(&sk, 3, 0)).await["sequence"],
        3
    );
    assert_eq!(pushed_sequence(&sub.recv().await), 3);
    // `late` gets nothing more: its next frame is the answer to a probe.
    late.send(&json!({"action": "scrape", "info_hash": "a".repeat(20)}))
        .await;
    assert_eq!(late.recv().await["action"], "scrape");

    sub.close().await;
    late.close().await;
    publisher.close().await;
    eventually("sockets closed", || {
        server.state.pubsub().stats().sockets == 0
    })
    .await;
    let stats = server.state.pubsub().stats();
    assert_eq!(stats.subscriptions, 0);
    assert_eq!(server.state.pubsub().hub().topics(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_thousand_subscribers_each_get_twenty_rapid_publishes_in_order() {
    const SUBSCRIBERS: usize = 1000;
    const PUBLISHES: u64 = 20;
    let server = start_sqlite().await;
    let sk = signing_key(2);
    let key = PublicKey::from(&sk);
    let mut subs = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        let mut c = connect(server.addr, "/").await;
        c.send(&json!({"action": "subscribe", "key": key.to_hex()}))
            .await;
        subs.push(c);
    }
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                assert_eq!(c.recv().await["status"], "ok");
                let mut seen = Vec::new();
                while seen.len() < usize::try_from(PUBLISHES).unwrap() {
                    seen.push(pushed_sequence(&c.recv().await));
                }
                c.close().await;
                seen
            })
        })
        .collect();
    eventually("all subscribed", || {
        server.state.pubsub().stats().subscriptions == SUBSCRIBERS as u64
    })
    .await;
    let mut publisher = connect(server.addr, "/").await;
    for seq in 1..=PUBLISHES {
        let m = manifest(&sk, seq, 0);
        publisher.send_text(&publish_frame(&m)).await;
    }
    for seq in 1..=PUBLISHES {
        assert_eq!(publisher.recv().await["sequence"], seq);
    }
    let want: Vec<u64> = (1..=PUBLISHES).collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), want);
    }
    let stats = server.state.pubsub().stats();
    assert_eq!(stats.slow_disconnects, 0);
    assert!(stats.pushes >= SUBSCRIBERS as u64 * PUBLISHES);
    publisher.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected_and_counted() {
    let mut cfg = common::server::test_config();
    cfg.websocket.outbound_queue = 4;
    let server = start_with(cfg, None).await;
    let sk = signing_key(3);
    let key = PublicKey::from(&sk);
    // A small receive buffer so the kernel holds little on the slow client's behalf.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let mut slow = common::ws::connect_over(tcp, server.addr, "/").await;
    subscribe(&mut slow, &key).await;
    let mut fast = connect(server.addr, "/").await;
    subscribe(&mut fast, &key).await;
    let mut publisher = connect(server.addr, "/").await;

    // `slow` never reads now; big manifests fill the socket buffers, then its queue.
    let mut seq = 0;
    while server.state.pubsub().stats().slow_disconnects == 0 {
        seq += 1;
        assert!(seq <= 2000, "the slow reader was never disconnected");
        let reply = publish(&mut publisher, &manifest(&sk, seq, 60_000)).await;
        assert_eq!(reply["sequence"], seq);
        assert_eq!(pushed_sequence(&fast.recv().await), seq);
    }
    // The slow socket ends (close frame or reset) once it reads again.
    tokio::time::timeout(Duration::from_secs(30), slow.closed())
        .await
        .expect("slow socket never ended");
    eventually("slow socket released", || {
        server.state.pubsub().stats().subscriptions == 1
    })
    .await;
    // The others are unaffected.
    let reply = publish(&mut publisher, &manifest(&sk, seq + 1, 0)).await;
    assert_eq!(reply["sequence"], seq + 1);
    assert_eq!(pushed_sequence(&fast.recv().await), seq + 1);
    println!("slow reader disconnected after {seq} publishes of ~60 KB");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_reason_and_other_sockets_are_unaffected() {
    let server = start_sqlite().await;
    let mut bystander = connect(server.addr, "/").await;
    let sk = signing_key(4);
    let key = PublicKey::from(&sk);
    subscribe(&mut bystander, &key).await;

    let mut c = connect(server.addr, "/").await;
    let reason = |v: &Value| v["failure reason"].as_str().unwrap_or_default().to_owned();
    for (frame, prefix) in [
        ("not json", "invalid:"),
        ("[1,2]", "invalid:"),
        (r#"{"no":"action"}"#, "invalid:"),
        (r#"{"action":"dance"}"#, "invalid: unknown action"),
        (r#"{"action":"subscribe","key":"abc"}"#, "invalid: key"),
        (r#"{"action":"subscribe"}"#, "invalid:"),
        (r#"{"action":"publish"}"#, "invalid: missing manifest"),
        (
            r#"{"action":"publish","manifest":{"publicKey":"x"}}"#,
            "invalid:",
        ),
        (r#"{"action":"scrape"}"#, "invalid:"),
        (r#"{"action":"announce","info_hash":"short"}"#, "invalid:"),
    ] {
        c.send_text(frame).await;
        let r = c.recv().await;
        assert!(reason(&r).starts_with(prefix), "{frame}: {r}");
    }
    // A manifest with a bad signature, a duplicate member, or from the future.
    let m = manifest(&sk, 1, 0);
    let mut v: Value = serde_json::from_slice(m.canonical_bytes()).unwrap();
    v["sequence"] = json!(2);
    c.send(&json!({"action": "publish", "manifest": v})).await;
    assert!(reason(&c.recv().await).contains("signature"));
    let dup = publish_frame(&m).replacen("{\"collections\"", "{\"sequence\":1,\"collections\"", 1);
    c.send_text(&dup).await;
    assert!(reason(&c.recv().await).starts_with("invalid: invalid JSON: duplicate"));
    let future = megatorrent::proto::UnsignedManifest {
        sequence: 5,
        timestamp: 9_000_000_000_000,
        collections: vec![],
    }
    .sign(&sk)
    .unwrap();
    c.send_text(&publish_frame(&future)).await;
    assert!(reason(&c.recv().await).contains("timestamp"));
    // Binary frames are refused with a reason.
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert!(reason(&c.recv().await).starts_with("invalid: binary"));

    // 10 000 subscriptions: the first 256 are accepted, every other one gets a reason.
    let sender = tokio::spawn(async move {
        for i in 0..10_000u64 {
            let k = PublicKey::from(&signing_key(100 + i)).to_hex();
            c.send(&json!({"action": "subscribe", "key": k})).await;
            let r = c.recv().await;
            if i < 256 {
                assert_eq!(r["status"], "ok", "{i}: {r}");
            } else {
                assert!(reason(&r).starts_with("too-large: at most 256"), "{i}: {r}");
            }
        }
        c
    });
    let c = sender.await.unwrap();
    assert_eq!(server.state.pubsub().stats().subscriptions, 257);

    // A 10 MiB frame closes the socket with a reason.
    let mut big = connect(server.addr, "/").await;
    let huge = format!("{{\"action\":\"x\",\"pad\":\"{}\"}}", "a".repeat(10 << 20));
    let _ = big.ws.send(Message::text(huge)).await;
    let (code, text) = big.closed().await.expect("a close frame");
    assert_eq!(code, 1009);
    assert!(text.starts_with("too-large:"), "{text}");

    // The bystander still works.
    let mut p = connect(server.addr, "/").await;
    assert_eq!(publish(&mut p, &m).await["status"], "ok");
    assert_eq!(pushed_sequence(&bystander.recv().await), 1);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn connection_limit_idle_timeout_and_shutdown_close_with_reasons() {
    let mut cfg = common::server::test_config();
    cfg.websocket.max_connections = 2;
    cfg.websocket.ping_interval_secs = 1;
    cfg.websocket.idle_timeout_secs = 2;
    let server = start_with(cfg, None).await;
    let mut a = connect(server.addr, "/").await;
    let mut b = connect(server.addr, "/").await;
    let mut c = connect(server.addr, "/").await;
    let (code, text) = c.closed().await.unwrap();
    assert_eq!(code, 1013);
    assert!(text.starts_with("unavailable:"), "{text}");
    assert_eq!(server.state.pubsub().stats().rejected_sockets, 1);

    // `b` answers pings (it keeps reading) and stays; `a` never reads, so never pongs.
    let keep = tokio::spawn(async move {
        let r = b.closed().await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, text) = a.closed().await.unwrap();
    assert_eq!(code, 1001);
    assert!(text.starts_with("idle:"), "{text}");

    // Shutdown closes the remaining socket with a reason.
    server.stop().await;
    let (_, r) = keep.await.unwrap();
    let (code, text) = r.unwrap();
    assert_eq!(code, 1001);
    assert!(
        text.starts_with("unavailable: server shutting down"),
        "{text}"
    );
}

async fn get_wait(
    server: &TestServer,
    key: &PublicKey,
    query: &str,
    inm: Option<&str>,
) -> common::http::Resp {
    let headers: Vec<(&str, &str)> = inm.map(|t| ("If-None-Match", t)).into_iter().collect();
    common::http::request(
        server.addr,
        "GET",
        &format!("/v1/manifests/{}{query}", key.to_hex()),
        &headers,
        b"",
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn long_poll_waits_on_the_hub() {
    let server = start_sqlite().await;
    let sk = signing_key(5);
    let key = PublicKey::from(&sk);
    let mut p = connect(server.addr, "/").await;
    assert_eq!(publish(&mut p, &manifest(&sk, 1, 0)).await["sequence"], 1);

    // Already newer than the client's tag: at once.
    let r = get_wait(&server, &key, "?wait=5", Some("\"0\"")).await;
    assert_eq!((r.status, r.header("etag")), (200, Some("\"1\"")));
    // Nothing newer within the wait: 304.
    let r = get_wait(&server, &key, "?wait=1", Some("\"1\"")).await;
    assert_eq!(r.status, 304);
    let r = get_wait(&server, &key, "?wait=soon", None).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid-query"))
    );

    // A waiting request returns as soon as a newer sequence is published.
    let waiting = tokio::spawn({
        let (addr, k) = (server.addr, key.to_hex());
        async move {
            common::http::request(
                addr,
                "GET",
                &format!("/v1/manifests/{k}?wait=9"),
                &[("If-None-Match", "\"1\"")],
                b"",
            )
            .await
            .unwrap()
        }
    });
    let hub = server.state.pubsub().hub().clone();
    eventually("long-poll registered", || hub.interest(&key).is_some()).await;
    assert_eq!(publish(&mut p, &manifest(&sk, 2, 0)).await["sequence"], 2);
    let r = waiting.await.unwrap();
    assert_eq!((r.status, r.header("etag")), (200, Some("\"2\"")));
    eventually("waiter gone", || hub.topics() == 0).await;
    server.stop().await;
}

/// Binary string of `n` repeated 20 times.
fn bin(n: char) -> String {
    std::iter::repeat_n(n, 20).collect()
}

#[tokio::test]
async fn webtorrent_offers_and_answers_are_relayed() {
    let server = start_sqlite().await;
    let ih = bin('\u{00e9}');
    let mut p1 = connect(server.addr, "/announce").await;
    let mut p2 = connect(server.addr, "/").await;
    p1.send(
        &json!({"action": "announce", "info_hash": ih, "peer_id": bin('1'),
        "event": "started", "left": 0, "numwant": 5, "offers": []}),
    )
    .await;
    let r = p1.recv().await;
    assert_eq!(
        (
            r["action"].clone(),
            r["complete"].clone(),
            r["incomplete"].clone()
        ),
        (json!("announce"), json!(1), json!(0))
    );
    assert_eq!(r["info_hash"], ih);

    let offer = json!({"type": "offer", "sdp": "v=0 fake"});
    p2.send(&json!({"action": "announce", "info_hash": ih, "peer_id": bin('2'),
        "left": 100, "numwant": 5,
        "offers": [{"offer": offer, "offer_id": bin('o')}, {"offer": offer, "offer_id": bin('p')}]}))
        .await;
    let r = p2.recv().await;
    assert_eq!(
        (r["complete"].clone(), r["incomplete"].clone()),
        (json!(1), json!(1))
    );
    let got = p1.recv().await;
    assert_eq!(got["offer"], offer);
    assert_eq!(got["peer_id"], bin('2'));
    let offer_id = got["offer_id"].as_str().unwrap().to_owned();
    assert!(offer_id == bin('o') || offer_id == bin('p'));

    let answer = json!({"type": "answer", "sdp": "v=0 reply"});
    p1.send(
        &json!({"action": "announce", "info_hash": ih, "peer_id": bin('1'),
        "answer": answer, "to_peer_id": bin('2'), "offer_id": offer_id}),
    )
    .await;
    let got = p2.recv().await;
    assert_eq!(
        (
            got["answer"].clone(),
            got["peer_id"].clone(),
            got["offer_id"].clone()
        ),
        (answer, json!(bin('1')), json!(offer_id))
    );

    // Too many offers are refused; scrape counts the swarm.
    let many: Vec<Value> = (0..11)
        .map(|_| json!({"offer": {}, "offer_id": bin('z')}))
        .collect();
    p2.send(&json!({"action": "announce", "info_hash": ih, "peer_id": bin('2'), "offers": many}))
        .await;
    assert!(p2.recv().await["failure reason"]
        .as_str()
        .unwrap()
        .starts_with("too-large:"));
    p2.send(&json!({"action": "scrape", "info_hash": [ih]}))
        .await;
    let s = p2.recv().await;
    assert_eq!(s["files"][&ih]["complete"], 1);
    assert_eq!(s["files"][&ih]["incomplete"], 1);

    // Leaving: `stopped`, then a closed socket.
    p2.send(
        &json!({"action": "announce", "info_hash": ih, "peer_id": bin('2'), "event": "stopped"}),
    )
    .await;
    assert_eq!(p2.recv().await["complete"], 1);
    p1.close().await;
    let swarms = server.state.clone();
    eventually("swarm emptied", || swarms.ws().swarms().is_empty()).await;
    p2.close().await;
    server.stop().await;
}

#[tokio::test]
async fn plain_get_is_told_to_upgrade_or_tracked_and_info_lists_the_bounds() {
    let server = start_sqlite().await;
    let r = common::http::request(server.addr, "GET", "/", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 426);
    // Without an upgrade, `/announce` is the HTTP BitTorrent tracker: a bencoded failure
    // for a query without an info_hash.
    let r = common::http::request(server.addr, "GET", "/announce", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body.starts_with(b"d14:failure reason"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let info = common::http::request(server.addr, "GET", "/v1/info", &[], b"")
        .await
        .unwrap()
        .json();
    assert!(info["features"]
        .as_array()
        .unwrap()
        .contains(&json!("pubsub")));
    assert_eq!(info["websocket"]["maxSubscriptions"], 256);
    assert_eq!(info["websocket"]["maxMessageBytes"], 131072);
    assert_eq!(info["limits"]["maxWaitSecs"], 29);
    assert_eq!(info["replication"], "single");
    server.stop().await;
}
