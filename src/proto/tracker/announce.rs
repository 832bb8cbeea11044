//! `GET /announce` query: parse (server) and write (client).

use std::fmt;

use super::query::{
    decode_fixed, decode_into, pairs, parse_counter, parse_flag, parse_i64_saturating, parse_port,
    percent_encode, set_once,
};
use super::{AnnounceEvent, PeerHost, PeerId, RequestError};
use crate::proto::InfoHash;

/// A short opaque value a client echoes (`key`, `trackerid`), held inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    len: u8,
    buf: [u8; Token::MAX_LEN],
}

impl Token {
    /// The longest accepted token, in decoded bytes.
    pub const MAX_LEN: usize = 64;

    /// A token holding `bytes`, or `None` if longer than [`Token::MAX_LEN`].
    #[must_use]
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let len = u8::try_from(bytes.len())
            .ok()
            .filter(|&l| usize::from(l) <= Self::MAX_LEN)?;
        let mut buf = [0u8; Self::MAX_LEN];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self { len, buf })
    }

    /// The bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or_default()
    }

    fn decode(raw: &[u8], param: &'static str) -> Result<Self, RequestError> {
        let mut buf = [0u8; Self::MAX_LEN];
        let n = decode_into(raw, &mut buf, param)?;
        Self::new(buf.get(..n).unwrap_or_default()).ok_or(RequestError::BadValue(param))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A parsed HTTP announce.
///
/// Numbers are lenient where real clients are sloppy and strict where it matters:
/// `uploaded`/`downloaded`/`left` read a negative value as 0 and saturate huge ones;
/// `numwant` keeps its sign and saturates (the handler clamps it); `port` must fit 16 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// The port the peer listens on (0 is passed through; the handler decides).
    pub port: u16,
    /// Bytes uploaded (absent → 0).
    pub uploaded: u64,
    /// Bytes downloaded (absent → 0).
    pub downloaded: u64,
    /// Bytes left; `None` if the client did not say (then it is not known to be a seed).
    pub left: Option<u64>,
    /// The event.
    pub event: AnnounceEvent,
    /// Whether a compact peer list is wanted (absent → `true`).
    pub compact: bool,
    /// Whether peer ids may be left out of a dictionary peer list.
    pub no_peer_id: bool,
    /// Peers wanted, as sent (may be negative or huge; absent → `None`, the default).
    pub numwant: Option<i64>,
    /// The client's private `key` (identifies it across IP changes).
    pub key: Option<Token>,
    /// The `trackerid` from an earlier reply.
    pub tracker_id: Option<Token>,
    /// The `ip` the peer asked to be reached at (IP literal, `.onion` or `.i2p`).
    pub ip: Option<PeerHost>,
}

impl AnnounceRequest {
    /// The longest query accepted (real announces are a few hundred bytes).
    pub const MAX_QUERY_LEN: usize = 4096;

    /// Parse the raw query string (the bytes after `?`, not decoded).
    pub fn parse_query(query: &[u8]) -> Result<Self, RequestError> {
        if query.len() > Self::MAX_QUERY_LEN {
            return Err(RequestError::QueryTooLong {
                len: query.len(),
                max: Self::MAX_QUERY_LEN,
            });
        }
        let mut info_hash = None;
        let mut peer_id = None;
        let mut port = None;
        let mut uploaded = None;
        let mut downloaded = None;
        let mut left = None;
        let mut event = None;
        let mut compact = None;
        let mut no_peer_id = None;
        let mut numwant = None;
        let mut key = None;
        let mut tracker_id = None;
        let mut ip = None;
        for (name, value) in pairs(query) {
            match name {
                b"info_hash" => set_once(
                    &mut info_hash,
                    "info_hash",
                    decode_fixed::<20>(value, "info_hash").map(InfoHash::from),
                )?,
                b"peer_id" => set_once(
                    &mut peer_id,
                    "peer_id",
                    decode_fixed::<20>(value, "peer_id").map(PeerId::from),
                )?,
                b"port" => set_once(&mut port, "port", parse_port(value))?,
                b"uploaded" => {
                    set_once(&mut uploaded, "uploaded", parse_counter(value, "uploaded"))?
                }
                b"downloaded" => set_once(
                    &mut downloaded,
                    "downloaded",
                    parse_counter(value, "downloaded"),
                )?,
                b"left" => set_once(&mut left, "left", parse_counter(value, "left"))?,
                b"event" => set_once(
                    &mut event,
                    "event",
                    AnnounceEvent::from_name(value).ok_or(RequestError::BadValue("event")),
                )?,
                b"compact" => set_once(&mut compact, "compact", parse_flag(value, "compact"))?,
                b"no_peer_id" => set_once(
                    &mut no_peer_id,
                    "no_peer_id",
                    parse_flag(value, "no_peer_id"),
                )?,
                b"numwant" => set_once(
                    &mut numwant,
                    "numwant",
                    parse_i64_saturating(value, "numwant"),
                )?,
                b"key" => set_once(&mut key, "key", Token::decode(value, "key"))?,
                b"trackerid" => set_once(
                    &mut tracker_id,
                    "trackerid",
                    Token::decode(value, "trackerid"),
                )?,
                b"ip" => set_once(&mut ip, "ip", decode_ip(value))?,
                _ => {}
            }
        }
        Ok(Self {
            info_hash: info_hash.ok_or(RequestError::Missing("info_hash"))?,
            peer_id: peer_id.ok_or(RequestError::Missing("peer_id"))?,
            port: port.ok_or(RequestError::Missing("port"))?,
            uploaded: uploaded.unwrap_or(0),
            downloaded: downloaded.unwrap_or(0),
            left,
            event: event.unwrap_or_default(),
            compact: compact.unwrap_or(true),
            no_peer_id: no_peer_id.unwrap_or(false),
            numwant,
            key,
            tracker_id,
            ip,
        })
    }

    /// Append this request as a query string (without `?`), the way a client sends it:
    /// binary values percent-encoded, optional parameters only when set.
    pub fn write_query(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"info_hash=");
        percent_encode(out, self.info_hash.as_bytes());
        out.extend_from_slice(b"&peer_id=");
        percent_encode(out, self.peer_id.as_bytes());
        push_num(out, b"&port=", u64::from(self.port), false);
        push_num(out, b"&uploaded=", self.uploaded, false);
        push_num(out, b"&downloaded=", self.downloaded, false);
        if let Some(left) = self.left {
            push_num(out, b"&left=", left, false);
        }
        if self.event != AnnounceEvent::None {
            out.extend_from_slice(b"&event=");
            out.extend_from_slice(self.event.as_str().as_bytes());
        }
        out.extend_from_slice(if self.compact {
            b"&compact=1"
        } else {
            b"&compact=0"
        });
        if self.no_peer_id {
            out.extend_from_slice(b"&no_peer_id=1");
        }
        if let Some(n) = self.numwant {
            push_num(out, b"&numwant=", n.unsigned_abs(), n < 0);
        }
        if let Some(key) = &self.key {
            out.extend_from_slice(b"&key=");
            percent_encode(out, key.as_bytes());
        }
        if let Some(id) = &self.tracker_id {
            out.extend_from_slice(b"&trackerid=");
            percent_encode(out, id.as_bytes());
        }
        if let Some(ip) = &self.ip {
            out.extend_from_slice(b"&ip=");
            percent_encode(out, ip.to_string().as_bytes());
        }
    }
}

fn decode_ip(raw: &[u8]) -> Result<PeerHost, RequestError> {
    let mut buf = [0u8; PeerHost::MAX_LEN];
    let n = decode_into(raw, &mut buf, "ip")?;
    PeerHost::parse(buf.get(..n).unwrap_or_default()).map_err(RequestError::BadIp)
}

fn push_num(out: &mut Vec<u8>, prefix: &[u8], magnitude: u64, negative: bool) {
    out.extend_from_slice(prefix);
    if negative {
        out.push(b'-');
    }
    crate::proto::bencode::push_decimal(out, magnitude);
}
