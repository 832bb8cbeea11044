//! Admission of writes: the proof-of-work body extractor, the per-key quota and the
//! identity cap.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::Extension;

use super::error::ApiError;
use super::extract::CappedBody;
use super::metrics::{PublishKind, PublishResult};
use super::AppState;
use crate::proto::{pow, PublicKey};
use crate::store::PutOutcome;

/// Sentinel for "identity count not loaded yet".
pub(super) const UNKNOWN_COUNT: u64 = u64::MAX;

/// The body of a write, read under the body cap ([`CappedBody`]) and admitted by the
/// proof-of-work check when a difficulty is in force (`428 pow-required` otherwise).
#[derive(Debug, Clone)]
pub struct AdmittedBody(pub Bytes);

impl FromRequest<AppState> for AdmittedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let stamp = req.headers().get(pow::HEADER).cloned();
        let CappedBody(body) = CappedBody::from_request(req, state).await?;
        state
            .pow()
            .check_write(stamp.as_ref(), &body, state.metrics())?;
        Ok(Self(body))
    }
}

/// Admit a verified write under `key`: the per-key quota, then the identity cap (a key with
/// no record is refused with `507 store-full` while the cap is reached; known keys always
/// pass, and nothing stored is ever evicted).
pub async fn admit_publisher(
    state: &AppState,
    key: &PublicKey,
    kind: PublishKind,
) -> Result<(), ApiError> {
    state.rate_limiter().check_key(key)?;
    let cap = state.config().limits.max_identities;
    if cap == 0 || identity_count(state).await? < cap {
        return Ok(());
    }
    let known = match kind {
        PublishKind::Manifest => state.store().manifest_high_water(key).await?.is_some(),
        PublishKind::Pointer => state.store().get_pointer(key).await?.is_some(),
        PublishKind::Profile => state.store().profile_high_water(key).await?.is_some(),
    };
    if known {
        Ok(())
    } else {
        Err(ApiError::StoreFull)
    }
}

/// The approximate number of stored identities (loaded on first use, refreshed by the
/// server every minute, incremented on each created record).
async fn identity_count(state: &AppState) -> Result<u64, ApiError> {
    let n = state.identities().load(Ordering::Relaxed);
    if n != UNKNOWN_COUNT {
        return Ok(n);
    }
    refresh_identities(state).await?;
    Ok(state.identities().load(Ordering::Relaxed))
}

/// Reload the identity count from the store.
pub(super) async fn refresh_identities(state: &AppState) -> Result<(), ApiError> {
    let s = state.store().stats().await?;
    state.identities().store(
        s.manifests
            .saturating_add(s.pointers)
            .saturating_add(s.profiles),
        Ordering::Relaxed,
    );
    Ok(())
}

/// Classify a stored write for the metrics (as a response extension read by the metrics
/// middleware) and keep the identity count current.
pub fn published(state: &AppState, outcome: PutOutcome) -> Extension<PublishResult> {
    let result = match outcome {
        PutOutcome::Created => {
            let ids = state.identities();
            let _ = ids.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n != UNKNOWN_COUNT).then(|| n.saturating_add(1))
            });
            PublishResult::Created
        }
        PutOutcome::Updated => PublishResult::Updated,
        PutOutcome::Unchanged => PublishResult::Unchanged,
        PutOutcome::Conflict { .. } => PublishResult::Conflict,
    };
    Extension(result)
}

/// Add the rate and connection limits in force to the `limits` object of `/v1/info`.
pub fn add_limits_info(state: &AppState, limits: &mut serde_json::Value) {
    let c = state.config();
    let (h, l) = (&c.http, &c.limits);
    let extra = serde_json::json!({
        "rateLimits": {
            "read": l.read_quota.to_string(),
            "write": l.write_quota.to_string(),
            "globalWrite": l.global_write_quota.to_string(),
            "perKeyWrite": l.key_write_quota.to_string(),
        },
        "maxIdentities": l.max_identities,
        "headerReadTimeoutSecs": h.header_read_timeout_secs,
        "idleTimeoutSecs": h.header_read_timeout_secs,
        "maxHeaderBytes": h.max_header_bytes,
        "maxConnections": h.max_connections,
    });
    if let (Some(obj), serde_json::Value::Object(extra)) = (limits.as_object_mut(), extra) {
        obj.extend(extra);
    }
}
