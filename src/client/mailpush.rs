//! New-mail pushes for `inbox --watch`: a WebSocket on which the server announces every
//! envelope stored for our key (see `docs/api.md`, "Mailbox push").
//!
//! The socket proves the key by signing the challenge the server issued on it. A push
//! carries only a message id; the caller then runs its usual signed listing. The push is a
//! wake-up, never a source of mail: anything it misses is found by the next poll.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use super::http::HttpClient;
use super::ws::{ServerFrame, WsConn, WsError};
use crate::proto::mailbox::{sign_subscribe, valid_challenge};
use crate::proto::PublicKey;

/// How many unrelated frames a handshake step may skip before giving up (the socket also
/// carries pings and could carry other traffic).
const MAX_SKIPPED_FRAMES: usize = 16;

/// Why the push socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The socket failed.
    #[error("mail push socket")]
    Ws(#[from] WsError),
    /// The server refused the subscription.
    #[error("the server refused the mailbox subscription: {0}")]
    Refused(String),
    /// The server answered something unexpected.
    #[error("unexpected answer from the server during the mailbox subscription")]
    Unexpected,
}

/// An open, subscribed push socket for one mailbox.
pub struct MailPush {
    conn: WsConn,
    mailbox: String,
}

impl MailPush {
    /// Connect through `http`'s connector and subscribe to `key`'s mailbox.
    pub async fn open(http: &HttpClient, key: &SigningKey) -> Result<Self, PushError> {
        let timeout = http.request_timeout();
        let mut conn = WsConn::connect(http.connector(), http.base(), timeout).await?;
        let mailbox = PublicKey::from(key).to_hex();
        conn.send(&json!({"action": "challenge"})).await?;
        let challenge = loop_for(&mut conn, timeout, |frame| match frame {
            ServerFrame::Other(v) if action(&v) == Some("challenge") => Some(
                v.get("challenge")
                    .and_then(Value::as_str)
                    .filter(|c| valid_challenge(c))
                    .map(str::to_owned)
                    .ok_or(PushError::Unexpected),
            ),
            ServerFrame::Failure { reason, .. } => Some(Err(PushError::Refused(reason))),
            _ => None,
        })
        .await?;
        let signature = sign_subscribe(key, &challenge);
        conn.send(
            &json!({"action": "subscribe", "mailbox": mailbox, "challenge": challenge,
                          "signature": signature.to_hex()}),
        )
        .await?;
        loop_for(&mut conn, timeout, |frame| match frame {
            ServerFrame::Ok { action, .. } if action == "subscribe" => Some(Ok(())),
            ServerFrame::Failure { reason, .. } => Some(Err(PushError::Refused(reason))),
            _ => None,
        })
        .await?;
        Ok(Self { conn, mailbox })
    }

    /// Wait until the server announces an arrival in our mailbox.
    pub async fn arrival(&mut self) -> Result<(), WsError> {
        loop {
            if let ServerFrame::Other(v) = self.conn.recv(None).await? {
                if action(&v) == Some("mail")
                    && v.get("mailbox").and_then(Value::as_str) == Some(&self.mailbox)
                {
                    return Ok(());
                }
            }
        }
    }

    /// Close the socket politely.
    pub async fn close(self) {
        self.conn.close().await;
    }
}

fn action(v: &Value) -> Option<&str> {
    v.get("action").and_then(Value::as_str)
}

/// Read frames until `pick` returns a result (at most [`MAX_SKIPPED_FRAMES`] others).
async fn loop_for<T>(
    conn: &mut WsConn,
    timeout: Duration,
    mut pick: impl FnMut(ServerFrame) -> Option<Result<T, PushError>>,
) -> Result<T, PushError> {
    for _ in 0..MAX_SKIPPED_FRAMES {
        if let Some(done) = pick(conn.recv(Some(timeout)).await?) {
            return done;
        }
    }
    Err(PushError::Unexpected)
}
