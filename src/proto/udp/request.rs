//! UDP tracker requests: parse (server) and write (client).

use std::net::Ipv4Addr;

use super::{
    be_i32, be_i64, be_u16, be_u32, be_u64, Action, ConnectionId, RequestParseError, TransactionId,
    UdpError, ANNOUNCE_LEN, HEADER_LEN, MAX_REQUEST_LEN, MAX_SCRAPE_HASHES, PROTOCOL_ID,
};
use crate::proto::tracker::{AnnounceEvent, PeerId};
use crate::proto::InfoHash;

/// `connect` (action 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Echoed in the response.
    pub transaction_id: TransactionId,
}

/// `announce` (action 1).
///
/// `downloaded`/`left`/`uploaded` are `i64` on the wire: negative values read as 0 and
/// values above `i64::MAX` are written as `i64::MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// From an earlier `connect`.
    pub connection_id: ConnectionId,
    /// Echoed in the response.
    pub transaction_id: TransactionId,
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes left.
    pub left: u64,
    /// Bytes uploaded.
    pub uploaded: u64,
    /// The event.
    pub event: AnnounceEvent,
    /// The address to use instead of the sender's (0.0.0.0 = the sender's).
    pub ip: Ipv4Addr,
    /// The client's private key.
    pub key: u32,
    /// Peers wanted (-1 = the tracker's default).
    pub num_want: i32,
    /// The port the peer listens on.
    pub port: u16,
    /// BEP 41 URL data (the concatenated `URLData` options: path and query of the announce
    /// URL), empty if none. Malformed options end option parsing without an error.
    pub url_data: Vec<u8>,
}

/// `scrape` (action 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeRequest {
    /// From an earlier `connect`.
    pub connection_id: ConnectionId,
    /// Echoed in the response.
    pub transaction_id: TransactionId,
    /// The torrents, in request order (the response answers in the same order).
    pub info_hashes: Vec<InfoHash>,
}

/// Any UDP tracker request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `connect`.
    Connect(ConnectRequest),
    /// `announce`.
    Announce(AnnounceRequest),
    /// `scrape`.
    Scrape(ScrapeRequest),
}

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_URL_DATA: u8 = 2;

fn need<T>(v: Option<T>, e: RequestParseError) -> Result<T, RequestParseError> {
    v.ok_or(e)
}

fn counter_from_wire(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn counter_to_wire(n: u64) -> [u8; 8] {
    i64::try_from(n).unwrap_or(i64::MAX).to_be_bytes()
}

/// Collect BEP 41 `URLData` payloads; stop quietly at the end marker or malformed input.
fn parse_options(mut opts: &[u8]) -> Vec<u8> {
    let mut url = Vec::new();
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            OPT_END => break,
            OPT_NOP => opts = rest,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    break;
                };
                let Some(data) = rest.get(..usize::from(len)) else {
                    break;
                };
                if kind == OPT_URL_DATA {
                    url.extend_from_slice(data);
                }
                opts = rest.get(usize::from(len)..).unwrap_or_default();
            }
        }
    }
    url
}

impl Request {
    /// Parse one datagram.
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestParseError> {
        let (Some(conn), Some(action), Some(tid)) =
            (be_u64(bytes, 0), be_u32(bytes, 8), be_u32(bytes, 12))
        else {
            return Err(RequestParseError {
                error: UdpError::TooShort {
                    len: bytes.len(),
                    min: HEADER_LEN,
                },
                connection_id: None,
                transaction_id: None,
            });
        };
        let transaction_id = TransactionId(tid);
        let connection_id = ConnectionId(conn);
        let fail = |error, conn: Option<ConnectionId>| RequestParseError {
            error,
            connection_id: conn,
            transaction_id: Some(transaction_id),
        };
        if action == Action::Connect.code() {
            if conn != PROTOCOL_ID {
                return Err(RequestParseError {
                    error: UdpError::BadProtocolId,
                    connection_id: None,
                    transaction_id: None,
                });
            }
            // Trailing bytes after a connect are ignored.
            return Ok(Self::Connect(ConnectRequest { transaction_id }));
        }
        let conn = Some(connection_id);
        if bytes.len() > MAX_REQUEST_LEN {
            return Err(fail(
                UdpError::TooLong {
                    len: bytes.len(),
                    max: MAX_REQUEST_LEN,
                },
                conn,
            ));
        }
        if action == Action::Announce.code() {
            let short = UdpError::TooShort {
                len: bytes.len(),
                min: ANNOUNCE_LEN,
            };
            let e = fail(short, conn);
            let body = bytes.get(..ANNOUNCE_LEN).ok_or(e)?;
            let mut ih = [0u8; 20];
            ih.copy_from_slice(body.get(16..36).ok_or(e)?);
            let mut pid = [0u8; 20];
            pid.copy_from_slice(body.get(36..56).ok_or(e)?);
            let event_code = need(be_u32(body, 80), e)?;
            let event = AnnounceEvent::from_udp_code(event_code)
                .ok_or(fail(UdpError::BadEvent(event_code), conn))?;
            Ok(Self::Announce(AnnounceRequest {
                connection_id,
                transaction_id,
                info_hash: InfoHash::from(ih),
                peer_id: PeerId::from(pid),
                downloaded: counter_from_wire(need(be_i64(body, 56), e)?),
                left: counter_from_wire(need(be_i64(body, 64), e)?),
                uploaded: counter_from_wire(need(be_i64(body, 72), e)?),
                event,
                ip: Ipv4Addr::from(need(be_u32(body, 84), e)?),
                key: need(be_u32(body, 88), e)?,
                num_want: need(be_i32(body, 92), e)?,
                port: need(be_u16(body, 96), e)?,
                url_data: parse_options(bytes.get(ANNOUNCE_LEN..).unwrap_or_default()),
            }))
        } else if action == Action::Scrape.code() {
            let list = bytes.get(HEADER_LEN..).unwrap_or_default();
            if list.is_empty() {
                return Err(fail(UdpError::NoInfoHashes, conn));
            }
            if list.len() % 20 != 0 {
                return Err(fail(
                    UdpError::Misaligned {
                        what: "info-hash",
                        len: list.len(),
                    },
                    conn,
                ));
            }
            let count = list.len() / 20;
            if count > MAX_SCRAPE_HASHES {
                return Err(fail(
                    UdpError::TooManyInfoHashes {
                        count,
                        max: MAX_SCRAPE_HASHES,
                    },
                    conn,
                ));
            }
            let info_hashes = list
                .chunks_exact(20)
                .filter_map(|c| <[u8; 20]>::try_from(c).ok())
                .map(InfoHash::from)
                .collect();
            Ok(Self::Scrape(ScrapeRequest {
                connection_id,
                transaction_id,
                info_hashes,
            }))
        } else {
            Err(fail(UdpError::UnknownAction(action), conn))
        }
    }

    /// Append this request's datagram. URL data is split into 255-byte `URLData` options;
    /// a request whose encoding exceeds [`MAX_REQUEST_LEN`] is written anyway and will be
    /// refused by a parser.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Connect(c) => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&Action::Connect.code().to_be_bytes());
                out.extend_from_slice(&c.transaction_id.0.to_be_bytes());
            }
            Self::Announce(a) => {
                out.extend_from_slice(&a.connection_id.0.to_be_bytes());
                out.extend_from_slice(&Action::Announce.code().to_be_bytes());
                out.extend_from_slice(&a.transaction_id.0.to_be_bytes());
                out.extend_from_slice(a.info_hash.as_bytes());
                out.extend_from_slice(a.peer_id.as_bytes());
                out.extend_from_slice(&counter_to_wire(a.downloaded));
                out.extend_from_slice(&counter_to_wire(a.left));
                out.extend_from_slice(&counter_to_wire(a.uploaded));
                out.extend_from_slice(&a.event.udp_code().to_be_bytes());
                out.extend_from_slice(&a.ip.octets());
                out.extend_from_slice(&a.key.to_be_bytes());
                out.extend_from_slice(&a.num_want.to_be_bytes());
                out.extend_from_slice(&a.port.to_be_bytes());
                for chunk in a.url_data.chunks(usize::from(u8::MAX)) {
                    out.push(OPT_URL_DATA);
                    // Chunks are at most 255 bytes.
                    out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                    out.extend_from_slice(chunk);
                }
            }
            Self::Scrape(s) => {
                out.extend_from_slice(&s.connection_id.0.to_be_bytes());
                out.extend_from_slice(&Action::Scrape.code().to_be_bytes());
                out.extend_from_slice(&s.transaction_id.0.to_be_bytes());
                for ih in &s.info_hashes {
                    out.extend_from_slice(ih.as_bytes());
                }
            }
        }
    }

    /// The transaction id.
    #[must_use]
    pub fn transaction_id(&self) -> TransactionId {
        match self {
            Self::Connect(c) => c.transaction_id,
            Self::Announce(a) => a.transaction_id,
            Self::Scrape(s) => s.transaction_id,
        }
    }

    /// The connection id to verify (`None` for `connect`).
    #[must_use]
    pub fn connection_id(&self) -> Option<ConnectionId> {
        match self {
            Self::Connect(_) => None,
            Self::Announce(a) => Some(a.connection_id),
            Self::Scrape(s) => Some(s.connection_id),
        }
    }
}
