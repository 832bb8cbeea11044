//! Two real WebTorrent peers — the npm `webtorrent` browser bundle in two pages of headless
//! Chromium (Debian's `chromium`, driven by npm `playwright-core`) — exchange a 256 KiB file
//! through our WebSocket tracker, which is their only tracker (no DHT, LSD, PEX, web seeds
//! or STUN). `tests/node/webtorrent-browser.mjs` does the browser side and checks the
//! SHA-256, that the file came over a WebRTC data channel on this machine, and that each
//! page received its half of the offer/answer exchange over its socket to us; this test
//! also checks our own counters: the server relayed at least one offer and one answer.
//!
//! Needs `node`, the locked npm packages of tests/node and Chromium (`/usr/bin/chromium`,
//! or the path in `CHROMIUM`). scripts/test installs them; a missing one fails the test.
#![cfg(all(feature = "server", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::process::Command;

/// The whole browser run (Chromium start, seeding, download) must finish within this.
const TIMEOUT: Duration = Duration::from_secs(60);

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

fn chromium() -> PathBuf {
    let path =
        std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        path.is_file(),
        "Chromium is not installed at {} (set CHROMIUM, or run scripts/test as root: it installs the Debian package `chromium`)",
        path.display()
    );
    path
}

/// Install the locked npm packages once per test binary if scripts/test has not.
fn ensure_packages() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = node_dir();
        if dir
            .join("node_modules/webtorrent/dist/webtorrent.min.js")
            .is_file()
            && dir
                .join("node_modules/playwright-core/package.json")
                .is_file()
        {
            return;
        }
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("`npm` must be installed to run the browser test (scripts/test installs it)");
        assert!(
            out.status.success(),
            "npm ci in tests/node failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_peers_exchange_a_file_through_our_websocket_tracker() {
    let chromium = chromium();
    tokio::task::spawn_blocking(ensure_packages).await.unwrap();
    let server = common::server::start_sqlite().await;
    let tracker = format!("ws://{}/announce", server.addr);
    assert!(tracker.starts_with("ws://127.0.0.1:"), "{tracker}");
    let before = server.state.ws().swarms().relay_counts();

    let child = Command::new("node")
        .arg(node_dir().join("webtorrent-browser.mjs"))
        .arg(&tracker)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("`node` must be installed to run the browser test (scripts/test installs it)");
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("webtorrent-browser.mjs did not finish within {TIMEOUT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "webtorrent-browser.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("unexpected output ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["bytes"], 256 * 1024, "{report}");
    assert!(
        report["wires"]
            .as_array()
            .is_some_and(|w| !w.is_empty() && w.iter().all(|w| w["type"] == "webrtc")),
        "{report}"
    );

    // Our server relayed the offer that connected the peers and the answer to it.
    let after = server.state.ws().swarms().relay_counts();
    assert!(
        after.offers > before.offers && after.answers > before.answers,
        "the tracker relayed no offer/answer pair: before {before:?}, after {after:?}"
    );
    server.stop().await;
}
