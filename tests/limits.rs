//! Connection and storage limits: slowloris is cut off by the header-read timeout, many idle
//! connections do not stop new requests, the connection cap, oversized heads, and the
//! identity cap.

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

/// Whether the server has closed `s` (EOF or reset) within `within`.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {} // e.g. a 408 response before the close
        }
    }
}

#[tokio::test]
async fn slowloris_is_cut_off_by_the_header_read_timeout() {
    let mut cfg = test_config();
    cfg.http.header_read_timeout_secs = 1;
    let server = start_with(cfg, None).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head =
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut sent = 0;
    let mut cut = false;
    for b in head {
        // One byte per second, as a slowloris client sends.
        if s.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        sent += 1;
        if closed_by_server(&mut s, Duration::from_secs(1)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "the server waited for the whole slow header");
    assert!(sent < head.len(), "cut only after {sent} bytes");
    // Normal clients are still served.
    let r = request(server.addr, "GET", "/v1/info", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // An idle connection (nothing sent) is closed by the same timeout.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_by_server(&mut idle, Duration::from_secs(20)).await);
    server.stop().await;
}

#[tokio::test]
async fn connection_cap_and_oversized_heads() {
    let mut cfg = test_config();
    cfg.http.max_connections = 4;
    // Held keep-alive connections must not time out while the test runs.
    cfg.http.header_read_timeout_secs = 600;
    let server = start_with(cfg, None).await;
    // The readiness probes' connections must be gone before we count.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while open_gauge(server.metrics_addr).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe connections linger"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Hold the cap with idle connections, each accepted before the next is opened.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s); // kept alive (HTTP/1.1 keep-alive)
    }
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(buf.is_empty(), "served over the cap");
    drop(held);
    // Closed connections give their permits back (poll until the server saw the closes).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = request(server.addr, "GET", "/healthz", &[], b"").await {
            if r.status == 200 {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "permits never returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A request head over the cap is refused with 431.
    // (hyper checks the cap per read, so a head may pass it by up to one read: go well over.)
    let big = "a".repeat(2 * server.state.config().http.max_header_bytes);
    let r = request(server.addr, "GET", "/v1/info", &[("X-Big", &big)], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 431);
    let text = String::from_utf8(
        request(server.metrics_addr, "GET", "/metrics", &[], b"")
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(text.contains(
        "megatorrent_connections_rejected_total{listener=\"http\",reason=\"max_connections\"} 1"
    ));
    server.stop().await;
}

#[tokio::test]
async fn identity_cap_refuses_new_keys_only() {
    let mut cfg = test_config();
    cfg.limits.max_identities = 2;
    let server = start_with(cfg, None).await;
    let put = |m: Manifest| async move {
        let path = format!("/v1/manifests/{}", m.public_key());
        request(server.addr, "PUT", &path, &[], m.canonical_bytes())
            .await
            .unwrap()
    };
    let keys: Vec<SigningKey> = (1..=3u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    assert_eq!(put(manifest(&keys[0], 1)).await.status, 201);
    assert_eq!(put(manifest(&keys[1], 1)).await.status, 201);
    let r = put(manifest(&keys[2], 1)).await;
    assert_eq!(r.status, 507);
    assert_eq!(r.json()["error"], "store-full");
    // Known keys keep publishing, and nothing was evicted.
    assert_eq!(put(manifest(&keys[0], 2)).await.status, 200);
    let path = format!("/v1/manifests/{}", manifest(&keys[1], 1).public_key());
    assert_eq!(
        request(server.addr, "GET", &path, &[], b"")
            .await
            .unwrap()
            .status,
        200
    );
    let info = request(server.addr, "GET", "/v1/info", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(info["limits"]["maxIdentities"], 2);
    assert_eq!(info["limits"]["headerReadTimeoutSecs"], 10);
    assert_eq!(info["limits"]["rateLimits"]["read"], "1000000r/s");
    server.stop().await;
}

/// The server's `megatorrent_connections_open{listener="http"}`.
async fn open_gauge(metrics: SocketAddr) -> usize {
    let text = String::from_utf8(
        request(metrics, "GET", "/metrics", &[], b"")
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("megatorrent_connections_open{listener=\"http\"} "))
        .unwrap()
        .parse()
        .unwrap()
}

/// Open `n` idle connections to `addr` in batches, waiting after each batch until the server
/// has accepted it (so the listen backlog never overflows).
async fn open_idle(addr: SocketAddr, metrics: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = (n - conns.len()).min(250);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            set.spawn(async move { TcpStream::connect(addr).await.unwrap() });
        }
        while let Some(s) = set.join_next().await {
            conns.push(s.unwrap());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let open = open_gauge(metrics).await;
            if open >= conns.len() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server accepted only {open} of {}",
                conns.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    conns
}

/// 10 000 idle connections (each a file descriptor on both sides: the real binary runs in
/// its own process, which raises its own limit) do not stop new requests being served.
#[tokio::test]
async fn ten_thousand_idle_connections_do_not_block_new_requests() {
    const IDLE: usize = 10_000;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(
        hard >= (IDLE as u64) + 1000,
        "this test needs an open-files hard limit above {} (have {hard})",
        IDLE + 1000
    );
    if soft < hard {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let mut env = common::server::RELAXED_LIMITS_ENV.to_vec();
    env.push(("MEGATORRENT_HTTP__MAX_CONNECTIONS", "20000"));
    env.push(("MEGATORRENT_HTTP__HEADER_READ_TIMEOUT_SECS", "600"));
    let d = common::server::spawn_daemon_with(&url, dir.path(), &env).await;
    let maddr = d.metrics_addr.unwrap();
    let conns = tokio::time::timeout(Duration::from_secs(600), open_idle(d.addr, maddr, IDLE))
        .await
        .expect("opening the idle connections took over 600 s");
    assert!(open_gauge(maddr).await >= IDLE);
    let key = SigningKey::from_bytes(&[8; 32]);
    let m = manifest(&key, 1);
    let path = format!("/v1/manifests/{}", m.public_key());
    let r = request(d.addr, "PUT", &path, &[], m.canonical_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let r = request(d.addr, "GET", &path, &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(conns.len(), IDLE);
    drop(conns);
}
