//! Long-poll for `GET /v1/manifests/{key}?wait=N`: wait on the pub/sub hub (never by
//! polling the database) until a sequence newer than the client's `If-None-Match` is
//! stored, or the wait is over.
//!
//! * No `If-None-Match`: answer as soon as any manifest is stored (at once if one is).
//! * `If-None-Match: "7"` (several tags: the highest): wait for a sequence above 7.
//! * `If-None-Match: *`: wait for a sequence above the one stored when the request came.
//!
//! When the wait is over the request is answered as without `wait` (304, 200 or 404).
//! The wait is capped at [`MAX_WAIT_SECS`] and below `http.request_timeout_secs`.

use axum::http::{header, HeaderMap};

use super::error::ApiError;
use super::AppState;
use crate::proto::PublicKey;
use crate::store::StoredManifest;

/// The longest wait a client can ask for.
pub const MAX_WAIT_SECS: u64 = 60;

/// The effective cap: [`MAX_WAIT_SECS`], and less than the request timeout.
#[must_use]
pub fn max_wait_secs(state: &AppState) -> u64 {
    let timeout = state.config().http.request_timeout_secs;
    MAX_WAIT_SECS.min(timeout.saturating_sub(1))
}

/// The `wait` query parameter, capped; `None` when absent or zero.
pub fn wait_secs(query: Option<&str>, state: &AppState) -> Result<Option<u64>, ApiError> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find_map(|(k, v)| (k == "wait").then_some(v))
    else {
        return Ok(None);
    };
    let secs: u64 = value
        .parse()
        .map_err(|_| ApiError::BadQuery("wait must be a whole number of seconds"))?;
    Ok(Some(secs.min(max_wait_secs(state))).filter(|s| *s > 0))
}

/// What the client already has, from `If-None-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// No header: anything stored is news.
    Nothing,
    /// The highest sequence named.
    Sequence(u64),
    /// `*`: whatever is stored now.
    Current,
}

fn known(headers: &HeaderMap) -> Known {
    let mut out = Known::Nothing;
    for tag in headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        if tag == "*" {
            return Known::Current;
        }
        let bare = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
        if let Ok(n) = bare.parse::<u64>() {
            out = match out {
                Known::Sequence(m) => Known::Sequence(m.max(n)),
                Known::Nothing | Known::Current => Known::Sequence(n),
            };
        }
    }
    out
}

/// Wait up to `secs` for a manifest of `key` newer than the client has; returns what is
/// stored when that happens or when the time is up.
pub async fn wait_for_newer(
    state: &AppState,
    key: &PublicKey,
    headers: &HeaderMap,
    secs: u64,
) -> Result<Option<StoredManifest>, ApiError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    // Register before reading, so a publish between the read and the wait is not missed.
    let mut waiter = state.pubsub().hub().waiter(key);
    let mut have = known(headers);
    let mut first = true;
    loop {
        let stored = state.store().get_manifest(key).await?;
        let seq = stored.as_ref().map(|m| m.sequence);
        if first && have == Known::Current {
            have = seq.map_or(Known::Nothing, Known::Sequence);
        }
        first = false;
        let newer = match (seq, have) {
            (None, _) => false,
            (Some(s), Known::Sequence(h)) => s > h,
            (Some(_), Known::Nothing | Known::Current) => true,
        };
        if newer {
            return Ok(stored);
        }
        if tokio::time::timeout_at(deadline, waiter.changed())
            .await
            .is_err()
        {
            return Ok(stored);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn if_none_match_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(known(&h), Known::Nothing);
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"3\", W/\"9\", \"x\""),
        );
        assert_eq!(known(&h), Known::Sequence(9));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert_eq!(known(&h), Known::Current);
    }
}
