//! The manifest (the "Megatorrent"): a signed, versioned list of torrent collections.
//!
//! Signed bytes are the RFC 8785 (JCS) canonical JSON of the whole object without its
//! `signature` member. Every other member is covered, so unknown members are kept. The
//! canonical form of the whole object (signature included) is what servers store and serve,
//! so every reader sees identical bytes.
//!
//! A [`Manifest`] can only be obtained by [`UnsignedManifest::sign`] or
//! [`Manifest::verify`]; its fields are private.

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json::{self, JsonError, JsonErrorKind};
use super::keys::{HexError, PublicKey, Signature};
use super::MAX_SAFE_INTEGER;

/// Size limits applied when verifying a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Largest accepted document, in bytes, both as received and in canonical form.
    pub max_bytes: usize,
}

impl ManifestLimits {
    /// The default cap: 64 KiB.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;
    /// No configuration may raise the cap above this (1 MiB).
    pub const HARD_MAX_BYTES: usize = 1024 * 1024;
}

impl Default for ManifestLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// Why a manifest was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Larger than the configured cap.
    #[error("manifest is {size} bytes, over the {max}-byte cap")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not strict JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] JsonError),
    /// A member is missing, has the wrong type or is out of range.
    #[error("invalid manifest: {0}")]
    Shape(String),
    /// `publicKey` or `signature` is not lowercase hex of the right length, or the key is not
    /// a valid Ed25519 point.
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
    /// The timestamp is further in the future than the allowed clock skew.
    #[error("timestamp {timestamp} is more than {max_skew_ms} ms ahead of server time {now}")]
    TimestampInFuture {
        /// The manifest's timestamp (ms).
        timestamp: u64,
        /// Server time (ms).
        now: u64,
        /// Allowed skew (ms).
        max_skew_ms: u64,
    },
}

impl ManifestError {
    /// A short, stable, machine-readable reason code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too-large",
            Self::Json(e) => match e.kind {
                JsonErrorKind::Syntax => "invalid-json",
                JsonErrorKind::DuplicateMember => "duplicate-member",
                JsonErrorKind::NotAnInteger => "not-an-integer",
            },
            Self::Shape(_) => "invalid-manifest",
            Self::Hex { .. } => "invalid-hex",
            Self::BadSignature => "bad-signature",
            Self::TimestampInFuture { .. } => "timestamp-in-future",
        }
    }
}

/// One titled list of items (usually magnet links).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// The collection's title (e.g. "Season 1", "messages", "archive").
    pub title: String,
    /// The items, in publisher order.
    pub items: Vec<String>,
}

/// The content of a manifest before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedManifest {
    /// Strictly increasing per key (≤ 2^53−1).
    pub sequence: u64,
    /// Milliseconds since the Unix epoch (≤ 2^53−1).
    pub timestamp: u64,
    /// The collections.
    pub collections: Vec<Collection>,
}

impl UnsignedManifest {
    /// Sign with `key`, producing a manifest with exactly the reference members
    /// (`publicKey`, `sequence`, `timestamp`, `collections`, `signature`).
    ///
    /// Fails only if `sequence` or `timestamp` exceed 2^53−1.
    pub fn sign(self, key: &SigningKey) -> Result<Manifest, ManifestError> {
        for (name, v) in [("sequence", self.sequence), ("timestamp", self.timestamp)] {
            if v > MAX_SAFE_INTEGER {
                return Err(ManifestError::Shape(format!("{name} exceeds 2^53-1")));
            }
        }
        let public_key = PublicKey::from(key);
        let mut obj = Map::new();
        obj.insert("publicKey".into(), Value::String(public_key.to_hex()));
        obj.insert("sequence".into(), self.sequence.into());
        obj.insert("timestamp".into(), self.timestamp.into());
        obj.insert(
            "collections".into(),
            collections_to_value(&self.collections),
        );
        let signed = jcs(&obj);
        let signature = Signature::from(key.sign(&signed));
        obj.insert("signature".into(), Value::String(signature.to_hex()));
        let canonical = jcs(&obj);
        Ok(Manifest {
            public_key,
            sequence: self.sequence,
            timestamp: self.timestamp,
            collections: self.collections,
            signature,
            canonical,
        })
    }
}

/// A manifest whose signature has been checked (or that we signed ourselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    public_key: PublicKey,
    sequence: u64,
    timestamp: u64,
    collections: Vec<Collection>,
    signature: Signature,
    canonical: Vec<u8>,
}

impl Manifest {
    /// Parse strictly and verify the signature.
    pub fn verify(bytes: &[u8], limits: &ManifestLimits) -> Result<Self, ManifestError> {
        check_size(bytes.len(), limits)?;
        let value = json::parse_strict(bytes)?;
        Self::verify_value(value, limits)
    }

    /// Verify a manifest that arrived as a value inside a larger, strictly parsed document
    /// (e.g. a WebSocket frame).
    pub fn verify_value(value: Value, limits: &ManifestLimits) -> Result<Self, ManifestError> {
        json::check_numbers(&value)?;
        let Value::Object(mut obj) = value else {
            return Err(ManifestError::Shape(
                "manifest must be a JSON object".into(),
            ));
        };
        let public_key = hex_member(&obj, "publicKey", PublicKey::from_hex)?;
        let signature = hex_member(&obj, "signature", Signature::from_hex)?;
        public_key
            .verifying_key()
            .map_err(|source| ManifestError::Hex {
                member: "publicKey",
                source,
            })?;
        let sequence = uint_member(&obj, "sequence")?;
        let timestamp = uint_member(&obj, "timestamp")?;
        let collections = parse_collections(obj.get("collections"))?;

        obj.remove("signature");
        let signed = jcs(&obj);
        if !public_key.verify_strict(&signed, &signature) {
            return Err(ManifestError::BadSignature);
        }
        obj.insert("signature".into(), Value::String(signature.to_hex()));
        let canonical = jcs(&obj);
        check_size(canonical.len(), limits)?;
        Ok(Self {
            public_key,
            sequence,
            timestamp,
            collections,
            signature,
            canonical,
        })
    }

    /// Reject a manifest dated more than `max_skew_ms` after `now_ms`.
    pub fn check_timestamp(&self, now_ms: u64, max_skew_ms: u64) -> Result<(), ManifestError> {
        if self.timestamp > now_ms.saturating_add(max_skew_ms) {
            return Err(ManifestError::TimestampInFuture {
                timestamp: self.timestamp,
                now: now_ms,
                max_skew_ms,
            });
        }
        Ok(())
    }

    /// The publisher's key.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The sequence number.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The timestamp (ms since the epoch).
    #[must_use]
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The collections (typed view; unknown members are only in [`Self::canonical_bytes`]).
    #[must_use]
    pub fn collections(&self) -> &[Collection] {
        &self.collections
    }

    /// The signature.
    #[must_use]
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The canonical (JCS) bytes of the whole manifest, signature included.
    #[must_use]
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// Consume into the canonical bytes.
    #[must_use]
    pub fn into_canonical_bytes(self) -> Vec<u8> {
        self.canonical
    }

    /// The manifest as a JSON value (parsed back from the canonical bytes).
    #[must_use]
    pub fn to_value(&self) -> Value {
        // The canonical bytes were produced by our own serializer from a Value, so they
        // always parse; fall back to Null rather than panic.
        serde_json::from_slice(&self.canonical).unwrap_or(Value::Null)
    }

    /// All items of the collection titled `title`, or an empty slice.
    #[must_use]
    pub fn items(&self, title: &str) -> &[String] {
        self.collections
            .iter()
            .find(|c| c.title == title)
            .map_or(&[], |c| c.items.as_slice())
    }
}

fn check_size(size: usize, limits: &ManifestLimits) -> Result<(), ManifestError> {
    let max = limits.max_bytes.min(ManifestLimits::HARD_MAX_BYTES);
    if size > max {
        return Err(ManifestError::TooLarge { size, max });
    }
    Ok(())
}

/// JCS bytes of an object built from strictly checked values (also used by
/// [`super::message`], which is signed the same way).
pub(crate) fn jcs(obj: &Map<String, Value>) -> Vec<u8> {
    // serde_jcs fails only for non-finite floats, which strict parsing and our own
    // constructors never produce; an empty vector would then simply fail verification.
    serde_jcs::to_vec(obj).unwrap_or_default()
}

fn collections_to_value(cols: &[Collection]) -> Value {
    Value::Array(
        cols.iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("title".into(), Value::String(c.title.clone()));
                m.insert(
                    "items".into(),
                    Value::Array(c.items.iter().cloned().map(Value::String).collect()),
                );
                Value::Object(m)
            })
            .collect(),
    )
}

fn hex_member<T>(
    obj: &Map<String, Value>,
    member: &'static str,
    parse: fn(&str) -> Result<T, HexError>,
) -> Result<T, ManifestError> {
    match obj.get(member) {
        Some(Value::String(s)) => parse(s).map_err(|source| ManifestError::Hex { member, source }),
        Some(_) => Err(ManifestError::Shape(format!("{member} must be a string"))),
        None => Err(ManifestError::Shape(format!("missing {member}"))),
    }
}

fn uint_member(obj: &Map<String, Value>, member: &'static str) -> Result<u64, ManifestError> {
    match obj.get(member) {
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|v| *v <= MAX_SAFE_INTEGER)
            .ok_or_else(|| {
                ManifestError::Shape(format!("{member} must be an integer in 0..=2^53-1"))
            }),
        Some(_) => Err(ManifestError::Shape(format!("{member} must be an integer"))),
        None => Err(ManifestError::Shape(format!("missing {member}"))),
    }
}

fn parse_collections(v: Option<&Value>) -> Result<Vec<Collection>, ManifestError> {
    let shape = |m: &str| ManifestError::Shape(m.to_owned());
    let Some(Value::Array(cols)) = v else {
        return Err(shape("collections must be an array"));
    };
    cols.iter()
        .map(|c| {
            let Value::Object(c) = c else {
                return Err(shape("each collection must be an object"));
            };
            let Some(Value::String(title)) = c.get("title") else {
                return Err(shape("each collection needs a string title"));
            };
            let Some(Value::Array(items)) = c.get("items") else {
                return Err(shape("each collection needs an items array"));
            };
            let items = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(shape("collection items must be strings")),
                })
                .collect::<Result<_, _>>()?;
            Ok(Collection {
                title: title.clone(),
                items,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
