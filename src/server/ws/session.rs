//! One socket's messages: dispatch by `action` to the WebTorrent tracker or manifest
//! pub/sub, and the replies.
//!
//! Every refusal is a frame with a `failure reason` whose prefix says what kind it is:
//! `invalid:`, `too-large:`, `conflict:` or `unavailable:`. A refusal never closes the
//! socket; only the bounds in [`super::super::pubsub::CloseReason`] do.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use crate::proto::json::parse_strict;
use crate::proto::tracker::{AnnounceEvent, PeerId};
use crate::proto::webtorrent::{Announce, Failure, Incoming, Outgoing, Scrape};
use crate::proto::{InfoHash, Manifest, ManifestError, PublicKey};
use crate::server::admission::{admit_publisher, published};
use crate::server::error::ApiError;
use crate::server::metrics::{Limiter, PublishKind, PublishResult};
use crate::server::pubsub::{push_frame, Frame, Outbox};
use crate::server::rate_limit::{ClientKey, MessageKind};
use crate::server::AppState;
use crate::store::{ManifestRecord, PutOutcome, StoreError};

mod mailbox;

/// Longest piece of client text (an action name, a key) echoed in a reason.
const ECHO_CHARS: usize = 64;

/// Why a publish over the socket was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The manifest failed parsing, verification or the timestamp check.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The frame has no `manifest` member.
    #[error("missing manifest")]
    MissingManifest,
    /// The sequence is not above the key's high-water mark.
    #[error("sequence {offered} is not greater than the current sequence {current}")]
    Conflict {
        /// Sequence offered.
        offered: u64,
        /// The key's high-water mark.
        current: u64,
    },
    /// The store failed.
    #[error("storage failure")]
    Store(#[from] StoreError),
    /// Admission refused it: proof-of-work, the per-key quota or the identity cap.
    #[error("{0}")]
    Refused(ApiError),
}

impl PublishError {
    /// How the publish metric classifies this refusal (`None` for conflicts, which are
    /// counted when the store reports them).
    fn metric(&self) -> Option<PublishResult> {
        Some(match self {
            Self::Manifest(ManifestError::TooLarge { .. }) => PublishResult::TooLarge,
            Self::Manifest(_) | Self::MissingManifest => PublishResult::Invalid,
            Self::Conflict { .. } => return None,
            Self::Store(_) => PublishResult::Error,
            Self::Refused(ApiError::RateLimited { .. }) => PublishResult::RateLimited,
            Self::Refused(ApiError::Pow { .. }) => PublishResult::PowRequired,
            Self::Refused(ApiError::StoreFull) => PublishResult::StoreFull,
            Self::Refused(_) => PublishResult::Error,
        })
    }

    /// The `failure reason`, machine-readable prefix first.
    #[must_use]
    pub fn failure_reason(&self) -> String {
        match self {
            Self::Manifest(ManifestError::TooLarge { .. }) => format!("too-large: {self}"),
            Self::Manifest(_) | Self::MissingManifest => format!("invalid: {self}"),
            Self::Conflict { .. } => format!("conflict: {self}"),
            Self::Store(_) => "unavailable: storage failure; try again later".into(),
            Self::Refused(e) => {
                let (_, code) = e.status_and_code();
                match e {
                    ApiError::Pow {
                        difficulty, nonce, ..
                    } => format!(
                        "{code}: {e}; send a stamp for difficulty {difficulty} and nonce \
                         {nonce} in the frame's \"pow\" member"
                    ),
                    _ => format!("{code}: {e}"),
                }
            }
        }
    }
}

/// The state of one socket.
pub struct Session {
    state: AppState,
    outbox: Outbox,
    /// Who the rate limiter charges this socket's messages to.
    client: ClientKey,
    /// This socket's own message and subscribe quotas (`websocket.*_quota`).
    messages: governor::DefaultDirectRateLimiter,
    subscribes: governor::DefaultDirectRateLimiter,
    subscriptions: HashSet<PublicKey>,
    joined: HashSet<(InfoHash, PeerId)>,
    /// The mailbox challenge issued on this socket and not yet spent.
    challenge: Option<String>,
    /// Mailboxes this socket proved it holds the key of.
    mailboxes: HashSet<PublicKey>,
}

impl Session {
    /// A session writing to `outbox`.
    #[must_use]
    pub fn new(state: AppState, outbox: Outbox, client: ClientKey) -> Self {
        let cfg = &state.config().websocket;
        let messages = governor::RateLimiter::direct(cfg.message_quota.to_governor());
        let subscribes = governor::RateLimiter::direct(cfg.subscribe_quota.to_governor());
        Self {
            messages,
            subscribes,
            state,
            outbox,
            client,
            subscriptions: HashSet::new(),
            joined: HashSet::new(),
            challenge: None,
            mailboxes: HashSet::new(),
        }
    }

    fn send(&self, text: String) {
        self.outbox.send_or_close(Frame::from(text));
    }

    /// Reply with a refusal.
    pub fn fail(&self, action: Option<&str>, reason: impl Into<String>) {
        self.fail_on(action, None, reason);
    }

    fn fail_on(
        &self,
        action: Option<&str>,
        info_hash: Option<InfoHash>,
        reason: impl Into<String>,
    ) {
        let f = Failure {
            reason: reason.into(),
            action: action.map(echo),
            info_hash,
        };
        self.send(Outgoing::Failure(f).to_json());
    }

    /// Handle one text frame.
    pub async fn handle_text(&mut self, text: &str) {
        let value = match serde_json::from_str::<Value>(text) {
            Ok(v) => v,
            Err(_) => return self.fail(None, "invalid: not valid JSON"),
        };
        let action = value.get("action").and_then(Value::as_str).map(echo);
        // Each message is charged to the client's HTTP read or write quota, so switching
        // to the socket does not escape the limits.
        let kind = match action.as_deref() {
            Some("publish") => MessageKind::Write,
            _ => MessageKind::Read,
        };
        let own = match action.as_deref() {
            Some("subscribe") => self.messages.check().and_then(|()| self.subscribes.check()),
            _ => self.messages.check(),
        };
        if own.is_err() {
            self.state.metrics().rate_limited(Limiter::Websocket);
            let reason = "rate-limited: this socket sends too fast (websocket.message_quota, \
                          websocket.subscribe_quota)";
            return self.fail(action.as_deref(), reason);
        }
        if let Err(limited) = self.state.rate_limiter().check_message(&self.client, kind) {
            let e = ApiError::from(limited);
            if kind == MessageKind::Write {
                self.state
                    .metrics()
                    .publish(PublishKind::Manifest, PublishResult::RateLimited);
            }
            return self.fail(action.as_deref(), format!("rate-limited: {e}"));
        }
        match Incoming::from_value(value) {
            Err(e) => self.fail(action.as_deref(), e.failure_reason()),
            Ok(Incoming::Announce(a)) => self.announce(&a),
            Ok(Incoming::Scrape(s)) => self.scrape(&s),
            Ok(Incoming::Other { action, message }) => match action.as_str() {
                "publish" => self.publish(text).await,
                "subscribe" if message.get("mailbox").is_some() => {
                    self.subscribe_mailbox(&message);
                }
                "subscribe" => self.subscribe(&message).await,
                "unsubscribe" if message.get("mailbox").is_some() => {
                    self.unsubscribe_mailbox(&message);
                }
                "unsubscribe" => self.unsubscribe(&message),
                "challenge" => self.challenge(),
                other => self.fail(
                    Some(other),
                    format!("invalid: unknown action {:?}", echo(other)),
                ),
            },
        }
    }

    fn announce(&mut self, a: &Announce) {
        let slot = (a.info_hash, a.peer_id);
        let max = self.state.config().websocket.max_torrents;
        if a.event != AnnounceEvent::Stopped
            && !self.joined.contains(&slot)
            && self.joined.len() >= max
        {
            let reason = format!("too-large: at most {max} torrents per socket");
            return self.fail_on(Some("announce"), Some(a.info_hash), reason);
        }
        let interval = self.state.config().websocket.announce_interval_secs;
        let out = self.state.ws().swarms().announce(a, &self.outbox, interval);
        if out.joined {
            self.joined.insert(slot);
        } else {
            self.joined.remove(&slot);
        }
        if let Some(reply) = out.reply {
            self.send(reply.to_json());
        }
    }

    fn scrape(&self, s: &Scrape) {
        if s.info_hashes.is_empty() {
            return self.fail(Some("scrape"), "invalid: scrape needs info_hash");
        }
        let files = self.state.ws().swarms().scrape(&s.info_hashes);
        self.send(Outgoing::Scrape(files).to_json());
    }

    async fn publish(&self, text: &str) {
        let reply = match self.try_publish(text).await {
            Ok(sequence) => json!({"action": "publish", "status": "ok", "sequence": sequence}),
            Err(e) => {
                if let PublishError::Store(cause) = &e {
                    tracing::error!(error = %cause, "WebSocket publish: storage failure");
                }
                if let Some(result) = e.metric() {
                    self.state.metrics().publish(PublishKind::Manifest, result);
                }
                let mut v = json!({"action": "publish", "failure reason": e.failure_reason()});
                if let PublishError::Conflict { current, .. } = e {
                    v["currentSequence"] = current.into();
                }
                v
            }
        };
        self.send(reply.to_string());
    }

    /// Validate as `PUT /v1/manifests` does (the frame re-parsed strictly), store, fan out.
    async fn try_publish(&self, text: &str) -> Result<u64, PublishError> {
        let frame = parse_strict(text.as_bytes()).map_err(ManifestError::Json)?;
        let (value, stamp) = match frame {
            Value::Object(mut m) => (m.remove("manifest"), m.remove("pow")),
            _ => (None, None),
        };
        let value = value.ok_or(PublishError::MissingManifest)?;
        let manifest = Manifest::verify_value(value, self.state.manifest_limits())?;
        // The same admission as `PUT /v1/manifests`: proof-of-work (the stamp binds the
        // canonical manifest bytes), then the per-key quota and the identity cap.
        let stamp = stamp
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|s| axum::http::HeaderValue::from_str(s).ok());
        self.state
            .pow()
            .check_write(
                stamp.as_ref(),
                manifest.canonical_bytes(),
                self.state.metrics(),
            )
            .map_err(PublishError::Refused)?;
        let now = crate::now_ms();
        let skew_ms = self
            .state
            .config()
            .limits
            .max_clock_skew_secs
            .saturating_mul(1000);
        manifest.check_timestamp(u64::try_from(now).unwrap_or(0), skew_ms)?;
        let key = *manifest.public_key();
        admit_publisher(&self.state, &key, PublishKind::Manifest)
            .await
            .map_err(PublishError::Refused)?;
        let sequence = manifest.sequence();
        let record = ManifestRecord {
            key,
            sequence,
            body: manifest.into_canonical_bytes(),
            updated_at_ms: now,
        };
        let outcome = self.state.store().put_manifest(&record).await?;
        let axum::Extension(result) = published(&self.state, outcome);
        self.state.metrics().publish(PublishKind::Manifest, result);
        match outcome {
            PutOutcome::Created | PutOutcome::Updated => {
                self.state
                    .pubsub()
                    .published(&key, sequence, &record.body)
                    .await;
                Ok(sequence)
            }
            PutOutcome::Unchanged => Ok(sequence),
            PutOutcome::Conflict { current } => Err(PublishError::Conflict {
                offered: sequence,
                current,
            }),
        }
    }

    async fn subscribe(&mut self, msg: &Value) {
        let max = self.state.config().websocket.max_subscriptions;
        let keys = match parse_keys(msg, max) {
            Ok(k) => k,
            Err(reason) => return self.fail(Some("subscribe"), reason),
        };
        let new: Vec<PublicKey> = keys
            .into_iter()
            .filter(|k| !self.subscriptions.contains(k))
            .collect();
        if self.subscriptions.len() + new.len() > max {
            let reason = format!("too-large: at most {max} subscriptions per socket");
            return self.fail(Some("subscribe"), reason);
        }
        let hub = self.state.pubsub().hub().clone();
        for k in &new {
            hub.subscribe(k, &self.outbox);
            self.subscriptions.insert(*k);
        }
        // Catch up with what is stored (the hub drops it if a push got there first), then
        // acknowledge: whatever the client got before the ack is the current state.
        for k in &new {
            match self.state.store().get_manifest(k).await {
                Ok(Some(m)) => {
                    if let Some(frame) = push_frame(&m.body) {
                        hub.push_one(k, self.outbox.id(), m.sequence, &frame);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "subscribe: cannot read the stored manifest"),
            }
        }
        self.send(json!({"action": "subscribe", "status": "ok"}).to_string());
    }

    fn unsubscribe(&mut self, msg: &Value) {
        let max = self.state.config().websocket.max_subscriptions;
        let keys = match parse_keys(msg, max) {
            Ok(k) => k,
            Err(reason) => return self.fail(Some("unsubscribe"), reason),
        };
        let hub = self.state.pubsub().hub();
        for k in keys {
            if self.subscriptions.remove(&k) {
                hub.unsubscribe(&k, self.outbox.id());
            }
        }
        self.send(json!({"action": "unsubscribe", "status": "ok"}).to_string());
    }

    /// The socket closed: drop its subscriptions and swarm memberships.
    pub fn finish(mut self) {
        self.finish_mailboxes();
        let hub = self.state.pubsub().hub();
        for k in &self.subscriptions {
            hub.unsubscribe(k, self.outbox.id());
        }
        let joined: Vec<_> = self.joined.into_iter().collect();
        self.state.ws().swarms().leave(self.outbox.id(), &joined);
    }
}

/// The keys of a subscribe/unsubscribe: `key` and/or `keys`, all-or-nothing.
fn parse_keys(msg: &Value, max: usize) -> Result<Vec<PublicKey>, String> {
    let obj: &Map<String, Value> = msg.as_object().ok_or("invalid: not an object")?;
    let mut texts: Vec<&Value> = Vec::new();
    match obj.get("key") {
        None | Some(Value::Null) => {}
        Some(v) => texts.push(v),
    }
    match obj.get("keys") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) if list.len() > max => {
            return Err(format!("too-large: at most {max} subscriptions per socket"))
        }
        Some(Value::Array(list)) => texts.extend(list),
        Some(_) => return Err("invalid: keys must be an array of public keys".into()),
    }
    if texts.is_empty() {
        return Err("invalid: missing key or keys".into());
    }
    let mut keys = Vec::with_capacity(texts.len());
    for v in texts {
        let Value::String(s) = v else {
            return Err("invalid: a key must be a string".into());
        };
        let key = PublicKey::from_hex(s)
            .ok()
            .filter(|k| k.verifying_key().is_ok())
            .ok_or_else(|| {
                format!(
                    "invalid: key {:?} is not an Ed25519 public key in 64 lowercase hex characters",
                    echo(s)
                )
            })?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Client text cut to [`ECHO_CHARS`] characters for a reason.
fn echo(s: &str) -> String {
    s.chars().take(ECHO_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_all_or_nothing() {
        let k = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[1; 32])).to_hex();
        let k2 = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[2; 32])).to_hex();
        assert_eq!(parse_keys(&json!({"key": k}), 4).unwrap().len(), 1);
        assert_eq!(
            parse_keys(&json!({"key": k, "keys": [k, k2]}), 4)
                .unwrap()
                .len(),
            2
        );
        for (bad, prefix) in [
            (json!({}), "invalid:"),
            (json!({"key": 5}), "invalid:"),
            (json!({"keys": "x"}), "invalid:"),
            (json!({"keys": [k, "nope"]}), "invalid:"),
            (json!({"key": k.to_uppercase()}), "invalid:"),
            (json!({"keys": [k, k, k, k, k]}), "too-large:"),
        ] {
            let err = parse_keys(&bad, 4).unwrap_err();
            assert!(err.starts_with(prefix), "{bad}: {err}");
        }
    }

    #[test]
    fn publish_errors_carry_their_prefix() {
        let cases = [
            (
                PublishError::Manifest(ManifestError::TooLarge { size: 2, max: 1 }),
                "too-large:",
            ),
            (
                PublishError::Manifest(ManifestError::BadSignature),
                "invalid:",
            ),
            (PublishError::MissingManifest, "invalid:"),
            (
                PublishError::Conflict {
                    offered: 1,
                    current: 2,
                },
                "conflict:",
            ),
            (
                PublishError::Store(StoreError::Corrupt("secret".into())),
                "unavailable:",
            ),
        ];
        for (e, prefix) in cases {
            let r = e.failure_reason();
            assert!(r.starts_with(prefix) && !r.contains("secret"), "{r}");
        }
    }
}
