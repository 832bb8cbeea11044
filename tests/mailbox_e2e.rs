//! End to end through the real `megatorrentd` binary: A seals three letters to B (offline),
//! B later lists, opens, verifies and acknowledges them; A's letter to C stays invisible to
//! B; neither the database files nor the server log contain the plaintext or A's key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::http::request;
use common::server::{daemon_bin, wait_ready, RELAXED_LIMITS_ENV};
use ed25519_dalek::SigningKey;
use megatorrent::client::mail;
use megatorrent::proto::mailbox::{MailAuth, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use megatorrent::proto::PublicKey;
use tokio::process::{Child, Command};

fn now() -> u64 {
    u64::try_from(megatorrent::now_ms()).unwrap()
}

/// Start the daemon with its log (debug level) written to `log`.
async fn daemon(db_url: &str, dir: &Path, log: &Path) -> (Child, SocketAddr) {
    let file = std::fs::File::create(log).unwrap();
    let child = Command::new(daemon_bin())
        .current_dir(dir)
        .envs(RELAXED_LIMITS_ENV.iter().copied())
        .env("MEGATORRENT_HTTP__LISTEN", "127.0.0.1:0")
        .env("MEGATORRENT_UDP__ENABLED", "false")
        .env("MEGATORRENT_METRICS__ENABLED", "false")
        .env("MEGATORRENT_DATABASE__URL", db_url)
        .env("MEGATORRENT_LOG__LEVEL", "debug")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn megatorrentd");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1) {
            let addr: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
            wait_ready(addr).await;
            return (child, addr);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "megatorrentd did not start: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn signed(
    addr: SocketAddr,
    key: &SigningKey,
    method: &str,
    path: &str,
) -> common::http::Resp {
    let a = MailAuth::sign(key, method, path, now(), b"");
    let (ts, sig) = (a.timestamp_ms.to_string(), a.signature.to_hex());
    let h = [
        (HEADER_TIMESTAMP, ts.as_str()),
        (HEADER_NONCE, a.nonce.as_str()),
        (HEADER_SIGNATURE, sig.as_str()),
    ];
    request(addr, method, path, &h, b"").await.unwrap()
}

/// B's inbox: every letter opened and verified, in order, then acknowledged.
async fn inbox(addr: SocketAddr, b: &SigningKey) -> Vec<mail::Letter> {
    let me = PublicKey::from(b).to_hex();
    let r = signed(addr, b, "GET", &format!("/v1/mailbox/{me}")).await;
    assert_eq!(r.status, 200);
    let mut out = Vec::new();
    for m in r.json()["messages"].as_array().unwrap() {
        let path = format!("/v1/mailbox/{me}/{}", m["id"].as_str().unwrap());
        let env = signed(addr, b, "GET", &path).await;
        assert_eq!(env.status, 200);
        out.push(mail::open(b, &env.body).unwrap());
        assert_eq!(signed(addr, b, "DELETE", &path).await.status, 204);
    }
    out
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            let data = std::fs::read(&p).unwrap();
            if data.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

/// Every stored byte of the PostgreSQL database's tables, as one blob.
async fn pg_dump(url: &str) -> Vec<u8> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>, String)> =
        sqlx::query_as("SELECT recipient, envelope, id FROM mailbox_messages")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let nonces: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT recipient, nonce FROM mailbox_nonces")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut out = Vec::new();
    for (r, e, id) in rows {
        out.extend(r);
        out.extend(e);
        out.extend(id.into_bytes());
    }
    for (r, n) in nonces {
        out.extend(r);
        out.extend(n.into_bytes());
    }
    out
}

async fn leaks(db_dir: &Path, pg: Option<&str>, needle: &[u8]) -> bool {
    match pg {
        Some(url) => pg_dump(url)
            .await
            .windows(needle.len())
            .any(|w| w == needle),
        None => !files_contain(db_dir, needle).is_empty(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_three_letters_while_offline_then_inbox_and_nothing_leaks() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_letters_while_offline_then_inbox_and_nothing_leaks() {
    run(true).await;
}

async fn run(use_pg: bool) {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    std::fs::create_dir(&db_dir).unwrap();
    let log = dir.path().join("server.log");
    let pg = if use_pg {
        Some(common::pg::PgTestDb::create().await)
    } else {
        None
    };
    let pg_url = pg.as_ref().map(|p| p.url.clone());
    let url = pg_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", db_dir.join("m.db").display()));
    let (mut child, addr) = daemon(&url, dir.path(), &log).await;
    let (a, b, c) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
        SigningKey::from_bytes(&[3; 32]),
    );
    let (pb, pc) = (PublicKey::from(&b), PublicKey::from(&c));
    let texts = ["secret-one-7f3a", "secret-two-7f3a", "secret-three-7f3a"];
    for t in texts {
        let env = mail::seal(&a, &pb, now(), t, None).unwrap();
        let r = request(addr, "POST", &format!("/v1/mailbox/{pb}"), &[], &env)
            .await
            .unwrap();
        assert_eq!(r.status, 201);
    }
    let env = mail::seal(&a, &pc, now(), "for-c-only-7f3a", None).unwrap();
    let r = request(addr, "POST", &format!("/v1/mailbox/{pc}"), &[], &env)
        .await
        .unwrap();
    assert_eq!(r.status, 201);

    // While stored: neither the plaintext nor A's key (hex or raw) is in any database file.
    let a_hex = PublicKey::from(&a).to_hex();
    let a_raw = PublicKey::from(&a).as_bytes().to_vec();
    let pg_url = pg_url.as_deref();
    assert!(
        leaks(&db_dir, pg_url, &pb.as_bytes()[..]).await,
        "the check sees stored data"
    );
    for needle in [
        b"secret-one-7f3a".to_vec(),
        a_hex.clone().into_bytes(),
        a_raw.clone(),
    ] {
        assert!(!leaks(&db_dir, pg_url, &needle).await, "leak of {needle:?}");
    }

    let got = inbox(addr, &b).await;
    assert_eq!(got.len(), 3);
    for (letter, t) in got.iter().zip(texts) {
        assert_eq!(letter.from, PublicKey::from(&a));
        assert_eq!(letter.content, t);
    }
    assert!(
        inbox(addr, &b).await.is_empty(),
        "acknowledged letters are gone"
    );
    // C's letter is still there, for C only.
    let got_c = inbox(addr, &c).await;
    assert_eq!(got_c.len(), 1);
    assert_eq!(got_c[0].content, "for-c-only-7f3a");

    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let log_text = std::fs::read(&log).unwrap();
    assert!(
        log_text.windows(15).any(|w| w == b"listening on ht"),
        "log was captured"
    );
    for needle in [b"secret-".to_vec(), a_hex.into_bytes(), a_raw] {
        assert!(
            !log_text
                .windows(needle.len())
                .any(|w| w == needle.as_slice()),
            "server log leaks {needle:?}"
        );
        assert!(
            !leaks(&db_dir, pg_url, &needle).await,
            "database leaks {needle:?}"
        );
    }
    if let Some(db) = pg {
        db.drop_db().await;
    }
}
