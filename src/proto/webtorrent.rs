//! The WebTorrent WebSocket tracker protocol: JSON text frames relaying WebRTC offers and
//! answers between browser peers, as the reference JavaScript tracker speaks it.
//!
//! Binary values (`info_hash`, `peer_id`, `to_peer_id`, `offer_id`) travel as 20-character
//! "binary strings": each character is one byte (U+0000–U+00FF). A character above U+00FF
//! is an error, never truncated.
//!
//! [`Incoming`] is what a client sends: `announce` and `scrape` are parsed here; any other
//! action (`publish`, `subscribe`, `unsubscribe`, …) comes back as [`Incoming::Other`] with
//! the raw JSON, the single dispatch point for the manifest extension. [`Outgoing`] is what
//! the server sends. Both have a parse/write pair. Frame size is capped by the server before
//! parsing; here offers per announce ([`MAX_OFFERS`]), the size of each SDP object
//! ([`MAX_SDP_BYTES`]), scrape hashes ([`MAX_SCRAPE_HASHES`]) and short strings
//! ([`MAX_TOKEN_CHARS`]) are capped.

use std::fmt;

use serde_json::Value;

mod incoming;
mod outgoing;

#[cfg(test)]
mod tests;

pub use incoming::{Announce, Answer, Incoming, Offer, Scrape};
pub use outgoing::{
    AnnounceResponse, Failure, Outgoing, RelayedAnswer, RelayedOffer, ScrapeResponse,
};

/// Most offers accepted in one announce (the reference client sends at most 10).
pub const MAX_OFFERS: usize = 10;

/// Largest offer or answer object, counted as the bytes of its strings, keys and numbers.
pub const MAX_SDP_BYTES: usize = 16 * 1024;

/// Most info-hashes in one scrape.
pub const MAX_SCRAPE_HASHES: usize = 256;

/// Longest `trackerid` / `tracker id` / warning text accepted, in characters.
pub const MAX_TOKEN_CHARS: usize = 256;

/// The id a peer gives one of its offers (20 bytes, a binary string on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferId([u8; 20]);

impl OfferId {
    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl From<[u8; 20]> for OfferId {
    fn from(b: [u8; 20]) -> Self {
        Self(b)
    }
}

impl fmt::Debug for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OfferId({})", hex::encode(self.0))
    }
}

/// Why a WebSocket tracker message was rejected.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// Not JSON.
    #[error("not valid JSON")]
    Json(#[source] serde_json::Error),
    /// JSON, but not an object.
    #[error("message is not a JSON object")]
    NotAnObject,
    /// No string `action` member.
    #[error("missing action")]
    MissingAction,
    /// A required member is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A member has the wrong type or value.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A list longer than allowed.
    #[error("too many {what} (at most {max})")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// The cap.
        max: usize,
    },
    /// A value larger than allowed.
    #[error("{0} is too large")]
    TooLarge(&'static str),
}

impl WsError {
    /// A short, stable reason for metrics labels and tests.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Json(_) => "invalid-json",
            Self::NotAnObject => "not-an-object",
            Self::MissingAction => "missing-action",
            Self::Missing(_) => "missing-field",
            Self::Invalid(_) => "invalid-field",
            Self::TooMany { .. } => "too-many",
            Self::TooLarge(_) => "too-large",
        }
    }

    /// The `failure reason` text, with the machine-readable prefix of DESIGN §3.5
    /// (`invalid:` or `too-large:`).
    #[must_use]
    pub fn failure_reason(&self) -> String {
        match self {
            Self::TooMany { .. } | Self::TooLarge(_) => format!("too-large: {self}"),
            Self::Json(_)
            | Self::NotAnObject
            | Self::MissingAction
            | Self::Missing(_)
            | Self::Invalid(_) => format!("invalid: {self}"),
        }
    }
}

/// Encode bytes as a binary string (one character per byte).
#[must_use]
pub fn to_binary_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Decode a binary string of exactly `N` characters, each at most U+00FF.
#[must_use]
pub fn from_binary_string<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let mut n = 0usize;
    for c in s.chars() {
        *out.get_mut(n)? = u8::try_from(c).ok()?;
        n += 1;
    }
    (n == N).then_some(out)
}

type Object = serde_json::Map<String, Value>;

/// A required 20-byte binary-string member.
fn bin20(obj: &Object, key: &'static str) -> Result<[u8; 20], WsError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(WsError::Missing(key)),
        Some(Value::String(s)) => from_binary_string::<20>(s).ok_or(WsError::Invalid(key)),
        Some(_) => Err(WsError::Invalid(key)),
    }
}

/// An optional non-negative number, read leniently the way JavaScript clients write them:
/// `null`/absent → `None`, negative → 0, fractions truncated, huge values saturate.
fn lenient_u64(obj: &Object, key: &'static str) -> Result<Option<u64>, WsError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(if let Some(u) = n.as_u64() {
            u
        } else if n.as_i64().is_some() {
            0
        } else {
            // A float: `as` saturates and maps negatives to 0.
            n.as_f64().map_or(0, |f| f as u64)
        })),
        Some(_) => Err(WsError::Invalid(key)),
    }
}

fn lenient_u32(obj: &Object, key: &'static str) -> Result<Option<u32>, WsError> {
    Ok(lenient_u64(obj, key)?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
}

/// An optional short string.
fn short_string(obj: &Object, key: &'static str) -> Result<Option<String>, WsError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_TOKEN_CHARS => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(WsError::TooLarge(key)),
        Some(_) => Err(WsError::Invalid(key)),
    }
}

/// An SDP offer/answer: a JSON object within [`MAX_SDP_BYTES`].
fn sdp(obj: &Object, key: &'static str) -> Result<Value, WsError> {
    let v = obj.get(key).ok_or(WsError::Missing(key))?;
    if !v.is_object() {
        return Err(WsError::Invalid(key));
    }
    let mut budget = MAX_SDP_BYTES;
    if !fits(v, &mut budget) {
        return Err(WsError::TooLarge(key));
    }
    Ok(v.clone())
}

/// Take `n` from `budget`, or report that it does not fit.
fn spend(budget: &mut usize, n: usize) -> bool {
    match budget.checked_sub(n) {
        Some(left) => {
            *budget = left;
            true
        }
        None => false,
    }
}

/// Whether `v` fits in `budget` bytes (strings, keys, 8 per scalar), spending it.
fn fits(v: &Value, budget: &mut usize) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => spend(budget, 8),
        Value::String(s) => spend(budget, s.len()),
        Value::Array(items) => spend(budget, 2) && items.iter().all(|i| fits(i, budget)),
        Value::Object(m) => {
            spend(budget, 2)
                && m.iter()
                    .all(|(k, v)| spend(budget, k.len()) && fits(v, budget))
        }
    }
}

fn parse_object(text: &str) -> Result<Object, WsError> {
    match serde_json::from_str::<Value>(text).map_err(WsError::Json)? {
        Value::Object(m) => Ok(m),
        _ => Err(WsError::NotAnObject),
    }
}
