//! `megatorrent-bench` against a real in-process server: `populate`, then the `mixed` soak
//! blend, whose every kind of request must succeed and whose publishes must reach the
//! WebSocket subscribers of their keys. Nothing here is timed: the figures are checked for
//! counts only (BENCHMARKS.md has the measurements).
#![cfg(all(
    feature = "bench",
    feature = "server",
    feature = "sqlite",
    feature = "postgres"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use serde_json::Value;

use common::server::TestServer;

fn bench(server: &TestServer, args: &[&str], json: &Path) -> Value {
    let udp = server.udp_addr.unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_megatorrent-bench"))
        .args(["--target", &server.url, "--udp-target", &udp, "--json"])
        .arg(json)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

async fn soak(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let populated = bench(
        &server,
        &[
            "populate",
            "--identities",
            "40",
            "--concurrency",
            "4",
            "--seed",
            "7",
        ],
        &dir.path().join("populate.json"),
    );
    assert_eq!(populated["runs"][0]["ok"], 40, "{populated}");

    let report = bench(
        &server,
        &[
            "mixed",
            "--identities",
            "40",
            "--seed",
            "7",
            "--concurrency",
            "4",
            "--subscribers",
            "60",
            "--sources",
            "2",
            "--duration",
            "2",
            "--runs",
            "2",
            "--torrents",
            "20",
            "--peers",
            "10",
        ],
        &dir.path().join("mixed.json"),
    );
    assert_eq!(report["extra"]["subscribers_ready"], 60, "{report}");
    let kinds = report["by_kind"].as_object().unwrap();
    let names: Vec<&str> = kinds.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["announce-http", "announce-udp", "lookup", "publish"],
        "{report}"
    );
    for (kind, runs) in kinds {
        let runs = runs.as_array().unwrap();
        assert_eq!(runs.len(), 2, "{kind}: {report}");
        for run in runs {
            assert!(run["ok"].as_u64().unwrap() > 0, "{kind}: {run}");
            assert_eq!(run["errors"], 0, "{kind}: {run}");
        }
    }
    // The totals are the sum of the kinds.
    for (i, run) in report["runs"].as_array().unwrap().iter().enumerate() {
        let sum: u64 = kinds.values().map(|r| r[i]["ok"].as_u64().unwrap()).sum();
        assert_eq!(run["ok"].as_u64().unwrap(), sum, "{report}");
    }
    // 60 subscribers over 40 keys: each successful publish is pushed to one or two of them.
    for pushes in report["extra"]["pushes"].as_array().unwrap() {
        let expected = pushes["expected"].as_u64().unwrap();
        assert!(expected > 0, "{pushes}");
        assert_eq!(pushes["received"].as_u64().unwrap(), expected, "{pushes}");
        assert_eq!(pushes["subscribers_closed"], 0, "{pushes}");
    }
    // What the server stored is what the last publishes sent: a lookup of every key works.
    let lookups = bench(
        &server,
        &[
            "lookup",
            "--identities",
            "40",
            "--seed",
            "7",
            "--concurrency",
            "2",
            "--duration",
            "1",
            "--runs",
            "1",
        ],
        &dir.path().join("lookup.json"),
    );
    assert_eq!(lookups["runs"][0]["errors"], 0, "{lookups}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mixed_soak_blend_succeeds_on_sqlite() {
    soak(common::server::start_sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mixed_soak_blend_succeeds_on_postgres() {
    soak(common::server::start_pg().await).await;
}

#[test]
fn a_bad_mix_is_refused_with_a_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_megatorrent-bench"))
        .args(["mixed", "--mix", "lookup=1,fetch=2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"fetch\": unknown kind"), "{err}");
}
