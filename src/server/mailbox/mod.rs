//! The mailbox: `/v1/mailbox/{key}` store-and-forward of sealed envelopes.
//!
//! Anyone may `POST` an envelope to a recipient's key; only requests signed by that key
//! ([`crate::proto::mailbox`]) may list, fetch or acknowledge (delete) them. The server
//! never learns or records the sender: the envelope is opaque and no sender field exists
//! in the request, the tables or the logs. See `docs/mail.md`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::store::{MailPut, MailQuota, MailRecord};

mod auth;
mod clock;
mod purge;

pub use auth::{Envelope, Signed};
pub use clock::MailClock;
pub use purge::{run_purger, MailGauges};

/// The `mailbox` object of `/v1/info`.
#[must_use]
pub fn info(cfg: &super::config::MailboxConfig) -> Value {
    json!({
        "enabled": cfg.enabled,
        "maxEnvelopeBytes": cfg.max_envelope_bytes,
        "maxMessagesPerRecipient": cfg.max_messages_per_recipient,
        "maxBytesPerRecipient": cfg.max_bytes_per_recipient,
        "ttlDays": cfg.ttl_days,
        "authSkewSecs": cfg.auth_skew_secs,
        "maxAuthBodyBytes": auth::MAX_SIGNED_BODY_BYTES,
    })
}

/// `POST /v1/mailbox/{key}`: store a sealed envelope for `key`.
pub async fn post(
    State(state): State<AppState>,
    Envelope { recipient, body }: Envelope,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let cfg = &state.config().mailbox;
    let now = state.mail_clock().now_ms();
    let rec = MailRecord {
        recipient,
        id: hex::encode(rand::random::<[u8; 16]>()),
        envelope: body.to_vec(),
        received_at_ms: now,
        expires_at_ms: now.saturating_add(cfg.ttl_ms()),
    };
    let quota = MailQuota {
        max_messages: cfg.max_messages_per_recipient,
        max_bytes: cfg.max_bytes_per_recipient,
    };
    match state.store().put_mail(&rec, &quota, now).await? {
        MailPut::Stored => {
            state.pubsub().mail_arrived(&recipient, &rec.id).await;
            Ok((
                StatusCode::CREATED,
                Json(json!({"id": rec.id, "expiresAt": rec.expires_at_ms})),
            ))
        }
        MailPut::Full => Err(ApiError::MailboxFull),
    }
}

/// `GET /v1/mailbox/{key}` (signed): the recipient's unexpired messages, oldest first.
pub async fn list(State(state): State<AppState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let now = state.mail_clock().now_ms();
    let messages: Vec<Value> = state
        .store()
        .list_mail(&signed.recipient, now)
        .await?
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id, "size": m.size,
                "receivedAt": m.received_at_ms, "expiresAt": m.expires_at_ms,
            })
        })
        .collect();
    Ok(Json(json!({ "messages": messages })))
}

/// `GET /v1/mailbox/{key}/{id}` (signed): one envelope's bytes.
pub async fn fetch(State(state): State<AppState>, signed: Signed) -> Result<Response, ApiError> {
    let id = signed.id.as_deref().ok_or(ApiError::BadMessageId)?;
    let now = state.mail_clock().now_ms();
    let envelope = state
        .store()
        .get_mail(&signed.recipient, id, now)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        envelope,
    )
        .into_response())
}

/// `DELETE /v1/mailbox/{key}/{id}` (signed): acknowledge, which deletes the message.
pub async fn ack(State(state): State<AppState>, signed: Signed) -> Result<StatusCode, ApiError> {
    let id = signed.id.as_deref().ok_or(ApiError::BadMessageId)?;
    if state.store().ack_mail(&signed.recipient, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
