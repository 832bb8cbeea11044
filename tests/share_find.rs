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

use common::cli::{find, mt, mt_cmd, output_within, start_seed, stop_seeder, Seeders, LISTEN};
use ed25519_dalek::SigningKey;
use megatorrent::client::identity::Home;
use megatorrent::proto::{Archive, UnsignedMessage};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

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
    let (mut seed_b, ready) = start_seed(b, &url).await;
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
    run.assert_rejected_forged_and_foreign(&key_x);
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

    // A share the server never got leaves no message behind to seed or to share twice.
    let lone = tempfile::tempdir().unwrap();
    common::cli::keygen(lone.path(), &url).await;
    let run = mt(
        lone.path(),
        &dead,
        &["--timeout", "5", "share", "never published"],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("cannot reach the server"), "{run:?}");
    let left: Vec<_> = std::fs::read_dir(lone.path().join("messages"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

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
    // Batches: only blank lines, a line over the content cap; nothing is published.
    let blank = h.join("blank.txt");
    std::fs::write(&blank, "\n  \n\n").unwrap();
    let run = mt(
        h,
        &server.url,
        &["share", "--batch", blank.to_str().unwrap()],
    )
    .await;
    assert!(
        run.code == Some(1) && run.stderr.contains("no non-empty line"),
        "{run:?}"
    );
    let long = h.join("long.txt");
    std::fs::write(&long, format!("ok\n{}\n", "a".repeat(64 * 1024 + 1))).unwrap();
    let run = mt(
        h,
        &server.url,
        &["share", "--batch", long.to_str().unwrap()],
    )
    .await;
    assert!(
        run.code == Some(1) && run.stderr.contains("over the"),
        "{run:?}"
    );
    let left = std::fs::read_dir(h.join("messages")).map_or(0, Iterator::count);
    assert_eq!(left, 0, "a refused batch writes no message");
    let key = mt(h, &server.url, &["whoami"]).await.ok().to_owned();
    let run = mt(h, &server.url, &["lookup", &key]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("no manifest"),
        "{run:?}"
    );
    // An unknown key with --watch fails at once, like without.
    let unknown = hex::encode(SigningKey::from_bytes(&[43; 32]).verifying_key().to_bytes());
    let run = mt(h, &server.url, &["find", "--watch", &unknown]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("no such feed"),
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

/// A `megatorrent find --watch` running in the background, read line by line.
struct Watcher {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Watcher {
    fn spawn(home: &Path, server: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_megatorrent"))
            .arg("find")
            .args(args)
            .args(LISTEN)
            .args(["--fetch-timeout", "30"])
            .env("MEGATORRENT_HOME", home)
            .env("MEGATORRENT_SERVER", server)
            .env_remove("MEGATORRENT_TIMEOUT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next line's text (after the time), within 60 s.
    async fn next(&mut self) -> String {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("no line from find --watch within 60 s")
            .unwrap()
            .expect("find --watch closed its output");
        line.split_once("  ").unwrap().1.to_owned()
    }

    /// Wait for the exit (60 s at most): its code, and that nothing more was printed.
    async fn finish(mut self) -> Option<i32> {
        let rest = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("find --watch did not exit within 60 s")
            .unwrap();
        assert_eq!(rest, None, "nothing more is printed");
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        status.code()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_watch_prints_each_new_message_once_over_websocket_and_polling() {
    let server = common::server::start_sqlite().await;
    let url = server.url.clone();
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (ta.path(), tb.path());
    let _guard = Seeders(vec![a.to_owned()]);
    let key_a = mt(a, &url, &["keygen"]).await.ok().to_owned();
    for i in 1..=3 {
        share(a, &url, &format!("message {i}")).await;
    }

    // Over the WebSocket: the current feed, then a 4th message shared meanwhile. A
    // manifest update without a new message prints nothing; the 5th prints once.
    let mut w = Watcher::spawn(b, &url, &[&key_a, "--watch", "--count", "2"]);
    for i in 1..=3 {
        assert_eq!(w.next().await, format!("message {i}"));
    }
    share(a, &url, "message 4").await;
    assert_eq!(w.next().await, "message 4");
    let other = format!("magnet:?xt=urn:btih:{}", "ab".repeat(20));
    mt(a, &url, &["publish", "--title", "other", &other])
        .await
        .ok();
    share(a, &url, "message 5").await;
    assert_eq!(w.next().await, "message 5");
    assert_eq!(w.finish().await, Some(0));

    // Polling over HTTP.
    let mut p = Watcher::spawn(
        b,
        &url,
        &[&key_a, "--watch", "--interval", "1", "--count", "1"],
    );
    for i in 1..=5 {
        assert_eq!(p.next().await, format!("message {i}"));
    }
    share(a, &url, "message 6").await;
    assert_eq!(p.next().await, "message 6");
    assert_eq!(p.finish().await, Some(0));

    // --max-time ends a watch; with --count not reached, that is an error.
    let started = Instant::now();
    let mut args = vec!["find", &key_a, "--watch", "--count", "1", "--max-time", "2"];
    args.extend_from_slice(LISTEN);
    let run = mt(b, &url, &args).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("only 0 of 1 new messages arrived within 2s"),
        "{run:?}"
    );
    assert_eq!(lines(&run.stdout).len(), 6, "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let run = mt(b, &url, &["find", &key_a, "--interval", "1"]).await;
    assert!(
        run.code == Some(2) && run.stderr.contains("--watch"),
        "{run:?}"
    );

    stop_seeder(a).await;
    server.stop().await;
}

/// Write `message NNNN` lines for `range` to `path` (a `share --batch` file).
fn write_batch(path: &Path, range: std::ops::RangeInclusive<u32>) {
    let text: String = range.map(|i| format!("message {i:04}\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_of_2000_messages_is_archived_and_found_completely() {
    // A 16 KiB manifest cap, so that archives are made (and chained) in each batch.
    let mut cfg = common::server::test_config();
    cfg.limits.max_manifest_bytes = 16 * 1024;
    let server = common::server::start_with(cfg, None).await;
    let url = server.url.clone();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b, x) = (dirs[0].path(), dirs[1].path(), dirs[2].path());
    let _guard = Seeders(vec![a.to_owned(), x.to_owned()]);
    let key_a = mt(a, &url, &["keygen"]).await.ok().to_owned();
    mt(x, &url, &["keygen"]).await.ok();

    for (n, range) in [(1, 1..=1000), (2, 1001..=2000)] {
        let file = a.join(format!("batch-{n}.txt"));
        write_batch(&file, range);
        let mut args = vec!["share", "--detach", "--batch", file.to_str().unwrap()];
        args.extend_from_slice(LISTEN);
        // A thousand messages signed and hashed by a debug build on a loaded 2-core CI
        // machine: a generous guard against a hang (never a timing check).
        let run = output_within(mt_cmd(a, &url, &args), 900).await;
        assert_eq!(lines(run.ok()).len(), 1000, "one magnet per message");
        assert!(run.stderr.contains("archive torrent"), "{run:?}");
    }
    // The manifest stays under the cap: one archive listed (the newest, linking to the
    // older one) and the newest messages.
    let run = mt(a, &url, &["lookup", "--json", &key_a]).await;
    let manifest: serde_json::Value = serde_json::from_str(run.ok()).unwrap();
    assert!(run.stdout.len() <= 16 * 1024);
    let items = |title: &str| {
        manifest["collections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["title"] == title)
            .map(|c| c["items"].as_array().unwrap().len())
    };
    assert_eq!(items("archive"), Some(1), "{manifest}");
    let listed = items("messages").unwrap();
    assert!(listed > 10 && listed < 200, "{listed}");
    let archives = std::fs::read_dir(a.join("messages"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_str().unwrap().starts_with("archive-")
        })
        .count();
    assert!(archives >= 2, "{archives}");

    // One more archive, made by hand and seeded by X: a message of A's (the oldest of
    // all), one with a broken signature and one of X's. Listed beside the chain.
    let id_a = Home::new(a).load_identity().unwrap();
    let sign = |ts: u64, text: &str, key: &SigningKey| {
        UnsignedMessage {
            timestamp: ts,
            content: text.into(),
        }
        .sign(key)
        .unwrap()
    };
    let oldest = sign(1, "archived by hand", id_a.signing_key());
    let forged = {
        let m = sign(2, "genuine", id_a.signing_key());
        String::from_utf8(m.canonical_bytes().to_vec())
            .unwrap()
            .replace("genuine", "forged!")
    };
    let foreign = sign(3, "not from A", &SigningKey::from_bytes(&[7; 32]));
    let mut bytes = Archive::write(&[], &[oldest]).unwrap();
    bytes.extend_from_slice(forged.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(foreign.canonical_bytes());
    bytes.push(b'\n');
    share(x, &url, "X runs a seeder").await;
    let file = x.join("messages").join("archive-byhand000000000.jsonl");
    std::fs::write(&file, bytes).unwrap();
    let magnet = megatorrent::client::seeder::magnet_of(&file, &format!("{url}/announce"))
        .await
        .unwrap();
    let hash = &magnet["magnet:?xt=urn:btih:".len()..][..40];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(x.join("seed.state"))
        .unwrap_or_default()
        .contains(hash)
    {
        assert!(
            Instant::now() < deadline,
            "X's seeder did not seed the archive"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mt(a, &url, &["publish", "--title", "archive", &magnet])
        .await
        .ok();

    let mut args = vec!["find", &key_a, "--fetch-timeout", "60"];
    args.extend_from_slice(LISTEN);
    let run = output_within(mt_cmd(b, &url, &args), 900).await;
    let out = lines(run.ok());
    let mut want = vec!["archived by hand".to_owned()];
    want.extend((1..=2000).map(|i| format!("message {i:04}")));
    let got: Vec<&str> = out.iter().map(|l| l.split_once("  ").unwrap().1).collect();
    assert_eq!(got.len(), want.len(), "{}", run.stderr);
    let first_diff = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(
        first_diff,
        None,
        "{:?} {}",
        first_diff.map(|i| &got[i.saturating_sub(2)..(i + 3).min(got.len())]),
        run.stderr
    );
    let rejected: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("rejected message in archive"))
        .collect();
    assert_eq!(rejected.len(), 2, "{}", run.stderr);
    assert!(rejected
        .iter()
        .any(|l| l.contains("signature does not verify")));
    assert!(rejected.iter().any(|l| l.contains("not by the feed's key")));

    // B seeds the archives it fetched: a third home gets everything from B alone.
    stop_seeder(a).await;
    stop_seeder(x).await;
    let (mut seed_b, _) = start_seed(b, &url).await;
    let c = tempfile::tempdir().unwrap();
    let run = mt(c.path(), &url, &args).await;
    assert_eq!(lines(run.ok()).len(), 2001, "{}", run.stderr);
    seed_b.kill().await.unwrap();
    server.stop().await;
}
