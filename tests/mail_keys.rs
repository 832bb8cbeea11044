//! Mailbox keys and several devices, through the real `megatorrent` binary (every home a
//! separate process) against in-process servers on SQLite and PostgreSQL: `profile set
//! --mailbox-key new|current|HEX`, `send` sealing to a profile's key (and refusing to fall
//! back when the profile cannot be fetched), `inbox` opening with stored mailbox secrets,
//! `key export|import` carrying them, and `inbox --keep` on a second device.
#![cfg(all(
    feature = "client",
    feature = "server",
    feature = "sqlite",
    feature = "postgres"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::cli::{keygen, mt, spawn, wait_for_line};
use common::server::{start_with, test_config, TestServer};
use ed25519_dalek::SigningKey;
use megatorrent::client::mail::{self, MailError, MailboxSecret};
use megatorrent::proto::PublicKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(pg: bool) -> TestServer {
    let cfg = test_config();
    if pg {
        let db = common::pg::PgTestDb::create().await;
        let mut cfg = cfg;
        cfg.database.url = db.url.clone();
        start_with(cfg, Some(db)).await
    } else {
        start_with(cfg, None).await
    }
}

/// The envelopes the server holds for `key`, oldest first.
async fn stored(s: &TestServer, key: &str) -> Vec<Vec<u8>> {
    let pk = PublicKey::from_hex(key).unwrap();
    let now = megatorrent::now_ms();
    let store = s.state.store();
    let mut out = Vec::new();
    for m in store.list_mail(&pk, now).await.unwrap() {
        out.push(store.get_mail(&pk, &m.id, now).await.unwrap().unwrap());
    }
    out
}

/// The identity kept in `home`.
fn identity(home: &Path) -> SigningKey {
    let text = std::fs::read_to_string(home.join("identity.key")).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).unwrap();
    SigningKey::from_bytes(&seed)
}

/// The mailbox secrets kept in `home`, checked against the file's public keys.
fn mailbox_secrets(home: &Path) -> Vec<MailboxSecret> {
    let text = std::fs::read_to_string(home.join("mailbox-keys.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let mut b = [0u8; 32];
            hex::decode_to_slice(k["secret"].as_str().unwrap(), &mut b).unwrap();
            let secret = MailboxSecret::from_bytes(b);
            assert_eq!(secret.public().to_hex(), k["publicKey"].as_str().unwrap());
            secret
        })
        .collect()
}

/// The mailbox key in `key`'s profile, as `profile get --json` (verified) shows it.
async fn published_key(home: &Path, url: &str, key: &str) -> serde_json::Value {
    let run = mt(home, url, &["profile", "get", key, "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(run.ok()).unwrap();
    v["mailboxKey"].clone()
}

/// `profile set --name Bob --mailbox-key ARG` in `home`.
async fn set_mailbox_key(home: &Path, url: &str, arg: &str) -> common::cli::Run {
    mt(
        home,
        url,
        &["profile", "set", "--name", "Bob", "--mailbox-key", arg],
    )
    .await
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn headers(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.starts_with("  ")).collect()
}

fn tag() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

on_both_stores!(
    letters_are_sealed_to_the_profiles_mailbox_key,
    two_devices_read_one_identity_with_inbox_keep,
);

async fn letters_are_sealed_to_the_profiles_mailbox_key(pg: bool) {
    let s = start(pg).await;
    let url = s.url.as_str();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let [a, b, bare] = [0, 1, 2].map(|i| dirs[i].path());
    let ka = keygen(a, url).await;
    let kb = keygen(b, url).await;
    // `bare` holds B's identity but none of its mailbox secrets.
    std::fs::copy(b.join("identity.key"), bare.join("identity.key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(bare.join("identity.key"), private).unwrap();
    }
    set_mailbox_key(b, url, "current")
        .await
        .fails_with("no mailbox key is kept here; use --mailbox-key new");
    let set = set_mailbox_key(b, url, "new").await;
    assert_eq!(set.ok(), "1");
    assert!(set.stderr.contains("generated the mailbox key"), "{set:?}");
    let secrets = mailbox_secrets(b);
    assert_eq!(secrets.len(), 1);
    let mk1 = secrets[0].public().to_hex();
    assert_eq!(published_key(a, url, &kb).await, mk1.as_str());
    #[cfg(unix)]
    assert_eq!(mode(&b.join("mailbox-keys.json")), 0o600);

    let t = tag();
    let first = format!("sealed to the mailbox key {t}");
    let sent = mt(a, url, &["send", &kb, &first]).await;
    assert!(sent.ok().starts_with("sent "), "{sent:?}");
    assert!(
        sent.stderr
            .contains(&format!("sealing to the mailbox key {mk1}")),
        "{sent:?}"
    );
    // The stored envelope: not for B's identity key, only for the mailbox secret.
    let envs = stored(&s, &kb).await;
    assert_eq!(envs.len(), 1);
    let b_id = identity(b);
    assert_eq!(mail::open(&b_id, &envs[0]), Err(MailError::Undecryptable));
    let letter = mail::open_with(&b_id, &secrets, &envs[0]).unwrap();
    assert_eq!(letter.from.to_hex(), ka);
    assert_eq!(letter.content, first);
    // A home with B's identity alone cannot open it (and `--keep` leaves it for B).
    let run = mt(bare, url, &["inbox", "--keep"]).await;
    assert_eq!(run.ok(), "", "{run:?}");
    assert!(
        run.stderr.contains("rejected message")
            && run.stderr.contains("does not decrypt")
            && run.stderr.contains("left on the server"),
        "{run:?}"
    );
    assert_eq!(stored(&s, &kb).await.len(), 1);

    // Rotation: a letter sealed to the previous key still opens after a new one is made.
    let set = set_mailbox_key(b, url, "new").await;
    assert_eq!(set.ok(), "2");
    let mk2 = mailbox_secrets(b)[1].public().to_hex();
    assert_ne!(mk1, mk2);
    let second = format!("sealed to the rotated key {t}");
    let sent = mt(a, url, &["send", &kb, &second]).await;
    assert!(sent.stderr.contains(&mk2), "{sent:?}");
    // `--no-profile` seals to the key derived from the identity: `bare` reads that one.
    let third = format!("sealed to the derived key {t}");
    let sent = mt(a, url, &["send", &kb, &third, "--no-profile"]).await;
    assert!(
        !sent.stderr.contains("sealing to the mailbox key"),
        "{sent:?}"
    );
    let run = mt(bare, url, &["inbox", "--keep"]).await;
    assert!(
        run.ok().contains(&third) && !run.stdout.contains(&second),
        "{run:?}"
    );

    let run = mt(b, url, &["inbox"]).await;
    let out = run.ok();
    assert_eq!(headers(out).len(), 3, "{run:?}");
    for h in headers(out) {
        assert!(h.contains(&format!(" from {ka} [")), "{h}");
    }
    let (p1, p2, p3) = (
        out.find(&first).unwrap(),
        out.find(&second).unwrap(),
        out.find(&third).unwrap(),
    );
    assert!(p1 < p2 && p2 < p3, "{out}");
    assert!(!run.stderr.contains("rejected"), "{run:?}");
    assert!(stored(&s, &kb).await.is_empty(), "B's inbox deleted them");

    // Publishing a key whose secret is not kept here warns; `current` republishes ours.
    let foreign = MailboxSecret::generate().public().to_hex();
    let set = set_mailbox_key(b, url, &foreign).await;
    assert_eq!(set.ok(), "3");
    assert!(
        set.stderr.contains("holds no secret for the mailbox key"),
        "{set:?}"
    );
    let set = set_mailbox_key(b, url, "current").await;
    assert_eq!(set.ok(), "4");
    assert!(!set.stderr.contains("warning"), "{set:?}");
    assert_eq!(published_key(a, url, &kb).await, mk2.as_str());
    let set = mt(b, url, &["profile", "set", "--name", "Bob"]).await;
    assert!(set.stderr.contains("publishing no mailbox key"), "{set:?}");
    assert_eq!(published_key(a, url, &kb).await, serde_json::Value::Null);
    s.stop().await;

    // A profile that cannot be fetched is an error, not a silent switch to the derived key.
    let (down, requests) = unavailable_server().await;
    mt(a, &down, &["send", &kb, "hi"])
        .await
        .fails_with("cannot fetch the profile of");
    assert_eq!(
        requests.lock().unwrap().clone(),
        vec![format!("GET /v1/profiles/{kb}")],
        "nothing was posted"
    );
    requests.lock().unwrap().clear();
    let run = mt(a, &down, &["send", &kb, "hi", "--no-profile"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(!run.stderr.contains("profile"), "{run:?}");
    assert_eq!(
        requests.lock().unwrap().clone(),
        vec![format!("POST /v1/mailbox/{kb}")]
    );
}

/// A server answering every request with `503`; returns its URL and the request lines.
async fn unavailable_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
                let line = String::from_utf8_lossy(&got[..head_end]);
                let line = line.lines().next().unwrap_or("");
                let line = line.rsplit_once(' ').map_or(line, |(l, _)| l).to_owned();
                log.lock().unwrap().push(line);
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while got.len() < head_end + len {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = br#"{"error":"unavailable","message":"down for a test"}"#;
                let resp = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.write_all(body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, seen)
}

async fn two_devices_read_one_identity_with_inbox_keep(pg: bool) {
    let s = start(pg).await;
    let url = s.url.as_str();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let [a, b, b2, files] = [0, 1, 2, 3].map(|i| dirs[i].path());
    let ka = keygen(a, url).await;
    let kb = keygen(b, url).await;
    // Without mailbox keys the export is still the version-1 form (the identity file).
    let run = mt(b, url, &["key", "export"]).await;
    assert_eq!(run.ok().len(), 64, "{run:?}");
    set_mailbox_key(b, url, "new").await.ok();
    let mk = mailbox_secrets(b)[0].public().to_hex();

    let file = files.join("b.key");
    let f = file.to_str().unwrap();
    let run = mt(b, url, &["key", "export", "--out", f]).await;
    assert!(run.stderr.contains("and 1 mailbox key(s)"), "{run:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["mailboxKeys"][0]["publicKey"], mk.as_str());
    let run = mt(b2, url, &["key", "import", f]).await;
    assert_eq!(run.ok(), kb);
    assert!(run.stderr.contains("imported 1 mailbox key(s)"), "{run:?}");
    assert_eq!(mailbox_secrets(b2)[0].public().to_hex(), mk);
    // Importing again on B changes nothing.
    let run = mt(b, url, &["key", "import", f]).await;
    assert_eq!(run.ok(), kb);
    assert!(run.stderr.contains("already in use here"), "{run:?}");
    assert_eq!(mailbox_secrets(b).len(), 1);

    let t = tag();
    let texts = [
        format!("first for both {t}"),
        format!("second for both {t}"),
    ];
    for text in &texts {
        let sent = mt(a, url, &["send", &kb, text]).await;
        assert!(sent.stderr.contains(&mk), "{sent:?}");
    }
    let b2_first = mt(b2, url, &["inbox", "--keep"]).await;
    let out = b2_first.ok();
    assert_eq!(headers(out).len(), 2, "{b2_first:?}");
    assert!(out.contains(&texts[0]) && out.contains(&texts[1]), "{out}");
    assert!(out.contains(&format!(" from {ka} [")), "{out}");
    assert_eq!(stored(&s, &kb).await.len(), 2, "--keep deletes nothing");
    // The same device does not show them twice.
    let again = mt(b2, url, &["inbox", "--keep", "--json"]).await;
    assert_eq!(again.ok(), "", "{again:?}");
    assert!(again.stderr.contains("no new messages"), "{again:?}");

    let run = mt(b, url, &["inbox"]).await;
    let out = run.ok();
    assert_eq!(headers(out).len(), 2, "{run:?}");
    assert!(out.contains(&texts[0]) && out.contains(&texts[1]), "{out}");
    assert!(stored(&s, &kb).await.is_empty(), "B deleted them");

    let run = mt(b2, url, &["inbox", "--keep"]).await;
    assert_eq!(run.ok(), "", "{run:?}");
    assert!(run.stderr.contains("no new messages"), "{run:?}");
    let seen = std::fs::read_to_string(b2.join("inbox-seen.json")).unwrap();
    let seen: serde_json::Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(
        seen["seen"],
        serde_json::json!([]),
        "gone from the server, forgotten"
    );

    // Plain `inbox` on the device that already showed a letter deletes it unprinted.
    let third = format!("third {t}");
    mt(a, url, &["send", &kb, &third]).await.ok();
    assert!(mt(b2, url, &["inbox", "--keep"])
        .await
        .ok()
        .contains(&third));
    let run = mt(b2, url, &["inbox"]).await;
    assert_eq!(run.ok(), "", "{run:?}");
    assert!(
        run.stderr.contains("already shown on this device"),
        "{run:?}"
    );
    assert!(stored(&s, &kb).await.is_empty());
    let run = mt(b, url, &["inbox"]).await;
    assert_eq!(run.ok(), "", "{run:?}");

    // `--keep` with `--watch`: a letter is shown once as it arrives and left on the server.
    let watch = ["inbox", "--watch", "--keep", "--interval", "3600"];
    let mut w = spawn(b2, url, &watch);
    wait_for_line(&mut w.stderr, "the server pushes new mail", 30).await;
    let fourth = format!("fourth, watched {t}");
    mt(a, url, &["send", &kb, &fourth]).await.ok();
    let before = wait_for_line(&mut w.stdout, &fourth, 30).await;
    assert!(before.last().unwrap().contains(" from "), "{before:?}");
    assert_eq!(stored(&s, &kb).await.len(), 1, "left on the server");
    assert!(w.child.try_wait().unwrap().is_none(), "still watching");
    w.child.start_kill().unwrap();
    w.child.wait().await.unwrap();
    s.stop().await;
}
