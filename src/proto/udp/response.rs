//! UDP tracker responses: write (server; streaming helpers for the hot path) and parse
//! (client).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::{
    be_i32, be_u16, be_u32, be_u64, count_from_wire, count_to_wire, Action, ConnectionId,
    IpVersion, TransactionId, UdpError,
};
use crate::proto::tracker::ScrapeStats;

/// `connect` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Echoed from the request.
    pub transaction_id: TransactionId,
    /// The id the client must send with its next requests.
    pub connection_id: ConnectionId,
}

/// The peers of an announce response, in the family the request arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsePeers {
    /// 6-byte entries.
    V4(Vec<SocketAddrV4>),
    /// 18-byte entries.
    V6(Vec<SocketAddrV6>),
}

/// `announce` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Echoed from the request.
    pub transaction_id: TransactionId,
    /// Re-announce interval, seconds.
    pub interval: u32,
    /// Leechers.
    pub leechers: u32,
    /// Seeders.
    pub seeders: u32,
    /// Peers.
    pub peers: ResponsePeers,
}

/// `scrape` response: one entry per requested info-hash, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeResponse {
    /// Echoed from the request.
    pub transaction_id: TransactionId,
    /// Seeders (`complete`), completed (`downloaded`), leechers (`incomplete`).
    pub stats: Vec<ScrapeStats>,
}

/// `error` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Echoed from the request.
    pub transaction_id: TransactionId,
    /// Human-readable reason (read lossily as UTF-8).
    pub message: String,
}

/// Any UDP tracker response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `connect`.
    Connect(ConnectResponse),
    /// `announce`.
    Announce(AnnounceResponse),
    /// `scrape`.
    Scrape(ScrapeResponse),
    /// `error`.
    Error(ErrorResponse),
}

fn header(out: &mut Vec<u8>, action: Action, tid: TransactionId) {
    out.extend_from_slice(&action.code().to_be_bytes());
    out.extend_from_slice(&tid.0.to_be_bytes());
}

/// Append the 20-byte head of an announce response; follow with [`write_peer_v4`] or
/// [`write_peer_v6`] per peer (never mixed: use the family the request came in on).
pub fn write_announce_header(
    out: &mut Vec<u8>,
    transaction_id: TransactionId,
    interval: u32,
    leechers: u32,
    seeders: u32,
) {
    header(out, Action::Announce, transaction_id);
    out.extend_from_slice(&count_to_wire(interval));
    out.extend_from_slice(&count_to_wire(leechers));
    out.extend_from_slice(&count_to_wire(seeders));
}

/// Append one 6-byte IPv4 peer.
pub fn write_peer_v4(out: &mut Vec<u8>, peer: SocketAddrV4) {
    out.extend_from_slice(&peer.ip().octets());
    out.extend_from_slice(&peer.port().to_be_bytes());
}

/// Append one 18-byte IPv6 peer.
pub fn write_peer_v6(out: &mut Vec<u8>, peer: SocketAddrV6) {
    out.extend_from_slice(&peer.ip().octets());
    out.extend_from_slice(&peer.port().to_be_bytes());
}

/// Append an error response.
pub fn write_error(out: &mut Vec<u8>, transaction_id: TransactionId, message: &str) {
    header(out, Action::Error, transaction_id);
    out.extend_from_slice(message.as_bytes());
}

impl Response {
    /// Append this response's datagram.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Connect(c) => {
                header(out, Action::Connect, c.transaction_id);
                out.extend_from_slice(&c.connection_id.0.to_be_bytes());
            }
            Self::Announce(a) => {
                write_announce_header(out, a.transaction_id, a.interval, a.leechers, a.seeders);
                match &a.peers {
                    ResponsePeers::V4(peers) => peers.iter().for_each(|p| write_peer_v4(out, *p)),
                    ResponsePeers::V6(peers) => peers.iter().for_each(|p| write_peer_v6(out, *p)),
                }
            }
            Self::Scrape(s) => {
                header(out, Action::Scrape, s.transaction_id);
                for st in &s.stats {
                    out.extend_from_slice(&count_to_wire(st.complete));
                    out.extend_from_slice(&count_to_wire(st.downloaded));
                    out.extend_from_slice(&count_to_wire(st.incomplete));
                }
            }
            Self::Error(e) => write_error(out, e.transaction_id, &e.message),
        }
    }

    /// Parse a datagram received on a socket of family `family` (which decides the size of
    /// announce peers).
    pub fn parse(bytes: &[u8], family: IpVersion) -> Result<Self, UdpError> {
        let short = |min| UdpError::TooShort {
            len: bytes.len(),
            min,
        };
        let (Some(action), Some(tid)) = (be_u32(bytes, 0), be_u32(bytes, 4)) else {
            return Err(short(8));
        };
        let transaction_id = TransactionId(tid);
        let rest = bytes.get(8..).unwrap_or_default();
        if action == Action::Connect.code() {
            let conn = be_u64(rest, 0).ok_or(short(16))?;
            Ok(Self::Connect(ConnectResponse {
                transaction_id,
                connection_id: ConnectionId(conn),
            }))
        } else if action == Action::Announce.code() {
            let count = |at| be_i32(rest, at).map(count_from_wire).ok_or(short(20));
            let (interval, leechers, seeders) = (count(0)?, count(4)?, count(8)?);
            let list = rest.get(12..).unwrap_or_default();
            let peers = match family {
                IpVersion::V4 => ResponsePeers::V4(
                    entries(list, 6, "peer")?
                        .map(|c| {
                            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                            SocketAddrV4::new(ip, be_u16(c, 4).unwrap_or(0))
                        })
                        .collect(),
                ),
                IpVersion::V6 => ResponsePeers::V6(
                    entries(list, 18, "peer")?
                        .map(|c| {
                            let mut ip = [0u8; 16];
                            ip.copy_from_slice(&c[..16]);
                            let port = be_u16(c, 16).unwrap_or(0);
                            SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)
                        })
                        .collect(),
                ),
            };
            Ok(Self::Announce(AnnounceResponse {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            }))
        } else if action == Action::Scrape.code() {
            let stats = entries(rest, 12, "scrape")?
                .map(|c| {
                    let n = |at| be_i32(c, at).map(count_from_wire).unwrap_or(0);
                    ScrapeStats {
                        complete: n(0),
                        downloaded: n(4),
                        incomplete: n(8),
                    }
                })
                .collect();
            Ok(Self::Scrape(ScrapeResponse {
                transaction_id,
                stats,
            }))
        } else if action == Action::Error.code() {
            Ok(Self::Error(ErrorResponse {
                transaction_id,
                message: String::from_utf8_lossy(rest).into_owned(),
            }))
        } else {
            Err(UdpError::UnknownAction(action))
        }
    }
}

/// Split `list` into `size`-byte entries, or report that it is not a whole number of them.
fn entries<'a>(
    list: &'a [u8],
    size: usize,
    what: &'static str,
) -> Result<std::slice::ChunksExact<'a, u8>, UdpError> {
    if list.len() % size == 0 {
        Ok(list.chunks_exact(size))
    } else {
        Err(UdpError::Misaligned {
            what,
            len: list.len(),
        })
    }
}
