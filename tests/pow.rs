//! Proof-of-work admission: under load a write without a stamp is refused with the
//! difficulty, and the real CLI publishes anyway by solving the challenge.
#![cfg(all(feature = "client", feature = "server", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::http::request;
use common::server::{start_with, test_config};
use ed25519_dalek::SigningKey;
use megatorrent::proto::{
    pow, Collection, Manifest, ProfileLimits, UnsignedManifest, UnsignedProfile,
};
use tokio::process::Command;

fn manifest(key: &SigningKey, seq: u64) -> Manifest {
    UnsignedManifest {
        sequence: seq,
        timestamp: u64::try_from(megatorrent::now_ms()).unwrap(),
        collections: vec![Collection {
            title: "t".into(),
            items: vec!["magnet:?xt=urn:btih:aa".into()],
        }],
    }
    .sign(key)
    .unwrap()
}

#[tokio::test]
async fn writes_need_a_stamp_under_load_and_the_cli_solves_it() {
    let mut cfg = test_config();
    cfg.pow.enabled = true;
    cfg.pow.threshold = "3r/m".parse().unwrap();
    cfg.pow.window_secs = 60;
    cfg.pow.step_bits = 8;
    // Every write in the window counts, refused ones too, so the CLI runs below push the
    // difficulty up by 8 bits more than once; capped at 16 bits, a debug-build solve takes
    // well under a second (at the default cap of 24 it could take minutes).
    cfg.pow.max_difficulty = 16;
    let server = start_with(cfg, None).await;
    let info = request(server.addr, "GET", "/v1/info", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(info["pow"]["enabled"], true);
    assert_eq!(info["pow"]["difficulty"], 0);

    // Three writes fit the window's budget; the fourth raises the difficulty and is refused.
    let key = SigningKey::from_bytes(&[4; 32]);
    let path = format!(
        "/v1/manifests/{}",
        hex::encode(key.verifying_key().as_bytes())
    );
    for seq in 1..=3 {
        let m = manifest(&key, seq);
        let r = request(server.addr, "PUT", &path, &[], m.canonical_bytes())
            .await
            .unwrap();
        assert!(r.status == 200 || r.status == 201, "{}", r.status);
    }
    let m = manifest(&key, 4);
    let r = request(server.addr, "PUT", &path, &[], m.canonical_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 428);
    let body = r.json();
    assert_eq!(body["error"], "pow-required");
    assert_eq!(body["difficulty"], 8);
    let info = request(server.addr, "GET", "/v1/info", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(info["pow"]["difficulty"], 8);
    assert_eq!(info["pow"]["nonce"], body["nonce"]);

    // A wrong stamp is refused with its own code; a solved one is accepted. The server also
    // accepts stamps for the previous nonce (rotation), which the test cannot compute: a
    // one-byte stamp meets it with probability 1/256, and is then accepted, so the check
    // moves on to the next sequence.
    let nonce = hex::decode(body["nonce"].as_str().unwrap()).unwrap();
    let (mut seq, mut m) = (4, m);
    let mut refused = false;
    for candidate in 0u8..=255 {
        if pow::meets(
            &nonce,
            &pow::body_digest(m.canonical_bytes()),
            &[candidate],
            8,
        ) {
            continue;
        }
        let stamp = hex::encode([candidate]);
        let bad = [(pow::HEADER, stamp.as_str())];
        let r = request(server.addr, "PUT", &path, &bad, m.canonical_bytes())
            .await
            .unwrap();
        if r.status == 200 || r.status == 201 {
            seq += 1;
            m = manifest(&key, seq);
            continue;
        }
        assert_eq!(r.json()["error"], "pow-invalid", "{}", r.status);
        refused = true;
        break;
    }
    assert!(refused, "no wrong stamp was ever refused");
    let digest = pow::body_digest(m.canonical_bytes());
    let stamp = hex::encode(pow::solve(&nonce, &digest, 8, 0, 1 << 24).unwrap());
    let good = [(pow::HEADER, stamp.as_str())];
    let r = request(server.addr, "PUT", &path, &good, m.canonical_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // The CLI meets the 428, reads /v1/info, solves and publishes.
    let home = tempfile::tempdir().unwrap();
    let mt = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_megatorrent"));
        c.args(args)
            .env("MEGATORRENT_HOME", home.path())
            .env("MEGATORRENT_SERVER", &server.url)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        async move {
            tokio::time::timeout(Duration::from_secs(120), c.output())
                .await
                .expect("megatorrent did not finish within 120 s")
                .unwrap()
        }
    };
    assert!(mt(&["keygen"]).await.status.success());
    let out = mt(&["publish", "--title", "t", "magnet:?xt=urn:btih:bb"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    // Profile writes are admitted the same way: refused without a stamp, solved by the CLI.
    let profile = UnsignedProfile {
        sequence: 1,
        timestamp: u64::try_from(megatorrent::now_ms()).unwrap(),
        name: "P".into(),
        avatar: None,
        mailbox_key: None,
    }
    .sign(&key, &ProfileLimits::default())
    .unwrap();
    let ppath = path.replace("/v1/manifests/", "/v1/profiles/");
    let r = request(server.addr, "PUT", &ppath, &[], profile.canonical_bytes())
        .await
        .unwrap();
    assert_eq!(
        (r.status, &r.json()["error"]),
        (428, &"pow-required".into())
    );
    let out = mt(&["profile", "set", "--name", "Solver"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    let text = String::from_utf8(
        request(server.metrics_addr, "GET", "/metrics", &[], b"")
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let valid = text
        .lines()
        .find_map(|l| l.strip_prefix("megatorrent_pow_checks_total{result=\"valid\"} "))
        .unwrap();
    assert!(valid.parse::<u64>().unwrap() >= 2, "{text}");
    assert!(text.contains("megatorrent_publishes_total{kind=\"manifest\",result=\"pow_required\"}"));
    let profile_pow = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("megatorrent_publishes_total{kind=\"profile\",result=\"pow_required\"} ")
        })
        .unwrap();
    assert!(profile_pow.parse::<u64>().unwrap() >= 1, "{text}");
    server.stop().await;
}
