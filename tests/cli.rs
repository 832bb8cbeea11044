//! End-to-end tests of the real `megatorrent` binary against a real in-process server
//! (SQLite, bound to 127.0.0.1:0).
#![cfg(all(feature = "client", feature = "server", feature = "sqlite"))]
// Helpers outside `#[test]` fns are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::cli::mt;
use megatorrent::proto::{Manifest, ManifestLimits};

/// Fetch and verify the manifest of `key` straight from the server (not via the CLI).
async fn server_manifest(server: &common::server::TestServer, key: &str) -> (Manifest, Vec<u8>) {
    let path = format!("/v1/manifests/{key}");
    let resp = common::http::request(server.addr, "GET", &path, &[], b"")
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let m = Manifest::verify(&resp.body, &ManifestLimits::default()).unwrap();
    (m, resp.body)
}

fn is_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

const M1: &str = "magnet:?xt=urn:btih:1111111111111111111111111111111111111111&dn=one";
const M2: &str = "magnet:?xt=urn:btih:2222222222222222222222222222222222222222&dn=two";
const M3: &str = "magnet:?xt=urn:btih:3333333333333333333333333333333333333333";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_whoami_publish_lookup() {
    let server = common::server::start_sqlite().await;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let url = server.url.as_str();

    let key = mt(&home, url, &["keygen"]).await.ok().to_owned();
    assert!(is_key(&key), "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(home.join("identity.key")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let meta = std::fs::metadata(&home).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    }
    let secret = std::fs::read_to_string(home.join("identity.key")).unwrap();
    assert_eq!(mt(&home, url, &["whoami"]).await.ok(), key);

    let publish = mt(&home, url, &["publish", "--title", "Season 1", M1, M2]).await;
    assert_eq!(publish.ok(), "1");
    for out in [&publish.stdout, &publish.stderr] {
        assert!(!out.contains(secret.trim()));
    }

    let shown = mt(&home, url, &["lookup", &key]).await;
    let text = shown.ok();
    assert!(text.contains(&key), "{text}");
    assert!(text.contains("sequence:    1"), "{text}");
    assert!(text.contains("Season 1 (2 items)"), "{text}");
    assert!(text.contains(M1) && text.contains(M2), "{text}");
    assert!(text.contains("Z ("), "ISO-8601 time: {text}");

    let json = mt(&home, url, &["lookup", "--json", &key]).await;
    let (m, served) = server_manifest(&server, &key).await;
    assert_eq!(json.stdout.as_bytes(), [served.as_slice(), b"\n"].concat());
    assert_eq!(m.public_key().to_hex(), key);
    assert_eq!(m.sequence(), 1);
    assert_eq!(m.items("Season 1"), [M1, M2]);

    // Any user may look the key up; upper-case hex is accepted.
    let other = tmp.path().join("other");
    let shown = mt(&other, url, &["lookup", &key.to_uppercase()]).await;
    assert!(shown.ok().contains("Season 1 (2 items)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let unused = "http://127.0.0.1:9";
    let first = mt(home, unused, &["keygen"]).await.ok().to_owned();

    let again = mt(home, unused, &["keygen"]).await;
    let line = again.failed();
    assert!(
        line.contains("already exists") && line.contains("--force"),
        "{line}"
    );
    assert_eq!(mt(home, unused, &["whoami"]).await.ok(), first);

    let second = mt(home, unused, &["keygen", "--force"])
        .await
        .ok()
        .to_owned();
    assert!(is_key(&second));
    assert_ne!(second, first);
    assert_eq!(mt(home, unused, &["whoami"]).await.ok(), second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_without_identity_and_corrupt_identity_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let unused = "http://127.0.0.1:9";
    let line = mt(home, unused, &["whoami"]).await.failed().to_owned();
    assert!(line.contains("keygen"), "{line}");

    std::fs::write(home.join("identity.key"), "not a key\n").unwrap();
    let line = mt(home, unused, &["whoami"]).await.failed().to_owned();
    assert!(
        line.contains("identity.key") && line.contains("corrupt"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_twice_merges_items_and_bumps_the_sequence() {
    let server = common::server::start_sqlite().await;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let url = server.url.as_str();
    let key = mt(home, url, &["keygen"]).await.ok().to_owned();

    assert_eq!(
        mt(home, url, &["publish", "--title", "A", M1]).await.ok(),
        "1"
    );
    // M1 is already there: only M2 is added.
    assert_eq!(
        mt(home, url, &["publish", "--title", "A", M1, M2])
            .await
            .ok(),
        "2"
    );
    assert_eq!(
        mt(home, url, &["publish", "--title", "B", M3]).await.ok(),
        "3"
    );
    let (m, _) = server_manifest(&server, &key).await;
    assert_eq!(m.sequence(), 3);
    let titles: Vec<_> = m.collections().iter().map(|c| c.title.as_str()).collect();
    assert_eq!(titles, ["A", "B"]);
    assert_eq!(m.items("A"), [M1, M2]);
    assert_eq!(m.items("B"), [M3]);

    // --replace keeps only the named collection with exactly the given items.
    let replaced = mt(home, url, &["publish", "--replace", "--title", "C", M3]).await;
    assert_eq!(replaced.ok(), "4");
    let (m, _) = server_manifest(&server, &key).await;
    assert_eq!(m.collections().len(), 1);
    assert_eq!(m.items("C"), [M3]);

    // Another device with the same key but no local state continues from the server's
    // sequence; a device whose local state is ahead of the server continues from that.
    let device2 = tmp.path().join("device2");
    std::fs::create_dir(&device2).unwrap();
    std::fs::copy(home.join("identity.key"), device2.join("identity.key")).unwrap();
    assert_eq!(
        mt(&device2, url, &["publish", "--title", "C", M1])
            .await
            .ok(),
        "5"
    );
    let state = format!(r#"{{"publicKey":"{key}","highestSequence":41}}"#);
    std::fs::write(home.join("state.json"), state).unwrap();
    assert_eq!(
        mt(home, url, &["publish", "--title", "C", M2]).await.ok(),
        "42"
    );
    let (m, _) = server_manifest(&server, &key).await;
    assert_eq!(m.items("C"), [M3, M1, M2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rejects_bad_items() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let unused = "http://127.0.0.1:9";
    mt(home, unused, &["keygen"]).await.ok();
    let line = mt(home, unused, &["publish", "--title", "A", "two words"]).await;
    assert!(line.failed().contains("invalid item"), "{line:?}");
    let line = mt(home, unused, &["publish", "--title", "", M1]).await;
    assert!(line.failed().contains("invalid title"), "{line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_of_an_unknown_key_fails_with_a_reason() {
    let server = common::server::start_sqlite().await;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let key = mt(home, &server.url, &["keygen"]).await.ok().to_owned();
    let run = mt(home, &server.url, &["lookup", &key]).await;
    assert_eq!(run.failed(), format!("error: no manifest for {key}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_of_a_malformed_key_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let unused = "http://127.0.0.1:9";
    for bad in ["0nothex", &"zz".repeat(32), &"ab".repeat(33)] {
        let run = mt(tmp.path(), unused, &["lookup", bad]).await;
        assert!(run.failed().contains("invalid public key"), "{run:?}");
    }
    // A word that could be a contact's name but is not one.
    let run = mt(tmp.path(), unused, &["lookup", "nothex"]).await;
    assert!(
        run.failed().contains("no contact named \"nothex\""),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_fails_quickly_and_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let key = mt(home, &url, &["keygen"]).await.ok().to_owned();

    for args in [vec!["publish", "--title", "A", M1], vec!["lookup", &key]] {
        let started = Instant::now();
        let run = mt(home, &url, &args).await;
        let line = run.failed();
        assert!(line.contains("cannot reach the server"), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(started.elapsed() < Duration::from_secs(10), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_malformed_server_urls_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let key = megatorrent::proto::PublicKey::from(&signer).to_hex();
    let run = mt(tmp.path(), "https://example.org", &["lookup", &key]).await;
    assert!(
        run.failed().contains("https:// is not supported yet"),
        "{run:?}"
    );
    let run = mt(tmp.path(), "not a url", &["lookup", &key]).await;
    assert!(run.failed().contains("invalid server URL"), "{run:?}");
}

/// The same flow against a server on PostgreSQL (the README's second database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_publish_lookup_on_postgres() {
    let server = common::server::start_pg().await;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let url = server.url.as_str();
    let key = mt(&home, url, &["keygen"]).await.ok().to_owned();
    assert_eq!(
        mt(&home, url, &["publish", "--title", "news", M1])
            .await
            .ok(),
        "1"
    );
    assert_eq!(
        mt(&home, url, &["publish", "--title", "news", M2])
            .await
            .ok(),
        "2"
    );
    let (m, _) = server_manifest(&server, &key).await;
    assert_eq!(m.items("news"), [M1, M2]);
    let shown = mt(&home, url, &["lookup", &key]).await;
    assert!(shown.ok().contains("news (2 items)"), "{}", shown.stdout);
    server.stop().await;
}
