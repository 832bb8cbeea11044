//! Crash safety and shutdown of the real binary: a writer publishing continuously while the
//! server is SIGKILLed three times loses no acknowledged publish (SQLite and PostgreSQL), and
//! SIGTERM turns readiness off first, then drains the request in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::http::request;
use common::server::{spawn_daemon, spawn_daemon_with, Daemon};
use ed25519_dalek::SigningKey;
use megatorrent::proto::{Collection, Manifest, UnsignedManifest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEYS: u8 = 12;
/// Concurrent writers (each over its own keys), so the kills land in group-committed batches.
const WRITERS: usize = 4;
const KILLS: usize = 3;
/// Acknowledged publishes to wait for in each life of the server before killing it.
const ACKS_PER_LIFE: usize = 40;

fn manifest(key: &SigningKey, seq: u64) -> Manifest {
    UnsignedManifest {
        sequence: seq,
        timestamp: u64::try_from(megatorrent::now_ms()).unwrap(),
        collections: vec![Collection {
            title: "soak".into(),
            items: vec![format!("magnet:?xt=urn:btih:{seq:040x}")],
        }],
    }
    .sign(key)
    .unwrap()
}

/// Publish round-robin over the keys with ever-growing sequences until a request fails
/// (the server died); every 2xx is recorded in `acked` and counted in `count`.
async fn writer(
    addr: SocketAddr,
    keys: Arc<Vec<SigningKey>>,
    mut seq: u64,
    count: Arc<AtomicUsize>,
) -> (u64, Vec<Manifest>) {
    let mut acked = Vec::new();
    // Bounded: a life never needs more than this many publishes.
    for i in 0..100_000usize {
        seq += 1;
        let m = manifest(&keys[i % keys.len()], seq);
        let path = format!("/v1/manifests/{}", m.public_key());
        match request(addr, "PUT", &path, &[], m.canonical_bytes()).await {
            Ok(r) if r.status == 200 || r.status == 201 => {
                acked.push(m);
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => panic!("publish refused with {}", r.status),
            Err(_) => break,
        }
    }
    (seq, acked)
}

async fn soak(database_url: &str, dir: &std::path::Path) {
    let keys: Arc<Vec<SigningKey>> = Arc::new(
        (1..=KEYS)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect(),
    );
    let mut acked: Vec<Manifest> = Vec::new();
    let mut seq = 0u64;
    for _ in 0..KILLS {
        let mut daemon = spawn_daemon(database_url, dir).await;
        let count = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let own: Vec<SigningKey> = keys.iter().skip(w).step_by(WRITERS).cloned().collect();
                tokio::spawn(writer(daemon.addr, Arc::new(own), seq, count.clone()))
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(120), async {
            while count.load(Ordering::Relaxed) < ACKS_PER_LIFE {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the writers made no progress");
        // SIGKILL in the middle of the writers' streams of publishes.
        daemon.child.start_kill().unwrap();
        daemon.child.wait().await.unwrap();
        for task in tasks {
            let (last, done) = tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("writer did not notice the kill")
                .unwrap();
            seq = seq.max(last);
            acked.extend(done);
        }
    }
    assert!(acked.len() >= KILLS * ACKS_PER_LIFE);

    // The highest acknowledged sequence per key.
    let mut latest: HashMap<String, &Manifest> = HashMap::new();
    for m in &acked {
        latest.insert(m.public_key().to_string(), m);
    }
    let daemon = spawn_daemon(database_url, dir).await;
    for (key, m) in &latest {
        let r = request(
            daemon.addr,
            "GET",
            &format!("/v1/manifests/{key}"),
            &[],
            b"",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "acknowledged manifest of {key} lost");
        let stored =
            Manifest::verify(&r.body, &megatorrent::proto::ManifestLimits::default()).unwrap();
        // A later publish may have landed without its acknowledgement; never an older one.
        assert!(
            stored.sequence() >= m.sequence(),
            "{key}: stored {} < acknowledged {}",
            stored.sequence(),
            m.sequence()
        );
        if stored.sequence() == m.sequence() {
            assert_eq!(r.body, m.canonical_bytes());
        }
    }
    drop(daemon);
}

#[tokio::test]
async fn sqlite_soak_under_repeated_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("soak.db").display());
    soak(&url, dir.path()).await;
}

#[tokio::test]
async fn postgres_soak_under_repeated_sigkill() {
    let pg = common::pg::PgTestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    soak(&pg.url, dir.path()).await;
    pg.drop_db().await;
}

fn sigterm(d: &Daemon) {
    let pid = d.child.id().unwrap().to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(ok.success());
}

async fn in_flight(metrics: SocketAddr) -> f64 {
    let text = String::from_utf8(
        request(metrics, "GET", "/metrics", &[], b"")
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("megatorrent_http_requests_in_flight "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn sigterm_turns_readiness_off_then_drains_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut env = common::server::RELAXED_LIMITS_ENV.to_vec();
    env.push(("MEGATORRENT_HTTP__SHUTDOWN_DELAY_SECS", "3"));
    env.push(("MEGATORRENT_HTTP__SHUTDOWN_GRACE_SECS", "30"));
    let mut d = spawn_daemon_with(&url, dir.path(), &env).await;
    let maddr = d.metrics_addr.unwrap();

    // A publish whose body is only half sent: in flight when SIGTERM arrives.
    let m = manifest(&SigningKey::from_bytes(&[7; 32]), 1);
    let body = m.canonical_bytes();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    let head = format!(
        "PUT /v1/manifests/{} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        m.public_key(),
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(first).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while in_flight(maddr).await < 1.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the request never started");

    sigterm(&d);
    // Readiness fails first, while the listener still answers.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let r = request(d.addr, "GET", "/readyz", &[], b"")
                .await
                .expect("the listener closed before readiness was seen failing");
            if r.status == 503 {
                break;
            }
            assert_eq!(r.status, 200);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("readiness never turned false");

    // The in-flight request completes during the drain.
    s.write_all(rest).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("no response during the drain")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");

    let exit = tokio::time::timeout(Duration::from_secs(30), d.child.wait())
        .await
        .expect("no exit after the drain")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // And the drained write is durable.
    let d2 = spawn_daemon(&url, dir.path()).await;
    let r = request(
        d2.addr,
        "GET",
        &format!("/v1/manifests/{}", m.public_key()),
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(r.body, body);
}
