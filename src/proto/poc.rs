//! The phone-book proof of concept's feed documents (DESIGN §3.3), read for compatibility.
//!
//! A proof-of-concept feed is a pointer record (`POST /announce`, [`super::pointer`]) naming
//! the info-hash of a **manifest torrent**; that torrent holds one JSON file
//! `{publicKey, messages, signature}` whose `signature` is Ed25519 over the exact bytes of
//! `JSON.stringify({publicKey, messages})`, and every `messages` entry names a **message
//! torrent** holding `{content, timestamp, publicKey, signature}`, signed over
//! `JSON.stringify({content, timestamp, publicKey})` — in those member orders. The signed
//! bytes are rebuilt with [`stringify`], which reproduces V8 byte for byte.
//!
//! What is accepted (see docs/messages.md, "Proof-of-concept feeds"):
//! * `publicKey` and `signature`: hex of either case (64 and 128 characters); the signed
//!   bytes use the text exactly as found. Checked with `verify_strict`.
//! * `messages` entries: an object with an `infohash` (or `infoHash`) member of 40 hex
//!   characters (what the proof of concept writes: `{infohash, timestamp}`), a string of
//!   40 hex characters, or a magnet link with one `xt=urn:btih:` of 40 hex characters. Other
//!   members of an entry object are covered by the signature and otherwise ignored. An entry
//!   of another shape is reported and skipped; the rest of the manifest is still used.
//! * a message's `timestamp`: an integer in 0..=2^53−1; `content`: a string of at most
//!   64 KiB. Other members of a message are not signed by the proof of concept, so they are
//!   ignored (never shown).
//! * every number anywhere must be an integer within ±(2^53−1), member names are unique, and
//!   strings hold no lone surrogate (`serde_json` refuses `\ud800` escapes): documents that
//!   break these rules are refused.

pub mod stringify;

use ed25519_dalek::{Signer, SigningKey};
use serde_json::Value;

use self::stringify::{parse_ordered, quote, stringify, JsValue};
use super::json::{self, JsonError};
use super::keys::{InfoHash, PublicKey, Signature};
use super::message::{
    check_content, check_size, key_and_signature, timestamp_and_content, MessageError,
};
use super::MAX_SAFE_INTEGER;

/// Why a proof-of-concept manifest was rejected (a message is rejected with the
/// [`MessageError`] of v1 messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PocError {
    /// The manifest is larger than [`PocManifest::MAX_BYTES`].
    #[error("manifest is {size} bytes, over the {max}-byte cap")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The manifest lists more than [`PocManifest::MAX_MESSAGES`] entries.
    #[error("manifest lists {count} messages, over the cap of {max}")]
    TooManyMessages {
        /// Entries listed.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// A member is missing or has the wrong type.
    #[error("invalid proof-of-concept manifest: {0}")]
    Shape(String),
    /// Bad JSON, a bad hex member, a signature that does not verify or another author:
    /// the same failures, with the same wording, as for a message.
    #[error(transparent)]
    Signed(#[from] MessageError),
}

impl From<JsonError> for PocError {
    fn from(e: JsonError) -> Self {
        Self::Signed(MessageError::Json(e))
    }
}

/// A verified proof-of-concept manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PocManifest {
    public_key: PublicKey,
    entries: Vec<Result<InfoHash, String>>,
}

impl PocManifest {
    /// The largest manifest file: 2 MiB (room for [`Self::MAX_MESSAGES`] pretty-printed
    /// entries of about 100 bytes each).
    pub const MAX_BYTES: usize = 2 * 1024 * 1024;
    /// The most `messages` entries (the same as `share --batch`).
    pub const MAX_MESSAGES: usize = 10_000;

    /// The exact bytes the proof of concept signs: `JSON.stringify({publicKey, messages})`.
    #[must_use]
    pub fn signed_bytes(public_key_text: &str, messages: &JsValue) -> Vec<u8> {
        format!(
            r#"{{"publicKey":{},"messages":{}}}"#,
            quote(public_key_text),
            stringify(messages)
        )
        .into_bytes()
    }

    /// Parse strictly, verify the signature and check that `author` signed it.
    pub fn verify_from(bytes: &[u8], author: &PublicKey) -> Result<Self, PocError> {
        check_manifest_size(bytes.len())?;
        let doc = parse_ordered(bytes)?;
        if !matches!(doc, JsValue::Object(_)) {
            return Err(PocError::Shape("the manifest must be a JSON object".into()));
        }
        let (public_key, public_key_text) = key_member(&doc)?;
        let signature = signature_member(&doc)?;
        let Some(messages @ JsValue::Array(list)) = doc.get("messages") else {
            return Err(PocError::Shape("messages must be an array".into()));
        };
        if list.len() > Self::MAX_MESSAGES {
            return Err(PocError::TooManyMessages {
                count: list.len(),
                max: Self::MAX_MESSAGES,
            });
        }
        let signed = Self::signed_bytes(&public_key_text, messages);
        if !public_key.verify_strict(&signed, &signature) {
            return Err(MessageError::BadSignature.into());
        }
        if public_key != *author {
            return Err(MessageError::WrongAuthor {
                expected: *author,
                found: public_key,
            }
            .into());
        }
        Ok(Self {
            public_key,
            entries: list.iter().map(entry_info_hash).collect(),
        })
    }

    /// The author's key.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The message torrents, in manifest order: each entry's info-hash, or why the entry
    /// names none.
    pub fn entries(&self) -> &[Result<InfoHash, String>] {
        &self.entries
    }

    /// One entry as the proof of concept writes it: `{"infohash":…,"timestamp":…}`.
    #[must_use]
    pub fn entry(info_hash: &InfoHash, timestamp: u64) -> JsValue {
        JsValue::Object(vec![
            ("infohash".into(), JsValue::String(info_hash.to_hex())),
            (
                "timestamp".into(),
                JsValue::Int(i64::try_from(timestamp.min(MAX_SAFE_INTEGER)).unwrap_or(0)),
            ),
        ])
    }

    /// Sign `messages` (an array) as the proof of concept does and return the manifest
    /// file's bytes (`{"publicKey":…,"messages":…,"signature":…}`).
    pub fn sign(key: &SigningKey, messages: &JsValue) -> Result<Vec<u8>, PocError> {
        let JsValue::Array(list) = messages else {
            return Err(PocError::Shape("messages must be an array".into()));
        };
        if list.len() > Self::MAX_MESSAGES {
            return Err(PocError::TooManyMessages {
                count: list.len(),
                max: Self::MAX_MESSAGES,
            });
        }
        let public_key = PublicKey::from(key).to_hex();
        let signature = Signature::from(key.sign(&Self::signed_bytes(&public_key, messages)));
        let doc = format!(
            r#"{{"publicKey":{},"messages":{},"signature":"{}"}}"#,
            quote(&public_key),
            stringify(messages),
            signature.to_hex()
        );
        check_manifest_size(doc.len())?;
        Ok(doc.into_bytes())
    }
}

/// A verified proof-of-concept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PocMessage {
    public_key: PublicKey,
    timestamp: u64,
    content: String,
    signature: Signature,
    document: Vec<u8>,
}

impl PocMessage {
    /// The exact bytes the proof of concept signs:
    /// `JSON.stringify({content, timestamp, publicKey})`.
    #[must_use]
    pub fn signed_bytes(content: &str, timestamp: u64, public_key_text: &str) -> Vec<u8> {
        format!(
            r#"{{"content":{},"timestamp":{timestamp},"publicKey":{}}}"#,
            quote(content),
            quote(public_key_text)
        )
        .into_bytes()
    }

    /// Sign as the proof of concept does (`createSignedMessage`).
    pub fn sign(key: &SigningKey, content: &str, timestamp: u64) -> Result<Self, MessageError> {
        check_content(content)?;
        if timestamp > MAX_SAFE_INTEGER {
            return Err(MessageError::Shape("timestamp exceeds 2^53-1".into()));
        }
        let public_key = PublicKey::from(key);
        let text = public_key.to_hex();
        let signature = Signature::from(key.sign(&Self::signed_bytes(content, timestamp, &text)));
        Ok(Self::assemble(
            public_key,
            &text,
            timestamp,
            content,
            signature,
            &signature.to_hex(),
        ))
    }

    /// Parse strictly and verify the signature. Failures are the [`MessageError`]s of v1
    /// messages.
    pub fn verify(bytes: &[u8]) -> Result<Self, MessageError> {
        check_size(bytes.len())?;
        let Value::Object(obj) = json::parse_strict(bytes)? else {
            return Err(MessageError::Shape("message must be a JSON object".into()));
        };
        let (public_key, signature) = key_and_signature(&obj, true)?;
        let (timestamp, content) = timestamp_and_content(&obj)?;
        // Both are strings: `key_and_signature` checked them.
        let key_text = obj
            .get("publicKey")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let signature_text = obj
            .get("signature")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let signed = Self::signed_bytes(content, timestamp, key_text);
        if !public_key.verify_strict(&signed, &signature) {
            return Err(MessageError::BadSignature);
        }
        Ok(Self::assemble(
            public_key,
            key_text,
            timestamp,
            content,
            signature,
            signature_text,
        ))
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

    fn assemble(
        public_key: PublicKey,
        public_key_text: &str,
        timestamp: u64,
        content: &str,
        signature: Signature,
        signature_text: &str,
    ) -> Self {
        let document = format!(
            r#"{{"content":{},"timestamp":{timestamp},"publicKey":{},"signature":{}}}"#,
            quote(content),
            quote(public_key_text),
            quote(signature_text)
        )
        .into_bytes();
        Self {
            public_key,
            timestamp,
            content: content.to_owned(),
            signature,
            document,
        }
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
    /// The message as the proof of concept builds it, on one line:
    /// `JSON.stringify({content, timestamp, publicKey, signature})` with the key and
    /// signature text as found.
    #[must_use]
    pub fn document_bytes(&self) -> &[u8] {
        &self.document
    }
}

fn check_manifest_size(size: usize) -> Result<(), PocError> {
    if size > PocManifest::MAX_BYTES {
        return Err(PocError::TooLarge {
            size,
            max: PocManifest::MAX_BYTES,
        });
    }
    Ok(())
}

fn string_member<'a>(doc: &'a JsValue, member: &'static str) -> Result<&'a str, PocError> {
    match doc.get(member) {
        Some(JsValue::String(s)) => Ok(s),
        Some(_) => Err(PocError::Shape(format!("{member} must be a string"))),
        None => Err(PocError::Shape(format!("missing {member}"))),
    }
}

/// `publicKey`: the key and its text exactly as found.
fn key_member(doc: &JsValue) -> Result<(PublicKey, String), PocError> {
    let text = string_member(doc, "publicKey")?;
    let hex_err = |source| MessageError::Hex {
        member: "publicKey",
        source,
    };
    let key = PublicKey::from_hex_any_case(text).map_err(hex_err)?;
    key.verifying_key().map_err(hex_err)?;
    Ok((key, text.to_owned()))
}

fn signature_member(doc: &JsValue) -> Result<Signature, PocError> {
    let text = string_member(doc, "signature")?;
    Signature::from_hex_any_case(text).map_err(|source| {
        PocError::from(MessageError::Hex {
            member: "signature",
            source,
        })
    })
}

/// The info-hash an entry of `messages` names (see the module documentation).
fn entry_info_hash(entry: &JsValue) -> Result<InfoHash, String> {
    match entry {
        JsValue::String(s) if s.starts_with("magnet:") => magnet_btih(s),
        JsValue::String(s) => InfoHash::from_hex_any_case(s).map_err(|e| format!("info-hash: {e}")),
        JsValue::Object(_) => match (entry.get("infohash"), entry.get("infoHash")) {
            (Some(JsValue::String(s)), None) | (None, Some(JsValue::String(s))) => {
                InfoHash::from_hex_any_case(s).map_err(|e| format!("infohash: {e}"))
            }
            (Some(_), Some(_)) => Err("both infohash and infoHash are present".into()),
            (None, None) => Err("the entry has no infohash".into()),
            _ => Err("infohash must be a string".into()),
        },
        _ => Err("an entry must be an object with an infohash, an info-hash or a magnet".into()),
    }
}

/// The one `xt=urn:btih:<40 hex>` of a magnet link.
fn magnet_btih(magnet: &str) -> Result<InfoHash, String> {
    let query = magnet.strip_prefix("magnet:?").ok_or("not a magnet link")?;
    let mut found = None;
    for param in query.split('&') {
        let Some(value) = param.strip_prefix("xt=") else {
            continue;
        };
        let Some(hash) = value
            .get(..9)
            .filter(|p| p.eq_ignore_ascii_case("urn:btih:"))
            .and_then(|_| value.get(9..))
        else {
            continue;
        };
        if found.is_some() {
            return Err("the magnet link has more than one btih".into());
        }
        found = Some(InfoHash::from_hex_any_case(hash).map_err(|e| format!("btih: {e}"))?);
    }
    found.ok_or_else(|| "the magnet link has no xt=urn:btih".into())
}

#[cfg(test)]
mod tests;
