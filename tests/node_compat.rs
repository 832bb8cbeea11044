//! The reference JavaScript signing (Node's `crypto` + sorted-key `JSON.stringify`) and the
//! proof of concept's pointer announce work against our server, and our CLI verifies what a
//! Node client published. Needs `node` on PATH (scripts/test installs it): missing is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

fn node_compat(url: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/compat.mjs");
    let out = Command::new("node").arg(script).arg(url).output().expect(
        "`node` must be installed to run the compatibility tests (scripts/test installs it)",
    );
    assert!(
        out.status.success(),
        "node compat script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    v["publicKey"].as_str().unwrap().to_owned()
}

fn cli_lookup_json(url: &str, key: &str) -> Vec<u8> {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_megatorrent"))
        .args(["--server", url, "--home"])
        .arg(home.path())
        .args(["lookup", "--json", key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lookup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn check(server: &common::server::TestServer) {
    let url = server.url.clone();
    let key = tokio::task::spawn_blocking(move || node_compat(&url))
        .await
        .unwrap();
    let url = server.url.clone();
    let k = key.clone();
    let printed = tokio::task::spawn_blocking(move || cli_lookup_json(&url, &k))
        .await
        .unwrap();
    let served = common::http::request(
        server.addr,
        "GET",
        &format!("/v1/manifests/{key}"),
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8(printed).unwrap().trim(),
        String::from_utf8(served.body).unwrap().trim()
    );
}

#[tokio::test]
async fn node_client_against_sqlite() {
    let server = common::server::start_sqlite().await;
    check(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn node_client_against_postgres() {
    let server = common::server::start_pg().await;
    check(&server).await;
    server.stop().await;
}
