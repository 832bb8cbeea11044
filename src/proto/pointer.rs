//! The phone-book pointer record of the proof of concept (`POST /announce`).
//!
//! The request is `{publicKey, manifestInfohash, seq, signature}`. The signature covers the
//! exact UTF-8 bytes `{"publicKey":"…","manifestInfohash":"…","seq":N}` — that member order,
//! no spaces, the hex strings exactly as sent (the proof of concept accepts either case).

use serde_json::Value;

use super::json::{self, JsonError};
use super::keys::{HexError, InfoHash, PublicKey, Signature};
use super::MAX_SAFE_INTEGER;

/// Largest accepted announce body (the real thing is ~250 bytes).
pub const MAX_POINTER_BYTES: usize = 4096;

/// Why a pointer announce was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    /// Body larger than [`MAX_POINTER_BYTES`].
    #[error("announce body is {0} bytes, over the {MAX_POINTER_BYTES}-byte cap")]
    TooLarge(usize),
    /// Not strict JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] JsonError),
    /// A member is missing or has the wrong type or range.
    #[error("invalid announce: {0}")]
    Shape(String),
    /// A hex member is malformed, or the key is not a valid Ed25519 point.
    #[error("invalid {member}: {source}")]
    Hex {
        /// Which member.
        member: &'static str,
        /// What was wrong.
        #[source]
        source: HexError,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

impl PointerError {
    /// A short, stable, machine-readable reason code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "too-large",
            Self::Json(_) => "invalid-json",
            Self::Shape(_) => "invalid-announce",
            Self::Hex { .. } => "invalid-hex",
            Self::BadSignature => "bad-signature",
        }
    }
}

/// A verified pointer announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerAnnounce {
    public_key: PublicKey,
    public_key_text: String,
    infohash: InfoHash,
    infohash_text: String,
    seq: u64,
    signature: Signature,
}

impl PointerAnnounce {
    /// The exact bytes the proof of concept signs.
    #[must_use]
    pub fn signed_bytes(public_key_text: &str, infohash_text: &str, seq: u64) -> Vec<u8> {
        format!(
            r#"{{"publicKey":"{public_key_text}","manifestInfohash":"{infohash_text}","seq":{seq}}}"#
        )
        .into_bytes()
    }

    /// Parse a request body strictly and verify its signature.
    pub fn verify(body: &[u8]) -> Result<Self, PointerError> {
        if body.len() > MAX_POINTER_BYTES {
            return Err(PointerError::TooLarge(body.len()));
        }
        let Value::Object(obj) = json::parse_strict(body)? else {
            return Err(PointerError::Shape("body must be a JSON object".into()));
        };
        let text = |member: &'static str| match obj.get(member) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(PointerError::Shape(format!("{member} must be a string"))),
            None => Err(PointerError::Shape(format!("missing {member}"))),
        };
        let public_key_text = text("publicKey")?;
        let infohash_text = text("manifestInfohash")?;
        let signature_text = text("signature")?;
        let hex_err = |member| move |source| PointerError::Hex { member, source };
        let public_key =
            PublicKey::from_hex_any_case(&public_key_text).map_err(hex_err("publicKey"))?;
        public_key.verifying_key().map_err(hex_err("publicKey"))?;
        let infohash =
            InfoHash::from_hex_any_case(&infohash_text).map_err(hex_err("manifestInfohash"))?;
        let signature =
            Signature::from_hex_any_case(&signature_text).map_err(hex_err("signature"))?;
        let seq = match obj.get("seq") {
            Some(Value::Number(n)) => {
                n.as_u64()
                    .filter(|v| *v <= MAX_SAFE_INTEGER)
                    .ok_or_else(|| {
                        PointerError::Shape("seq must be an integer in 0..=2^53-1".into())
                    })?
            }
            Some(_) => return Err(PointerError::Shape("seq must be an integer".into())),
            None => return Err(PointerError::Shape("missing seq".into())),
        };
        let signed = Self::signed_bytes(&public_key_text, &infohash_text, seq);
        if !public_key.verify_strict(&signed, &signature) {
            return Err(PointerError::BadSignature);
        }
        Ok(Self {
            public_key,
            public_key_text,
            infohash,
            infohash_text,
            seq,
            signature,
        })
    }

    /// Rebuild from stored fields, re-verifying the signature (the storage load path).
    pub fn from_stored(
        public_key_text: &str,
        infohash_text: &str,
        seq: u64,
        signature: &Signature,
    ) -> Result<Self, PointerError> {
        let body = serde_json::json!({
            "publicKey": public_key_text,
            "manifestInfohash": infohash_text,
            "seq": seq,
            "signature": signature.to_hex(),
        });
        Self::verify(body.to_string().as_bytes())
    }

    /// The key (normalised; the record's slot).
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
    /// `publicKey` exactly as sent.
    #[must_use]
    pub fn public_key_text(&self) -> &str {
        &self.public_key_text
    }
    /// The manifest torrent's info-hash.
    #[must_use]
    pub fn infohash(&self) -> &InfoHash {
        &self.infohash
    }
    /// `manifestInfohash` exactly as sent.
    #[must_use]
    pub fn infohash_text(&self) -> &str {
        &self.infohash_text
    }
    /// The pointer's own sequence.
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The signature.
    #[must_use]
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_POINTER: &str = include_str!("../../tests/vectors/node-pointer.json");

    #[test]
    fn node_vector_verifies() {
        let p = PointerAnnounce::verify(NODE_POINTER.as_bytes()).unwrap();
        assert_eq!(p.seq(), 3);
        assert_eq!(p.infohash_text(), "AB".repeat(20));
        assert_eq!(p.infohash().to_hex(), "ab".repeat(20));
        let again = PointerAnnounce::from_stored(
            p.public_key_text(),
            p.infohash_text(),
            p.seq(),
            p.signature(),
        )
        .unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn tampering_is_caught() {
        let mut v: Value = serde_json::from_str(NODE_POINTER).unwrap();
        v["seq"] = 4.into();
        let e = PointerAnnounce::verify(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e, PointerError::BadSignature);
        // Changing only the case of the info-hash changes the signed bytes too.
        let mut v: Value = serde_json::from_str(NODE_POINTER).unwrap();
        v["manifestInfohash"] = "ab".repeat(20).into();
        assert_eq!(
            PointerAnnounce::verify(v.to_string().as_bytes()).unwrap_err(),
            PointerError::BadSignature
        );
    }

    #[test]
    fn malformed_inputs_have_reasons() {
        let cases: &[(&str, &str)] = &[
            ("[]", "invalid-announce"),
            ("{", "invalid-json"),
            (
                r#"{"publicKey":"zz","manifestInfohash":"ab","seq":1,"signature":"00"}"#,
                "invalid-hex",
            ),
            (r#"{"publicKey":1}"#, "invalid-announce"),
        ];
        for (body, code) in cases {
            assert_eq!(
                PointerAnnounce::verify(body.as_bytes()).unwrap_err().code(),
                *code,
                "{body}"
            );
        }
        let mut v: Value = serde_json::from_str(NODE_POINTER).unwrap();
        v["seq"] = serde_json::json!(1.5);
        assert_eq!(
            PointerAnnounce::verify(v.to_string().as_bytes())
                .unwrap_err()
                .code(),
            "invalid-json"
        );
        let big = vec![b' '; MAX_POINTER_BYTES + 1];
        assert_eq!(
            PointerAnnounce::verify(&big).unwrap_err().code(),
            "too-large"
        );
    }
}
