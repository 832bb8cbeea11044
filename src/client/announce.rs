//! Our own BitTorrent tracker client: HTTP announces to the feed's tracker, dialled through
//! [`crate::net::Connector`] (via [`HttpClient`]), so the torrent engine never talks to a
//! tracker itself. The peers it returns are the only peers the engine is given.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hyper::Method;

use super::http::{HttpClient, HttpError};
use crate::net::TargetAddr;
use crate::proto::bencode::Value;
use crate::proto::tracker::PeerHost;

/// How many peers we ask for per announce.
pub const NUMWANT: u32 = 50;
/// The most peers we accept from one reply (more are ignored).
pub const MAX_PEERS: usize = 200;
/// The largest tracker reply we read: 64 KiB.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Why an announce failed.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The HTTP exchange failed.
    #[error("tracker announce failed")]
    Http(#[from] HttpError),
    /// The tracker answered with a non-200 status.
    #[error("the tracker answered HTTP {0}")]
    Status(u16),
    /// The tracker refused the announce.
    #[error("the tracker refused the announce: {0}")]
    Failure(String),
    /// The reply is not a bencoded tracker response.
    #[error("the tracker sent an invalid reply: {0}")]
    Invalid(&'static str),
}

/// The BEP 3 `event` of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// First announce.
    Started,
    /// The download finished.
    Completed,
    /// Leaving the swarm.
    Stopped,
    /// A periodic announce.
    Regular,
}

/// One announce's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Announce<'a> {
    /// The torrent.
    pub info_hash: &'a [u8; 20],
    /// Our peer id (the engine's).
    pub peer_id: &'a [u8; 20],
    /// Our listening port (the engine's listener).
    pub port: u16,
    /// Bytes left to download (0 = seeder).
    pub left: u64,
    /// The event.
    pub event: Event,
    /// Our host name for the tracker to hand out (`ip=`, our `.onion`), or `None` for the
    /// connection's address.
    pub ip: Option<&'a str>,
    /// Ask for the compact reply (IP peers only). `false` asks for the dictionary list,
    /// the only form that carries `.onion`/`.i2p` peers (`compact=0`).
    pub compact: bool,
}

/// A tracker's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceReply {
    /// Seconds until the next announce.
    pub interval: u64,
    /// The IP peers.
    pub peers: Vec<SocketAddr>,
    /// The `.onion` and `.i2p` peers (dictionary replies only), validated strictly.
    pub named: Vec<TargetAddr>,
}

/// An HTTP tracker client for one tracker (the server's `/announce`).
#[derive(Debug, Clone)]
pub struct TrackerClient {
    http: HttpClient,
}

impl TrackerClient {
    /// Announce through `http` (its base URL is the server; the path is `/announce`).
    #[must_use]
    pub fn new(http: HttpClient) -> Self {
        Self {
            http: http.with_max_body(MAX_REPLY_BYTES),
        }
    }

    /// Send one announce and return the peers.
    pub async fn announce(&self, a: &Announce<'_>) -> Result<AnnounceReply, AnnounceError> {
        let resp = self
            .http
            .request(Method::GET, &announce_path(a), &[], None)
            .await?;
        if resp.status.as_u16() != 200 {
            return Err(AnnounceError::Status(resp.status.as_u16()));
        }
        parse_reply(&resp.body)
    }
}

/// `/announce?…` with the binary fields percent-encoded byte by byte.
#[must_use]
pub fn announce_path(a: &Announce<'_>) -> String {
    let mut p = String::from("/announce?info_hash=");
    percent(&mut p, a.info_hash);
    p.push_str("&peer_id=");
    percent(&mut p, a.peer_id);
    let _ = write!(
        p,
        "&port={}&uploaded=0&downloaded=0&left={}&compact={}&numwant={NUMWANT}",
        a.port,
        a.left,
        u8::from(a.compact)
    );
    if let Some(ip) = a.ip {
        p.push_str("&ip=");
        percent(&mut p, ip.as_bytes());
    }
    let event = match a.event {
        Event::Started => "&event=started",
        Event::Completed => "&event=completed",
        Event::Stopped => "&event=stopped",
        Event::Regular => "",
    };
    p.push_str(event);
    p
}

fn percent(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "%{b:02X}");
    }
}

/// Parse a bencoded announce reply (compact `peers`/`peers6` or the dictionary list).
pub fn parse_reply(body: &[u8]) -> Result<AnnounceReply, AnnounceError> {
    let v = Value::parse(body).map_err(|_| AnnounceError::Invalid("not bencode"))?;
    if v.as_dict().is_none() {
        return Err(AnnounceError::Invalid("not a dictionary"));
    }
    if let Some(reason) = v.get(b"failure reason").and_then(Value::as_bytes) {
        return Err(AnnounceError::Failure(
            String::from_utf8_lossy(reason).chars().take(200).collect(),
        ));
    }
    let interval = v
        .get(b"interval")
        .and_then(Value::as_int)
        .and_then(|i| u64::try_from(i).ok())
        .unwrap_or(1800);
    let mut peers = Vec::new();
    let mut named = Vec::new();
    match v.get(b"peers") {
        Some(Value::Bytes(b)) => {
            if b.len() % 6 != 0 {
                return Err(AnnounceError::Invalid(
                    "compact peers length not a multiple of 6",
                ));
            }
            for c in b.chunks_exact(6) {
                let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                peers.push(SocketAddr::new(ip.into(), u16::from_be_bytes([c[4], c[5]])));
            }
        }
        Some(Value::List(list)) => {
            for p in list {
                let host = p
                    .get(b"ip")
                    .and_then(Value::as_bytes)
                    .and_then(|b| std::str::from_utf8(b).ok());
                let port = p
                    .get(b"port")
                    .and_then(Value::as_int)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|p| *p != 0);
                let (Some(host), Some(port)) = (host, port) else {
                    continue;
                };
                if let Ok(ip) = host.parse::<IpAddr>() {
                    peers.push(SocketAddr::new(ip, port));
                } else if PeerHost::parse(host.as_bytes()).is_ok_and(|h| h.is_name()) {
                    // Only strictly valid v3 onion and i2p names (never a DNS name, which
                    // a proxy would resolve for us).
                    if let Ok(t) = TargetAddr::new(host, port) {
                        named.push(t);
                    }
                }
            }
        }
        Some(_) => return Err(AnnounceError::Invalid("peers has the wrong type")),
        None => {}
    }
    if let Some(b) = v.get(b"peers6").and_then(Value::as_bytes) {
        for c in b.chunks_exact(18) {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&c[..16]);
            let port = u16::from_be_bytes([c[16], c[17]]);
            peers.push(SocketAddr::new(Ipv6Addr::from(ip).into(), port));
        }
    }
    peers.retain(|p| p.port() != 0);
    peers.truncate(MAX_PEERS);
    named.truncate(MAX_PEERS.saturating_sub(peers.len()));
    Ok(AnnounceReply {
        interval,
        peers,
        named,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_percent_encodes_binary_fields() {
        let ih = [0xAB; 20];
        let pid = *b"-MT0001-abcdefghijkl";
        let p = announce_path(&Announce {
            info_hash: &ih,
            peer_id: &pid,
            port: 6881,
            left: 0,
            event: Event::Started,
            ip: None,
            compact: true,
        });
        assert!(p.starts_with("/announce?info_hash=%AB%AB"), "{p}");
        assert!(p.contains("&peer_id=%2D%4D%54"), "{p}");
        assert!(
            p.ends_with(
                "&port=6881&uploaded=0&downloaded=0&left=0&compact=1&numwant=50&event=started"
            ),
            "{p}"
        );
        let onion = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";
        let p = announce_path(&Announce {
            info_hash: &ih,
            peer_id: &pid,
            port: 80,
            left: 1,
            event: Event::Regular,
            ip: Some(onion),
            compact: false,
        });
        assert!(
            p.contains("&port=80&uploaded=0&downloaded=0&left=1&compact=0"),
            "{p}"
        );
        let enc: String = onion.bytes().map(|b| format!("%{b:02X}")).collect();
        assert!(p.ends_with(&format!("&ip={enc}")), "{p}");
    }

    #[test]
    fn parses_compact_dictionary_and_failure_replies() {
        let r = parse_reply(
            b"d8:intervali60e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x00\x00e",
        )
        .unwrap();
        assert_eq!(r.interval, 60);
        assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        let r = parse_reply(
            b"d8:intervali5e5:peersld2:ip9:127.0.0.14:porti7000eed2:ip14:abcdefgh.onion4:porti1eeee",
        )
        .unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:7000".parse().unwrap()]);
        assert!(r.named.is_empty(), "an invalid onion name is dropped");
        let onion = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";
        let body = format!(
            "d8:intervali5e5:peersld2:ip62:{onion}4:porti80eed2:ip11:example.com4:porti1eed2:ip8:peer.i2p4:porti0eed2:ip8:peer.i2p4:porti9eeee"
        );
        let r = parse_reply(body.as_bytes()).unwrap();
        assert!(r.peers.is_empty());
        assert_eq!(
            r.named,
            vec![
                TargetAddr::new(onion, 80).unwrap(),
                TargetAddr::new("peer.i2p", 9).unwrap()
            ],
            "DNS names and port 0 are dropped"
        );
        let err = parse_reply(b"d14:failure reason7:go awaye").unwrap_err();
        assert!(err.to_string().contains("go away"));
        assert!(parse_reply(b"nope").is_err());
        assert!(parse_reply(b"d5:peers5:abcdee").is_err());
    }
}
