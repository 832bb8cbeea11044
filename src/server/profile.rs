//! `/v1/profiles/{key}`: signed profiles kept for `profiles.ttl_days` unless re-published,
//! and the background purge of expired ones (see docs/api.md, "Profiles").
//!
//! Expiry runs on the [`MailClock`](super::mailbox::MailClock) (monotonic, and controllable
//! with `tokio::time::pause` in tests); the timestamp-skew check uses the wall clock, as for
//! manifests.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::admission::{admit_publisher, published};
use super::error::ApiError;
use super::extract::{read_capped, KeyPath};
use super::mailbox::MailClock;
use super::metrics::{PublishKind, PublishResult};
use super::AppState;
use crate::proto::{pow, Profile, ProfileLimits};
use crate::store::{ProfileRecord, PutOutcome, Store};

/// Response header with the stored profile's expiry (ms since the epoch, server clock).
pub const EXPIRES_AT_HEADER: HeaderName = HeaderName::from_static("x-expires-at");

/// The body of a profile write, read under the profile cap and admitted by the
/// proof-of-work check like every other write.
#[derive(Debug, Clone)]
pub struct ProfileBody(pub Bytes);

impl FromRequest<AppState> for ProfileBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let stamp = req.headers().get(pow::HEADER).cloned();
        let max = state.config().profiles.limits().max_bytes();
        let body = read_capped(req, max).await?;
        state
            .pow()
            .check_write(stamp.as_ref(), &body, state.metrics())?;
        Ok(Self(body))
    }
}

/// `PUT /v1/profiles/{key}`: verify, check freshness, store if newer (with a fresh TTL).
pub async fn put(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    ProfileBody(body): ProfileBody,
) -> Result<(StatusCode, Extension<PublishResult>, Json<Value>), ApiError> {
    let cfg = state.config();
    let profile = Profile::verify(&body, &cfg.profiles.limits())?;
    if profile.public_key() != &key {
        return Err(ApiError::KeyMismatch);
    }
    let wall = u64::try_from(crate::now_ms()).unwrap_or(0);
    profile.check_timestamp(wall, cfg.limits.max_clock_skew_secs.saturating_mul(1000))?;
    admit_publisher(&state, &key, PublishKind::Profile).await?;
    let now = state.mail_clock().now_ms();
    let sequence = profile.sequence();
    let rec = ProfileRecord {
        key,
        sequence,
        body: profile.into_canonical_bytes(),
        updated_at_ms: now,
        expires_at_ms: now.saturating_add(cfg.profiles.ttl_ms()),
    };
    let outcome = state.store().put_profile(&rec).await?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated => StatusCode::OK,
        PutOutcome::Unchanged => {
            let result = published(&state, outcome);
            return Ok((
                StatusCode::OK,
                result,
                Json(json!({ "sequence": sequence })),
            ));
        }
        PutOutcome::Conflict { current } => {
            return Err(ApiError::Conflict {
                offered: sequence,
                current,
            })
        }
    };
    let result = published(&state, outcome);
    let reply = json!({ "sequence": sequence, "expiresAt": rec.expires_at_ms });
    Ok((status, result, Json(reply)))
}

/// `GET /v1/profiles/{key}`: the stored canonical bytes unless expired, with
/// `ETag: "<sequence>"` (`If-None-Match` → 304) and [`EXPIRES_AT_HEADER`].
pub async fn get(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let now = state.mail_clock().now_ms();
    let stored = state
        .store()
        .get_profile(&key, now)
        .await?
        .ok_or(ApiError::NotFound)?;
    let etag = format!("\"{}\"", stored.sequence);
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::NotFound)?;
    let expires = HeaderValue::from(stored.expires_at_ms);
    let cache = HeaderValue::from_static("no-cache");
    if super::api::if_none_match(&headers, &etag) {
        let h = [
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
            (EXPIRES_AT_HEADER, expires),
        ];
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    let h = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (header::ETAG, etag_value),
        (header::CACHE_CONTROL, cache),
        (EXPIRES_AT_HEADER, expires),
    ];
    Ok((h, stored.body).into_response())
}

/// The `profiles` object of `/v1/info`.
#[must_use]
pub fn info(cfg: &super::config::ProfilesConfig) -> Value {
    let limits = cfg.limits();
    json!({
        "ttlDays": cfg.ttl_days,
        "maxAvatarBytes": cfg.max_avatar_bytes,
        "maxProfileBytes": limits.max_bytes(),
        "maxNameChars": ProfileLimits::MAX_NAME_CHARS,
        "purgeIntervalSecs": cfg.purge_interval_secs,
    })
}

/// Every `interval`, drop the documents of profiles expired by `clock` (their high-water
/// marks stay), until `stop`. Failures are logged and retried on the next tick.
pub async fn run_purger(
    store: Arc<dyn Store>,
    clock: MailClock,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.purge_profiles(clock.now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(profiles = n, "purged expired profiles"),
            Err(e) => tracing::warn!(error = %e, "profile purge failed"),
        }
    }
}
