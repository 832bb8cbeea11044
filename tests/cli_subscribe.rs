//! `megatorrent subscribe` and `publish --ws` (the real binary) against an in-process
//! server that is restarted on the same port mid-way: the subscriber reconnects and prints
//! every manifest exactly once, in order, each verified.
#![cfg(all(feature = "client", feature = "server", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use megatorrent::proto::{Manifest, ManifestLimits};
use megatorrent::server::{self, AppState, Listeners};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// A server on a given SQLite file that can be stopped and started again on its port.
struct Srv {
    addr: SocketAddr,
    state: AppState,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), server::ServerError>>,
}

async fn start(db: &Path, addr: Option<SocketAddr>) -> Srv {
    let mut cfg = common::server::test_config();
    cfg.database.url = format!("sqlite://{}", db.display());
    let listener = match addr {
        None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Some(a) => {
            // The old listener is closed; the port is free again (SO_REUSEADDR is set).
            let mut tries = 0;
            loop {
                match TcpListener::bind(a).await {
                    Ok(l) => break l,
                    Err(e) => {
                        tries += 1;
                        assert!(tries < 100, "cannot rebind {a}: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    };
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(server::open_store(&cfg).await.unwrap(), cfg);
    let token = CancellationToken::new();
    let handle = tokio::spawn(server::serve(
        state.clone(),
        Listeners::http_only(listener),
        token.clone(),
    ));
    common::server::wait_ready(addr).await;
    Srv {
        addr,
        state,
        token,
        handle,
    }
}

impl Srv {
    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    async fn wait_subscribed(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.state.pubsub().stats().subscriptions < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "subscriber never subscribed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn mt(home: &Path, server: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_megatorrent"));
    c.env("MEGATORRENT_HOME", home)
        .env("MEGATORRENT_SERVER", server)
        .env_remove("MEGATORRENT_TIMEOUT")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn run_ok(cmd: &mut Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("no line from subscribe in time")
        .unwrap()
        .expect("subscribe ended early")
}

const M: [&str; 3] = [
    "magnet:?xt=urn:btih:1111111111111111111111111111111111111111",
    "magnet:?xt=urn:btih:2222222222222222222222222222222222222222",
    "magnet:?xt=urn:btih:3333333333333333333333333333333333333333",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_prints_each_verified_manifest_once_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("s.db");
    let home = tmp.path().join("home");
    let srv = start(&db, None).await;
    let url = format!("http://{}", srv.addr);
    let key = run_ok(mt(&home, &url).arg("keygen")).await;

    let mut child = mt(&tmp.path().join("follower"), &url)
        .args([
            "subscribe",
            "--json",
            "--count",
            "3",
            "--max-time",
            "90",
            &key,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    srv.wait_subscribed(1).await;

    assert_eq!(
        run_ok(mt(&home, &url).args(["publish", "--title", "t", M[0]])).await,
        "1"
    );
    assert_eq!(
        run_ok(mt(&home, &url).args(["publish", "--ws", "--title", "t", M[1]])).await,
        "2"
    );
    let mut got = vec![next_line(&mut lines).await, next_line(&mut lines).await];

    // Restart the server on the same port: the subscriber reconnects, is sent the current
    // manifest (2) again, and must not print it twice.
    srv.stop().await;
    let srv = start(
        &db,
        Some(url.trim_start_matches("http://").parse().unwrap()),
    )
    .await;
    srv.wait_subscribed(1).await;
    assert_eq!(
        run_ok(mt(&home, &url).args(["publish", "--ws", "--title", "t", M[2]])).await,
        "3"
    );
    got.push(next_line(&mut lines).await);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert_eq!(lines.next_line().await.unwrap(), None, "no extra output");

    let limits = ManifestLimits::default();
    for (i, line) in got.iter().enumerate() {
        let m = Manifest::verify(line.as_bytes(), &limits).unwrap();
        assert_eq!(m.public_key().to_hex(), key);
        assert_eq!(m.sequence(), u64::try_from(i).unwrap() + 1);
        assert_eq!(m.items("t"), &M[..=i]);
    }
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("reconnecting"), "{stderr}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_rejects_bad_keys_and_reports_missing_manifests_by_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(&tmp.path().join("s.db"), None).await;
    let url = format!("http://{}", srv.addr);
    for (bad, why) in [
        ("0nothex", "error: invalid public key"),
        (&"ab".repeat(31), "error: invalid public key"),
        // A word that could be a contact's name but is not one.
        ("nothex", "error: no contact named \"nothex\""),
    ] {
        let out = mt(tmp.path(), &url)
            .args(["subscribe", bad])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with(why), "{err}");
    }
    let key = run_ok(mt(&tmp.path().join("h"), &url).arg("keygen")).await;
    let out = mt(tmp.path(), &url)
        .args(["subscribe", "--count", "1", "--max-time", "1", &key])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("only 0 of 1 manifests arrived"), "{err}");
    srv.stop().await;
}
