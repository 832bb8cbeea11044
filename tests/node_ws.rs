//! The reference JavaScript message shapes over our WebSocket, driven by Node (npm `ws` +
//! `crypto`): manifest publish/subscribe and the WebTorrent offer/answer relay. Needs `node`
//! and `npm` on PATH (scripts/test installs them and runs `npm ci` in tests/node): missing
//! is a failure, never a skip.
#![cfg(all(feature = "server", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Install the locked npm packages once per test binary if scripts/test has not.
fn ensure_packages() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if node_dir().join("node_modules/ws/package.json").is_file() {
            return;
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(node_dir())
            .output()
            .expect("`npm` must be installed to run the Node tests (scripts/test installs it)");
        assert!(
            out.status.success(),
            "npm ci in tests/node failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

fn run_script(url: &str) -> serde_json::Value {
    ensure_packages();
    let out = Command::new("node")
        .arg(node_dir().join("ws.mjs"))
        .arg(url)
        .output()
        .expect("`node` must be installed to run the Node tests (scripts/test installs it)");
    assert!(
        out.status.success(),
        "node ws.mjs failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn check(server: common::server::TestServer) {
    let url = server.url.clone();
    let v = tokio::task::spawn_blocking(move || run_script(&url))
        .await
        .unwrap();
    assert_eq!(v["ok"], true);
    server.stop().await;
}

#[tokio::test]
async fn reference_shapes_over_websocket_on_sqlite() {
    check(common::server::start_sqlite().await).await;
}

#[tokio::test]
async fn reference_shapes_over_websocket_on_postgres() {
    check(common::server::start_pg().await).await;
}
