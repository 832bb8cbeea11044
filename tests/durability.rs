//! An acknowledged publish survives `kill -9` of the real server binary, on both databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::http::request;
use common::server::spawn_daemon;
use ed25519_dalek::SigningKey;
use megatorrent::proto::{Collection, Manifest, UnsignedManifest};

fn manifest(key: &SigningKey, seq: u64) -> Manifest {
    UnsignedManifest {
        sequence: seq,
        timestamp: u64::try_from(megatorrent::now_ms()).unwrap(),
        collections: vec![Collection {
            title: "t".into(),
            items: vec![format!("item {seq}")],
        }],
    }
    .sign(key)
    .unwrap()
}

async fn kill_nine_loses_nothing(database_url: &str, dir: &std::path::Path) {
    let keys: Vec<SigningKey> = (1..=20u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let mut acked = Vec::new();
    let mut daemon = spawn_daemon(database_url, dir).await;
    for round in 1..=3u64 {
        for key in &keys {
            let m = manifest(key, round);
            let path = format!("/v1/manifests/{}", m.public_key());
            let r = request(daemon.addr, "PUT", &path, &[], m.canonical_bytes())
                .await
                .unwrap();
            assert!(r.status == 200 || r.status == 201, "status {}", r.status);
            acked.push(m);
        }
    }
    // SIGKILL immediately after the last acknowledgement: no chance to flush anything.
    daemon.child.start_kill().unwrap();
    daemon.child.wait().await.unwrap();

    let daemon = spawn_daemon(database_url, dir).await;
    for m in acked.iter().rev().take(keys.len()) {
        let r = request(
            daemon.addr,
            "GET",
            &format!("/v1/manifests/{}", m.public_key()),
            &[],
            b"",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            m.canonical_bytes(),
            "acknowledged manifest lost or changed"
        );
    }
    drop(daemon);
}

#[tokio::test]
async fn sqlite_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    kill_nine_loses_nothing(&url, dir.path()).await;
}

#[tokio::test]
async fn postgres_survives_kill_9() {
    let pg = common::pg::PgTestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    kill_nine_loses_nothing(&pg.url, dir.path()).await;
    pg.drop_db().await;
}
