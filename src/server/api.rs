//! `/v1` manifest API, info and health handlers.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::admission::{admit_publisher, published, AdmittedBody};
use super::error::ApiError;
use super::extract::KeyPath;
use super::metrics::{PublishKind, PublishResult};
use super::AppState;
use crate::proto::pointer::MAX_POINTER_BYTES;
use crate::proto::Manifest;
use crate::store::{ManifestRecord, PutOutcome};

/// `PUT /v1/manifests/{key}`: verify, check freshness, store if newer.
pub async fn put_manifest(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    AdmittedBody(body): AdmittedBody,
) -> Result<(StatusCode, axum::Extension<PublishResult>, Json<Value>), ApiError> {
    let manifest = Manifest::verify(&body, state.manifest_limits())?;
    if manifest.public_key() != &key {
        return Err(ApiError::KeyMismatch);
    }
    let now = crate::now_ms();
    let skew_ms = state
        .config()
        .limits
        .max_clock_skew_secs
        .saturating_mul(1000);
    manifest.check_timestamp(u64::try_from(now).unwrap_or(0), skew_ms)?;
    admit_publisher(&state, &key, PublishKind::Manifest).await?;
    let sequence = manifest.sequence();
    let record = ManifestRecord {
        key,
        sequence,
        body: manifest.into_canonical_bytes(),
        updated_at_ms: now,
    };
    let outcome = state.store().put_manifest(&record).await?;
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
    // Push to WebSocket subscribers here and on the other replicas.
    state.pubsub().published(&key, sequence, &record.body).await;
    Ok((status, result, Json(json!({ "sequence": sequence }))))
}

/// `GET /v1/manifests/{key}`: the stored canonical bytes, with `ETag: "<sequence>"`.
/// With `?wait=N` (long-poll), first waits up to N seconds for a sequence newer than
/// `If-None-Match` (see [`super::longpoll`]).
pub async fn get_manifest(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wait = super::longpoll::wait_secs(query.as_deref(), &state)?;
    let stored = match wait {
        Some(secs) => super::longpoll::wait_for_newer(&state, &key, &headers, secs).await?,
        None => state.store().get_manifest(&key).await?,
    }
    .ok_or(ApiError::NotFound)?;
    let etag = format!("\"{}\"", stored.sequence);
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::NotFound)?;
    let not_modified = if_none_match(&headers, &etag);
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if not_modified {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), cache],
        )
            .into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag_value),
            cache,
        ],
        stored.body,
    )
        .into_response())
}

/// Whether any `If-None-Match` header matches `etag`.
pub(super) fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| etag_matches(v, etag))
}

/// Whether an `If-None-Match` header value matches `etag` (weak comparison, `*` matches).
fn etag_matches(header_value: &str, etag: &str) -> bool {
    header_value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// `GET /v1/info`: what this server is and the limits it enforces.
pub async fn info(State(state): State<AppState>) -> Json<Value> {
    let cfg = state.config();
    let t = &cfg.tracker;
    let backend = state.store().backend();
    let mut info = json!({
        "software": "megatorrentd",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1,
        "backend": backend,
        // SQLite is single-replica; PostgreSQL supports several replicas.
        "replication": if backend == "postgres" { "multi" } else { "single" },
        "features": [
            "manifests", "pointers", "tracker", "websocket", "pubsub", "webtorrent", "long-poll", "mailbox",
            "profiles"
        ],
        "limits": {
            "maxManifestBytes": state.manifest_limits().max_bytes,
            "maxPointerBytes": MAX_POINTER_BYTES,
            "maxClockSkewSecs": cfg.limits.max_clock_skew_secs,
            "requestTimeoutSecs": cfg.http.request_timeout_secs,
            "maxWaitSecs": super::longpoll::max_wait_secs(&state),
            "announceIntervalSecs": t.interval_secs,
            "minAnnounceIntervalSecs": t.min_interval_secs,
            "defaultNumwant": t.default_numwant,
            "maxNumwant": t.max_numwant,
            "maxScrapeInfoHashes": t.max_scrape_hashes,
            "maxPeersPerTorrent": t.max_peers_per_torrent,
        },
        "tracker": {
            "http": true,
            "udp": cfg.udp.enabled,
            "private": t.private,
            "access": t.access,
        },
        "websocket": super::ws::info(&cfg.websocket),
        "pow": state.pow().info(),
        "mailbox": super::mailbox::info(&cfg.mailbox),
        "profiles": super::profile::info(&cfg.profiles),
    });
    super::admission::add_limits_info(&state, &mut info["limits"]);
    if let Some(onion) = state.onion_address() {
        info["onion"] = json!(onion);
    }
    Json(info)
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers and the server is not shutting down.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if !state.is_ready() {
        return Err(ApiError::Unavailable);
    }
    state.store().ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check: database unreachable");
        ApiError::Unavailable
    })?;
    Ok("ready")
}

/// Any unknown route.
pub async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no-route", "message": "no such endpoint"})),
    )
}

#[cfg(test)]
mod tests {
    use super::etag_matches;

    #[test]
    fn etag_comparison() {
        assert!(etag_matches("\"3\"", "\"3\""));
        assert!(etag_matches("W/\"3\"", "\"3\""));
        assert!(etag_matches("\"1\", \"3\"", "\"3\""));
        assert!(etag_matches("*", "\"3\""));
        assert!(!etag_matches("\"4\"", "\"3\""));
        assert!(!etag_matches("3", "\"3\""));
    }
}
