//! Messages the tracker sends to a WebSocket client.

use serde_json::{Map, Value};

use super::{
    bin20, from_binary_string, lenient_u32, parse_object, sdp, short_string, to_binary_string,
    Object, OfferId, WsError, MAX_SCRAPE_HASHES,
};
use crate::proto::tracker::{PeerId, ScrapeStats};
use crate::proto::InfoHash;

/// The reply to an announce: swarm counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Re-announce interval, seconds.
    pub interval: u32,
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// An id the client should echo as `trackerid`.
    pub tracker_id: Option<String>,
    /// A non-fatal message.
    pub warning_message: Option<String>,
}

/// Another peer's offer, handed to this client.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayedOffer {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The peer that made the offer.
    pub peer_id: PeerId,
    /// The SDP offer object.
    pub offer: Value,
    /// The offering peer's id for it (echo it in the answer).
    pub offer_id: OfferId,
}

/// The answer to one of this client's offers.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayedAnswer {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The peer that answered.
    pub peer_id: PeerId,
    /// The SDP answer object.
    pub answer: Value,
    /// Which offer it answers.
    pub offer_id: OfferId,
}

/// The reply to a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeResponse {
    /// Counters per torrent (written keyed by binary-string hash; read back sorted).
    pub files: Vec<(InfoHash, ScrapeStats)>,
}

/// A refusal (`failure reason`), optionally naming the action and torrent it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The reason, machine-readable prefix first (`invalid: …`, `rate-limited: …`).
    pub reason: String,
    /// The action that failed (`announce`, `scrape`, `publish`, …).
    pub action: Option<String>,
    /// The torrent concerned.
    pub info_hash: Option<InfoHash>,
}

/// Anything the tracker sends on the socket (tracker part).
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// Swarm counts after an announce.
    AnnounceResponse(AnnounceResponse),
    /// An offer relayed from another peer.
    Offer(RelayedOffer),
    /// An answer relayed from another peer.
    Answer(RelayedAnswer),
    /// Scrape counters.
    Scrape(ScrapeResponse),
    /// A refusal.
    Failure(Failure),
}

fn bin(b: &[u8]) -> Value {
    Value::from(to_binary_string(b))
}

impl Outgoing {
    /// The message as JSON.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        match self {
            Self::AnnounceResponse(r) => {
                m.insert("action".into(), "announce".into());
                m.insert("info_hash".into(), bin(r.info_hash.as_bytes()));
                m.insert("interval".into(), r.interval.into());
                m.insert("complete".into(), r.complete.into());
                m.insert("incomplete".into(), r.incomplete.into());
                if let Some(id) = &r.tracker_id {
                    m.insert("tracker id".into(), id.clone().into());
                }
                if let Some(w) = &r.warning_message {
                    m.insert("warning message".into(), w.clone().into());
                }
            }
            Self::Offer(o) => {
                m.insert("action".into(), "announce".into());
                m.insert("info_hash".into(), bin(o.info_hash.as_bytes()));
                m.insert("peer_id".into(), bin(o.peer_id.as_bytes()));
                m.insert("offer".into(), o.offer.clone());
                m.insert("offer_id".into(), bin(o.offer_id.as_bytes()));
            }
            Self::Answer(a) => {
                m.insert("action".into(), "announce".into());
                m.insert("info_hash".into(), bin(a.info_hash.as_bytes()));
                m.insert("peer_id".into(), bin(a.peer_id.as_bytes()));
                m.insert("answer".into(), a.answer.clone());
                m.insert("offer_id".into(), bin(a.offer_id.as_bytes()));
            }
            Self::Scrape(s) => {
                m.insert("action".into(), "scrape".into());
                let mut files = Map::new();
                for (ih, st) in &s.files {
                    let mut f = Map::new();
                    f.insert("complete".into(), st.complete.into());
                    f.insert("downloaded".into(), st.downloaded.into());
                    f.insert("incomplete".into(), st.incomplete.into());
                    // First entry wins for a repeated hash, as in the bencoded writer.
                    files
                        .entry(to_binary_string(ih.as_bytes()))
                        .or_insert(Value::Object(f));
                }
                m.insert("files".into(), Value::Object(files));
            }
            Self::Failure(f) => {
                m.insert("failure reason".into(), f.reason.clone().into());
                if let Some(a) = &f.action {
                    m.insert("action".into(), a.clone().into());
                }
                if let Some(ih) = &f.info_hash {
                    m.insert("info_hash".into(), bin(ih.as_bytes()));
                }
            }
        }
        Value::Object(m)
    }

    /// The message as a text frame.
    #[must_use]
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// Parse a frame from a tracker (client side).
    pub fn parse(text: &str) -> Result<Self, WsError> {
        let m = parse_object(text)?;
        if let Some(reason) = m.get("failure reason") {
            let reason = reason.as_str().ok_or(WsError::Invalid("failure reason"))?;
            let info_hash = match m.get("info_hash") {
                None | Some(Value::Null) => None,
                Some(_) => Some(InfoHash::from(bin20(&m, "info_hash")?)),
            };
            return Ok(Self::Failure(Failure {
                reason: reason.to_owned(),
                action: short_string(&m, "action")?,
                info_hash,
            }));
        }
        match m.get("action").and_then(Value::as_str) {
            Some("announce") => Self::parse_announce(&m),
            Some("scrape") => {
                let files = m
                    .get("files")
                    .and_then(Value::as_object)
                    .ok_or(WsError::Missing("files"))?;
                if files.len() > MAX_SCRAPE_HASHES {
                    return Err(WsError::TooMany {
                        what: "files",
                        max: MAX_SCRAPE_HASHES,
                    });
                }
                let mut out = files
                    .iter()
                    .map(|(k, v)| {
                        let ih = from_binary_string::<20>(k).ok_or(WsError::Invalid("files"))?;
                        let v = v.as_object().ok_or(WsError::Invalid("files"))?;
                        let n = |key| Ok::<_, WsError>(lenient_u32(v, key)?.unwrap_or(0));
                        Ok((
                            InfoHash::from(ih),
                            ScrapeStats {
                                complete: n("complete")?,
                                downloaded: n("downloaded")?,
                                incomplete: n("incomplete")?,
                            },
                        ))
                    })
                    .collect::<Result<Vec<_>, WsError>>()?;
                out.sort_unstable_by_key(|a| a.0);
                Ok(Self::Scrape(ScrapeResponse { files: out }))
            }
            Some(_) => Err(WsError::Invalid("action")),
            None => Err(WsError::MissingAction),
        }
    }

    fn parse_announce(m: &Object) -> Result<Self, WsError> {
        let info_hash = InfoHash::from(bin20(m, "info_hash")?);
        if m.contains_key("offer") {
            return Ok(Self::Offer(RelayedOffer {
                info_hash,
                peer_id: PeerId::from(bin20(m, "peer_id")?),
                offer: sdp(m, "offer")?,
                offer_id: OfferId(bin20(m, "offer_id")?),
            }));
        }
        if m.contains_key("answer") {
            return Ok(Self::Answer(RelayedAnswer {
                info_hash,
                peer_id: PeerId::from(bin20(m, "peer_id")?),
                answer: sdp(m, "answer")?,
                offer_id: OfferId(bin20(m, "offer_id")?),
            }));
        }
        Ok(Self::AnnounceResponse(AnnounceResponse {
            info_hash,
            interval: lenient_u32(m, "interval")?.ok_or(WsError::Missing("interval"))?,
            complete: lenient_u32(m, "complete")?.unwrap_or(0),
            incomplete: lenient_u32(m, "incomplete")?.unwrap_or(0),
            tracker_id: short_string(m, "tracker id")?,
            warning_message: short_string(m, "warning message")?,
        }))
    }
}
