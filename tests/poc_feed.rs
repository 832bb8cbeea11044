//! Reading proof-of-concept feeds end to end: a real server on 127.0.0.1, PoC-format message
//! and manifest torrents built with the library and seeded from a real librqbit session
//! (announced to our tracker), a pointer posted with `POST /announce` in the PoC's signature
//! format, and the real `megatorrent find` / `seed` binaries as separate processes.
#![cfg(all(
    feature = "client",
    feature = "server",
    feature = "sqlite",
    feature = "torrent"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::cli::{mt, start_seed, Run};
use ed25519_dalek::{Signer, SigningKey};
use megatorrent::client::announce::{Announce, Event, TrackerClient};
use megatorrent::client::http::{BaseUrl, HttpClient};
use megatorrent::client::torrent::{Engine, EngineConfig};
use megatorrent::net::Connector;
use megatorrent::proto::poc::stringify::JsValue;
use megatorrent::proto::{InfoHash, PocManifest, PocMessage, PointerAnnounce, PublicKey};

async fn find(home: &Path, server: &str, key: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "find",
        key,
        "--fetch-timeout",
        "30",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    mt(home, server, &args).await
}

/// A librqbit session in the test process that seeds files and announces them to our
/// tracker, like the proof of concept's own seeding would.
struct Seeder {
    engine: Engine,
    tracker: TrackerClient,
    tracker_url: String,
    dir: PathBuf,
    seeded: Vec<[u8; 20]>,
}

impl Seeder {
    async fn start(url: &str, dir: &Path) -> Self {
        let engine = Engine::start(
            &EngineConfig::new("127.0.0.1:0".parse().unwrap()),
            dir.to_owned(),
        )
        .await
        .unwrap();
        let http = HttpClient::new(Connector::direct(), BaseUrl::parse(url).unwrap());
        Self {
            engine,
            tracker: TrackerClient::new(http),
            tracker_url: format!("{url}/announce"),
            dir: dir.to_owned(),
            seeded: Vec::new(),
        }
    }

    /// Write `bytes` as `name` (pretty-printed like the proof of concept's
    /// `JSON.stringify(v, null, 2)` when it is JSON), seed it and announce it.
    async fn seed(&mut self, name: &str, bytes: &[u8]) -> InfoHash {
        let file = self.dir.join(name);
        std::fs::write(&file, bytes).unwrap();
        let seeded = self
            .engine
            .seed_file(&file, std::slice::from_ref(&self.tracker_url))
            .await
            .unwrap();
        self.announce(&seeded.info_hash, Event::Started).await;
        self.seeded.push(seeded.info_hash);
        InfoHash::from(seeded.info_hash)
    }

    async fn announce(&self, info_hash: &[u8; 20], event: Event) {
        self.tracker
            .announce(&Announce {
                info_hash,
                peer_id: self.engine.peer_id(),
                port: self.engine.port(),
                left: 0,
                event,
                ip: None,
                compact: true,
            })
            .await
            .unwrap();
    }

    /// Leave every swarm (`stopped`) and stop the session.
    async fn stop(self) {
        for h in &self.seeded {
            self.announce(h, Event::Stopped).await;
        }
        self.engine.stop().await;
    }
}

/// The proof of concept writes its files with `JSON.stringify(v, null, 2)`; serde_json's
/// pretty printer gives the same layout (member order does not matter for what is signed
/// here: the message members are rebuilt in a fixed order and the manifest entries'
/// `infohash` < `timestamp` are sorted either way).
fn pretty(doc: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(doc).unwrap();
    serde_json::to_vec_pretty(&v).unwrap()
}

/// `POST /announce` a pointer, signed the proof of concept's way.
async fn post_pointer(server: &common::server::TestServer, key: &SigningKey, hash: &InfoHash) {
    let pk = PublicKey::from(key).to_hex();
    let ih = hash.to_hex();
    let sig = key.sign(&PointerAnnounce::signed_bytes(&pk, &ih, 1));
    let body = serde_json::json!({
        "publicKey": pk,
        "manifestInfohash": ih,
        "seq": 1,
        "signature": hex::encode(sig.to_bytes()),
    });
    let resp = common::http::request(
        server.addr,
        "POST",
        "/announce",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

fn message_file(key: &SigningKey, content: &str, timestamp: u64) -> Vec<u8> {
    pretty(
        PocMessage::sign(key, content, timestamp)
            .unwrap()
            .document_bytes(),
    )
}

fn stdout_texts(run: &Run) -> Vec<&str> {
    run.stdout
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect()
}

const T0: u64 = 1_700_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_reads_a_proof_of_concept_pointer_feed() {
    let server = common::server::start_sqlite().await;
    let url = server.url.clone();
    let seed_dir = tempfile::tempdir().unwrap();
    let mut seeder = Seeder::start(&url, seed_dir.path()).await;
    let a = SigningKey::from_bytes(&[21; 32]);
    let other = SigningKey::from_bytes(&[22; 32]);
    let key_a = PublicKey::from(&a).to_hex();

    // Three good messages, listed out of order; one whose text was changed after signing;
    // one signed by another key.
    let third = "third: \"quoted\" \\ déjà 😀\ttab";
    let mut entries = Vec::new();
    for (n, (text, ts)) in [("second", T0 + 2), (third, T0 + 3), ("first", T0 + 1)]
        .into_iter()
        .enumerate()
    {
        let h = seeder
            .seed(&format!("msg-0000000{n}.json"), &message_file(&a, text, ts))
            .await;
        entries.push(PocManifest::entry(&h, ts));
    }
    let forged = String::from_utf8(message_file(&a, "genuine", T0 + 4))
        .unwrap()
        .replace("genuine", "forged!");
    let h = seeder.seed("msg-forged00.json", forged.as_bytes()).await;
    entries.push(PocManifest::entry(&h, T0 + 4));
    let h = seeder
        .seed(
            "msg-foreign0.json",
            &message_file(&other, "not from A", T0 + 5),
        )
        .await;
    entries.push(PocManifest::entry(&h, T0 + 5));
    // An entry of an unknown shape is skipped with a note.
    entries.push(JsValue::Bool(true));
    let manifest = PocManifest::sign(&a, &JsValue::Array(entries)).unwrap();
    let name = format!("manifest-{}-1.json", &key_a[..8]);
    let manifest_hash = seeder.seed(&name, &pretty(&manifest)).await;
    post_pointer(&server, &a, &manifest_hash).await;

    let reader = tempfile::tempdir().unwrap();
    let run = find(reader.path(), &url, &key_a, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        stdout_texts(&run),
        ["first", "second", "third: \"quoted\" \\ déjà 😀\\ttab"],
        "{run:?}"
    );
    run.assert_rejected_forged_and_foreign(&PublicKey::from(&other).to_hex());
    assert!(run.stderr.contains("skipped item 5"), "{run:?}");
    assert!(!run.stdout.contains("forged") && !run.stdout.contains("not from A"));

    // --json: one PoC message document per line, each verifying as A's.
    let run = find(reader.path(), &url, &key_a, &["--json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let texts: Vec<String> = run
        .stdout
        .lines()
        .map(|l| {
            PocMessage::verify_from(l.as_bytes(), &PublicKey::from(&a))
                .unwrap()
                .content()
                .to_owned()
        })
        .collect();
    assert_eq!(texts, ["first", "second", third]);

    // `seed` in the reader's home seeds the verified PoC torrents (the manifest and the
    // three good messages); a fresh home reads the whole feed from it alone.
    seeder.stop().await;
    let (mut seed, ready) = start_seed(reader.path(), &url).await;
    assert!(ready.starts_with("seeding 4 torrents"), "{ready}");
    let fresh = tempfile::tempdir().unwrap();
    let run = find(fresh.path(), &url, &key_a, &[]).await;
    assert_eq!(
        stdout_texts(&run),
        ["first", "second", "third: \"quoted\" \\ déjà 😀\\ttab"],
        "{run:?}"
    );
    seed.kill().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_proof_of_concept_manifest_fails_find() {
    let server = common::server::start_sqlite().await;
    let url = server.url.clone();
    let seed_dir = tempfile::tempdir().unwrap();
    let mut seeder = Seeder::start(&url, seed_dir.path()).await;
    let c = SigningKey::from_bytes(&[23; 32]);
    let key_c = PublicKey::from(&c).to_hex();
    let h = seeder
        .seed("msg-00000000.json", &message_file(&c, "hello", T0))
        .await;
    let manifest =
        PocManifest::sign(&c, &JsValue::Array(vec![PocManifest::entry(&h, T0)])).unwrap();
    // Change the listed timestamp after signing: the manifest no longer verifies.
    let bad = String::from_utf8(manifest).unwrap().replace(
        &format!("\"timestamp\":{T0}"),
        &format!("\"timestamp\":{}", T0 + 1),
    );
    let manifest_hash = seeder
        .seed(&format!("manifest-{}-1.json", &key_c[..8]), bad.as_bytes())
        .await;
    post_pointer(&server, &c, &manifest_hash).await;

    let reader = tempfile::tempdir().unwrap();
    let run = find(reader.path(), &url, &key_c, &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the proof-of-concept manifest ")
            && last.contains(&manifest_hash.to_hex())
            && last.contains("signature does not verify"),
        "{run:?}"
    );
    // Reported again (from the `.rejected` marker) without a download.
    let again = find(reader.path(), &url, &key_c, &[]).await;
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again.stderr.contains("signature does not verify"),
        "{again:?}"
    );
    // --watch is refused for pointer feeds, clearly.
    let run = find(reader.path(), &url, &key_c, &["--watch"]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("cannot follow a proof-of-concept feed"),
        "{run:?}"
    );
    seeder.stop().await;
    server.stop().await;
}
