//! The HTTP BitTorrent tracker protocol: BEP 3 announce, BEP 23 compact peers, BEP 7
//! `peers6`, BEP 48 scrape, and hostname peers (`.onion`, `.i2p`).
//!
//! Queries are parsed **as bytes** with our own percent-decoder: `info_hash` and `peer_id`
//! are raw binary, percent-encoded, and `+` is an ordinary byte in them (a form decoder
//! would turn it into a space and corrupt the hash). Parameter names are matched as sent
//! (not percent-decoded). Unknown parameters are ignored; a known parameter given twice is
//! rejected ([`RequestError::Duplicate`]) so two readers can never disagree about which
//! value counted.
//!
//! Responses are bencoded straight into a caller-owned buffer; see [`AnnounceResponse`],
//! [`write_failure`] and [`write_scrape`]. The matching readers ([`AnnounceReply::parse`],
//! [`ScrapeReply::parse`]) are for the client and the round-trip tests.

use std::fmt;

mod announce;
mod peer_addr;
mod query;
mod response;
mod scrape;

#[cfg(test)]
mod tests;

pub use announce::{AnnounceRequest, Token};
pub use peer_addr::{HostError, I2pName, OnionName, PeerAddr, PeerHost};
pub use response::{
    write_failure, write_scrape, AnnounceReply, AnnounceResponse, AnnounceSuccess, ReplyError,
    ReplyPeer, ScrapeReply, ScrapeStats,
};
pub use scrape::ScrapeRequest;

/// A peer's self-chosen 20-byte id (binary; shown as hex).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; 20]);

impl PeerId {
    /// Length in bytes.
    pub const LEN: usize = 20;

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Lowercase hex (for logs and tests; the wire carries raw bytes).
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; 20]> for PeerId {
    fn from(b: [u8; 20]) -> Self {
        Self(b)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.to_hex())
    }
}

/// The `event` of an announce. Shared by the HTTP, UDP and WebSocket trackers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AnnounceEvent {
    /// A regular re-announce: `event` absent, empty, or (WebTorrent) `update`; UDP 0.
    #[default]
    None,
    /// The download finished (`completed`; UDP 1).
    Completed,
    /// The first announce (`started`; UDP 2).
    Started,
    /// The peer is leaving (`stopped`; UDP 3).
    Stopped,
    /// BEP 21 partial seed (`paused`; UDP 4 as libtorrent sends it).
    Paused,
}

impl AnnounceEvent {
    /// The HTTP/WebSocket spelling (`""` for [`AnnounceEvent::None`]).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Completed => "completed",
            Self::Started => "started",
            Self::Stopped => "stopped",
            Self::Paused => "paused",
        }
    }

    /// Parse the HTTP/WebSocket spelling; `""`, `empty` and `update` mean a regular announce.
    #[must_use]
    pub fn from_name(s: &[u8]) -> Option<Self> {
        match s {
            b"" | b"empty" | b"update" => Some(Self::None),
            b"completed" => Some(Self::Completed),
            b"started" => Some(Self::Started),
            b"stopped" => Some(Self::Stopped),
            b"paused" => Some(Self::Paused),
            _ => None,
        }
    }

    /// The BEP 15 UDP code.
    #[must_use]
    pub fn udp_code(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Completed => 1,
            Self::Started => 2,
            Self::Stopped => 3,
            Self::Paused => 4,
        }
    }

    /// Parse a BEP 15 UDP code.
    #[must_use]
    pub fn from_udp_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Completed),
            2 => Some(Self::Started),
            3 => Some(Self::Stopped),
            4 => Some(Self::Paused),
            _ => None,
        }
    }
}

/// What the server should do with a request that failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Answer with a bencoded `failure reason` (the client made a fixable mistake).
    TellPeer,
    /// Answer as cheaply as possible (a bare 400) and log nothing per request: the input is
    /// abusive or not a tracker client at all.
    Drop,
}

/// Why an HTTP tracker query was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The query is longer than the cap for its kind.
    #[error("query is {len} bytes, over the {max}-byte cap")]
    QueryTooLong {
        /// Size seen.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A required parameter is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A known parameter appears more than once.
    #[error("{0} given more than once")]
    Duplicate(&'static str),
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding in {0}")]
    BadEncoding(&'static str),
    /// A binary parameter of the wrong decoded length.
    #[error("{param} must be {expected} bytes, got {got}")]
    BadLength {
        /// Which parameter.
        param: &'static str,
        /// Required length.
        expected: usize,
        /// Decoded length.
        got: usize,
    },
    /// A parameter whose value is not acceptable (not a number, unknown event, too long…).
    #[error("invalid {0}")]
    BadValue(&'static str),
    /// The `ip` parameter is neither an IP literal nor an acceptable `.onion`/`.i2p` name.
    #[error("invalid ip")]
    BadIp(#[source] HostError),
    /// A scrape asked for more info-hashes than allowed.
    #[error("too many info_hash values (at most {max})")]
    TooManyInfoHashes {
        /// The cap.
        max: usize,
    },
}

impl RequestError {
    /// Whether to answer with a `failure reason` or drop.
    #[must_use]
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::QueryTooLong { .. } => Disposition::Drop,
            Self::Missing(_)
            | Self::Duplicate(_)
            | Self::BadEncoding(_)
            | Self::BadLength { .. }
            | Self::BadValue(_)
            | Self::BadIp(_)
            | Self::TooManyInfoHashes { .. } => Disposition::TellPeer,
        }
    }

    /// A short, stable reason for metrics labels and tests.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::QueryTooLong { .. } => "query-too-long",
            Self::Missing(_) => "missing-param",
            Self::Duplicate(_) => "duplicate-param",
            Self::BadEncoding(_) => "bad-encoding",
            Self::BadLength { .. } => "bad-length",
            Self::BadValue(_) => "bad-value",
            Self::BadIp(_) => "bad-ip",
            Self::TooManyInfoHashes { .. } => "too-many-info-hashes",
        }
    }

    /// The text for a `failure reason`: this error and its cause, safe to show the peer
    /// (it only ever describes the peer's own input).
    #[must_use]
    pub fn failure_reason(&self) -> String {
        match self {
            Self::BadIp(cause) => format!("{self}: {cause}"),
            _ => self.to_string(),
        }
    }
}
