//! The profile: a signed, versioned `{publicKey, sequence, timestamp, name, avatar?,
//! mailboxKey?}` document (see docs/api.md, "Profiles").
//!
//! Signed exactly like a manifest ([`super::manifest`]): the signed bytes are the RFC 8785
//! (JCS) canonical JSON of the whole object without its `signature` member, checked with
//! `verify_strict`; unknown members are covered and kept, and the canonical form of the
//! whole object is what servers store and serve.
//!
//! # Domain separation
//!
//! A profile carries the required member `"type": "profile"` and must **not** carry
//! `collections` (required in every manifest) or `content` (required in every feed
//! message). So the signed bytes of a manifest or a message can never verify as a profile,
//! and the signed bytes of a profile (which lack `collections` and `content`) can never
//! verify as a manifest or a message: one signature cannot be replayed as the other kind.
//!
//! A [`Profile`] can only be obtained by [`UnsignedProfile::sign`] or [`Profile::verify`].

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Map, Value};

use super::json::{self, JsonError, JsonErrorKind};
use super::keys::{HexError, MailboxKey, PublicKey, Signature};
use super::manifest::jcs;
use super::MAX_SAFE_INTEGER;

/// The value of the required `type` member.
pub const PROFILE_TYPE: &str = "profile";

/// Members a profile must not have (they belong to other signed documents).
const FOREIGN_MEMBERS: [&str; 2] = ["collections", "content"];

/// Size limits applied to a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileLimits {
    /// Largest avatar, in decoded bytes.
    pub max_avatar_bytes: usize,
}

impl ProfileLimits {
    /// The default avatar cap: 64 KiB decoded.
    pub const DEFAULT_MAX_AVATAR_BYTES: usize = 64 * 1024;
    /// No configuration may raise the avatar cap above this (256 KiB).
    pub const HARD_MAX_AVATAR_BYTES: usize = 256 * 1024;
    /// The smallest avatar cap a configuration may set (1 KiB).
    pub const MIN_AVATAR_BYTES: usize = 1024;
    /// Room for everything but the avatar in the document cap (8 KiB).
    pub const OVERHEAD_BYTES: usize = 8 * 1024;
    /// The longest name, in Unicode scalar values.
    pub const MAX_NAME_CHARS: usize = 64;

    /// Largest accepted document in bytes, as received and in canonical form: the base64
    /// length of the largest avatar plus [`Self::OVERHEAD_BYTES`] (95 576 bytes with the
    /// default avatar cap).
    #[must_use]
    pub fn max_bytes(&self) -> usize {
        base64_len(self.avatar_cap()).saturating_add(Self::OVERHEAD_BYTES)
    }

    fn avatar_cap(&self) -> usize {
        self.max_avatar_bytes.min(Self::HARD_MAX_AVATAR_BYTES)
    }
}

impl Default for ProfileLimits {
    fn default() -> Self {
        Self {
            max_avatar_bytes: Self::DEFAULT_MAX_AVATAR_BYTES,
        }
    }
}

/// The length of the padded standard base64 encoding of `n` bytes.
#[must_use]
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4)
}

/// Why a profile was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The document is larger than [`ProfileLimits::max_bytes`].
    #[error("profile is {size} bytes, over the {max}-byte cap")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The avatar is larger than [`ProfileLimits::max_avatar_bytes`].
    #[error("avatar is {size} bytes, over the {max}-byte cap")]
    AvatarTooLarge {
        /// Decoded size seen.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not strict JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] JsonError),
    /// A member is missing, has the wrong type or is out of range.
    #[error("invalid profile: {0}")]
    Shape(String),
    /// `name` is empty, too long or holds a control character.
    #[error("invalid name: {0}")]
    Name(String),
    /// `avatar` is not non-empty standard base64.
    #[error("invalid avatar: {0}")]
    Avatar(String),
    /// `publicKey`, `signature` or `mailboxKey` is not lowercase hex of the right length, or
    /// the key is not a valid Ed25519 point.
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
        /// The profile's timestamp (ms).
        timestamp: u64,
        /// Server time (ms).
        now: u64,
        /// Allowed skew (ms).
        max_skew_ms: u64,
    },
}

impl ProfileError {
    /// A short, stable, machine-readable reason code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too-large",
            Self::AvatarTooLarge { .. } => "avatar-too-large",
            Self::Json(e) => match e.kind {
                JsonErrorKind::Syntax => "invalid-json",
                JsonErrorKind::DuplicateMember => "duplicate-member",
                JsonErrorKind::NotAnInteger => "not-an-integer",
            },
            Self::Shape(_) => "invalid-profile",
            Self::Name(_) => "invalid-name",
            Self::Avatar(_) => "invalid-avatar",
            Self::Hex { .. } => "invalid-hex",
            Self::BadSignature => "bad-signature",
            Self::TimestampInFuture { .. } => "timestamp-in-future",
        }
    }
}

/// Check a display name: 1 to [`ProfileLimits::MAX_NAME_CHARS`] Unicode scalar values, no
/// control characters.
pub fn check_name(name: &str) -> Result<(), ProfileError> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err(ProfileError::Name("the name is empty".into()));
    }
    if chars > ProfileLimits::MAX_NAME_CHARS {
        return Err(ProfileError::Name(format!(
            "the name has {chars} characters, over the limit of {}",
            ProfileLimits::MAX_NAME_CHARS
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(ProfileError::Name(format!(
            "the name holds the control character U+{:04X}",
            u32::from(c)
        )));
    }
    Ok(())
}

fn check_avatar(avatar: &[u8], limits: &ProfileLimits) -> Result<(), ProfileError> {
    if avatar.is_empty() {
        return Err(ProfileError::Avatar("the avatar is empty".into()));
    }
    let max = limits.avatar_cap();
    if avatar.len() > max {
        return Err(ProfileError::AvatarTooLarge {
            size: avatar.len(),
            max,
        });
    }
    Ok(())
}

/// The content of a profile before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedProfile {
    /// Strictly increasing per key (≤ 2^53−1).
    pub sequence: u64,
    /// Milliseconds since the Unix epoch (≤ 2^53−1).
    pub timestamp: u64,
    /// The display name.
    pub name: String,
    /// The avatar image's bytes, if any.
    pub avatar: Option<Vec<u8>>,
    /// The X25519 key to seal mail to, if any.
    pub mailbox_key: Option<MailboxKey>,
}

impl UnsignedProfile {
    /// Check the name, avatar and numbers against `limits`, then sign with `key`.
    pub fn sign(self, key: &SigningKey, limits: &ProfileLimits) -> Result<Profile, ProfileError> {
        for (name, v) in [("sequence", self.sequence), ("timestamp", self.timestamp)] {
            if v > MAX_SAFE_INTEGER {
                return Err(ProfileError::Shape(format!("{name} exceeds 2^53-1")));
            }
        }
        check_name(&self.name)?;
        if let Some(a) = &self.avatar {
            check_avatar(a, limits)?;
        }
        let public_key = PublicKey::from(key);
        let mut obj = Map::new();
        obj.insert("type".into(), Value::String(PROFILE_TYPE.into()));
        obj.insert("publicKey".into(), Value::String(public_key.to_hex()));
        obj.insert("sequence".into(), self.sequence.into());
        obj.insert("timestamp".into(), self.timestamp.into());
        obj.insert("name".into(), Value::String(self.name.clone()));
        if let Some(a) = &self.avatar {
            obj.insert("avatar".into(), Value::String(BASE64.encode(a)));
        }
        if let Some(m) = &self.mailbox_key {
            obj.insert("mailboxKey".into(), Value::String(m.to_hex()));
        }
        let signature = Signature::from(key.sign(&jcs(&obj)));
        obj.insert("signature".into(), Value::String(signature.to_hex()));
        let canonical = jcs(&obj);
        check_size(canonical.len(), limits)?;
        Ok(Profile {
            public_key,
            sequence: self.sequence,
            timestamp: self.timestamp,
            name: self.name,
            avatar: self.avatar,
            mailbox_key: self.mailbox_key,
            canonical,
        })
    }
}

/// A profile whose signature has been checked (or that we signed ourselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    public_key: PublicKey,
    sequence: u64,
    timestamp: u64,
    name: String,
    avatar: Option<Vec<u8>>,
    mailbox_key: Option<MailboxKey>,
    canonical: Vec<u8>,
}

impl Profile {
    /// Parse strictly, check every member and verify the signature.
    pub fn verify(bytes: &[u8], limits: &ProfileLimits) -> Result<Self, ProfileError> {
        check_size(bytes.len(), limits)?;
        let value = json::parse_strict(bytes)?;
        json::check_numbers(&value)?;
        let Value::Object(mut obj) = value else {
            return Err(ProfileError::Shape(
                "a profile must be a JSON object".into(),
            ));
        };
        match obj.get("type") {
            Some(Value::String(t)) if t == PROFILE_TYPE => {}
            Some(_) => return Err(shape("type must be \"profile\"")),
            None => return Err(shape("missing type")),
        }
        if let Some(m) = FOREIGN_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(ProfileError::Shape(format!(
                "a profile must not have a {m} member"
            )));
        }
        let public_key = hex_member(&obj, "publicKey", PublicKey::from_hex)?
            .ok_or_else(|| shape("missing publicKey"))?;
        let signature = hex_member(&obj, "signature", Signature::from_hex)?
            .ok_or_else(|| shape("missing signature"))?;
        public_key
            .verifying_key()
            .map_err(|source| ProfileError::Hex {
                member: "publicKey",
                source,
            })?;
        let sequence = uint_member(&obj, "sequence")?;
        let timestamp = uint_member(&obj, "timestamp")?;
        let name = match obj.get("name") {
            Some(Value::String(n)) => n.clone(),
            Some(_) => return Err(shape("name must be a string")),
            None => return Err(shape("missing name")),
        };
        check_name(&name)?;
        let avatar = match obj.get("avatar") {
            None => None,
            Some(Value::String(a)) => Some(decode_avatar(a, limits)?),
            Some(_) => return Err(shape("avatar must be a string")),
        };
        let mailbox_key = hex_member(&obj, "mailboxKey", MailboxKey::from_hex)?;

        obj.remove("signature");
        if !public_key.verify_strict(&jcs(&obj), &signature) {
            return Err(ProfileError::BadSignature);
        }
        obj.insert("signature".into(), Value::String(signature.to_hex()));
        let canonical = jcs(&obj);
        check_size(canonical.len(), limits)?;
        Ok(Self {
            public_key,
            sequence,
            timestamp,
            name,
            avatar,
            mailbox_key,
            canonical,
        })
    }

    /// Reject a profile dated more than `max_skew_ms` after `now_ms` (the manifest rule).
    pub fn check_timestamp(&self, now_ms: u64, max_skew_ms: u64) -> Result<(), ProfileError> {
        if self.timestamp > now_ms.saturating_add(max_skew_ms) {
            return Err(ProfileError::TimestampInFuture {
                timestamp: self.timestamp,
                now: now_ms,
                max_skew_ms,
            });
        }
        Ok(())
    }

    /// The owner's key.
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

    /// The display name (checked: 1–64 scalar values, no control characters).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The decoded avatar, if any.
    #[must_use]
    pub fn avatar(&self) -> Option<&[u8]> {
        self.avatar.as_deref()
    }

    /// The X25519 key to seal mail to, if the owner published one.
    #[must_use]
    pub fn mailbox_key(&self) -> Option<&MailboxKey> {
        self.mailbox_key.as_ref()
    }

    /// The canonical (JCS) bytes of the whole profile, signature included.
    #[must_use]
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// Consume into the canonical bytes.
    #[must_use]
    pub fn into_canonical_bytes(self) -> Vec<u8> {
        self.canonical
    }
}

fn shape(m: &str) -> ProfileError {
    ProfileError::Shape(m.to_owned())
}

fn check_size(size: usize, limits: &ProfileLimits) -> Result<(), ProfileError> {
    let max = limits.max_bytes();
    if size > max {
        return Err(ProfileError::TooLarge { size, max });
    }
    Ok(())
}

fn decode_avatar(text: &str, limits: &ProfileLimits) -> Result<Vec<u8>, ProfileError> {
    let max = limits.avatar_cap();
    // Refuse before decoding when the text alone proves the avatar too large.
    if text.len() > base64_len(max) {
        return Err(ProfileError::AvatarTooLarge {
            size: text.len() / 4 * 3,
            max,
        });
    }
    let bytes = BASE64
        .decode(text)
        .map_err(|e| ProfileError::Avatar(format!("not standard padded base64 ({e})")))?;
    check_avatar(&bytes, limits)?;
    Ok(bytes)
}

fn hex_member<T>(
    obj: &Map<String, Value>,
    member: &'static str,
    parse: fn(&str) -> Result<T, HexError>,
) -> Result<Option<T>, ProfileError> {
    match obj.get(member) {
        Some(Value::String(s)) => parse(s)
            .map(Some)
            .map_err(|source| ProfileError::Hex { member, source }),
        Some(_) => Err(ProfileError::Shape(format!("{member} must be a string"))),
        None => Ok(None),
    }
}

fn uint_member(obj: &Map<String, Value>, member: &'static str) -> Result<u64, ProfileError> {
    match obj.get(member) {
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|v| *v <= MAX_SAFE_INTEGER)
            .ok_or_else(|| {
                ProfileError::Shape(format!("{member} must be an integer in 0..=2^53-1"))
            }),
        Some(_) => Err(ProfileError::Shape(format!("{member} must be an integer"))),
        None => Err(ProfileError::Shape(format!("missing {member}"))),
    }
}

#[cfg(test)]
mod tests;
