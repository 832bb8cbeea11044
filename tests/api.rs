//! Router tests (`oneshot`, no sockets) for the manifest and proof-of-concept APIs, run on
//! both SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use ed25519_dalek::SigningKey;
use megatorrent::proto::{Collection, Manifest, UnsignedManifest};
use megatorrent::server::{app, AppState};
use megatorrent::store::{self, Store, StoreOptions};
use serde_json::{json, Value};
use tower::ServiceExt;

const NODE_MANIFEST: &str = include_str!("vectors/node-manifest.json");
const NODE_POINTER: &str = include_str!("vectors/node-pointer.json");

struct Env {
    router: Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    pg: Option<common::pg::PgTestDb>,
}

impl Env {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        Self::with_url(url, dir, None).await
    }

    async fn pg() -> Self {
        let pg = common::pg::PgTestDb::create().await;
        Self::with_url(pg.url.clone(), tempfile::tempdir().unwrap(), Some(pg)).await
    }

    async fn with_url(
        url: String,
        dir: tempfile::TempDir,
        pg: Option<common::pg::PgTestDb>,
    ) -> Self {
        let store = store::open(&url, &StoreOptions::default()).await.unwrap();
        let mut cfg = common::server::test_config();
        cfg.database.url = url;
        let router = app(AppState::new(store.clone(), cfg));
        Self {
            router,
            store,
            _dir: dir,
            pg,
        }
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some(pg) = self.pg {
            pg.drop_db().await;
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap()
            .to_vec();
        (status, headers, body)
    }

    async fn put(&self, key: &str, body: impl Into<Vec<u8>>) -> (StatusCode, Value) {
        let (s, _, b) = self
            .call("PUT", &format!("/v1/manifests/{key}"), &[], body.into())
            .await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    async fn get_body(&self, key: &str) -> (StatusCode, Vec<u8>) {
        let (s, _, b) = self
            .call("GET", &format!("/v1/manifests/{key}"), &[], vec![])
            .await;
        (s, b)
    }
}

fn sk() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

fn manifest(seq: u64, title: &str) -> Manifest {
    UnsignedManifest {
        sequence: seq,
        timestamp: u64::try_from(megatorrent::now_ms()).unwrap(),
        collections: vec![Collection {
            title: title.into(),
            items: vec![format!("magnet:?xt=urn:btih:{}", "b".repeat(40))],
        }],
    }
    .sign(&sk())
    .unwrap()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { let e = super::Env::sqlite().await; super::$name(&e).await; e.finish().await; } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { let e = super::Env::pg().await; super::$name(&e).await; e.finish().await; } )*
        }
    };
}

both_backends!(
    publish_lookup_and_etags,
    sequence_rules,
    bad_input_leaves_record_unchanged,
    node_manifest_accepted,
    pointer_compat,
    info_and_health,
);

async fn publish_lookup_and_etags(e: &Env) {
    let m = manifest(1, "news");
    let key = m.public_key().to_hex();
    assert_eq!(e.get_body(&key).await.0, StatusCode::NOT_FOUND);
    let (s, v) = e.put(&key, m.canonical_bytes().to_vec()).await;
    assert_eq!((s, v), (StatusCode::CREATED, json!({"sequence": 1})));

    let (s, h, body) = e
        .call("GET", &format!("/v1/manifests/{key}"), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, m.canonical_bytes());
    assert_eq!(h["etag"], "\"1\"");
    assert_eq!(h["content-type"], "application/json");

    let (s, h, body) = e
        .call(
            "GET",
            &format!("/v1/manifests/{key}"),
            &[("if-none-match", "\"1\"")],
            vec![],
        )
        .await;
    assert_eq!((s, body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(h["etag"], "\"1\"");
    let (s, _, _) = e
        .call(
            "GET",
            &format!("/v1/manifests/{key}"),
            &[("if-none-match", "\"0\"")],
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Whitespace and member order in the upload do not matter: readers get canonical bytes.
    let m2 = manifest(2, "news");
    let pretty = serde_json::to_vec_pretty(&m2.to_value()).unwrap();
    assert_eq!(e.put(&key, pretty).await.0, StatusCode::OK);
    assert_eq!(e.get_body(&key).await.1, m2.canonical_bytes());
}

async fn sequence_rules(e: &Env) {
    let key = sk().verifying_key();
    let key = hex::encode(key.to_bytes());
    let m5 = manifest(5, "a");
    assert_eq!(
        e.put(&key, m5.canonical_bytes().to_vec()).await.0,
        StatusCode::CREATED
    );
    // Same sequence, same bytes: idempotent success.
    assert_eq!(
        e.put(&key, m5.canonical_bytes().to_vec()).await,
        (StatusCode::OK, json!({"sequence": 5}))
    );
    // Same sequence, different content: conflict.
    let (s, v) = e
        .put(&key, manifest(5, "b").canonical_bytes().to_vec())
        .await;
    assert_eq!(
        (s, v["error"].as_str(), v["currentSequence"].as_u64()),
        (StatusCode::CONFLICT, Some("conflict"), Some(5))
    );
    // Older: conflict with the current sequence.
    let (s, v) = e
        .put(&key, manifest(4, "a").canonical_bytes().to_vec())
        .await;
    assert_eq!(
        (s, v["currentSequence"].as_u64()),
        (StatusCode::CONFLICT, Some(5))
    );
    assert_eq!(e.get_body(&key).await.1, m5.canonical_bytes());
    // The high-water mark survives deletion.
    assert!(e.store.delete_manifest(m5.public_key()).await.unwrap());
    assert_eq!(e.get_body(&key).await.0, StatusCode::NOT_FOUND);
    let (s, v) = e.put(&key, m5.canonical_bytes().to_vec()).await;
    assert_eq!(
        (s, v["currentSequence"].as_u64()),
        (StatusCode::CONFLICT, Some(5))
    );
    assert_eq!(
        e.put(&key, manifest(6, "a").canonical_bytes().to_vec())
            .await
            .0,
        StatusCode::CREATED
    );
}

async fn bad_input_leaves_record_unchanged(e: &Env) {
    let good = manifest(10, "keep");
    let key = good.public_key().to_hex();
    assert_eq!(
        e.put(&key, good.canonical_bytes().to_vec()).await.0,
        StatusCode::CREATED
    );
    let newer = manifest(11, "x").to_value();
    let text = String::from_utf8(manifest(11, "x").into_canonical_bytes()).unwrap();
    let with = |member: &str, v: Value| {
        let mut x = newer.clone();
        x[member] = v;
        serde_json::to_vec(&x).unwrap()
    };
    let future = UnsignedManifest {
        sequence: 11,
        timestamp: u64::try_from(megatorrent::now_ms()).unwrap() + 3_600_000,
        collections: vec![],
    }
    .sign(&sk())
    .unwrap();
    let other_key = UnsignedManifest {
        sequence: 11,
        timestamp: 1,
        collections: vec![],
    }
    .sign(&SigningKey::from_bytes(&[3u8; 32]))
    .unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "wrong signature",
            with("signature", json!("00".repeat(64))),
            403,
            "bad-signature",
        ),
        (
            "tampered content",
            with("collections", json!([])),
            403,
            "bad-signature",
        ),
        (
            "float sequence",
            text.replace("\"sequence\":11", "\"sequence\":11.0")
                .into_bytes(),
            400,
            "not-an-integer",
        ),
        (
            "duplicate member",
            text.replacen('{', "{\"sequence\":12,", 1).into_bytes(),
            400,
            "duplicate-member",
        ),
        (
            "future timestamp",
            future.canonical_bytes().to_vec(),
            400,
            "timestamp-in-future",
        ),
        ("not json", b"{nope".to_vec(), 400, "invalid-json"),
        ("over the cap", vec![b' '; 70 * 1024], 413, "too-large"),
        (
            "key mismatch",
            other_key.canonical_bytes().to_vec(),
            400,
            "key-mismatch",
        ),
        (
            "uppercase hex key",
            with("publicKey", json!(key.to_uppercase())),
            400,
            "invalid-hex",
        ),
    ];
    for (what, body, status, code) in cases {
        let (s, v) = e.put(&key, body).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str()),
            (status, Some(code)),
            "{what}: {v}"
        );
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: no message"
        );
        assert_eq!(
            e.get_body(&key).await.1,
            good.canonical_bytes(),
            "{what} changed the record"
        );
    }
    for bad_key in ["zz", &key.to_uppercase(), &"a".repeat(63)] {
        let (s, v) = e.put(bad_key, good.canonical_bytes().to_vec()).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid-key"))
        );
        assert_eq!(e.get_body(bad_key).await.0, StatusCode::BAD_REQUEST);
    }
}

async fn node_manifest_accepted(e: &Env) {
    let m: Value = serde_json::from_str(NODE_MANIFEST).unwrap();
    let key = m["publicKey"].as_str().unwrap();
    let (s, v) = e.put(key, NODE_MANIFEST).await;
    assert_eq!((s, v), (StatusCode::CREATED, json!({"sequence": 7})));
    let (_, body) = e.get_body(key).await;
    let served = Manifest::verify(&body, &Default::default()).unwrap();
    assert_eq!(served.sequence(), 7);
}

async fn pointer_compat(e: &Env) {
    let p: Value = serde_json::from_str(NODE_POINTER).unwrap();
    let key = p["publicKey"].as_str().unwrap();
    let (s, _, b) = e
        .call(
            "POST",
            "/announce",
            &[("content-type", "application/json")],
            NODE_POINTER.into(),
        )
        .await;
    assert_eq!(
        (s, serde_json::from_slice::<Value>(&b).unwrap()),
        (StatusCode::OK, json!({"success": true, "seq": 3}))
    );
    // A replay of the same announce is refused, as in the proof of concept.
    let (s, _, b) = e.call("POST", "/announce", &[], NODE_POINTER.into()).await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        (s, v["currentSeq"].as_u64()),
        (StatusCode::CONFLICT, Some(3))
    );
    assert!(v["error"].is_string());

    for path in [
        format!("/lookup/{key}"),
        format!("/lookup/{}", key.to_uppercase()),
    ] {
        let (s, _, b) = e.call("GET", &path, &[], vec![]).await;
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["manifestInfohash"], p["manifestInfohash"]);
        assert_eq!(v["publicKey"], p["publicKey"]);
        assert_eq!(v["seq"], 3);
        assert_eq!(v["signature"], p["signature"]);
        assert!(v["updatedAt"].as_i64().unwrap() > 0);
    }
    let (s, _, _) = e
        .call("GET", &format!("/lookup/{}", "1".repeat(64)), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let mut forged = p.clone();
    forged["seq"] = json!(4);
    let (s, _, b) = e
        .call(
            "POST",
            "/announce",
            &[],
            serde_json::to_vec(&forged).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&b));

    let (s, _, b) = e.call("GET", "/stats", &[], vec![]).await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["entries"].as_u64()), (StatusCode::OK, Some(1)));
}

async fn info_and_health(e: &Env) {
    let (s, _, b) = e.call("GET", "/v1/info", &[], vec![]).await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["limits"]["maxManifestBytes"], 65536);
    let expected = if e.pg.is_some() { "postgres" } else { "sqlite" };
    assert_eq!(v["backend"], expected);
    assert_eq!(
        e.call("GET", "/healthz", &[], vec![]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        e.call("GET", "/readyz", &[], vec![]).await.0,
        StatusCode::OK
    );
    let (s, _, b) = e.call("GET", "/nope", &[], vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_slice::<Value>(&b).unwrap()["error"],
        "no-route"
    );
}
