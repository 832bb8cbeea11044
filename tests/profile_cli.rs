//! Profiles through the real `megatorrent` binary (every home a separate process) against
//! in-process servers on SQLite and PostgreSQL: `profile set` and `profile get` (text,
//! `--json`, `--avatar-out`, petnames), and the errors for bad input.
#![cfg(all(
    feature = "client",
    feature = "server",
    feature = "sqlite",
    feature = "postgres"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cli::mt;
use common::server::{start_with, test_config, TestServer};
use megatorrent::proto::{Profile, ProfileLimits, PublicKey};
use megatorrent::server::Config;

async fn start(pg: bool, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut cfg = test_config();
    tweak(&mut cfg);
    if pg {
        let db = common::pg::PgTestDb::create().await;
        cfg.database.url = db.url.clone();
        start_with(cfg, Some(db)).await
    } else {
        start_with(cfg, None).await
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(false).await; }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(true).await; }
        )* }
    };
}

both!(set_and_get_round_trip, bad_input_fails_clearly);

async fn set_and_get_round_trip(pg: bool) {
    let s = start(pg, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("alice"), dir.path().join("bob"));
    let url = s.url.as_str();
    let ka = mt(&a, url, &["keygen"]).await.ok().to_owned();
    mt(&b, url, &["keygen"]).await.ok();
    let avatar = dir.path().join("me.png");
    let image: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    std::fs::write(&avatar, &image).unwrap();
    let mbox = "ab".repeat(32);
    let av = avatar.to_str().unwrap();
    let set = ["profile", "set", "--name", "Alice ✓", "--avatar", av];
    let mut args = set.to_vec();
    args.extend(["--mailbox-key", &mbox]);
    assert_eq!(mt(&a, url, &args).await.ok(), "1");

    // What the server stores verifies, under alice's key.
    let key = PublicKey::from_hex(&ka).unwrap();
    let now = megatorrent::now_ms() + 1000;
    let stored = s
        .state
        .store()
        .get_profile(&key, now)
        .await
        .unwrap()
        .unwrap();
    let p = Profile::verify(&stored.body, &ProfileLimits::default()).unwrap();
    assert_eq!((p.name(), p.avatar()), ("Alice ✓", Some(&image[..])));

    // Bob reads it by key, as JSON, and by petname.
    let text = mt(&b, url, &["profile", "get", &ka]).await.ok().to_owned();
    for want in [
        "name:        Alice ✓",
        "sequence:    1",
        "5000 bytes",
        &mbox,
        &ka,
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    assert!(text.contains("expires:     20"), "{text}");
    let out = dir.path().join("saved.png");
    let outs = out.to_str().unwrap();
    let json = mt(
        &b,
        url,
        &["profile", "get", &ka, "--json", "--avatar-out", outs],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(json.ok()).unwrap();
    assert_eq!(v["name"], "Alice ✓");
    assert_eq!(v["avatarBytes"], 5000);
    assert_eq!(v["mailboxKey"], mbox.as_str());
    assert_eq!(v["expiresAt"].as_i64(), Some(stored.expires_at_ms));
    assert_eq!(std::fs::read(&out).unwrap(), image);
    // The saved file is never overwritten.
    mt(&b, url, &["profile", "get", &ka, "--avatar-out", outs])
        .await
        .fails_with("cannot write");
    mt(&b, url, &["contacts", "add", "alice", &ka]).await.ok();
    let text = mt(&b, url, &["profile", "get", "alice"])
        .await
        .ok()
        .to_owned();
    assert!(text.contains("Alice ✓"), "{text}");

    // A new `set` is the next sequence and holds exactly what it says.
    let again = mt(&a, url, &["profile", "set", "--name", "Alice"]).await;
    assert_eq!(again.ok(), "2");
    let text = mt(&b, url, &["profile", "get", "alice"])
        .await
        .ok()
        .to_owned();
    assert!(text.contains("avatar:      none"), "{text}");
    assert!(text.contains("mailbox key: none"), "{text}");
    mt(&b, url, &["profile", "get", "alice", "--avatar-out", outs])
        .await
        .fails_with("has no avatar");

    // Bob's expired profile (sequence 9) is gone but its sequence is not: `set` meets the
    // 409 and publishes above it.
    let kb = mt(&b, url, &["whoami"]).await.ok().to_owned();
    let bkey = PublicKey::from_hex(&kb).unwrap();
    let expired = megatorrent::store::ProfileRecord {
        key: bkey,
        sequence: 9,
        body: b"{}".to_vec(),
        updated_at_ms: 0,
        expires_at_ms: 1,
    };
    s.state.store().put_profile(&expired).await.unwrap();
    mt(&a, url, &["profile", "get", &kb])
        .await
        .fails_with("no profile for");
    let r = mt(&b, url, &["profile", "set", "--name", "Bob"]).await;
    assert_eq!(r.ok(), "10");
    assert!(r.stderr.contains("retrying as 10"), "{r:?}");
    s.stop().await;
}

async fn bad_input_fails_clearly(pg: bool) {
    // A server whose avatar cap is below the client's.
    let s = start(pg, |c| c.profiles.max_avatar_bytes = 2048).await;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("alice");
    let url = s.url.as_str();
    let ka = mt(&a, url, &["keygen"]).await.ok().to_owned();
    let set = |extra: &[&str]| {
        let mut v = vec!["profile", "set"];
        v.extend_from_slice(extra);
        v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>()
    };
    let run = |args: Vec<String>| {
        let a = a.clone();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            mt(&a, url, &refs).await
        }
    };
    let long = "x".repeat(65);
    run(set(&["--name", ""])).await.fails_with("invalid name");
    run(set(&["--name", &long]))
        .await
        .fails_with("over the limit of 64");
    run(set(&["--name", "a\tb"]))
        .await
        .fails_with("control character");
    let missing = dir.path().join("missing.png");
    let missing = missing.to_str().unwrap();
    run(set(&["--name", "A", "--avatar", missing]))
        .await
        .fails_with("cannot read the avatar");
    let d = dir.path().to_str().unwrap();
    run(set(&["--name", "A", "--avatar", d]))
        .await
        .fails_with("not a regular file");
    let big = dir.path().join("big.png");
    std::fs::write(&big, vec![0u8; 65 * 1024]).unwrap();
    run(set(&["--name", "A", "--avatar", big.to_str().unwrap()]))
        .await
        .fails_with("over the 65536-byte limit");
    run(set(&["--name", "A", "--mailbox-key", "xyz"]))
        .await
        .fails_with("invalid --mailbox-key");
    // Within the client's cap but over this server's: the server's 413 reason is shown.
    let mid = dir.path().join("mid.png");
    std::fs::write(&mid, vec![0u8; 3000]).unwrap();
    run(set(&["--name", "A", "--avatar", mid.to_str().unwrap()]))
        .await
        .fails_with("413 avatar-too-large");
    // Nothing was published by any of these.
    let key = PublicKey::from_hex(&ka).unwrap();
    assert_eq!(
        s.state.store().profile_high_water(&key).await.unwrap(),
        None
    );

    let get = |who: &str| vec!["profile".to_owned(), "get".into(), who.into()];
    run(get("nobody"))
        .await
        .fails_with("no contact named \"nobody\"");
    run(get(&ka)).await.fails_with("no profile for");
    run(get("abc!")).await.fails_with("invalid public key");
    s.stop().await;
}
