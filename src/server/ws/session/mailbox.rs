//! Mailbox arrival pushes on the socket (see `docs/api.md`, "WebSocket mailbox push"):
//!
//! 1. `{"action":"challenge"}` → `{"action":"challenge","challenge":<32 hex>}`, a fresh
//!    random challenge for this socket (each request replaces the previous one);
//! 2. `{"action":"subscribe","mailbox":<key>,"challenge":<it>,"signature":<128 hex>}`, the
//!    signature by the mailbox key over [`subscribe_payload`] → `{"action":"subscribe",
//!    "mailbox":<key>,"status":"ok"}`. The challenge is spent by the attempt, good or bad;
//! 3. on every stored envelope for that key: `{"action":"mail","mailbox":<key>,"id":<id>}`;
//! 4. `{"action":"unsubscribe","mailbox":<key>}` stops it.
//!
//! The challenge binds the proof to this socket: a subscription frame seen on the wire is
//! worthless anywhere else and cannot be replayed here.

use serde_json::{json, Value};

use super::{echo, Session};
use crate::proto::mailbox::{subscribe_payload, valid_challenge};
use crate::proto::{PublicKey, Signature};
use crate::server::pubsub::mail::{WatchError, MAX_WATCHERS_PER_MAILBOX};

/// How many mailboxes one socket may watch.
pub const MAX_MAILBOXES_PER_SOCKET: usize = 4;

impl Session {
    /// `challenge`: issue a fresh single-use challenge for a mailbox subscription.
    pub(super) fn challenge(&mut self) {
        let challenge = hex::encode(rand::random::<[u8; 16]>());
        self.send(json!({"action": "challenge", "challenge": challenge}).to_string());
        self.challenge = Some(challenge);
    }

    /// `subscribe` with a `mailbox` member.
    pub(super) fn subscribe_mailbox(&mut self, msg: &Value) {
        // Spent by this attempt whatever its outcome, so a signature cannot be retried.
        let issued = self.challenge.take();
        let reply = |mailbox: &str, reason: String| {
            json!({"action": "subscribe", "mailbox": echo(mailbox), "failure reason": reason})
                .to_string()
        };
        let text = |name: &str| msg.get(name).and_then(Value::as_str).unwrap_or_default();
        let mailbox = text("mailbox");
        if !self.state.config().mailbox.enabled {
            return self.send(reply(
                mailbox,
                "unavailable: the mailbox is disabled".into(),
            ));
        }
        let Some(key) = PublicKey::from_hex(mailbox)
            .ok()
            .filter(|k| k.verifying_key().is_ok())
        else {
            let reason = "invalid: mailbox must be an Ed25519 public key in 64 lowercase hex";
            return self.send(reply(mailbox, reason.into()));
        };
        let challenge = text("challenge");
        if !valid_challenge(challenge) {
            let reason = "invalid: challenge must be the 32 hex characters the server issued";
            return self.send(reply(mailbox, reason.into()));
        }
        if issued.as_deref() != Some(challenge) {
            let reason =
                "invalid: unknown or spent challenge (send {\"action\":\"challenge\"} first)";
            return self.send(reply(mailbox, reason.into()));
        }
        let Ok(signature) = Signature::from_hex(text("signature")) else {
            let reason = "invalid: signature must be 128 lowercase hex characters";
            return self.send(reply(mailbox, reason.into()));
        };
        if !key.verify_strict(&subscribe_payload(&key, challenge), &signature) {
            let reason = "bad-signature: the signature does not verify under the mailbox key";
            return self.send(reply(mailbox, reason.into()));
        }
        if !self.mailboxes.contains(&key) {
            if self.mailboxes.len() >= MAX_MAILBOXES_PER_SOCKET {
                let reason =
                    format!("too-large: at most {MAX_MAILBOXES_PER_SOCKET} mailboxes per socket");
                return self.send(reply(mailbox, reason));
            }
            if self.state.pubsub().mail().watch(&key, &self.outbox) == Err(WatchError::Full) {
                let reason =
                    format!("too-large: at most {MAX_WATCHERS_PER_MAILBOX} sockets per mailbox");
                return self.send(reply(mailbox, reason));
            }
            self.mailboxes.insert(key);
        }
        self.send(json!({"action": "subscribe", "mailbox": mailbox, "status": "ok"}).to_string());
    }

    /// `unsubscribe` with a `mailbox` member.
    pub(super) fn unsubscribe_mailbox(&mut self, msg: &Value) {
        let mailbox = msg
            .get("mailbox")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Ok(key) = PublicKey::from_hex(mailbox) else {
            let reason = "invalid: mailbox must be a public key in 64 lowercase hex";
            return self.fail(Some("unsubscribe"), reason);
        };
        if self.mailboxes.remove(&key) {
            self.state.pubsub().mail().unwatch(&key, self.outbox.id());
        }
        self.send(json!({"action": "unsubscribe", "mailbox": mailbox, "status": "ok"}).to_string());
    }

    /// Stop watching every mailbox (the socket closed).
    pub(super) fn finish_mailboxes(&mut self) {
        let watchers = self.state.pubsub().mail().clone();
        for key in self.mailboxes.drain() {
            watchers.unwatch(&key, self.outbox.id());
        }
    }
}
