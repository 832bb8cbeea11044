//! Direct messages through the real `megatorrent` binary (every home a separate process)
//! against in-process servers on SQLite and PostgreSQL: `send`, `inbox` (also `--watch` and
//! `--json`), `contacts`, `key export|import`, and the errors for bad input.
#![cfg(all(
    feature = "client",
    feature = "server",
    feature = "sqlite",
    feature = "postgres"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::cli::{mt, mt_cmd};
use common::server::{start_with, test_config, TestServer};
use megatorrent::proto::PublicKey;
use megatorrent::server::Config;
use tokio::io::{AsyncBufReadExt, BufReader};

async fn keygen(home: &Path, server: &str) -> String {
    let key = mt(home, server, &["keygen"]).await.ok().to_owned();
    assert_eq!(key.len(), 64, "{key}");
    key
}

fn tag() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

// ---- the server's log, captured from this process's tracing ----

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install (once) a TRACE-level subscriber writing every event of this process — the
/// in-process servers, sqlx, hyper — into a buffer.
fn server_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .init();
        buf
    })
    .clone()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---- servers and their stored bytes ----

struct Server {
    s: TestServer,
    pg_url: Option<String>,
}

async fn start(pg: bool, tweak: impl FnOnce(&mut Config)) -> Server {
    let log = server_log();
    let mut cfg = test_config();
    tweak(&mut cfg);
    let (s, pg_url) = if pg {
        let db = common::pg::PgTestDb::create().await;
        cfg.database.url = db.url.clone();
        let url = db.url.clone();
        (start_with(cfg, Some(db)).await, Some(url))
    } else {
        (start_with(cfg, None).await, None)
    };
    // The server logs its address from its own task, possibly just after it answers.
    let line = format!("listening on http://{}", s.addr);
    let mut captured = false;
    for _ in 0..100 {
        if contains(&log.lock().unwrap(), line.as_bytes()) {
            captured = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(captured, "the server's log is captured");
    Server { s, pg_url }
}

impl Server {
    fn url(&self) -> &str {
        &self.s.url
    }

    /// Every byte the database holds: the SQLite files as they are on disk, or on
    /// PostgreSQL every row of every table as text plus the mailbox columns as raw bytes.
    async fn dump(&self) -> Vec<u8> {
        let Some(url) = &self.pg_url else {
            let mut out = Vec::new();
            for e in std::fs::read_dir(self.s.dir()).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    out.extend(std::fs::read(&p).unwrap());
                }
            }
            return out;
        };
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(tables.iter().any(|(t,)| t == "mailbox_messages"));
        let mut out = Vec::new();
        for (t,) in tables {
            let sql = format!("SELECT t::text FROM \"{t}\" t");
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for (r,) in rows {
                out.extend(r.into_bytes());
            }
        }
        let rows: Vec<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT recipient, envelope FROM mailbox_messages")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        for (r, e) in rows {
            out.extend(r);
            out.extend(e);
        }
        out
    }

    /// Messages the store holds for `key`.
    async fn stored(&self, key: &str) -> usize {
        let pk = PublicKey::from_hex(key).unwrap();
        self.s
            .state
            .store()
            .list_mail(&pk, megatorrent::now_ms())
            .await
            .unwrap()
            .len()
    }

    async fn stop(self) {
        self.s.stop().await;
    }
}

/// Neither the database nor the server's log holds any of `secrets` (each also checked as
/// hex, the text form of PostgreSQL `bytea`); the dump does hold `positive` (so it sees data).
async fn assert_no_leak(s: &Server, secrets: &[Vec<u8>], positive: &[u8]) {
    let dump = s.dump().await;
    assert!(
        contains(&dump, positive) || contains(&dump, hex::encode(positive).as_bytes()),
        "the dump sees stored data"
    );
    let log = server_log().lock().unwrap().clone();
    for secret in secrets {
        for needle in [secret.clone(), hex::encode(secret).into_bytes()] {
            assert!(!contains(&dump, &needle), "database leaks {needle:?}");
            assert!(!contains(&log, &needle), "server log leaks {needle:?}");
        }
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

both!(
    letters_sent_while_offline_are_shown_verified_by_petname_then_deleted,
    an_exported_identity_reads_the_inbox_on_a_second_device,
    bad_input_is_a_clear_error,
    inbox_watch_shows_letters_as_they_arrive_and_petnames_work_for_lookup,
);

async fn letters_sent_while_offline_are_shown_verified_by_petname_then_deleted(pg: bool) {
    let s = start(pg, |_| {}).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let [a, b, c] = [0, 1, 2].map(|i| dirs[i].path());
    let (ka, kb) = (keygen(a, s.url()).await, keygen(b, s.url()).await);
    let kc = keygen(c, s.url()).await;
    mt(a, s.url(), &["contacts", "add", "bob", &kb]).await.ok();
    let t = tag();
    let texts = [
        format!("first secret {t}"),
        format!("second secret {t}"),
        format!("third secret {t}\nwith a second line"),
    ];
    for text in &texts {
        let sent = mt(a, s.url(), &["send", "bob", text]).await;
        let line = sent.ok();
        assert!(
            line.starts_with("sent ") && line.contains(" to bob, kept until "),
            "{line}"
        );
    }
    let for_c = format!("for carol only {t}");
    mt(a, s.url(), &["send", &kc, &for_c]).await.ok();
    // Something that is not a letter lands in B's mailbox too.
    let path = format!("/v1/mailbox/{kb}");
    let r = common::http::request(s.s.addr, "POST", &path, &[], b"not an envelope")
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(s.stored(&kb).await, 4);
    assert_eq!(s.stored(&kc).await, 1);

    let a_raw = hex::decode(&ka).unwrap();
    let secrets: Vec<Vec<u8>> = vec![
        t.clone().into_bytes(),
        ka.clone().into_bytes(),
        a_raw.clone(),
    ];
    let b_raw = hex::decode(&kb).unwrap();
    assert_no_leak(&s, &secrets, &b_raw).await;

    mt(b, s.url(), &["contacts", "add", "alice", &ka])
        .await
        .ok();
    let run = mt(b, s.url(), &["inbox"]).await;
    let out = run.ok();
    let headers: Vec<&str> = out.lines().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(headers.len(), 3, "{run:?}");
    for h in &headers {
        assert!(h.contains(" from alice ["), "{h}");
    }
    let mut at = 0;
    for text in &texts {
        let first_line = text.lines().next().unwrap();
        let pos = out[at..].find(first_line).expect("in order") + at;
        at = pos;
    }
    assert!(out.contains("\n  with a second line"), "{out}");
    assert!(!out.contains(&for_c));
    assert!(run.stderr.contains("rejected message"), "{run:?}");
    assert_eq!(
        s.stored(&kb).await,
        0,
        "printed and rejected messages are deleted"
    );
    assert_eq!(s.stored(&kc).await, 1, "C's letter stays for C");

    let again = mt(b, s.url(), &["inbox"]).await;
    assert_eq!(again.ok(), "");
    assert!(again.stderr.contains("no new messages"), "{again:?}");

    let run = mt(c, s.url(), &["inbox", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(run.ok()).unwrap();
    assert_eq!(v["from"], ka.as_str());
    assert_eq!(v["contact"], serde_json::Value::Null);
    assert_eq!(v["content"], for_c.as_str());
    assert_eq!(s.stored(&kc).await, 0);

    assert_no_leak(&s, &secrets, b"mailbox").await;
    s.stop().await;
}

async fn an_exported_identity_reads_the_inbox_on_a_second_device(pg: bool) {
    let s = start(pg, |_| {}).await;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b1, b2) = (dirs[0].path(), dirs[1].path(), dirs[2].path());
    let file = dirs[3].path().join("b.key");
    keygen(a, s.url()).await;
    let kb = keygen(b1, s.url()).await;
    let file_s = file.to_str().unwrap();
    mt(b1, s.url(), &["key", "export", "--out", file_s])
        .await
        .ok();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let printed = mt(b1, s.url(), &["key", "export"]).await;
    assert_eq!(printed.stdout, std::fs::read_to_string(&file).unwrap());
    assert!(printed.stderr.contains("secret"), "{printed:?}");

    assert_eq!(mt(b2, s.url(), &["key", "import", file_s]).await.ok(), kb);
    assert_eq!(mt(b2, s.url(), &["whoami"]).await.ok(), kb);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(b2.join("identity.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    let t = tag();
    let one = format!("to either device {t}");
    mt(a, s.url(), &["send", &kb, &one]).await.ok();
    let run = mt(b2, s.url(), &["inbox"]).await;
    assert!(run.ok().contains(&one), "{run:?}");
    let two = format!("read on the first device {t}");
    mt(a, s.url(), &["send", &kb, &two]).await.ok();
    let run = mt(b1, s.url(), &["inbox"]).await;
    assert!(run.ok().contains(&two), "{run:?}");
    assert!(!run.stdout.contains(&one), "acknowledged on device 2");
    s.stop().await;
}

async fn bad_input_is_a_clear_error(pg: bool) {
    let s = start(pg, |c| {
        c.mailbox.max_envelope_bytes = 1100;
        c.mailbox.max_messages_per_recipient = 2;
    })
    .await;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let [a, b, empty, files] = [0, 1, 2, 3].map(|i| dirs[i].path());
    let url = s.url();
    mt(empty, url, &["inbox"])
        .await
        .fails_with("run `megatorrent keygen` first");
    let ka = keygen(a, url).await;
    let kb = keygen(b, url).await;

    // Recipients.
    mt(a, url, &["send", "0123abc", "hi"])
        .await
        .fails_with("invalid public key");
    mt(a, url, &["send", &"zz".repeat(32), "hi"])
        .await
        .fails_with("invalid public key");
    mt(a, url, &["send", "nobody", "hi"])
        .await
        .fails_with("no contact named \"nobody\"");
    // Content.
    let long = "x".repeat(40_000);
    mt(a, url, &["send", &kb, &long])
        .await
        .fails_with("the message is too long");
    let long_file = files.join("long.txt");
    std::fs::write(&long_file, &long).unwrap();
    let lf = long_file.to_str().unwrap();
    mt(a, url, &["send", &kb, "--file", lf])
        .await
        .fails_with("the message is too long");
    mt(a, url, &["send", &kb, "--file", "/nonexistent/x.txt"])
        .await
        .fails_with("cannot read /nonexistent/x.txt");
    mt(a, url, &["send", &kb, ""])
        .await
        .fails_with("the message is empty");
    mt(a, url, &["send", &kb, "hi", "--reply-to", "nope"])
        .await
        .fails_with("invalid --reply-to");
    // The server's limits: a 2 KiB bucket is over its 1100-byte cap; the third is over quota.
    mt(a, url, &["send", &kb, &"y".repeat(1500)])
        .await
        .fails_with("the server refuses an envelope of 2097 bytes as too large");
    let note = files.join("note.txt");
    std::fs::write(&note, "from a file").unwrap();
    mt(a, url, &["send", &kb, "--file", note.to_str().unwrap()])
        .await
        .ok();
    let first = mt(a, url, &["send", &kb, "one"]).await;
    let letter_id = first.ok().split_whitespace().nth(1).unwrap().to_owned();
    mt(a, url, &["send", &kb, "three", "--reply-to", &letter_id])
        .await
        .fails_with("the recipient's mailbox is full");
    // The reply-to reaches the recipient.
    let run = mt(b, url, &["inbox", "--json"]).await;
    let lines: Vec<serde_json::Value> = run
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert_eq!(lines[0]["content"], "from a file");
    assert_eq!(lines[1]["id"], letter_id.as_str());
    mt(a, url, &["send", &kb, "re", "--reply-to", &letter_id])
        .await
        .ok();
    let run = mt(b, url, &["inbox"]).await;
    assert!(run.ok().contains(&format!(" re {letter_id}")), "{run:?}");
    // Server down.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    mt(a, &closed, &["send", &kb, "hi"])
        .await
        .fails_with("cannot reach the server");
    mt(b, &closed, &["inbox"])
        .await
        .fails_with("cannot reach the server");

    // Key import and export.
    let corrupt = files.join("corrupt.key");
    std::fs::write(&corrupt, "this is not a key\n").unwrap();
    mt(empty, url, &["key", "import", corrupt.to_str().unwrap()])
        .await
        .fails_with("is corrupt: expected 64 hex characters");
    mt(empty, url, &["key", "import", "/nonexistent/k"])
        .await
        .fails_with("no such file /nonexistent/k");
    let exported = files.join("a.key");
    let ex = exported.to_str().unwrap();
    mt(a, url, &["key", "export", "--out", ex]).await.ok();
    mt(a, url, &["key", "export", "--out", ex])
        .await
        .fails_with("already exists; not replacing it");
    mt(b, url, &["key", "import", ex])
        .await
        .fails_with("use --force to replace it");
    assert_eq!(mt(b, url, &["whoami"]).await.ok(), kb, "unchanged");
    assert_eq!(mt(b, url, &["key", "import", ex, "--force"]).await.ok(), ka);
    assert_eq!(mt(b, url, &["whoami"]).await.ok(), ka);

    // Contacts.
    mt(a, url, &["contacts", "add", "1bad", &kb])
        .await
        .fails_with("invalid contact name \"1bad\"");
    mt(a, url, &["contacts", "add", &"n".repeat(33), &kb])
        .await
        .fails_with("at most 32 characters");
    mt(a, url, &["contacts", "add", "bob", "abc"])
        .await
        .fails_with("invalid public key");
    mt(a, url, &["contacts", "add", "bob", &kb]).await.ok();
    mt(a, url, &["contacts", "add", "bob", &ka])
        .await
        .fails_with("a contact named \"bob\" already exists");
    mt(a, url, &["contacts", "add", "robert", &kb])
        .await
        .fails_with("already saved as \"bob\"");
    assert_eq!(
        mt(a, url, &["contacts", "list"]).await.ok(),
        format!("bob {kb}")
    );
    mt(a, url, &["contacts", "rm", "carol"])
        .await
        .fails_with("no contact named \"carol\"");
    mt(a, url, &["contacts", "rm", "bob"]).await.ok();
    assert_eq!(mt(a, url, &["contacts", "list"]).await.ok(), "");
    mt(a, url, &["send", "bob", "hi"])
        .await
        .fails_with("no contact named \"bob\"");
    std::fs::write(a.join("contacts.json"), "{broken").unwrap();
    mt(a, url, &["send", "bob", "hi"])
        .await
        .fails_with("contacts.json is corrupt");
    s.stop().await;
}

async fn inbox_watch_shows_letters_as_they_arrive_and_petnames_work_for_lookup(pg: bool) {
    let s = start(pg, |_| {}).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b) = (dirs[0].path(), dirs[1].path());
    let ka = keygen(a, s.url()).await;
    let kb = keygen(b, s.url()).await;
    mt(b, s.url(), &["contacts", "add", "alice", &ka])
        .await
        .ok();

    // An hour between polls: the letters can only arrive in time through the push.
    let mut child = mt_cmd(b, s.url(), &["inbox", "--watch", "--interval", "3600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut errs = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = errs.next_line().await.unwrap() {
            if line.contains("the server pushes new mail") {
                return;
            }
        }
        panic!("inbox --watch exited before its push socket was up");
    })
    .await
    .expect("the push socket is up within 30 s");
    let t = tag();
    for i in 0..2 {
        let text = format!("watched {i} {t}");
        mt(a, s.url(), &["send", &kb, &text]).await.ok();
        let got = tokio::time::timeout(Duration::from_secs(30), async {
            let mut seen = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(&text) {
                    return seen;
                }
                seen.push(line);
            }
            panic!("inbox --watch exited: {seen:?}");
        })
        .await
        .expect("the letter shows up within 30 s");
        assert!(got.last().unwrap().contains(" from alice ["), "{got:?}");
    }
    // Printed first, acknowledged right after: the mailbox empties while it keeps watching.
    tokio::time::timeout(Duration::from_secs(10), async {
        while s.stored(&kb).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("shown letters are deleted");
    assert!(child.try_wait().unwrap().is_none(), "still watching");
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    // Petnames wherever a key is taken: lookup and subscribe.
    mt(
        a,
        s.url(),
        &[
            "publish",
            "--title",
            "t",
            "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567",
        ],
    )
    .await
    .ok();
    let run = mt(b, s.url(), &["lookup", "--json", "alice"]).await;
    assert!(run.ok().contains(&ka), "{run:?}");
    let run = mt(
        b,
        s.url(),
        &["subscribe", "alice", "--count", "1", "--json"],
    )
    .await;
    assert!(run.ok().contains(&ka), "{run:?}");
    mt(b, s.url(), &["lookup", "carol"])
        .await
        .fails_with("no contact named \"carol\"");
    s.stop().await;
}
