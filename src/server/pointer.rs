//! Proof-of-concept phone-book endpoints: `POST /announce`, `GET /lookup/{key}`, `GET /stats`.
//!
//! Shapes follow the proof of concept exactly (DESIGN §3.3). Unlike manifests, re-sending
//! the same `seq` is a 409 here, as the proof of concept does.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::admission::{admit_publisher, published, AdmittedBody};
use super::error::ApiError;
use super::extract::AnyCaseKeyPath;
use super::metrics::{PublishKind, PublishResult};
use super::AppState;
use crate::proto::PointerAnnounce;
use crate::store::{PointerRecord, PutOutcome};

/// `POST /announce` → `{"success":true,"seq":N}`.
pub async fn announce(
    State(state): State<AppState>,
    AdmittedBody(body): AdmittedBody,
) -> Result<(axum::Extension<PublishResult>, Json<Value>), ApiError> {
    let ann = PointerAnnounce::verify(&body)?;
    admit_publisher(&state, ann.public_key(), PublishKind::Pointer).await?;
    let record = PointerRecord {
        key: *ann.public_key(),
        public_key_text: ann.public_key_text().to_owned(),
        infohash_text: ann.infohash_text().to_owned(),
        seq: ann.seq(),
        signature: *ann.signature(),
        updated_at_ms: crate::now_ms(),
    };
    let outcome = state.store().put_pointer(&record).await?;
    match outcome {
        PutOutcome::Created | PutOutcome::Updated => Ok((
            published(&state, outcome),
            Json(json!({"success": true, "seq": ann.seq()})),
        )),
        PutOutcome::Unchanged => Err(ApiError::PointerConflict {
            offered: ann.seq(),
            current: ann.seq(),
        }),
        PutOutcome::Conflict { current } => Err(ApiError::PointerConflict {
            offered: ann.seq(),
            current,
        }),
    }
}

/// `GET /lookup/{key}` → `{publicKey, manifestInfohash, seq, updatedAt, signature}`.
///
/// `signature` is an addition to the proof of concept's shape so clients can verify the
/// record themselves; `publicKey` and `manifestInfohash` are returned exactly as signed.
pub async fn lookup(
    State(state): State<AppState>,
    AnyCaseKeyPath(key): AnyCaseKeyPath,
) -> Result<Json<Value>, ApiError> {
    let rec = state
        .store()
        .get_pointer(&key)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(json!({
        "publicKey": rec.public_key_text,
        "manifestInfohash": rec.infohash_text,
        "seq": rec.seq,
        "updatedAt": rec.updated_at_ms,
        "signature": rec.signature.to_hex(),
    })))
}

/// `GET /stats` → `{entries, manifests}` (`entries` counts pointer records, as in the
/// proof of concept).
pub async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let s = state.store().stats().await?;
    Ok(Json(json!({
        "entries": s.pointers,
        "pointers": s.pointers,
        "manifests": s.manifests,
    })))
}
