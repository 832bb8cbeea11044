//! Mailbox request signing: the headers a recipient sends to list, fetch or acknowledge its
//! messages, and the exact bytes its Ed25519 key signs.
//!
//! ```text
//! X-Mailbox-Timestamp: <ms since the Unix epoch>
//! X-Mailbox-Nonce:     <16..=64 lowercase hex characters, fresh per request>
//! X-Mailbox-Signature: <128 lowercase hex: Ed25519 over the payload below>
//!
//! payload = "megatorrent-mailbox-v1\n" METHOD "\n" PATH_AND_QUERY "\n"
//!           TIMESTAMP "\n" NONCE "\n" hex(SHA-256(body))
//! ```
//!
//! The server accepts a timestamp within its skew of its own clock and each nonce once per
//! recipient (see `docs/mail.md`).

use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

use super::{PublicKey, Signature};

/// Header carrying the request time (ms since the epoch).
pub const HEADER_TIMESTAMP: &str = "x-mailbox-timestamp";
/// Header carrying the request nonce.
pub const HEADER_NONCE: &str = "x-mailbox-nonce";
/// Header carrying the Ed25519 signature.
pub const HEADER_SIGNATURE: &str = "x-mailbox-signature";
/// Domain separation: the first line of every signed payload.
pub const CONTEXT: &str = "megatorrent-mailbox-v1";
/// Shortest nonce accepted, in hex characters (64 bits).
pub const MIN_NONCE_CHARS: usize = 16;
/// Longest nonce accepted, in hex characters.
pub const MAX_NONCE_CHARS: usize = 64;
/// Length of a message id (16 random bytes, lowercase hex).
pub const MESSAGE_ID_CHARS: usize = 32;

/// Why a signed mailbox request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MailAuthError {
    /// A required header is absent.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A header is present but malformed.
    #[error("malformed header {0}")]
    Malformed(&'static str),
    /// The timestamp is outside the allowed skew.
    #[error("the request timestamp is outside the allowed clock skew")]
    Expired,
    /// The signature does not verify under the mailbox's key.
    #[error("the request signature does not verify under the mailbox key")]
    BadSignature,
    /// The nonce was already used.
    #[error("the request nonce was already used (replay)")]
    Replay,
}

impl MailAuthError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing(_) => "auth-missing",
            Self::Malformed(_) => "auth-malformed",
            Self::Expired => "auth-expired",
            Self::BadSignature => "bad-signature",
            Self::Replay => "replay",
        }
    }
}

/// The three auth headers, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAuth {
    /// Request time, ms since the epoch.
    pub timestamp_ms: u64,
    /// The nonce (lowercase hex).
    pub nonce: String,
    /// Signature over [`signing_payload`].
    pub signature: Signature,
}

/// The bytes signed for a request.
#[must_use]
pub fn signing_payload(
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let digest = hex::encode(Sha256::digest(body));
    format!("{CONTEXT}\n{method}\n{path_and_query}\n{timestamp_ms}\n{nonce}\n{digest}").into_bytes()
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `id` has the shape of a message id.
#[must_use]
pub fn valid_message_id(id: &str) -> bool {
    id.len() == MESSAGE_ID_CHARS && is_lower_hex(id)
}

impl MailAuth {
    /// Sign a request with the recipient's key and a fresh random nonce.
    #[must_use]
    pub fn sign(
        key: &ed25519_dalek::SigningKey,
        method: &str,
        path_and_query: &str,
        timestamp_ms: u64,
        body: &[u8],
    ) -> Self {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let payload = signing_payload(method, path_and_query, timestamp_ms, &nonce, body);
        Self {
            timestamp_ms,
            signature: key.sign(&payload).into(),
            nonce,
        }
    }

    /// Parse the header values (`None` = header absent).
    pub fn parse(
        timestamp: Option<&str>,
        nonce: Option<&str>,
        signature: Option<&str>,
    ) -> Result<Self, MailAuthError> {
        let timestamp = timestamp.ok_or(MailAuthError::Missing(HEADER_TIMESTAMP))?;
        let nonce = nonce.ok_or(MailAuthError::Missing(HEADER_NONCE))?;
        let signature = signature.ok_or(MailAuthError::Missing(HEADER_SIGNATURE))?;
        let timestamp_ms = (!timestamp.is_empty() && timestamp.bytes().all(|b| b.is_ascii_digit()))
            .then(|| timestamp.parse::<u64>().ok())
            .flatten()
            .filter(|t| *t <= super::MAX_SAFE_INTEGER)
            .ok_or(MailAuthError::Malformed(HEADER_TIMESTAMP))?;
        if !(MIN_NONCE_CHARS..=MAX_NONCE_CHARS).contains(&nonce.len()) || !is_lower_hex(nonce) {
            return Err(MailAuthError::Malformed(HEADER_NONCE));
        }
        let signature = Signature::from_hex(signature)
            .map_err(|_| MailAuthError::Malformed(HEADER_SIGNATURE))?;
        Ok(Self {
            timestamp_ms,
            nonce: nonce.to_owned(),
            signature,
        })
    }

    /// Check the timestamp against `now_ms` (± `skew_ms`) and the signature under `key`.
    /// The nonce's freshness is the caller's job (it needs storage).
    pub fn verify(
        &self,
        key: &PublicKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now_ms: u64,
        skew_ms: u64,
    ) -> Result<(), MailAuthError> {
        if self.timestamp_ms.abs_diff(now_ms) > skew_ms {
            return Err(MailAuthError::Expired);
        }
        let payload = signing_payload(method, path_and_query, self.timestamp_ms, &self.nonce, body);
        if key.verify_strict(&payload, &self.signature) {
            Ok(())
        } else {
            Err(MailAuthError::BadSignature)
        }
    }
}

/// Domain separation for a WebSocket mailbox subscription (see [`subscribe_payload`]).
pub const SUBSCRIBE_CONTEXT: &str = "megatorrent-mailbox-subscribe-v1";
/// Length of a WebSocket challenge: 16 random bytes as lowercase hex.
pub const CHALLENGE_CHARS: usize = 32;

/// The bytes a recipient signs to subscribe to its mailbox over a WebSocket:
/// `"megatorrent-mailbox-subscribe-v1\n" <key hex> "\n" <challenge>`, where the challenge is
/// the one the server issued on that socket (single use).
#[must_use]
pub fn subscribe_payload(key: &PublicKey, challenge: &str) -> Vec<u8> {
    format!("{SUBSCRIBE_CONTEXT}\n{}\n{challenge}", key.to_hex()).into_bytes()
}

/// Sign a mailbox subscription for the socket's `challenge`.
#[must_use]
pub fn sign_subscribe(key: &ed25519_dalek::SigningKey, challenge: &str) -> Signature {
    key.sign(&subscribe_payload(&PublicKey::from(key), challenge))
        .into()
}

/// Whether `s` has the shape of a server challenge.
#[must_use]
pub fn valid_challenge(s: &str) -> bool {
    s.len() == CHALLENGE_CHARS && is_lower_hex(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sk(n: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn signed_requests_verify_and_tampering_fails() {
        let key = sk(1);
        let pk = PublicKey::from(&key);
        let auth = MailAuth::sign(&key, "GET", "/v1/mailbox/x", 1000, b"");
        let parsed = MailAuth::parse(
            Some(&auth.timestamp_ms.to_string()),
            Some(&auth.nonce),
            Some(&auth.signature.to_hex()),
        )
        .unwrap();
        assert_eq!(parsed, auth);
        assert!(parsed
            .verify(&pk, "GET", "/v1/mailbox/x", b"", 1000, 10)
            .is_ok());
        let bad = |m: &str, p: &str, b: &[u8], now: u64| parsed.verify(&pk, m, p, b, now, 10);
        assert_eq!(
            bad("DELETE", "/v1/mailbox/x", b"", 1000),
            Err(MailAuthError::BadSignature)
        );
        assert_eq!(
            bad("GET", "/v1/mailbox/y", b"", 1000),
            Err(MailAuthError::BadSignature)
        );
        assert_eq!(
            bad("GET", "/v1/mailbox/x", b"x", 1000),
            Err(MailAuthError::BadSignature)
        );
        assert_eq!(
            bad("GET", "/v1/mailbox/x", b"", 1011),
            Err(MailAuthError::Expired)
        );
        let other = PublicKey::from(&sk(2));
        assert_eq!(
            parsed.verify(&other, "GET", "/v1/mailbox/x", b"", 1000, 10),
            Err(MailAuthError::BadSignature)
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let sig = "00".repeat(64);
        let nonce = "ab".repeat(8);
        assert_eq!(
            MailAuth::parse(None, Some(&nonce), Some(&sig)),
            Err(MailAuthError::Missing(HEADER_TIMESTAMP))
        );
        assert_eq!(
            MailAuth::parse(Some("-1"), Some(&nonce), Some(&sig)),
            Err(MailAuthError::Malformed(HEADER_TIMESTAMP))
        );
        assert_eq!(
            MailAuth::parse(Some("1"), Some("abc"), Some(&sig)),
            Err(MailAuthError::Malformed(HEADER_NONCE))
        );
        assert_eq!(
            MailAuth::parse(Some("1"), Some(&nonce.to_uppercase()), Some(&sig)),
            Err(MailAuthError::Malformed(HEADER_NONCE))
        );
        assert_eq!(
            MailAuth::parse(Some("1"), Some(&nonce), Some("zz")),
            Err(MailAuthError::Malformed(HEADER_SIGNATURE))
        );
        assert!(valid_message_id(&"a1".repeat(16)));
        assert!(!valid_message_id("A1"));
    }

    #[test]
    fn subscribe_signatures_bind_key_and_challenge() {
        let key = sk(3);
        let pk = PublicKey::from(&key);
        let ch = "0123456789abcdef0123456789abcdef";
        assert!(valid_challenge(ch));
        assert!(!valid_challenge(&ch.to_uppercase()));
        assert!(!valid_challenge(&ch[1..]));
        let sig = sign_subscribe(&key, ch);
        assert!(pk.verify_strict(&subscribe_payload(&pk, ch), &sig));
        let other = "f".repeat(CHALLENGE_CHARS);
        assert!(!pk.verify_strict(&subscribe_payload(&pk, &other), &sig));
        let pk2 = PublicKey::from(&sk(4));
        assert!(!pk2.verify_strict(&subscribe_payload(&pk2, ch), &sig));
    }
}
