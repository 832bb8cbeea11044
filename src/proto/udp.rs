//! The UDP tracker protocol (BEP 15), tolerating BEP 41 options after an announce.
//!
//! Every packet starts with a fixed header; integers are big-endian. Requests:
//! `connect` (protocol id, action 0, transaction id), `announce` (98 bytes, then optional
//! BEP 41 options), `scrape` (16 bytes, then 20 bytes per info-hash). Responses: `connect`,
//! `announce` (6-byte IPv4 peers, or 18-byte IPv6 peers when the request came over IPv6),
//! `scrape`, `error`.
//!
//! Parsing never panics: short, oversized, misaligned or unknown packets are a typed
//! [`UdpError`]. Request errors carry whatever ids could be read, so the server can decide
//! (after checking the connection id, which it mints and verifies itself) whether an error
//! packet may be sent back. Counts are `u32` in this API; the wire fields are `i32`, so
//! values above `i32::MAX` are written as `i32::MAX` and negative values read as 0.

mod request;
mod response;

#[cfg(test)]
mod tests;

pub use request::{AnnounceRequest, ConnectRequest, Request, ScrapeRequest};
pub use response::{
    write_announce_header, write_error, write_peer_v4, write_peer_v6, AnnounceResponse,
    ConnectResponse, ErrorResponse, Response, ResponsePeers, ScrapeResponse,
};

/// The magic constant a `connect` request carries in place of a connection id.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// The largest request accepted: a scrape of [`MAX_SCRAPE_HASHES`] fits, as does an
/// announce with ~1.4 KB of BEP 41 options.
pub const MAX_REQUEST_LEN: usize = 1500;

/// The most info-hashes one scrape may ask about (BEP 15: "about 74").
pub const MAX_SCRAPE_HASHES: usize = 74;

/// Size of the common request header (connection id, action, transaction id).
pub const HEADER_LEN: usize = 16;

/// Size of an announce request without options.
pub const ANNOUNCE_LEN: usize = 98;

/// A connection id (minted and checked by the server, opaque here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// A client-chosen transaction id, echoed in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub u32);

/// Which address family a response's peers use: the family the request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// 6-byte peers.
    V4,
    /// 18-byte peers.
    V6,
}

/// BEP 15 action codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Connect = 0,
    Announce = 1,
    Scrape = 2,
    Error = 3,
}

impl Action {
    pub(crate) fn code(self) -> u32 {
        self as u32
    }
}

/// Why a UDP tracker packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// Shorter than its action requires.
    #[error("packet is {len} bytes, needs at least {min}")]
    TooShort {
        /// Size seen.
        len: usize,
        /// Size required.
        min: usize,
    },
    /// Longer than [`MAX_REQUEST_LEN`].
    #[error("packet is {len} bytes, over the {max}-byte cap")]
    TooLong {
        /// Size seen.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A `connect` without the protocol magic.
    #[error("connect request without the protocol id")]
    BadProtocolId,
    /// An action code this protocol does not define.
    #[error("unknown action {0}")]
    UnknownAction(u32),
    /// An announce `event` code outside 0–4.
    #[error("unknown event {0}")]
    BadEvent(u32),
    /// A scrape with no info-hash.
    #[error("scrape without info-hashes")]
    NoInfoHashes,
    /// A scrape asking about too many torrents.
    #[error("scrape of {count} info-hashes, at most {max}")]
    TooManyInfoHashes {
        /// Number asked.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// A list body that is not a whole number of entries.
    #[error("{what} list of {len} bytes is not a whole number of entries")]
    Misaligned {
        /// Which list.
        what: &'static str,
        /// Its size.
        len: usize,
    },
}

impl UdpError {
    /// A short, stable reason for metrics labels and tests.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too-short",
            Self::TooLong { .. } => "too-long",
            Self::BadProtocolId => "bad-protocol-id",
            Self::UnknownAction(_) => "unknown-action",
            Self::BadEvent(_) => "bad-event",
            Self::NoInfoHashes => "no-info-hashes",
            Self::TooManyInfoHashes { .. } => "too-many-info-hashes",
            Self::Misaligned { .. } => "misaligned",
        }
    }
}

/// A request that could not be parsed, with the ids that could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed UDP tracker request")]
pub struct RequestParseError {
    /// What was wrong.
    #[source]
    pub error: UdpError,
    /// The connection id, when the packet was long enough and not a `connect`.
    pub connection_id: Option<ConnectionId>,
    /// The transaction id, when the packet was long enough.
    pub transaction_id: Option<TransactionId>,
}

impl RequestParseError {
    /// The ids to address an error packet to, if both were readable. The server must still
    /// verify the connection id before answering (never answer unverified senders).
    #[must_use]
    pub fn reply_to(&self) -> Option<(ConnectionId, TransactionId)> {
        self.connection_id.zip(self.transaction_id)
    }
}

/// Big-endian readers over a slice (all bounds-checked).
pub(crate) fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

pub(crate) fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn be_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A count as written on the wire (`i32`, saturating).
pub(crate) fn count_to_wire(n: u32) -> [u8; 4] {
    i32::try_from(n).unwrap_or(i32::MAX).to_be_bytes()
}

/// A count as read from the wire (negative → 0).
pub(crate) fn count_from_wire(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}
