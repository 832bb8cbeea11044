use super::*;
use crate::proto::Message;
use proptest::prelude::*;

const NODE_MESSAGE: &str = include_str!("../../../tests/vectors/node-poc-message.json");
const NODE_MANIFEST: &str = include_str!("../../../tests/vectors/node-poc-manifest.json");
const NODE_SEED: &str = include_str!("../../../tests/vectors/node-seed.hex");

fn node_key() -> PublicKey {
    let seed: [u8; 32] = hex::decode(NODE_SEED.trim()).unwrap().try_into().unwrap();
    PublicKey::from(&SigningKey::from_bytes(&seed))
}

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}

fn hash(b: u8) -> InfoHash {
    InfoHash::from([b; 20])
}

#[test]
fn node_message_vector_verifies() {
    let m = PocMessage::verify_from(NODE_MESSAGE.as_bytes(), &node_key()).unwrap();
    assert_eq!(m.timestamp(), 1_700_000_000_123);
    assert_eq!(
        m.content(),
        "tab\there \"q\" \\ \u{1} \u{2028} déjà 😀 \u{7f}"
    );
    // The one-line form is JSON.stringify of the object, and verifies again.
    let again = PocMessage::verify(m.document_bytes()).unwrap();
    assert_eq!(again, m);
    assert!(std::str::from_utf8(m.document_bytes())
        .unwrap()
        .starts_with(r#"{"content":"tab\there \"q\" \\ \u0001 "#));
}

#[test]
fn node_manifest_vector_verifies_with_js_property_order() {
    let m = PocManifest::verify_from(NODE_MANIFEST.as_bytes(), &node_key()).unwrap();
    assert_eq!(m.entries(), &[Ok(hash(0xdd)), Ok(hash(0xee))]);
    // JSON.parse puts integer keys first whatever the file's order: so must we.
    let reordered = NODE_MANIFEST.replace(
        "\"2\": \"two\",\n      \"10\": \"ten\",\n      \"z\": 1,",
        "\"z\": 1,\n      \"10\": \"ten\",\n      \"2\": \"two\",",
    );
    assert_ne!(reordered, NODE_MANIFEST);
    assert_eq!(
        PocManifest::verify_from(reordered.as_bytes(), &node_key()).unwrap(),
        m
    );
    // Swapping two ordinary keys changes what JSON.stringify prints.
    let swapped = NODE_MANIFEST.replace(
        "\"z\": 1,\n      \"infohash\": \"EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE\"",
        "\"infohash\": \"EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE\",\n      \"z\": 1",
    );
    assert_ne!(swapped, NODE_MANIFEST);
    assert_eq!(
        PocManifest::verify_from(swapped.as_bytes(), &node_key()),
        Err(PocError::Signed(MessageError::BadSignature))
    );
}

#[test]
fn message_sign_verify_and_tampering() {
    let k = key(1);
    let m = PocMessage::sign(&k, "hello", 5).unwrap();
    let doc = std::str::from_utf8(m.document_bytes()).unwrap().to_owned();
    assert!(
        doc.starts_with(r#"{"content":"hello","timestamp":5,"publicKey":""#),
        "{doc}"
    );
    assert_eq!(PocMessage::verify(doc.as_bytes()).unwrap(), m);
    // Pretty-printed, in another member order, with an unsigned extra member: same message.
    let mut extra: serde_json::Value = serde_json::from_str(&doc).unwrap();
    extra["note"] = "unsigned".into();
    let pretty = serde_json::to_vec_pretty(&extra).unwrap();
    assert_eq!(PocMessage::verify(&pretty).unwrap(), m);
    for (from, to) in [("hello", "hellO"), ("\"timestamp\":5", "\"timestamp\":6")] {
        assert_eq!(
            PocMessage::verify(doc.replace(from, to).as_bytes()),
            Err(MessageError::BadSignature)
        );
    }
    let other = PublicKey::from(&key(2));
    assert!(matches!(
        PocMessage::verify_from(doc.as_bytes(), &other),
        Err(MessageError::WrongAuthor { .. })
    ));
    assert!(PocMessage::verify_from(doc.as_bytes(), &PublicKey::from(&k)).is_ok());
}

#[test]
fn upper_case_hex_is_signed_as_written() {
    let k = key(3);
    let upper = PublicKey::from(&k).to_hex().to_uppercase();
    let sig = Signature::from(k.sign(&PocMessage::signed_bytes("x", 1, &upper)));
    let doc = format!(
        r#"{{"content":"x","timestamp":1,"publicKey":"{upper}","signature":"{}"}}"#,
        sig.to_hex().to_uppercase()
    );
    let m = PocMessage::verify(doc.as_bytes()).unwrap();
    assert_eq!(m.document_bytes(), doc.as_bytes());
    // The same signature over the lowercase text does not verify.
    let lower = doc.replace(&upper, &upper.to_lowercase());
    assert_eq!(
        PocMessage::verify(lower.as_bytes()),
        Err(MessageError::BadSignature)
    );
}

#[test]
fn malformed_messages_have_reasons() {
    let k = key(1);
    let pk = PublicKey::from(&k).to_hex();
    let sig = "0".repeat(128);
    let cases: Vec<(String, &str)> = vec![
        ("[]".into(), "JSON object"),
        ("{".into(), "invalid JSON"),
        (
            format!(r#"{{"content":"x","timestamp":1,"publicKey":"{pk}"}}"#),
            "missing signature",
        ),
        (
            format!(r#"{{"content":"x","timestamp":-1,"publicKey":"{pk}","signature":"{sig}"}}"#),
            "timestamp",
        ),
        (
            format!(r#"{{"content":"x","timestamp":1.5,"publicKey":"{pk}","signature":"{sig}"}}"#),
            "invalid JSON",
        ),
        (
            format!(r#"{{"content":1,"timestamp":1,"publicKey":"{pk}","signature":"{sig}"}}"#),
            "content must be a string",
        ),
        (
            format!(r#"{{"content":"x","timestamp":1,"publicKey":"zz","signature":"{sig}"}}"#),
            "publicKey",
        ),
        (
            format!(r#"{{"content":"x","timestamp":1,"publicKey":"{pk}","signature":"abc"}}"#),
            "signature",
        ),
        (
            format!(
                r#"{{"content":"x","content":"y","timestamp":1,"publicKey":"{pk}","signature":"{sig}"}}"#
            ),
            "duplicate",
        ),
    ];
    for (doc, want) in cases {
        let err = PocMessage::verify(doc.as_bytes()).unwrap_err();
        assert!(err.to_string().contains(want), "{doc}: {err}");
    }
    let big = "a".repeat(Message::MAX_CONTENT_BYTES + 1);
    assert!(matches!(
        PocMessage::sign(&k, &big, 1),
        Err(MessageError::ContentTooLarge { .. })
    ));
    let huge = vec![b' '; Message::MAX_DOCUMENT_BYTES + 1];
    assert!(matches!(
        PocMessage::verify(&huge),
        Err(MessageError::TooLarge { .. })
    ));
}

#[test]
fn manifest_entries_of_every_accepted_shape() {
    let k = key(4);
    let messages = JsValue::Array(vec![
        PocManifest::entry(&hash(1), 10),
        JsValue::Object(vec![("infoHash".into(), JsValue::String("02".repeat(20)))]),
        JsValue::String("03".repeat(20).to_uppercase()),
        JsValue::String(format!(
            "magnet:?dn=x&xt=urn:btih:{}&tr=http%3A%2F%2Fa",
            "04".repeat(20)
        )),
        JsValue::Int(7),
        JsValue::Object(vec![("infohash".into(), JsValue::Int(1))]),
        JsValue::Object(vec![("timestamp".into(), JsValue::Int(1))]),
        JsValue::String("magnet:?xt=urn:sha1:abc".into()),
        JsValue::String(format!(
            "magnet:?xt=urn:btih:{}&xt=urn:btih:{}",
            "05".repeat(20),
            "06".repeat(20)
        )),
        JsValue::String("abc".into()),
    ]);
    let doc = PocManifest::sign(&k, &messages).unwrap();
    let m = PocManifest::verify_from(&doc, &PublicKey::from(&k)).unwrap();
    let e = m.entries();
    assert_eq!(
        &e[..4],
        &[Ok(hash(1)), Ok(hash(2)), Ok(hash(3)), Ok(hash(4))]
    );
    assert!(e[4..].iter().all(Result::is_err), "{e:?}");
    assert!(e[8].as_ref().unwrap_err().contains("more than one"));
    assert_eq!(m.public_key(), &PublicKey::from(&k));
}

#[test]
fn manifest_signature_author_and_caps() {
    let k = key(5);
    let messages = JsValue::Array(vec![PocManifest::entry(&hash(9), 1)]);
    let doc = String::from_utf8(PocManifest::sign(&k, &messages).unwrap()).unwrap();
    let owner = PublicKey::from(&k);
    assert!(PocManifest::verify_from(doc.as_bytes(), &owner).is_ok());
    let tampered = doc.replace(&"09".repeat(20), &"08".repeat(20));
    assert_eq!(
        PocManifest::verify_from(tampered.as_bytes(), &owner),
        Err(PocError::Signed(MessageError::BadSignature))
    );
    assert!(matches!(
        PocManifest::verify_from(doc.as_bytes(), &PublicKey::from(&key(6))),
        Err(PocError::Signed(MessageError::WrongAuthor { .. }))
    ));
    let not_array = doc
        .replacen("\"messages\":[", "\"messages\":{\"a\":", 1)
        .replacen("}],", "}},", 1);
    assert!(PocManifest::verify_from(not_array.as_bytes(), &owner)
        .unwrap_err()
        .to_string()
        .contains("messages must be an array"));
    let many = JsValue::Array(vec![JsValue::Null; PocManifest::MAX_MESSAGES + 1]);
    assert!(matches!(
        PocManifest::sign(&k, &many),
        Err(PocError::TooManyMessages { .. })
    ));
    let listed = format!(
        r#"{{"publicKey":"{owner}","messages":[{}],"signature":"{}"}}"#,
        vec!["0"; PocManifest::MAX_MESSAGES + 1].join(","),
        "0".repeat(128)
    );
    assert!(matches!(
        PocManifest::verify_from(listed.as_bytes(), &owner),
        Err(PocError::TooManyMessages { .. })
    ));
    let huge = vec![b' '; PocManifest::MAX_BYTES + 1];
    assert!(matches!(
        PocManifest::verify_from(&huge, &owner),
        Err(PocError::TooLarge { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_message_round_trips(content in "\\PC{0,80}|[\\x00-\\x20\"\\\\]{0,20}", ts in 0u64..=MAX_SAFE_INTEGER) {
        let m = PocMessage::sign(&key(7), &content, ts).unwrap();
        let back = PocMessage::verify_from(m.document_bytes(), &PublicKey::from(&key(7))).unwrap();
        prop_assert_eq!(back.content(), content.as_str());
        prop_assert_eq!(back.timestamp(), ts);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = PocMessage::verify(&bytes);
        let _ = PocManifest::verify_from(&bytes, &PublicKey::from(&key(1)));
    }
}
