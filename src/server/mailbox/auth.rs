//! Extractors for mailbox requests: [`Envelope`] (anyone may send) and [`Signed`] (only the
//! recipient key may read or acknowledge).

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::proto::mailbox::{
    valid_message_id, MailAuth, MailAuthError, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use crate::proto::{HexError, PublicKey};
use crate::server::error::ApiError;
use crate::server::extract::read_capped;
use crate::server::AppState;

/// The largest body a signed request may carry (its bodies are empty today).
pub const MAX_SIGNED_BODY_BYTES: usize = 4096;

/// The `{key}` and optional `{id}` path segments.
async fn path_params(
    parts: &mut Parts,
    state: &AppState,
) -> Result<(PublicKey, Option<String>), ApiError> {
    if !state.config().mailbox.enabled {
        return Err(ApiError::MailboxDisabled);
    }
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::BadKey(HexError::NotLowerHex))?;
    let key = params
        .get("key")
        .ok_or(ApiError::BadKey(HexError::NotLowerHex))?;
    let key = PublicKey::from_hex(key).map_err(ApiError::BadKey)?;
    let id = match params.get("id") {
        Some(id) if valid_message_id(id) => Some(id.clone()),
        Some(_) => return Err(ApiError::BadMessageId),
        None => None,
    };
    Ok((key, id))
}

/// A `POST /v1/mailbox/{key}` body: a non-empty envelope of at most
/// `mailbox.max_envelope_bytes`.
#[derive(Debug)]
pub struct Envelope {
    /// The mailbox.
    pub recipient: PublicKey,
    /// The sealed envelope.
    pub body: axum::body::Bytes,
}

impl FromRequest<AppState> for Envelope {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let (recipient, _) = path_params(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let body = read_capped(req, state.config().mailbox.max_envelope_bytes).await?;
        if body.is_empty() {
            return Err(ApiError::EmptyEnvelope);
        }
        Ok(Self { recipient, body })
    }
}

/// A request signed by the mailbox's own key, timestamp within `mailbox.auth_skew_secs`,
/// nonce never seen before for this mailbox (nonces are kept in the database until the
/// timestamp leaves the window, so replays fail across restarts and replicas too).
#[derive(Debug)]
pub struct Signed {
    /// The mailbox (the key that signed).
    pub recipient: PublicKey,
    /// The `{id}` segment, if the route has one.
    pub id: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| MailAuthError::Malformed(name).into()),
    }
}

impl FromRequest<AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let (recipient, id) = path_params(&mut parts, state).await?;
        let auth = MailAuth::parse(
            header(&parts.headers, HEADER_TIMESTAMP)?,
            header(&parts.headers, HEADER_NONCE)?,
            header(&parts.headers, HEADER_SIGNATURE)?,
        )?;
        let method = parts.method.as_str().to_owned();
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let body = read_capped(Request::from_parts(parts, body), MAX_SIGNED_BODY_BYTES).await?;
        let skew_ms = state.config().mailbox.auth_skew_secs.saturating_mul(1000);
        let now = u64::try_from(crate::now_ms()).unwrap_or(0);
        auth.verify(&recipient, &method, &path, &body, now, skew_ms)?;
        // Only after the signature checks out, so only the key holder can add nonces.
        let keep_until =
            i64::try_from(auth.timestamp_ms.saturating_add(skew_ms)).unwrap_or(i64::MAX);
        if !state
            .store()
            .use_mail_nonce(&recipient, &auth.nonce, keep_until)
            .await?
        {
            return Err(MailAuthError::Replay.into());
        }
        Ok(Self { recipient, id })
    }
}
