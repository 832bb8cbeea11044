//! The Prometheus exposition on the private metrics listener: valid per `promtool`, counting
//! a scripted workload, and free of keys, addresses and info-hashes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::http::request;
use ed25519_dalek::{Signer, SigningKey};
use megatorrent::proto::{Collection, Manifest, UnsignedManifest};

fn manifest(key: &SigningKey, seq: u64) -> Manifest {
    UnsignedManifest {
        sequence: seq,
        timestamp: u64::try_from(megatorrent::now_ms()).unwrap(),
        collections: vec![Collection {
            title: "t".into(),
            items: vec![format!("magnet:?xt=urn:btih:{}", "c".repeat(40))],
        }],
    }
    .sign(key)
    .unwrap()
}

/// The value of the sample `series` (exact name and labels) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Run `promtool check metrics` on `text`. promtool is required: CI installs it
/// (Debian package `prometheus`), and a missing tool fails the test.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (Debian package `prometheus`; scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn scrape(server: &common::server::TestServer) -> String {
    let r = request(server.metrics_addr, "GET", "/metrics", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    String::from_utf8(r.body).unwrap()
}

#[tokio::test]
async fn exposition_is_valid_counts_the_workload_and_leaks_nothing() {
    let server = common::server::start_sqlite().await;
    let key = SigningKey::from_bytes(&[3; 32]);
    let hex_key = hex::encode(key.verifying_key().as_bytes());
    let path = format!("/v1/manifests/{hex_key}");
    let put = |body: Vec<u8>| {
        let path = path.clone();
        async move {
            request(server.addr, "PUT", &path, &[], &body)
                .await
                .unwrap()
        }
    };

    // The scripted workload.
    assert_eq!(
        put(manifest(&key, 1).canonical_bytes().to_vec())
            .await
            .status,
        201
    );
    assert_eq!(
        put(manifest(&key, 2).canonical_bytes().to_vec())
            .await
            .status,
        200
    );
    let m3 = manifest(&key, 3);
    assert_eq!(put(m3.canonical_bytes().to_vec()).await.status, 200);
    assert_eq!(put(m3.canonical_bytes().to_vec()).await.status, 200); // unchanged
    assert_eq!(
        put(manifest(&key, 1).canonical_bytes().to_vec())
            .await
            .status,
        409
    );
    assert_eq!(put(b"{not json".to_vec()).await.status, 400);
    assert_eq!(
        request(server.addr, "GET", &path, &[], b"")
            .await
            .unwrap()
            .status,
        200
    );
    let missing = format!("/v1/manifests/{}", "ab".repeat(32));
    assert_eq!(
        request(server.addr, "GET", &missing, &[], b"")
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        request(server.addr, "GET", "/nowhere/at/all", &[], b"")
            .await
            .unwrap()
            .status,
        404
    );

    // A proof-of-concept pointer with an info-hash that must never show up.
    let infohash = "d".repeat(40);
    let signed = format!(r#"{{"publicKey":"{hex_key}","manifestInfohash":"{infohash}","seq":1}}"#);
    let sig = hex::encode(key.sign(signed.as_bytes()).to_bytes());
    let announce = format!(
        r#"{{"publicKey":"{hex_key}","manifestInfohash":"{infohash}","seq":1,"signature":"{sig}"}}"#
    );
    let r = request(server.addr, "POST", "/announce", &[], announce.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // A WebSocket that subscribes, receives a pushed publish and closes; an HTTP tracker
    // announce (started) and scrape.
    let mut sub = common::ws::connect(server.addr, "/").await;
    sub.send(&serde_json::json!({"action": "subscribe", "keys": [hex_key]}))
        .await;
    let mut got_ok = false;
    while !got_ok {
        let v = sub.recv().await;
        got_ok = v["action"] == "subscribe" && v["status"] == "ok";
    }
    let mut publisher = common::ws::connect(server.addr, "/").await;
    publisher
        .send_text(&common::ws::publish_frame(&manifest(&key, 4)))
        .await;
    let reply = publisher.recv().await;
    assert_eq!(reply["status"], "ok", "{reply}");
    loop {
        let v = sub.recv().await;
        if v["action"] == "publish" {
            break;
        }
    }
    sub.close().await;
    publisher.close().await;
    let tracker_ih = "%aa".repeat(20);
    let q = format!(
        "/announce?info_hash={tracker_ih}&peer_id={}&port=6881&uploaded=0&downloaded=0&left=5&event=started&compact=1",
        "-MT0001-".to_owned() + &"1".repeat(12)
    );
    let r = request(server.addr, "GET", &q, &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    let r = request(
        server.addr,
        "GET",
        &format!("/scrape?info_hash={tracker_ih}"),
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    // The socket close is counted when its task ends; give it a moment.
    let mut text = scrape(&server).await;
    for _ in 0..50 {
        if sample(&text, "megatorrent_ws_disconnects_total{reason=\"client\"}") >= 2.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        text = scrape(&server).await;
    }
    promtool_check(&text);
    assert_eq!(
        sample(
            &text,
            "megatorrent_tracker_announces_total{protocol=\"http\",event=\"started\",result=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "megatorrent_tracker_announces_total{protocol=\"udp\",event=\"completed\",result=\"error\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "megatorrent_tracker_scrapes_total{protocol=\"http\",result=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(sample(&text, "megatorrent_tracker_torrents"), 1.0);
    assert_eq!(
        sample(&text, "megatorrent_tracker_peers{kind=\"leecher\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "megatorrent_ws_disconnects_total{reason=\"client\"}"),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "megatorrent_ws_disconnects_total{reason=\"slow_client\"}"
        ),
        0.0
    );
    assert_eq!(sample(&text, "megatorrent_ws_connections"), 0.0);
    assert!(sample(&text, "megatorrent_ws_pushes_total") >= 1.0);
    assert_eq!(sample(&text, "megatorrent_ws_slow_client_drops_total"), 0.0);

    let pubs = |kind: &str, result: &str| {
        sample(
            &text,
            &format!("megatorrent_publishes_total{{kind=\"{kind}\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(pubs("manifest", "created"), 1.0);
    assert_eq!(pubs("manifest", "updated"), 3.0); // two over HTTP, one over WebSocket
    assert_eq!(pubs("manifest", "unchanged"), 1.0);
    assert_eq!(pubs("manifest", "conflict"), 1.0);
    assert_eq!(pubs("manifest", "invalid"), 1.0);
    assert_eq!(pubs("manifest", "rate_limited"), 0.0);
    assert_eq!(pubs("pointer", "created"), 1.0);
    let route = |route: &str, method: &str, status: &str| {
        sample(
            &text,
            &format!(
                "megatorrent_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(route("/v1/manifests/{key}", "PUT", "2xx"), 4.0);
    assert_eq!(route("/v1/manifests/{key}", "PUT", "4xx"), 2.0);
    assert_eq!(route("/v1/manifests/{key}", "GET", "2xx"), 1.0);
    assert_eq!(route("/v1/manifests/{key}", "GET", "4xx"), 1.0);
    assert_eq!(route("unmatched", "GET", "4xx"), 1.0);
    assert!(route("/readyz", "GET", "2xx") >= 1.0);
    assert!(
        sample(&text, "megatorrent_http_request_duration_seconds_count{method=\"PUT\",route=\"/v1/manifests/{key}\"}")
            >= 6.0
    );
    assert!(text.contains("megatorrent_http_request_duration_seconds_bucket{method=\"PUT\",route=\"/v1/manifests/{key}\",le=\"0.0001\"}"));
    assert!(
        sample(
            &text,
            "megatorrent_db_query_duration_seconds_count{operation=\"put_manifest\"}"
        ) >= 5.0
    );
    assert!(
        sample(
            &text,
            "megatorrent_db_query_duration_seconds_count{operation=\"put_pointer\"}"
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &text,
            "megatorrent_db_errors_total{operation=\"put_manifest\"}"
        ),
        0.0
    );
    assert!(sample(&text, "megatorrent_db_pool_connections{state=\"max\"}") >= 1.0);
    assert!(
        sample(
            &text,
            "megatorrent_connections_accepted_total{listener=\"http\"}"
        ) >= 10.0
    );
    assert_eq!(
        sample(&text, "megatorrent_rate_limited_total{limiter=\"read\"}"),
        0.0
    );
    assert_eq!(sample(&text, "megatorrent_pow_difficulty"), 0.0);
    let version = format!(
        "megatorrent_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &version), 1.0);
    assert!(
        text.contains("process_resident_memory_bytes"),
        "process metrics missing"
    );

    // Nothing identifying: no key (either case), no address, no info-hash, no raw path.
    let lower = text.to_ascii_lowercase();
    for secret in [
        hex_key.as_str(),
        &infohash,
        "ab".repeat(32).as_str(),
        "127.0.0.1",
        "nowhere",
    ] {
        assert!(!lower.contains(secret), "exposition contains {secret}");
    }
    // The public listener does not serve metrics.
    let r = request(server.addr, "GET", "/metrics", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn the_daemon_serves_metrics_on_its_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let d = common::server::spawn_daemon(&url, dir.path()).await;
    let maddr = d.metrics_addr.expect("metrics listener announced");
    assert_ne!(maddr, d.addr);
    let r = request(maddr, "GET", "/metrics", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    promtool_check(&text);
    assert!(text.contains(
        "megatorrent_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"2xx\"}"
    ));
}

/// Every `megatorrent_*` series the shipped Grafana dashboard, the example alerts and the
/// metrics reference use exists in the exposition, so they never silently chart nothing.
#[tokio::test]
async fn dashboards_alerts_and_docs_name_only_real_metrics() {
    let server = common::server::start_sqlite().await;
    // The identity and mailbox gauges appear once their first counts (at start-up) finish.
    let mut text = scrape(&server).await;
    for _ in 0..200 {
        if text.contains("# TYPE megatorrent_identities ")
            && text.contains("# TYPE megatorrent_mailbox_messages ")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        text = scrape(&server).await;
    }
    let families: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["docs/grafana/megatorrent.json", "docs/operations.md"] {
        let body = std::fs::read_to_string(root.join(doc)).unwrap();
        let mut names = Vec::new();
        let mut rest = body.as_str();
        while let Some(i) = rest.find("megatorrent_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.push(&tail[..end]);
            rest = &tail[end..];
        }
        assert!(names.len() > 10, "{doc}: too few metric names found");
        for name in names {
            // Histogram series and bare prefixes in prose.
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            if family == "megatorrent_" || family.ends_with('_') {
                continue;
            }
            assert!(
                families.contains(family),
                "{doc} names {name}, which /metrics does not export"
            );
        }
    }
    server.stop().await;
}
