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
