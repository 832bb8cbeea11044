//! The `megatorrentd` command line: printed defaults validate, bad configs are refused with
//! a reason and a non-zero exit, and a bare start creates its SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

fn daemon() -> Command {
    let mut c = Command::new(common::server::daemon_bin());
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("MEGATORRENT_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn printed_defaults_pass_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = daemon().arg("--print-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"0.0.0.0:6969\""), "{text}");
    assert!(text.contains("url = \"sqlite://megatorrent.db\""), "{text}");
    let path = dir.path().join("defaults.toml");
    std::fs::write(&path, text).unwrap();
    let out = daemon().arg("--check-config").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_configs_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[http]\nlisten = \"127.0.0.1:1\"\nbogus = 2\n", "bogus"),
        ("[limits]\nmax_manifest_bytes = 3\n", "max_manifest_bytes"),
        ("[database]\nurl = \"mysql://x\"\n", "database.url"),
        ("not toml at all [", "TOML"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = daemon().arg("--check-config").arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text} was accepted");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{text}: {err}"
        );
    }
    let out = daemon()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = daemon()
        .arg("--print-config")
        .env("MEGATORRENT_HTTP__BOGUS", "1")
        .output()
        .unwrap();
    // --print-config shows defaults and does not read the environment.
    assert!(out.status.success());
}

#[tokio::test]
async fn bare_start_creates_the_sqlite_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = common::server::spawn_daemon("sqlite://megatorrent.db", dir.path()).await;
    assert!(dir.path().join("megatorrent.db").exists());
    let pid = d.child.id().unwrap().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(std::time::Duration::from_secs(15), d.child.wait())
        .await
        .expect("no exit within 15 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

fn announce_path(ih: u8, passkey: Option<&str>) -> String {
    use megatorrent::proto::tracker::{AnnounceEvent, AnnounceRequest, PeerId};
    let req = AnnounceRequest {
        info_hash: megatorrent::proto::InfoHash::from([ih; 20]),
        peer_id: PeerId::from([1; 20]),
        port: 4000,
        uploaded: 0,
        downloaded: 0,
        left: Some(1),
        event: AnnounceEvent::Started,
        compact: true,
        no_peer_id: false,
        numwant: None,
        key: None,
        tracker_id: None,
        ip: None,
    };
    let mut q = Vec::new();
    req.write_query(&mut q);
    let q = String::from_utf8(q).unwrap();
    match passkey {
        Some(pk) => format!("/announce/{pk}?{q}"),
        None => format!("/announce?{q}"),
    }
}

/// `None` on success, the failure reason otherwise.
async fn announce_failure(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use megatorrent::proto::tracker::AnnounceReply;
    let resp = common::http::request(addr, "GET", path, &[], b"")
        .await
        .unwrap();
    match AnnounceReply::parse(&resp.body).unwrap() {
        AnnounceReply::Success(_) => None,
        AnnounceReply::Failure(f) => Some(f),
    }
}

#[tokio::test]
async fn passkey_subcommands_manage_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let run = |args: &[&str]| {
        daemon()
            .env("MEGATORRENT_DATABASE__URL", &url)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["passkey", "add"]);
    assert!(out.status.success(), "{out:?}");
    let generated = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(generated.len(), 32);
    let out = run(&["passkey", "add", "my-own-passkey-0001"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "my-own-passkey-0001\n"
    );
    let out = run(&["passkey", "add", "short"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("16 to 64"));
    let out = run(&["passkey", "list"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    let mut expected = vec![generated.clone(), "my-own-passkey-0001".to_owned()];
    expected.sort();
    assert_eq!(listed.lines().collect::<Vec<_>>(), expected);
    assert!(run(&["passkey", "remove", "my-own-passkey-0001"])
        .status
        .success());
    let out = run(&["passkey", "remove", "my-own-passkey-0001"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such passkey"));

    let d = common::server::spawn_daemon_with(
        &url,
        dir.path(),
        &[("MEGATORRENT_TRACKER__PRIVATE", "true")],
    )
    .await;
    assert_eq!(
        announce_failure(d.addr, &announce_path(1, Some(&generated))).await,
        None
    );
    let f = announce_failure(d.addr, &announce_path(1, None))
        .await
        .unwrap();
    assert!(f.contains("passkey"), "{f}");
    let f = announce_failure(d.addr, &announce_path(1, Some("my-own-passkey-0001")))
        .await
        .unwrap();
    assert_eq!(f, "unknown passkey");
}

#[tokio::test]
async fn sighup_reloads_the_access_list() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("allow.txt");
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let list_env = list.display().to_string();
    let env = [
        ("MEGATORRENT_TRACKER__ACCESS", "allowlist"),
        ("MEGATORRENT_TRACKER__ACCESS_LIST_FILE", list_env.as_str()),
    ];
    // A missing list is a start-up error, not an open tracker.
    let out = daemon()
        .env("MEGATORRENT_DATABASE__URL", &url)
        .env("MEGATORRENT_HTTP__LISTEN", "127.0.0.1:0")
        .env("MEGATORRENT_UDP__LISTEN", "127.0.0.1:0")
        .envs(env)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("access list"));

    std::fs::write(&list, format!("{}\n", hex::encode([1u8; 20]))).unwrap();
    let d = common::server::spawn_daemon_with(&url, dir.path(), &env).await;
    assert_eq!(
        announce_failure(d.addr, &announce_path(1, None)).await,
        None
    );
    let refused = announce_failure(d.addr, &announce_path(2, None)).await;
    assert_eq!(
        refused.as_deref(),
        Some("torrent not allowed on this tracker")
    );

    let hup = |pid: String| {
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
    };
    let pid = d.child.id().unwrap().to_string();
    std::fs::write(&list, format!("# now 2\n{}\n", hex::encode([2u8; 20]))).unwrap();
    hup(pid.clone());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while announce_failure(d.addr, &announce_path(2, None))
        .await
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(announce_failure(d.addr, &announce_path(1, None))
        .await
        .is_some());

    // A broken list is rejected on reload; the previous one stays in force.
    std::fs::write(&list, "not a hash\n").unwrap();
    hup(pid);
    for _ in 0..5 {
        assert_eq!(
            announce_failure(d.addr, &announce_path(2, None)).await,
            None
        );
    }
}
