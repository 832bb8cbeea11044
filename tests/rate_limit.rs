//! Rate limits end to end: 429 + Retry-After, per-key quotas, trusted proxies and the onion
//! listener's PROXY-header circuit ids.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::http::request;
use common::server::{start_with, test_config};
use ed25519_dalek::SigningKey;
use megatorrent::proto::{Collection, Manifest, UnsignedManifest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn manifest(key: &SigningKey, seq: u64) -> Manifest {
    UnsignedManifest {
        sequence: seq,
        timestamp: u64::try_from(megatorrent::now_ms()).unwrap(),
        collections: vec![Collection {
            title: "t".into(),
            items: vec!["magnet:?xt=urn:btih:aa".into()],
        }],
    }
    .sign(key)
    .unwrap()
}

#[tokio::test]
async fn reads_over_quota_get_429_with_retry_after() {
    let mut cfg = test_config();
    cfg.limits.read_quota = "2r/m".parse().unwrap();
    let server = start_with(cfg, None).await;
    // wait_ready already spent some of the bucket; drain the rest.
    let mut last = None;
    for _ in 0..3 {
        last = Some(
            request(server.addr, "GET", "/v1/info", &[], b"")
                .await
                .unwrap(),
        );
    }
    let r = last.unwrap();
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body = r.json();
    assert_eq!(body["error"], "rate-limited");
    assert_eq!(body["retryAfter"], retry);
    // Writes have their own bucket.
    let m = manifest(&SigningKey::from_bytes(&[1; 32]), 1);
    let path = format!("/v1/manifests/{}", m.public_key());
    let r = request(server.addr, "PUT", &path, &[], m.canonical_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let metrics = request(server.metrics_addr, "GET", "/metrics", &[], b"")
        .await
        .unwrap();
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        !text.contains("megatorrent_rate_limited_total{limiter=\"read\"} 0"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn each_publishing_key_has_its_own_write_quota() {
    let mut cfg = test_config();
    cfg.limits.key_write_quota = "1r/h".parse().unwrap();
    let server = start_with(cfg, None).await;
    let (a, b) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    );
    let put = |m: Manifest| async move {
        let path = format!("/v1/manifests/{}", m.public_key());
        request(server.addr, "PUT", &path, &[], m.canonical_bytes())
            .await
            .unwrap()
    };
    assert_eq!(put(manifest(&a, 1)).await.status, 201);
    let r = put(manifest(&a, 2)).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(put(manifest(&b, 1)).await.status, 201);
    let text = String::from_utf8(
        request(server.metrics_addr, "GET", "/metrics", &[], b"")
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(
        text.contains("megatorrent_rate_limited_total{limiter=\"key\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("megatorrent_publishes_total{kind=\"manifest\",result=\"rate_limited\"} 1")
    );
    server.stop().await;
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let xff = |ip: &'static str| [("X-Forwarded-For", ip)];
    // Untrusted: every forwarded address shares the connection's bucket.
    let mut cfg = test_config();
    cfg.limits.read_quota = "1r/h".parse().unwrap();
    let server = start_with(cfg.clone(), None).await;
    let r = request(server.addr, "GET", "/v1/info", &xff("198.51.100.1"), b"")
        .await
        .unwrap();
    assert_eq!(r.status, 429, "readiness polling used the 127.0.0.1 bucket");
    server.stop().await;

    cfg.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let server = start_with(cfg, None).await;
    let get = |h: &'static str| async move {
        request(server.addr, "GET", "/v1/info", &xff(h), b"")
            .await
            .unwrap()
            .status
    };
    assert_eq!(get("198.51.100.1").await, 200);
    assert_eq!(get("198.51.100.1").await, 429);
    assert_eq!(get("198.51.100.2").await, 200);
    // The rightmost untrusted hop is the client, whatever the client prepends.
    assert_eq!(get("203.0.113.7, 198.51.100.2").await, 429);
    // IPv6 clients are keyed by /64.
    assert_eq!(get("2001:db8:1:2::1").await, 200);
    assert_eq!(get("2001:db8:1:2::ffff").await, 429);
    assert_eq!(get("2001:db8:1:3::1").await, 200);
    server.stop().await;
}

/// Send `PROXY …` then one GET over the onion listener; the status, or `None` if the server
/// closed the connection without answering.
async fn onion_get(addr: SocketAddr, proxy_line: &str) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(proxy_line.as_bytes()).await.unwrap();
        s.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x.onion\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        let head = String::from_utf8_lossy(&raw);
        head.split(' ').nth(1)?.parse().ok()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn onion_clients_are_keyed_by_tor_circuit() {
    let mut cfg = test_config();
    cfg.limits.read_quota = "1r/h".parse().unwrap();
    cfg.onion_proxy.listen = Some("127.0.0.1:0".parse().unwrap());
    let server = start_with(cfg, None).await;
    let onion = server.onion_addr.unwrap();
    let circuit = |id: u32| {
        format!(
            "PROXY TCP6 fc00:dead:beef:4dad::{:x}:{:x} ::1 {} 80\r\n",
            id >> 16,
            id & 0xffff,
            40_000 + id % 1000
        )
    };
    assert_eq!(onion_get(onion, &circuit(0x1_0001)).await, Some(200));
    assert_eq!(onion_get(onion, &circuit(0x1_0001)).await, Some(429));
    assert_eq!(onion_get(onion, &circuit(0x2_0002)).await, Some(200));
    // A non-Tor PROXY sender (HAProxy) keys clients by the source address it reports.
    let tcp4 = |ip: &str| format!("PROXY TCP4 {ip} 192.0.2.200 40000 80\r\n");
    assert_eq!(onion_get(onion, &tcp4("192.0.2.1")).await, Some(200));
    assert_eq!(onion_get(onion, &tcp4("192.0.2.1")).await, Some(429));
    assert_eq!(onion_get(onion, &tcp4("192.0.2.2")).await, Some(200));
    // No PROXY header (or a bad one): closed without an answer, and counted.
    assert_eq!(onion_get(onion, "").await, None);
    assert_eq!(onion_get(onion, "PROXY TCP9 x\r\n").await, None);
    let text = String::from_utf8(
        request(server.metrics_addr, "GET", "/metrics", &[], b"")
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(
        text.contains(
            "megatorrent_connections_rejected_total{listener=\"onion\",reason=\"proxy_header\"} 2"
        ),
        "{text}"
    );
    server.stop().await;
}

/// WebSocket messages are charged to the client's HTTP quotas: a publish over the socket
/// beyond the write quota gets a `rate-limited:` failure (the socket stays open), and with
/// proof-of-work in force a socket publish without a stamp is refused like an HTTP one.
#[tokio::test]
async fn websocket_messages_share_the_client_quotas_and_pow() {
    let mut cfg = test_config();
    cfg.limits.write_quota = "2r/m".parse().unwrap();
    let server = start_with(cfg, None).await;
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut ws = common::ws::connect(server.addr, "/").await;
    let mut reasons = Vec::new();
    for seq in 1..=3 {
        ws.send_text(&common::ws::publish_frame(&manifest(&key, seq)))
            .await;
        let reply = ws.recv().await;
        reasons.push(reply["failure reason"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(reasons[0], "", "first publish refused: {reasons:?}");
    assert_eq!(reasons[1], "", "second publish refused: {reasons:?}");
    assert!(reasons[2].starts_with("rate-limited: "), "{reasons:?}");
    // The socket is still usable for reads.
    ws.send(&serde_json::json!({"action": "subscribe", "key": key_hex(&key)}))
        .await;
    // The catch-up push of sequence 2, then the acknowledgement.
    let push = ws.recv().await;
    assert_eq!(push["action"], "publish", "{push}");
    let ack = ws.recv().await;
    assert_eq!(
        ack["status"], "ok",
        "subscribe after a refused publish failed: {ack}"
    );
    let metrics = request(server.metrics_addr, "GET", "/metrics", &[], b"")
        .await
        .unwrap();
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("megatorrent_rate_limited_total{limiter=\"websocket\"} 1"),
        "{text}"
    );
    ws.close().await;
    server.stop().await;

    let mut cfg = test_config();
    cfg.pow.enabled = true;
    cfg.pow.min_difficulty = 8;
    let server = start_with(cfg, None).await;
    let mut ws = common::ws::connect(server.addr, "/").await;
    ws.send_text(&common::ws::publish_frame(&manifest(&key, 1)))
        .await;
    let reply = ws.recv().await;
    let reason = reply["failure reason"].as_str().unwrap();
    assert!(reason.starts_with("pow-required: "), "{reason}");
    ws.close().await;
    server.stop().await;
}

fn key_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().as_bytes())
}

/// Each socket also has its own message and subscribe quotas.
#[tokio::test]
async fn a_socket_has_its_own_message_and_subscribe_quotas() {
    let mut cfg = test_config();
    cfg.websocket.subscribe_quota = "2r/m".parse().unwrap();
    cfg.websocket.message_quota = "4r/m".parse().unwrap();
    let server = start_with(cfg, None).await;
    let key = key_hex(&SigningKey::from_bytes(&[5; 32]));
    let mut ws = common::ws::connect(server.addr, "/").await;
    let sub = serde_json::json!({"action": "subscribe", "key": key});
    let mut replies = Vec::new();
    for _ in 0..3 {
        ws.send(&sub).await;
        replies.push(ws.recv().await);
    }
    assert_eq!(replies[0]["status"], "ok", "{replies:?}");
    assert_eq!(replies[1]["status"], "ok", "{replies:?}");
    let reason = replies[2]["failure reason"].as_str().unwrap();
    assert!(reason.starts_with("rate-limited: this socket"), "{reason}");
    // Other messages still pass until the message quota (4 per minute) is used up.
    let scrape = serde_json::json!({"action": "scrape", "info_hash": "a".repeat(20)});
    ws.send(&scrape).await;
    assert_eq!(ws.recv().await["action"], "scrape");
    ws.send(&scrape).await;
    let v = ws.recv().await;
    assert!(
        v["failure reason"]
            .as_str()
            .unwrap()
            .starts_with("rate-limited: "),
        "{v}"
    );
    // Another socket of the same client has its own quotas.
    let mut other = common::ws::connect(server.addr, "/").await;
    other.send(&sub).await;
    assert_eq!(other.recv().await["status"], "ok");
    ws.close().await;
    other.close().await;
    server.stop().await;
}
