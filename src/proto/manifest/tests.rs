use super::*;

const NODE_MANIFEST: &str = include_str!("../../../tests/vectors/node-manifest.json");
const NODE_SEED: &str = include_str!("../../../tests/vectors/node-seed.hex");

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn signed(seq: u64) -> Manifest {
    UnsignedManifest {
        sequence: seq,
        timestamp: 1_700_000_000_000,
        collections: vec![Collection {
            title: "news".into(),
            items: vec![format!("magnet:?xt=urn:btih:{}", "a".repeat(40))],
        }],
    }
    .sign(&key())
    .unwrap()
}

fn limits() -> ManifestLimits {
    ManifestLimits::default()
}

fn reject(v: &Value) -> ManifestError {
    Manifest::verify(v.to_string().as_bytes(), &limits()).unwrap_err()
}

#[test]
fn node_vector_verifies_and_canonical_form_is_stable() {
    let m = Manifest::verify(NODE_MANIFEST.as_bytes(), &limits()).unwrap();
    assert_eq!(m.sequence(), 7);
    assert_eq!(m.timestamp(), 1_678_886_400_000);
    assert_eq!(m.collections()[0].title, "Season 1 — \"déjà vu\" \\ ✓");
    // Re-verifying the canonical bytes gives the same bytes back.
    let again = Manifest::verify(m.canonical_bytes(), &limits()).unwrap();
    assert_eq!(again.canonical_bytes(), m.canonical_bytes());
    // Signing the same content with the same seed reproduces Node's signature exactly
    // (Ed25519 is deterministic), so Node verifiers accept what we emit.
    let seed: [u8; 32] = hex::decode(NODE_SEED.trim()).unwrap().try_into().unwrap();
    let ours = UnsignedManifest {
        sequence: m.sequence(),
        timestamp: m.timestamp(),
        collections: m.collections().to_vec(),
    }
    .sign(&SigningKey::from_bytes(&seed))
    .unwrap();
    assert_eq!(ours.signature(), m.signature());
    assert_eq!(ours.canonical_bytes(), m.canonical_bytes());
}

#[test]
fn signed_manifest_round_trips_with_reference_members_only() {
    let m = signed(1);
    let v: Value = serde_json::from_slice(m.canonical_bytes()).unwrap();
    let mut names: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "collections",
            "publicKey",
            "sequence",
            "signature",
            "timestamp"
        ]
    );
    assert_eq!(Manifest::verify(m.canonical_bytes(), &limits()).unwrap(), m);
    assert_eq!(m.items("news").len(), 1);
    assert!(m.items("nope").is_empty());
}

#[test]
fn unknown_members_are_kept_and_covered() {
    let sk = key();
    let mut obj = signed(1).to_value();
    let obj = obj.as_object_mut().unwrap();
    obj.remove("signature");
    obj.insert("extra".into(), serde_json::json!({"z": 1, "a": [true]}));
    let sig = Signature::from(sk.sign(&serde_jcs::to_vec(&obj).unwrap()));
    obj.insert("signature".into(), sig.to_hex().into());
    let body = serde_json::to_vec(&obj).unwrap();
    let m = Manifest::verify(&body, &limits()).unwrap();
    assert!(std::str::from_utf8(m.canonical_bytes())
        .unwrap()
        .contains(r#""extra":{"a":[true],"z":1}"#));
    // Changing the unknown member breaks the signature.
    obj.insert("extra".into(), serde_json::json!(2));
    assert_eq!(
        reject(&Value::Object(obj.clone())),
        ManifestError::BadSignature
    );
}

#[test]
fn each_malformed_case_has_its_reason() {
    let good = signed(1).to_value();
    let with = |member: &str, v: Value| {
        let mut x = good.clone();
        x[member] = v;
        x
    };
    assert_eq!(
        reject(&with("sequence", 2.into())),
        ManifestError::BadSignature
    );
    assert_eq!(
        reject(&with("sequence", serde_json::json!(1.5))).code(),
        "not-an-integer"
    );
    assert_eq!(
        reject(&with("sequence", serde_json::json!(-1))).code(),
        "invalid-manifest"
    );
    assert_eq!(
        reject(&with("sequence", "1".into())).code(),
        "invalid-manifest"
    );
    assert_eq!(
        reject(&with("timestamp", serde_json::json!(1e20))).code(),
        "not-an-integer"
    );
    assert_eq!(
        reject(&with("publicKey", "AB".repeat(32).into())).code(),
        "invalid-hex"
    );
    assert_eq!(
        reject(&with("publicKey", "ab".into())).code(),
        "invalid-hex"
    );
    assert_eq!(
        reject(&with("signature", "00".repeat(63).into())).code(),
        "invalid-hex"
    );
    assert_eq!(
        reject(&with("collections", serde_json::json!({}))).code(),
        "invalid-manifest"
    );
    assert_eq!(
        reject(&with(
            "collections",
            serde_json::json!([{"title": 1, "items": []}])
        ))
        .code(),
        "invalid-manifest"
    );
    assert_eq!(reject(&serde_json::json!([1])).code(), "invalid-manifest");
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(reject(&missing).code(), "invalid-manifest");

    // Duplicate member: splice a second "sequence" into the canonical text.
    let text = String::from_utf8(signed(1).into_canonical_bytes()).unwrap();
    let dup = text.replacen('{', r#"{"sequence":1,"#, 1);
    let e = Manifest::verify(dup.as_bytes(), &limits()).unwrap_err();
    assert_eq!(e.code(), "duplicate-member");
}

#[test]
fn size_cap_applies() {
    let big = UnsignedManifest {
        sequence: 1,
        timestamp: 1,
        collections: vec![Collection {
            title: "x".repeat(2000),
            items: vec![],
        }],
    }
    .sign(&key())
    .unwrap();
    let small = ManifestLimits { max_bytes: 1024 };
    assert_eq!(
        Manifest::verify(big.canonical_bytes(), &small)
            .unwrap_err()
            .code(),
        "too-large"
    );
    assert!(Manifest::verify(big.canonical_bytes(), &limits()).is_ok());
}

#[test]
fn future_timestamps_are_refused_beyond_skew() {
    let m = signed(1);
    let ts = m.timestamp();
    assert!(m.check_timestamp(ts, 0).is_ok());
    assert!(m.check_timestamp(ts - 1000, 1000).is_ok());
    assert_eq!(
        m.check_timestamp(ts - 1001, 1000).unwrap_err().code(),
        "timestamp-in-future"
    );
}

#[test]
fn sign_refuses_unsafe_integers() {
    let u = UnsignedManifest {
        sequence: MAX_SAFE_INTEGER + 1,
        timestamp: 0,
        collections: vec![],
    };
    assert!(u.sign(&key()).is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn canonical_is_a_fixed_point(title in "\\PC{0,40}", items in proptest::collection::vec("\\PC{0,60}", 0..5), seq in 0u64..=MAX_SAFE_INTEGER) {
            let m = UnsignedManifest { sequence: seq, timestamp: 5, collections: vec![Collection { title, items }] }
                .sign(&key()).unwrap();
            let again = Manifest::verify(m.canonical_bytes(), &ManifestLimits { max_bytes: ManifestLimits::HARD_MAX_BYTES }).unwrap();
            prop_assert_eq!(again.canonical_bytes(), m.canonical_bytes());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::verify(&bytes, &ManifestLimits::default());
        }
    }
}
