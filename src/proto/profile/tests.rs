#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::proto::{Manifest, ManifestError, ManifestLimits, Message, UnsignedManifest};

fn sk(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn unsigned(name: &str) -> UnsignedProfile {
    UnsignedProfile {
        sequence: 3,
        timestamp: 1_700_000_000_000,
        name: name.into(),
        avatar: Some(vec![1, 2, 3, 255]),
        mailbox_key: Some(MailboxKey::from([7; 32])),
    }
}

fn lim() -> ProfileLimits {
    ProfileLimits::default()
}

/// Re-sign an arbitrary object with `key` (for hand-built documents).
fn sign_obj(mut obj: Map<String, Value>, key: &SigningKey) -> Vec<u8> {
    obj.remove("signature");
    let sig = Signature::from(key.sign(&jcs(&obj)));
    obj.insert("signature".into(), Value::String(sig.to_hex()));
    serde_json::to_vec(&obj).unwrap()
}

fn obj_of(p: &Profile) -> Map<String, Value> {
    match serde_json::from_slice(p.canonical_bytes()).unwrap() {
        Value::Object(o) => o,
        _ => unreachable!(),
    }
}

#[test]
fn sign_then_verify_round_trips() {
    let p = unsigned("Alice ✓").sign(&sk(1), &lim()).unwrap();
    let back = Profile::verify(p.canonical_bytes(), &lim()).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.name(), "Alice ✓");
    assert_eq!(back.avatar(), Some(&[1, 2, 3, 255][..]));
    assert_eq!(back.mailbox_key(), Some(&MailboxKey::from([7; 32])));
    assert_eq!(back.public_key(), &PublicKey::from(&sk(1)));
    let o = obj_of(&p);
    assert_eq!(o["type"], "profile");
    assert_eq!(o["avatar"], "AQID/w==");
    // Optional members may be absent.
    let bare = UnsignedProfile {
        avatar: None,
        mailbox_key: None,
        ..unsigned("B")
    }
    .sign(&sk(1), &lim())
    .unwrap();
    let back = Profile::verify(bare.canonical_bytes(), &lim()).unwrap();
    assert!(back.avatar().is_none() && back.mailbox_key().is_none());
}

#[test]
fn a_tampered_or_foreign_signature_is_refused() {
    let p = unsigned("Alice").sign(&sk(1), &lim()).unwrap();
    let mut o = obj_of(&p);
    o.insert("name".into(), Value::String("Mallory".into()));
    let bytes = serde_json::to_vec(&o).unwrap();
    assert_eq!(
        Profile::verify(&bytes, &lim()),
        Err(ProfileError::BadSignature)
    );
    // Signed by another key than the one it names.
    let forged = sign_obj(obj_of(&p), &sk(2));
    assert_eq!(
        Profile::verify(&forged, &lim()).unwrap_err().code(),
        "bad-signature"
    );
}

#[test]
fn unknown_members_are_covered_and_kept() {
    let p = unsigned("Alice").sign(&sk(1), &lim()).unwrap();
    let mut o = obj_of(&p);
    o.insert("bio".into(), Value::String("hi".into()));
    let bytes = sign_obj(o, &sk(1));
    let back = Profile::verify(&bytes, &lim()).unwrap();
    assert!(String::from_utf8_lossy(back.canonical_bytes()).contains("\"bio\":\"hi\""));
}

#[test]
fn profiles_and_manifests_cannot_stand_in_for_each_other() {
    let key = sk(1);
    // A profile's bytes are not a manifest (no collections).
    let p = unsigned("Alice").sign(&key, &lim()).unwrap();
    assert!(matches!(
        Manifest::verify(p.canonical_bytes(), &ManifestLimits::default()),
        Err(ManifestError::Shape(_))
    ));
    // A manifest, even one carrying every profile member, is not a profile.
    let m = UnsignedManifest {
        sequence: 3,
        timestamp: 1,
        collections: vec![],
    }
    .sign(&key)
    .unwrap();
    let Value::Object(mut o) = m.to_value() else {
        unreachable!()
    };
    o.insert("type".into(), Value::String("profile".into()));
    o.insert("name".into(), Value::String("Alice".into()));
    let bytes = sign_obj(o, &key);
    assert!(Manifest::verify(&bytes, &ManifestLimits::default()).is_ok());
    let err = Profile::verify(&bytes, &lim()).unwrap_err();
    assert_eq!(err.code(), "invalid-profile", "{err}");
    // Nor is a feed message.
    let msg = crate::proto::UnsignedMessage {
        timestamp: 1,
        content: "x".into(),
    }
    .sign(&key)
    .unwrap();
    let mut o = match serde_json::from_slice(msg.canonical_bytes()).unwrap() {
        Value::Object(o) => o,
        _ => unreachable!(),
    };
    for (k, v) in [("type", "profile"), ("name", "A")] {
        o.insert(k.into(), Value::String(v.into()));
    }
    o.insert("sequence".into(), 1.into());
    let bytes = sign_obj(o, &key);
    assert!(Message::verify(&bytes).is_ok());
    assert_eq!(
        Profile::verify(&bytes, &lim()).unwrap_err().code(),
        "invalid-profile"
    );
    // And the type member is required.
    let mut o = obj_of(&p);
    o.remove("type");
    let bytes = sign_obj(o, &key);
    assert_eq!(
        Profile::verify(&bytes, &lim()).unwrap_err().code(),
        "invalid-profile"
    );
}

#[test]
fn names_are_checked() {
    assert!(check_name(&"é".repeat(64)).is_ok());
    for bad in ["", "a\nb", "tab\t", "\u{7f}", &"x".repeat(65)] {
        let err = unsigned(bad).sign(&sk(1), &lim()).unwrap_err();
        assert_eq!(err.code(), "invalid-name", "{bad:?}");
    }
    // Also when a hand-built document carries it.
    let p = unsigned("ok").sign(&sk(1), &lim()).unwrap();
    let mut o = obj_of(&p);
    o.insert("name".into(), Value::String("bad\u{1b}[31m".into()));
    let bytes = sign_obj(o, &sk(1));
    assert_eq!(
        Profile::verify(&bytes, &lim()).unwrap_err().code(),
        "invalid-name"
    );
}

#[test]
fn avatars_are_capped_and_must_be_base64() {
    let max = ProfileLimits::DEFAULT_MAX_AVATAR_BYTES;
    let at_cap = UnsignedProfile {
        avatar: Some(vec![9; max]),
        ..unsigned("A")
    };
    let p = at_cap.sign(&sk(1), &lim()).unwrap();
    assert!(p.canonical_bytes().len() <= lim().max_bytes());
    assert!(Profile::verify(p.canonical_bytes(), &lim()).is_ok());
    let over = UnsignedProfile {
        avatar: Some(vec![9; max + 1]),
        ..unsigned("A")
    };
    assert_eq!(
        over.sign(&sk(1), &lim()),
        Err(ProfileError::AvatarTooLarge { size: max + 1, max })
    );
    // A smaller configured cap applies on verification too.
    let small = ProfileLimits {
        max_avatar_bytes: 1024,
    };
    let big = UnsignedProfile {
        avatar: Some(vec![9; 2000]),
        ..unsigned("A")
    }
    .sign(&sk(1), &lim())
    .unwrap();
    assert_eq!(
        Profile::verify(big.canonical_bytes(), &small)
            .unwrap_err()
            .code(),
        "avatar-too-large"
    );
    for bad in ["", "AQID/w", "!!!!", "AQID/w=="] {
        let p = unsigned("A").sign(&sk(1), &lim()).unwrap();
        let mut o = obj_of(&p);
        o.insert("avatar".into(), Value::String(bad.into()));
        let bytes = sign_obj(o, &sk(1));
        let r = Profile::verify(&bytes, &lim());
        if bad == "AQID/w==" {
            assert!(r.is_ok());
        } else {
            assert_eq!(r.unwrap_err().code(), "invalid-avatar", "{bad:?}");
        }
    }
}

#[test]
fn documents_and_members_are_strict() {
    assert_eq!(lim().max_bytes(), 95_576);
    let huge = vec![b' '; lim().max_bytes() + 1];
    assert_eq!(
        Profile::verify(&huge, &lim()).unwrap_err().code(),
        "too-large"
    );
    let p = unsigned("A").sign(&sk(1), &lim()).unwrap();
    let cases: [(&str, Value, &str); 5] = [
        ("mailboxKey", Value::String("AB".repeat(32)), "invalid-hex"),
        ("mailboxKey", 5.into(), "invalid-profile"),
        ("sequence", Value::String("1".into()), "invalid-profile"),
        ("avatar", 5.into(), "invalid-profile"),
        ("type", Value::String("manifest".into()), "invalid-profile"),
    ];
    for (member, value, code) in cases {
        let mut o = obj_of(&p);
        o.insert(member.into(), value);
        let bytes = sign_obj(o, &sk(1));
        assert_eq!(
            Profile::verify(&bytes, &lim()).unwrap_err().code(),
            code,
            "{member}"
        );
    }
    assert_eq!(
        Profile::verify(b"[1]", &lim()).unwrap_err().code(),
        "invalid-profile"
    );
    assert_eq!(
        Profile::verify(b"{\"a\":1,\"a\":2}", &lim())
            .unwrap_err()
            .code(),
        "duplicate-member"
    );
}

#[test]
fn timestamps_may_not_run_ahead() {
    let p = unsigned("A").sign(&sk(1), &lim()).unwrap();
    assert!(p.check_timestamp(1_700_000_000_000, 0).is_ok());
    assert_eq!(
        p.check_timestamp(1_699_999_999_000, 999)
            .unwrap_err()
            .code(),
        "timestamp-in-future"
    );
}
