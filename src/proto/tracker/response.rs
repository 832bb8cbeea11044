//! Bencoded tracker replies: writers for the server's hot path, readers for the client.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::{PeerAddr, PeerHost, PeerId};
use crate::proto::bencode::{self, BencodeError, Value};
use crate::proto::InfoHash;

/// The fixed fields of a successful announce reply; the peers are passed to the writers.
///
/// Dictionary keys are written in the sorted order bencode requires: `complete`,
/// `incomplete`, `interval`, `min interval`, `peers`, `peers6`, `tracker id`,
/// `warning message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnnounceResponse<'a> {
    /// Seconds the client should wait between announces.
    pub interval: u32,
    /// Seconds the client must wait at least.
    pub min_interval: Option<u32>,
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// An id the client should echo as `trackerid`.
    pub tracker_id: Option<&'a [u8]>,
    /// A non-fatal message for the user.
    pub warning_message: Option<&'a str>,
}

impl AnnounceResponse<'_> {
    fn write_head(&self, out: &mut Vec<u8>) {
        bencode::begin_dict(out);
        bencode::write_bytes(out, b"complete");
        bencode::write_uint(out, u64::from(self.complete));
        bencode::write_bytes(out, b"incomplete");
        bencode::write_uint(out, u64::from(self.incomplete));
        bencode::write_bytes(out, b"interval");
        bencode::write_uint(out, u64::from(self.interval));
        if let Some(min) = self.min_interval {
            bencode::write_bytes(out, b"min interval");
            bencode::write_uint(out, u64::from(min));
        }
    }

    fn write_tail(&self, out: &mut Vec<u8>) {
        if let Some(id) = self.tracker_id {
            bencode::write_bytes(out, b"tracker id");
            bencode::write_bytes(out, id);
        }
        if let Some(msg) = self.warning_message {
            bencode::write_bytes(out, b"warning message");
            bencode::write_bytes(out, msg.as_bytes());
        }
        bencode::end(out);
    }

    /// Append a compact reply (BEP 23 `peers`, BEP 7 `peers6`). `peers` is always written;
    /// `peers6` only when it has entries. Name peers cannot be passed here by design.
    pub fn write_compact<V4, V6>(&self, out: &mut Vec<u8>, v4: V4, v6: V6)
    where
        V4: IntoIterator<Item = SocketAddrV4>,
        V6: IntoIterator<Item = SocketAddrV6>,
    {
        self.write_head(out);
        bencode::write_bytes(out, b"peers");
        write_counted(out, |out| {
            for a in v4 {
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
        });
        let mark = out.len();
        bencode::write_bytes(out, b"peers6");
        let n = write_counted(out, |out| {
            for a in v6 {
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
        });
        if n == 0 {
            out.truncate(mark);
        }
        self.write_tail(out);
    }

    /// Append a dictionary-list reply (`peers` = list of `{ip, peer id, port}`), the only
    /// form that can carry `.onion`/`.i2p` peers. `peer id` is left out when `no_peer_id`.
    pub fn write_dict<'p, I>(&self, out: &mut Vec<u8>, peers: I, no_peer_id: bool)
    where
        I: IntoIterator<Item = (&'p PeerAddr, &'p PeerId)>,
    {
        self.write_head(out);
        bencode::write_bytes(out, b"peers");
        bencode::begin_list(out);
        for (addr, id) in peers {
            bencode::begin_dict(out);
            bencode::write_bytes(out, b"ip");
            addr.write_host_bencoded(out);
            if !no_peer_id {
                bencode::write_bytes(out, b"peer id");
                bencode::write_bytes(out, id.as_bytes());
            }
            bencode::write_bytes(out, b"port");
            bencode::write_uint(out, u64::from(addr.port()));
            bencode::end(out);
        }
        bencode::end(out);
        self.write_tail(out);
    }
}

/// Write a byte string whose contents `body` appends, inserting the length prefix once the
/// length is known (no intermediate buffer). Returns the content length.
fn write_counted(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = out.len();
    body(out);
    let len = out.len() - start;
    let mut buf = [0u8; 20];
    let digits = bencode::format_decimal(len as u64, &mut buf);
    let plen = digits.len() + 1;
    out.resize(start + len + plen, 0);
    out.copy_within(start..start + len, start + plen);
    out[start..start + digits.len()].copy_from_slice(digits);
    out[start + digits.len()] = b':';
    len
}

/// Append a failure reply (`d14:failure reason<len>:<reason>e`).
pub fn write_failure(out: &mut Vec<u8>, reason: &str) {
    bencode::begin_dict(out);
    bencode::write_bytes(out, b"failure reason");
    bencode::write_bytes(out, reason.as_bytes());
    bencode::end(out);
}

/// Scrape counters for one torrent (BEP 48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads ever seen.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// Append a scrape reply: `files` keyed by the raw 20-byte hash. Entries may come in any
/// order; they are written sorted, and a repeated hash is written once (first wins).
pub fn write_scrape(out: &mut Vec<u8>, files: &[(InfoHash, ScrapeStats)]) {
    bencode::begin_dict(out);
    bencode::write_bytes(out, b"files");
    bencode::begin_dict(out);
    let write_one = |out: &mut Vec<u8>, ih: &InfoHash, s: &ScrapeStats| {
        bencode::write_bytes(out, ih.as_bytes());
        bencode::begin_dict(out);
        bencode::write_bytes(out, b"complete");
        bencode::write_uint(out, u64::from(s.complete));
        bencode::write_bytes(out, b"downloaded");
        bencode::write_uint(out, u64::from(s.downloaded));
        bencode::write_bytes(out, b"incomplete");
        bencode::write_uint(out, u64::from(s.incomplete));
        bencode::end(out);
    };
    if files.windows(2).all(|w| w[0].0 < w[1].0) {
        for (ih, s) in files {
            write_one(out, ih, s);
        }
    } else {
        let mut sorted: Vec<&(InfoHash, ScrapeStats)> = files.iter().collect();
        sorted.sort_by_key(|a| a.0);
        sorted.dedup_by(|a, b| a.0 == b.0);
        for (ih, s) in sorted {
            write_one(out, ih, s);
        }
    }
    bencode::end(out);
    bencode::end(out);
}

/// Why a tracker reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Not canonical bencode.
    #[error("reply is not valid bencode")]
    Bencode(#[from] BencodeError),
    /// Valid bencode but not the expected shape (the member named is missing or wrong).
    #[error("reply has a missing or malformed {0}")]
    Shape(&'static str),
}

/// One peer from an announce reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPeer {
    /// Where to reach it.
    pub addr: PeerAddr,
    /// Its id, when the reply carried one (dictionary form only).
    pub peer_id: Option<PeerId>,
}

/// A successful announce reply as read by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceSuccess {
    /// Re-announce interval, seconds.
    pub interval: u32,
    /// Minimum re-announce interval, seconds.
    pub min_interval: Option<u32>,
    /// Seeders, if given.
    pub complete: Option<u32>,
    /// Leechers, if given.
    pub incomplete: Option<u32>,
    /// `tracker id` to echo.
    pub tracker_id: Option<Vec<u8>>,
    /// Warning text.
    pub warning_message: Option<String>,
    /// Peers: compact IPv4, then compact IPv6, then dictionary entries, in reply order.
    /// Dictionary entries whose host is not acceptable (see [`PeerHost::parse`]) or whose
    /// port is missing are skipped.
    pub peers: Vec<ReplyPeer>,
}

/// An announce reply as read by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceReply {
    /// The tracker answered with peers.
    Success(AnnounceSuccess),
    /// The tracker refused (`failure reason`).
    Failure(String),
}

fn clamp_u32(v: &Value<'_>) -> Option<u32> {
    v.as_int()
        .map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

fn opt_u32(d: &Value<'_>, key: &'static str) -> Result<Option<u32>, ReplyError> {
    d.get(key.as_bytes())
        .map(|v| clamp_u32(v).ok_or(ReplyError::Shape(key)))
        .transpose()
}

fn failure(d: &Value<'_>) -> Option<String> {
    d.get(b"failure reason")
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

impl AnnounceReply {
    /// Read a bencoded announce reply.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReplyError> {
        let d = Value::parse(bytes)?;
        if d.as_dict().is_none() {
            return Err(ReplyError::Shape("dictionary"));
        }
        if let Some(reason) = failure(&d) {
            return Ok(Self::Failure(reason));
        }
        let interval = opt_u32(&d, "interval")?.ok_or(ReplyError::Shape("interval"))?;
        let mut peers = Vec::new();
        match d.get(b"peers") {
            None => {}
            Some(Value::Bytes(b)) => {
                if b.len() % 6 != 0 {
                    return Err(ReplyError::Shape("peers"));
                }
                for c in b.chunks_exact(6) {
                    let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                    let port = u16::from_be_bytes([c[4], c[5]]);
                    peers.push(ReplyPeer {
                        addr: PeerAddr::V4(SocketAddrV4::new(ip, port)),
                        peer_id: None,
                    });
                }
            }
            Some(Value::List(items)) => {
                peers.extend(items.iter().filter_map(dict_peer));
            }
            Some(_) => return Err(ReplyError::Shape("peers")),
        }
        if let Some(v) = d.get(b"peers6") {
            let b = v.as_bytes().ok_or(ReplyError::Shape("peers6"))?;
            if b.len() % 18 != 0 {
                return Err(ReplyError::Shape("peers6"));
            }
            for c in b.chunks_exact(18) {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&c[..16]);
                let port = u16::from_be_bytes([c[16], c[17]]);
                peers.push(ReplyPeer {
                    addr: PeerAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)),
                    peer_id: None,
                });
            }
        }
        let text = |key: &'static str| -> Result<Option<&[u8]>, ReplyError> {
            d.get(key.as_bytes())
                .map(|v| v.as_bytes().ok_or(ReplyError::Shape(key)))
                .transpose()
        };
        Ok(Self::Success(AnnounceSuccess {
            interval,
            min_interval: opt_u32(&d, "min interval")?,
            complete: opt_u32(&d, "complete")?,
            incomplete: opt_u32(&d, "incomplete")?,
            tracker_id: text("tracker id")?.map(<[u8]>::to_vec),
            warning_message: text("warning message")?
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            peers,
        }))
    }
}

fn dict_peer(v: &Value<'_>) -> Option<ReplyPeer> {
    let host = PeerHost::parse(v.get(b"ip")?.as_bytes()?).ok()?;
    let port = u16::try_from(v.get(b"port")?.as_int()?).ok()?;
    let peer_id = v
        .get(b"peer id")
        .and_then(Value::as_bytes)
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .map(PeerId::from);
    Some(ReplyPeer {
        addr: PeerAddr::new(host, port),
        peer_id,
    })
}

/// A scrape reply as read by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrapeReply {
    /// Counters per torrent, sorted by info-hash.
    Success(Vec<(InfoHash, ScrapeStats)>),
    /// The tracker refused (`failure reason`).
    Failure(String),
}

impl ScrapeReply {
    /// Read a bencoded scrape reply. Missing counters read as 0.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReplyError> {
        let d = Value::parse(bytes)?;
        if d.as_dict().is_none() {
            return Err(ReplyError::Shape("dictionary"));
        }
        if let Some(reason) = failure(&d) {
            return Ok(Self::Failure(reason));
        }
        let files = d
            .get(b"files")
            .and_then(Value::as_dict)
            .ok_or(ReplyError::Shape("files"))?;
        let mut out = Vec::with_capacity(files.len());
        for (k, v) in files {
            let ih = <[u8; 20]>::try_from(*k).map_err(|_| ReplyError::Shape("files"))?;
            if v.as_dict().is_none() {
                return Err(ReplyError::Shape("files"));
            }
            out.push((
                InfoHash::from(ih),
                ScrapeStats {
                    complete: opt_u32(v, "complete")?.unwrap_or(0),
                    downloaded: opt_u32(v, "downloaded")?.unwrap_or(0),
                    incomplete: opt_u32(v, "incomplete")?.unwrap_or(0),
                },
            ));
        }
        Ok(Self::Success(out))
    }
}
