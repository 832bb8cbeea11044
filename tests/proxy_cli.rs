//! `megatorrent` with `--proxy` pointing at a closed port: every command fails fast with
//! "proxy unreachable" and nothing connects anywhere else (a listening server at the
//! `--server` address counts connections and must see none).
#![cfg(feature = "client")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Run `megatorrent PRE… ARGS…` in `home` with none of the network settings coming from the
/// environment, stdin closed; fails the test if it runs for over a minute.
async fn run_isolated(home: &std::path::Path, pre: &[&str], args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_megatorrent"))
        .args(pre)
        .args(args)
        .env("MEGATORRENT_HOME", home)
        .env_remove("MEGATORRENT_PROXY")
        .env_remove("MEGATORRENT_SERVER")
        .env_remove("MEGATORRENT_TOR")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("megatorrent hung instead of failing fast")
        .unwrap()
}

#[tokio::test]
async fn closed_proxy_fails_every_command_without_direct_connections() {
    // A server the client would reach if it ever fell back to a direct connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let direct_port = listener.local_addr().unwrap().port();

    let home = tempfile::tempdir().unwrap();
    let proxy = format!("socks5h://127.0.0.1:{}", closed_port());
    let key = "ab".repeat(32);
    let servers = [
        format!("http://127.0.0.1:{direct_port}"),
        format!("http://localhost:{direct_port}"),
        format!("http://{}.onion", "a".repeat(56)),
    ];
    let commands: [&[&str]; 4] = [
        &["keygen"],
        &["whoami"],
        &["publish", "--title", "t", "magnet:?xt=urn:btih:aa"],
        &["lookup", &key],
    ];
    for server in &servers {
        for args in commands {
            for via_env in [false, true] {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_megatorrent"));
                if via_env {
                    cmd.env("MEGATORRENT_PROXY", &proxy);
                } else {
                    cmd.args(["--proxy", &proxy]);
                    cmd.env_remove("MEGATORRENT_PROXY");
                }
                cmd.args(["--server", server])
                    .args(args)
                    .env("MEGATORRENT_HOME", home.path())
                    .env_remove("MEGATORRENT_SERVER")
                    .env_remove("MEGATORRENT_TOR")
                    .stdin(Stdio::null())
                    .kill_on_drop(true);
                let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
                    .await
                    .expect("megatorrent hung instead of failing fast")
                    .unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
                assert!(out.stdout.is_empty(), "{args:?}");
                assert!(
                    stderr.starts_with("error: proxy unreachable"),
                    "{args:?}: {stderr}"
                );
            }
        }
    }
    // Nothing was created: keygen refused to run before touching the home directory.
    assert!(!home.path().join("identity.key").exists());

    // A connection made at any point would be waiting in the accept queue.
    let pending = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(pending.is_err(), "a direct connection was made");
}

/// The commands that need an identity (and the torrent and channel commands) fail fast the
/// same way, in a home that has one (made without a proxy: keygen alone makes no
/// connection), and connect nowhere else.
#[cfg(feature = "torrent")]
#[tokio::test]
async fn closed_proxy_fails_identity_commands_too() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let proxy = format!("socks5h://127.0.0.1:{}", closed_port());
    let key = "ab".repeat(32);
    let id_home = tempfile::tempdir().unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_megatorrent"))
        .arg("keygen")
        .env("MEGATORRENT_HOME", id_home.path())
        .env_remove("MEGATORRENT_PROXY")
        .env_remove("MEGATORRENT_TOR")
        .output()
        .await
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let onion = megatorrent::proto::tracker::OnionName::from_public_key(&[7; 32]).to_string();
    let with_identity: [&[&str]; 11] = [
        &["subscribe", &key],
        &["find", &key],
        &["share", "--onion-address", &onion, "hi"],
        &["seed", "--onion-address", &onion],
        &["send", &key, "hi"],
        &["inbox"],
        &["profile", "get", &key],
        &["profile", "set", "--name", "n"],
        &["channel", "create", "c", "--private"],
        &["share", "--channel", "c", "--onion-address", &onion, "hi"],
        &["channel", "invite", "c", &key],
    ];
    for args in with_identity {
        let out = run_isolated(
            id_home.path(),
            &["--proxy", &proxy, "--server", &server],
            args,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: proxy unreachable"),
            "{args:?}: {stderr}"
        );
    }
    let pending = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(pending.is_err(), "a direct connection was made");
}

/// `share`, `find` and `seed` check their peer-network flags against the network mode
/// before anything is signed, written, bootstrapped or dialled: one-line errors, exit 1.
#[cfg(all(feature = "torrent", feature = "tor"))]
#[tokio::test]
async fn torrent_commands_check_peer_flags_before_any_network_use() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let home = tempfile::tempdir().unwrap();
    let onion = megatorrent::proto::tracker::OnionName::from_public_key(&[7; 32]).to_string();
    let key = "ab".repeat(32);
    let cases: [(&[&str], &str); 8] = [
        (
            &["share", "--onion-address", &onion, "hi"],
            "need --proxy or --tor",
        ),
        (
            &["share", "--onion-service", "hi"],
            "--onion-service needs --tor",
        ),
        (&["--tor", "share", "hi"], "seeding needs an onion service"),
        (&["--tor", "seed"], "seeding needs an onion service"),
        (
            &["--tor", "seed", "--onion-port", "80"],
            "--onion-port needs",
        ),
        (
            &["--tor", "share", "--onion-address", "nope.onion", "hi"],
            "not a v3 onion address",
        ),
        (
            &["--tor", "find", "--listen", "0.0.0.0:0", &key],
            "must bind a loopback address",
        ),
        (
            &[
                "--tor",
                "share",
                "--onion-hostname-file",
                "/nonexistent/hostname",
                "hi",
            ],
            "cannot read /nonexistent/hostname",
        ),
    ];
    for (args, wanted) in cases {
        let out = run_isolated(home.path(), &["--server", &server], args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
    }
    // Nothing was written or bootstrapped, and nothing connected.
    assert!(!home.path().join("messages").exists());
    assert!(!home.path().join("arti").exists());
    let pending = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(pending.is_err(), "a connection was made");
}
