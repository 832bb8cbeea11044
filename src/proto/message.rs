//! A feed message: `{publicKey, timestamp, content, signature}`, signed like a manifest.
//!
//! The signed bytes are the RFC 8785 (JCS) canonical JSON of the whole object without its
//! `signature` member (so unknown members are covered and kept), and the signature is checked
//! with `verify_strict`. A message is written to `msg-<short>.json` and shared as its own
//! single-file torrent; see docs/messages.md.
//!
//! A [`Message`] can only be obtained by [`UnsignedMessage::sign`] or [`Message::verify`].

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Map, Value};

use super::json::{self, JsonError};
use super::keys::{HexError, PublicKey, Signature};
use super::manifest::jcs;
use super::MAX_SAFE_INTEGER;

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The document is larger than [`Message::MAX_DOCUMENT_BYTES`].
    #[error("message document is {size} bytes, over the {max}-byte cap")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// `content` is larger than [`Message::MAX_CONTENT_BYTES`].
    #[error("message content is {size} bytes, over the {max}-byte cap")]
    ContentTooLarge {
        /// Size seen (UTF-8 bytes).
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not strict JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] JsonError),
    /// A member is missing, has the wrong type or is out of range.
    #[error("invalid message: {0}")]
    Shape(String),
    /// `publicKey` or `signature` is not lowercase hex of the right length, or the key is
    /// not a valid Ed25519 point.
    #[error("invalid {member}: {source}")]
    Hex {
        /// Which member.
        member: &'static str,
        /// What was wrong with it.
        #[source]
        source: HexError,
    },
    /// The signature does not verify (with `verify_strict`).
    #[error("signature does not verify")]
    BadSignature,
    /// Validly signed, but by another key than the feed's.
    #[error("signed by {found}, not by the feed's key {expected}")]
    WrongAuthor {
        /// The feed's key.
        expected: PublicKey,
        /// The key that signed it.
        found: PublicKey,
    },
}

/// A message before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedMessage {
    /// Milliseconds since the Unix epoch (≤ 2^53−1).
    pub timestamp: u64,
    /// The text (at most [`Message::MAX_CONTENT_BYTES`] bytes of UTF-8).
    pub content: String,
}

impl UnsignedMessage {
    /// Sign with `key`. Fails if the content is over the cap or the timestamp over 2^53−1.
    pub fn sign(self, key: &SigningKey) -> Result<Message, MessageError> {
        check_content(&self.content)?;
        if self.timestamp > MAX_SAFE_INTEGER {
            return Err(MessageError::Shape("timestamp exceeds 2^53-1".into()));
        }
        let public_key = PublicKey::from(key);
        let mut obj = Map::new();
        obj.insert("publicKey".into(), Value::String(public_key.to_hex()));
        obj.insert("timestamp".into(), self.timestamp.into());
        obj.insert("content".into(), Value::String(self.content.clone()));
        let signature = Signature::from(key.sign(&jcs(&obj)));
        obj.insert("signature".into(), Value::String(signature.to_hex()));
        let canonical = jcs(&obj);
        check_size(canonical.len())?;
        Ok(Message {
            public_key,
            timestamp: self.timestamp,
            content: self.content,
            signature,
            canonical,
        })
    }
}

/// A message whose signature has been checked (or that we signed ourselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    public_key: PublicKey,
    timestamp: u64,
    content: String,
    signature: Signature,
    canonical: Vec<u8>,
}

impl Message {
    /// The largest `content`, in UTF-8 bytes: 64 KiB.
    pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
    /// The largest whole document, in bytes, as received and in canonical form. JSON
    /// escaping may grow content up to six times (`\u001f`), plus room for the other members.
    pub const MAX_DOCUMENT_BYTES: usize = 6 * Self::MAX_CONTENT_BYTES + 1024;

    /// Parse strictly and verify the signature.
    pub fn verify(bytes: &[u8]) -> Result<Self, MessageError> {
        check_size(bytes.len())?;
        let value = json::parse_strict(bytes)?;
        json::check_numbers(&value)?;
        let Value::Object(mut obj) = value else {
            return Err(MessageError::Shape("message must be a JSON object".into()));
        };
        let (public_key, signature) = key_and_signature(&obj, false)?;
        let (timestamp, content) = timestamp_and_content(&obj)?;
        let content = content.to_owned();
        obj.remove("signature");
        if !public_key.verify_strict(&jcs(&obj), &signature) {
            return Err(MessageError::BadSignature);
        }
        obj.insert("signature".into(), Value::String(signature.to_hex()));
        let canonical = jcs(&obj);
        check_size(canonical.len())?;
        Ok(Self {
            public_key,
            timestamp,
            content,
            signature,
            canonical,
        })
    }

    /// [`Self::verify`], and check that `author` signed it.
    pub fn verify_from(bytes: &[u8], author: &PublicKey) -> Result<Self, MessageError> {
        let m = Self::verify(bytes)?;
        if m.public_key != *author {
            return Err(MessageError::WrongAuthor {
                expected: *author,
                found: m.public_key,
            });
        }
        Ok(m)
    }

    /// The author's key.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Milliseconds since the epoch, as claimed by the author.
    #[must_use]
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The text.
    #[must_use]
    pub fn content(&self) -> &str {
        &self.content
    }

    /// The signature.
    #[must_use]
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The canonical (JCS) bytes, signature included: what goes into `msg-<short>.json`.
    #[must_use]
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// The file name the message is shared under: `msg-<first 16 hex of the signature>.json`.
    #[must_use]
    pub fn file_name(&self) -> String {
        let hex = self.signature.to_hex();
        format!("msg-{}.json", &hex[..16])
    }
}

pub(super) fn check_size(size: usize) -> Result<(), MessageError> {
    if size > Message::MAX_DOCUMENT_BYTES {
        return Err(MessageError::TooLarge {
            size,
            max: Message::MAX_DOCUMENT_BYTES,
        });
    }
    Ok(())
}

pub(super) fn check_content(content: &str) -> Result<(), MessageError> {
    if content.len() > Message::MAX_CONTENT_BYTES {
        return Err(MessageError::ContentTooLarge {
            size: content.len(),
            max: Message::MAX_CONTENT_BYTES,
        });
    }
    Ok(())
}

/// `publicKey` (a valid Ed25519 point) and `signature`, as lowercase hex (or hex of either
/// case with `any_case`, for the proof of concept's messages).
pub(super) fn key_and_signature(
    obj: &Map<String, Value>,
    any_case: bool,
) -> Result<(PublicKey, Signature), MessageError> {
    type Parse<T> = fn(&str) -> Result<T, HexError>;
    let (key, sig): (Parse<PublicKey>, Parse<Signature>) = if any_case {
        (PublicKey::from_hex_any_case, Signature::from_hex_any_case)
    } else {
        (PublicKey::from_hex, Signature::from_hex)
    };
    let public_key = hex_member(obj, "publicKey", key)?;
    let signature = hex_member(obj, "signature", sig)?;
    public_key
        .verifying_key()
        .map_err(|source| MessageError::Hex {
            member: "publicKey",
            source,
        })?;
    Ok((public_key, signature))
}

/// `timestamp` (an integer in 0..=2^53−1) and `content` (a string within the cap).
pub(super) fn timestamp_and_content(obj: &Map<String, Value>) -> Result<(u64, &str), MessageError> {
    let timestamp = match obj.get("timestamp") {
        Some(Value::Number(n)) => n.as_u64().filter(|v| *v <= MAX_SAFE_INTEGER),
        _ => None,
    }
    .ok_or_else(|| MessageError::Shape("timestamp must be an integer in 0..=2^53-1".into()))?;
    let Some(Value::String(content)) = obj.get("content") else {
        return Err(MessageError::Shape("content must be a string".into()));
    };
    check_content(content)?;
    Ok((timestamp, content))
}

fn hex_member<T>(
    obj: &Map<String, Value>,
    member: &'static str,
    parse: fn(&str) -> Result<T, HexError>,
) -> Result<T, MessageError> {
    match obj.get(member) {
        Some(Value::String(s)) => parse(s).map_err(|source| MessageError::Hex { member, source }),
        Some(_) => Err(MessageError::Shape(format!("{member} must be a string"))),
        None => Err(MessageError::Shape(format!("missing {member}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn msg(content: &str) -> Message {
        UnsignedMessage {
            timestamp: 1_700_000_000_000,
            content: content.into(),
        }
        .sign(&key(1))
        .unwrap()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let m = msg("hello \u{1f600} \"quoted\"");
        let back = Message::verify(m.canonical_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.content(), "hello \u{1f600} \"quoted\"");
        assert_eq!(back.timestamp(), 1_700_000_000_000);
        assert_eq!(*back.public_key(), PublicKey::from(&key(1)));
        assert!(Message::verify_from(m.canonical_bytes(), &PublicKey::from(&key(1))).is_ok());
        let name = m.file_name();
        assert!(name.starts_with("msg-") && name.ends_with(".json") && name.len() == 25);
    }

    #[test]
    fn canonical_form_is_jcs_with_sorted_members() {
        let m = msg("x");
        let s = std::str::from_utf8(m.canonical_bytes()).unwrap();
        assert!(s.starts_with("{\"content\":\"x\",\"publicKey\":\""), "{s}");
        assert!(s.contains("\"timestamp\":1700000000000}"), "{s}");
        // Member order and whitespace on the wire do not matter: JCS is what is signed.
        let v: Value = serde_json::from_slice(m.canonical_bytes()).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        assert_eq!(Message::verify(&pretty).unwrap(), m);
    }

    #[test]
    fn tampering_is_detected() {
        let m = msg("original");
        let s = String::from_utf8(m.canonical_bytes().to_vec()).unwrap();
        let t = s.replace("original", "0riginal");
        assert_eq!(
            Message::verify(t.as_bytes()),
            Err(MessageError::BadSignature)
        );
        let t = s.replace("1700000000000", "1700000000001");
        assert_eq!(
            Message::verify(t.as_bytes()),
            Err(MessageError::BadSignature)
        );
        // An added member is covered by the signature too.
        let t = s.replacen('{', "{\"extra\":1,", 1);
        assert_eq!(
            Message::verify(t.as_bytes()),
            Err(MessageError::BadSignature)
        );
    }

    #[test]
    fn another_authors_message_is_rejected_by_verify_from() {
        let m = msg("hi");
        let other = PublicKey::from(&key(2));
        let err = Message::verify_from(m.canonical_bytes(), &other).unwrap_err();
        assert!(matches!(err, MessageError::WrongAuthor { .. }), "{err:?}");
        assert!(err.to_string().contains("not by the feed's key"));
    }

    #[test]
    fn content_cap_is_enforced_on_both_sides() {
        let at_cap = "a".repeat(Message::MAX_CONTENT_BYTES);
        let m = msg(&at_cap);
        assert!(Message::verify(m.canonical_bytes()).is_ok());
        let over = UnsignedMessage {
            timestamp: 1,
            content: "a".repeat(Message::MAX_CONTENT_BYTES + 1),
        }
        .sign(&key(1));
        assert!(matches!(over, Err(MessageError::ContentTooLarge { .. })));
        // The worst-case escaping still fits the document cap.
        let controls = "\u{1}".repeat(Message::MAX_CONTENT_BYTES);
        let m = msg(&controls);
        assert!(m.canonical_bytes().len() <= Message::MAX_DOCUMENT_BYTES);
        let huge = vec![b' '; Message::MAX_DOCUMENT_BYTES + 1];
        assert!(matches!(
            Message::verify(&huge),
            Err(MessageError::TooLarge { .. })
        ));
    }

    #[test]
    fn malformed_documents_are_rejected_with_reasons() {
        let pk = PublicKey::from(&key(1)).to_hex();
        let sig = "0".repeat(128);
        let cases: Vec<(String, &str)> = vec![
            ("[]".into(), "JSON object"),
            ("{".into(), "invalid JSON"),
            (
                format!(r#"{{"publicKey":"{pk}","timestamp":1,"content":"x"}}"#),
                "missing signature",
            ),
            (
                format!(
                    r#"{{"publicKey":"{pk}","timestamp":-1,"content":"x","signature":"{sig}"}}"#
                ),
                "timestamp",
            ),
            (
                format!(r#"{{"publicKey":"{pk}","timestamp":1,"content":7,"signature":"{sig}"}}"#),
                "content must be a string",
            ),
            (
                format!(
                    r#"{{"publicKey":"{}","timestamp":1,"content":"x","signature":"{sig}"}}"#,
                    pk.to_uppercase()
                ),
                "publicKey",
            ),
            (
                format!(
                    r#"{{"publicKey":"{pk}","timestamp":1,"timestamp":2,"content":"x","signature":"{sig}"}}"#
                ),
                "duplicate",
            ),
        ];
        for (doc, want) in cases {
            let err = Message::verify(doc.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{doc}: {err}");
        }
    }
}
