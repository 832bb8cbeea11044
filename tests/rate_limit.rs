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
