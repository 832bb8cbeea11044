//! Messages a WebSocket client sends to the tracker.

use serde_json::{Map, Value};

use super::{
    bin20, lenient_u64, parse_object, sdp, short_string, to_binary_string, Object, OfferId,
    WsError, MAX_OFFERS, MAX_SCRAPE_HASHES,
};
use crate::proto::tracker::{AnnounceEvent, PeerId};
use crate::proto::InfoHash;

/// One WebRTC offer for the tracker to hand to some other peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The SDP offer object (relayed verbatim).
    pub offer: Value,
    /// The sender's id for this offer.
    pub offer_id: OfferId,
}

/// A WebRTC answer to relay back to the peer that made the offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The SDP answer object (relayed verbatim).
    pub answer: Value,
    /// The peer whose offer this answers.
    pub to_peer_id: PeerId,
    /// Which of its offers.
    pub offer_id: OfferId,
}

/// `{"action":"announce", …}` from a browser peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Announce {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// The event (`started`, `stopped`, `completed`, `update`/absent = none, `paused`).
    pub event: AnnounceEvent,
    /// Peers wanted.
    pub numwant: Option<u64>,
    /// Bytes uploaded.
    pub uploaded: Option<u64>,
    /// Bytes downloaded.
    pub downloaded: Option<u64>,
    /// Bytes left (`null` from JavaScript's `Infinity` reads as `None`).
    pub left: Option<u64>,
    /// Offers to hand out (at most [`MAX_OFFERS`]).
    pub offers: Vec<Offer>,
    /// An answer to relay, if this announce carries one.
    pub answer: Option<Answer>,
    /// The `trackerid` from an earlier reply.
    pub tracker_id: Option<String>,
}

/// `{"action":"scrape", "info_hash": <string or array>}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrape {
    /// The torrents, sorted, no duplicates; empty = a full scrape.
    pub info_hashes: Vec<InfoHash>,
}

/// Anything a client may send on the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A WebTorrent announce.
    Announce(Announce),
    /// A WebTorrent scrape.
    Scrape(Scrape),
    /// Any other action (`publish`, `subscribe`, …): the raw message, for the signaling
    /// dispatcher. A handler that needs strict JSON (duplicate members refused) re-parses
    /// the frame text with [`crate::proto::json::parse_strict`].
    Other {
        /// The `action` member.
        action: String,
        /// The whole message object.
        message: Value,
    },
}

impl Incoming {
    /// Parse one text frame.
    pub fn parse(text: &str) -> Result<Self, WsError> {
        Self::from_object(parse_object(text)?)
    }

    /// Classify an already-parsed message.
    pub fn from_value(v: Value) -> Result<Self, WsError> {
        match v {
            Value::Object(m) => Self::from_object(m),
            _ => Err(WsError::NotAnObject),
        }
    }

    fn from_object(m: Object) -> Result<Self, WsError> {
        let action = match m.get("action") {
            Some(Value::String(a)) => a.as_str(),
            _ => return Err(WsError::MissingAction),
        };
        match action {
            "announce" => Announce::from_object(&m).map(Self::Announce),
            "scrape" => Scrape::from_object(&m).map(Self::Scrape),
            other => Ok(Self::Other {
                action: other.to_owned(),
                message: Value::Object(m),
            }),
        }
    }

    /// The message as JSON (what a client sends).
    #[must_use]
    pub fn to_value(&self) -> Value {
        match self {
            Self::Announce(a) => a.to_value(),
            Self::Scrape(s) => s.to_value(),
            Self::Other { message, .. } => message.clone(),
        }
    }

    /// The message as a text frame.
    #[must_use]
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}

impl Announce {
    fn from_object(m: &Object) -> Result<Self, WsError> {
        let event = match m.get("event") {
            None | Some(Value::Null) => AnnounceEvent::None,
            Some(Value::String(s)) => {
                AnnounceEvent::from_name(s.as_bytes()).ok_or(WsError::Invalid("event"))?
            }
            Some(_) => return Err(WsError::Invalid("event")),
        };
        let offers = match m.get("offers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => {
                if list.len() > MAX_OFFERS {
                    return Err(WsError::TooMany {
                        what: "offers",
                        max: MAX_OFFERS,
                    });
                }
                list.iter()
                    .map(|o| {
                        let o = o.as_object().ok_or(WsError::Invalid("offers"))?;
                        Ok(Offer {
                            offer: sdp(o, "offer")?,
                            offer_id: OfferId(bin20(o, "offer_id")?),
                        })
                    })
                    .collect::<Result<_, WsError>>()?
            }
            Some(_) => return Err(WsError::Invalid("offers")),
        };
        let answer = match m.get("answer") {
            None | Some(Value::Null) => None,
            Some(_) => Some(Answer {
                answer: sdp(m, "answer")?,
                to_peer_id: PeerId::from(bin20(m, "to_peer_id")?),
                offer_id: OfferId(bin20(m, "offer_id")?),
            }),
        };
        Ok(Self {
            info_hash: InfoHash::from(bin20(m, "info_hash")?),
            peer_id: PeerId::from(bin20(m, "peer_id")?),
            event,
            numwant: lenient_u64(m, "numwant")?,
            uploaded: lenient_u64(m, "uploaded")?,
            downloaded: lenient_u64(m, "downloaded")?,
            left: lenient_u64(m, "left")?,
            offers,
            answer,
            tracker_id: short_string(m, "trackerid")?,
        })
    }

    /// The message as JSON.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("action".into(), "announce".into());
        m.insert(
            "info_hash".into(),
            to_binary_string(self.info_hash.as_bytes()).into(),
        );
        m.insert(
            "peer_id".into(),
            to_binary_string(self.peer_id.as_bytes()).into(),
        );
        if self.event != AnnounceEvent::None {
            m.insert("event".into(), self.event.as_str().into());
        }
        for (key, v) in [
            ("numwant", self.numwant),
            ("uploaded", self.uploaded),
            ("downloaded", self.downloaded),
            ("left", self.left),
        ] {
            if let Some(n) = v {
                m.insert(key.into(), n.into());
            }
        }
        if !self.offers.is_empty() {
            let offers = self
                .offers
                .iter()
                .map(|o| {
                    let mut om = Map::new();
                    om.insert("offer".into(), o.offer.clone());
                    om.insert(
                        "offer_id".into(),
                        to_binary_string(o.offer_id.as_bytes()).into(),
                    );
                    Value::Object(om)
                })
                .collect();
            m.insert("offers".into(), Value::Array(offers));
        }
        if let Some(a) = &self.answer {
            m.insert("answer".into(), a.answer.clone());
            m.insert(
                "to_peer_id".into(),
                to_binary_string(a.to_peer_id.as_bytes()).into(),
            );
            m.insert(
                "offer_id".into(),
                to_binary_string(a.offer_id.as_bytes()).into(),
            );
        }
        if let Some(id) = &self.tracker_id {
            m.insert("trackerid".into(), id.clone().into());
        }
        Value::Object(m)
    }
}

impl Scrape {
    fn from_object(m: &Object) -> Result<Self, WsError> {
        let one = |v: &Value| match v {
            Value::String(s) => super::from_binary_string::<20>(s)
                .map(InfoHash::from)
                .ok_or(WsError::Invalid("info_hash")),
            _ => Err(WsError::Invalid("info_hash")),
        };
        let mut info_hashes = match m.get("info_hash") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => {
                if list.len() > MAX_SCRAPE_HASHES {
                    return Err(WsError::TooMany {
                        what: "info_hash values",
                        max: MAX_SCRAPE_HASHES,
                    });
                }
                list.iter().map(one).collect::<Result<Vec<_>, _>>()?
            }
            Some(v) => vec![one(v)?],
        };
        info_hashes.sort_unstable();
        info_hashes.dedup();
        Ok(Self { info_hashes })
    }

    /// The message as JSON (`info_hash` a string for one torrent, an array otherwise).
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("action".into(), "scrape".into());
        let hash = |ih: &InfoHash| Value::from(to_binary_string(ih.as_bytes()));
        match self.info_hashes.as_slice() {
            [] => {}
            [one] => {
                m.insert("info_hash".into(), hash(one));
            }
            many => {
                m.insert(
                    "info_hash".into(),
                    Value::Array(many.iter().map(hash).collect()),
                );
            }
        }
        Value::Object(m)
    }
}
