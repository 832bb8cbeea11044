//! Messages as torrents, end to end: a real in-process server on 127.0.0.1 and the real
//! `megatorrent` binary for every client home (separate processes, separate librqbit
//! sessions; peers found only through the server's tracker).
#![cfg(all(
    feature = "client",
    feature = "server",
    feature = "sqlite",
    feature = "torrent"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use megatorrent::proto::UnsignedMessage;
use tokio::process::Command;

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:?}");
        self.stdout.trim_end()
    }
}

/// Run `megatorrent ARGS` with `home` and `server` (120 s at most).
async fn mt(home: &Path, server: &str, args: &[&str]) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_megatorrent"))
        .args(args)
        .env("MEGATORRENT_HOME", home)
        .env("MEGATORRENT_SERVER", server)
        .env_remove("MEGATORRENT_TIMEOUT")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("megatorrent did not finish within 120 s")
        .expect("run megatorrent");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

const LISTEN: &[&str] = &["--listen", "127.0.0.1:0"];

async fn share(home: &Path, server: &str, text: &str) -> String {
    let mut args = vec!["share", "--detach", text];
    args.extend_from_slice(LISTEN);
    let run = mt(home, server, &args).await;
    let magnet = run.ok().to_owned();
    assert!(magnet.starts_with("magnet:?xt=urn:btih:"), "{run:?}");
    assert!(
        magnet.contains("/announce"),
        "our tracker is in the magnet: {magnet}"
    );
    assert!(!magnet.contains("udp"), "{magnet}");
    magnet
}

async fn find(home: &Path, server: &str, key: &str) -> Run {
    let mut args = vec!["find", key, "--fetch-timeout", "30"];
    args.extend_from_slice(LISTEN);
    mt(home, server, &args).await
}

/// Stop a home's background seeder (SIGTERM to the PID in `seed.pid`) and wait for it.
async fn stop_seeder(home: &Path) {
    let Ok(pid) = std::fs::read_to_string(home.join("seed.pid")) else {
        return;
    };
    let pid = pid.trim().to_owned();
    let _ = std::process::Command::new("kill").arg(&pid).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops every seeder even when an assertion fails.
struct Seeders(Vec<std::path::PathBuf>);

impl Drop for Seeders {
    fn drop(&mut self) {
        for home in &self.0 {
            if let Ok(pid) = std::fs::read_to_string(home.join("seed.pid")) {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_then_find_prints_verified_messages_in_order_and_rejects_bad_ones() {
    let server = common::server::start_sqlite().await;
    let url = server.url.clone();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b, c, x) = (
        dirs[0].path(),
        dirs[1].path(),
        dirs[2].path(),
        dirs[3].path(),
    );
    let _guard = Seeders(vec![a.to_owned(), b.to_owned(), x.to_owned()]);
    let key_a = mt(a, &url, &["keygen"]).await.ok().to_owned();
    mt(b, &url, &["keygen"]).await.ok();
    let key_x = mt(x, &url, &["keygen"]).await.ok().to_owned();

    for i in 1..=3 {
        share(a, &url, &format!("message {i}")).await;
    }
    let run = find(b, &url, &key_a).await;
    let out = lines(run.ok());
    assert_eq!(out.len(), 3, "{run:?}");
    for (i, line) in out.iter().enumerate() {
        assert!(line.ends_with(&format!("  message {}", i + 1)), "{run:?}");
    }

    // A second find uses what B already has.
    let again = find(b, &url, &key_a).await;
    assert_eq!(again.ok(), run.ok());

    // B seeds what it fetched; A stops and its message data is removed (the identity is
    // kept so A can publish below); C still gets all 3, from B.
    let mut seed_b = Command::new(env!("CARGO_BIN_EXE_megatorrent"))
        .args(["seed", "--listen", "127.0.0.1:0"])
        .env("MEGATORRENT_HOME", b)
        .env("MEGATORRENT_SERVER", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut ready = String::new();
    let mut reader = tokio::io::BufReader::new(seed_b.stdout.take().unwrap());
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut ready),
    )
    .await
    .expect("seed did not start within 60 s")
    .unwrap();
    assert!(ready.starts_with("seeding 3 torrents"), "{ready}");
    stop_seeder(a).await;
    std::fs::remove_dir_all(a.join("messages")).unwrap();
    let from_b = find(c, &url, &key_a).await;
    assert_eq!(from_b.ok(), run.ok(), "{from_b:?}");

    // A message signed by another key (X's, seeded by X) listed in A's feed.
    let foreign = share(x, &url, "not from A").await;
    mt(a, &url, &["publish", "--title", "messages", &foreign])
        .await
        .ok();

    // A valid torrent whose message has a wrong signature, seeded by X's seeder.
    let signed = UnsignedMessage {
        timestamp: 1,
        content: "genuine".into(),
    }
    .sign(&SigningKey::from_bytes(&[9; 32]))
    .unwrap();
    let tampered = String::from_utf8(signed.canonical_bytes().to_vec())
        .unwrap()
        .replace("genuine", "forged!");
    let file = x.join("messages").join("msg-tampered0000000.json");
    std::fs::write(&file, tampered).unwrap();
    let tracker = format!("{url}/announce");
    let magnet = megatorrent::client::seeder::magnet_of(&file, &tracker)
        .await
        .unwrap();
    mt(a, &url, &["publish", "--title", "messages", &magnet])
        .await
        .ok();

    let run = find(b, &url, &key_a).await;
    let out = lines(run.ok());
    assert_eq!(
        out.iter()
            .map(|l| l.split("  ").nth(1).unwrap())
            .collect::<Vec<_>>(),
        ["message 1", "message 2", "message 3"],
        "{run:?}"
    );
    let rejected: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("rejected message "))
        .collect();
    assert_eq!(rejected.len(), 2, "{run:?}");
    assert!(
        rejected
            .iter()
            .any(|l| l.contains("signature does not verify")),
        "{run:?}"
    );
    assert!(
        rejected
            .iter()
            .any(|l| l.contains(&key_x) && l.contains("not by the feed's key")),
        "{run:?}"
    );
    assert!(!run.stdout.contains("forged") && !run.stdout.contains("not from A"));

    // Bad input: an unknown key, and a server that is down.
    let unknown = hex::encode(SigningKey::from_bytes(&[42; 32]).verifying_key().to_bytes());
    let run = find(b, &url, &unknown).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("no such feed"), "{run:?}");
    assert!(run.stdout.is_empty());

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let started = Instant::now();
    let run = mt(b, &dead, &["--timeout", "5", "find", &key_a]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(20));

    stop_seeder(x).await;
    seed_b.kill().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn share_and_find_fail_cleanly_on_bad_input() {
    let server = common::server::start_sqlite().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // A corrupt identity file.
    std::fs::write(h.join("identity.key"), b"not a key").unwrap();
    std::fs::set_permissions(
        h.join("identity.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let run = mt(h, &server.url, &["share", "--listen", "127.0.0.1:0", "hi"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    assert!(!h.join("messages").exists(), "nothing written: {run:?}");
    // Empty and oversized messages, and a bad key for find.
    std::fs::remove_file(h.join("identity.key")).unwrap();
    mt(h, &server.url, &["keygen"]).await.ok();
    let run = mt(h, &server.url, &["share", "  "]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("empty"),
        "{run:?}"
    );
    let big = h.join("big.txt");
    std::fs::write(&big, vec![b'a'; 64 * 1024 + 1]).unwrap();
    let run = mt(h, &server.url, &["share", "--file", big.to_str().unwrap()]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("over the"),
        "{run:?}"
    );
    let run = mt(h, &server.url, &["find", "0zz"]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("invalid public key"),
        "{run:?}"
    );
    // Petnames resolve for `find` too; an unknown one is refused before any network use.
    let run = mt(h, &server.url, &["find", "zz"]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("no contact named \"zz\""),
        "{run:?}"
    );
    let stranger = megatorrent::proto::PublicKey::from(&SigningKey::from_bytes(&[9; 32])).to_hex();
    assert_eq!(
        mt(h, &server.url, &["contacts", "add", "zz", &stranger])
            .await
            .code,
        Some(0)
    );
    let run = mt(h, &server.url, &["find", "zz"]).await;
    assert!(
        run.code == Some(1)
            && run
                .stderr
                .contains(&format!("the server has no manifest for {stranger}")),
        "{run:?}"
    );
    server.stop().await;
}
