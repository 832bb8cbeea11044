//! The one place API errors become HTTP responses.
//!
//! Every error body is JSON `{"error": "<code>", "message": "<text>", …}` where `code` is a
//! short stable string clients can switch on. 5xx bodies are generic; details go to the log.
//!
//! The BitTorrent tracker is the exception ([`TrackerError`]): its failures are bencoded
//! `failure reason` dictionaries with status 200, as BitTorrent clients expect, or a bare
//! 400 for input that is not worth an answer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::proto::mailbox::MailAuthError;
use crate::proto::tracker::{Disposition, RequestError};
use crate::proto::{HexError, ManifestError, PointerError, ProfileError};
use crate::server::tracker::Refusal;
use crate::store::StoreError;

/// Everything a request handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The manifest failed parsing, verification or the timestamp check.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The profile failed parsing, verification or the timestamp check.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The pointer announce failed parsing or verification.
    #[error(transparent)]
    Pointer(#[from] PointerError),
    /// The key in the path is malformed.
    #[error("invalid public key in path: {0}")]
    BadKey(#[source] HexError),
    /// The body's `publicKey` is not the key in the path.
    #[error("the manifest's publicKey does not match the key in the path")]
    KeyMismatch,
    /// The manifest's sequence is not above the stored high-water mark.
    #[error("sequence {offered} is not greater than the current sequence {current}")]
    Conflict {
        /// Sequence offered.
        offered: u64,
        /// The slot's high-water mark.
        current: u64,
    },
    /// The pointer's `seq` is not above the stored one (proof-of-concept shape).
    #[error("seq {offered} must be greater than the current seq {current}")]
    PointerConflict {
        /// Seq offered.
        offered: u64,
        /// The slot's current seq.
        current: u64,
    },
    /// Nothing stored under that key.
    #[error("no record for that key")]
    NotFound,
    /// The request body exceeded the cap.
    #[error("request body over the {max}-byte cap")]
    BodyTooLarge {
        /// The cap.
        max: usize,
    },
    /// The request body could not be read.
    #[error("could not read the request body")]
    BodyRead,
    /// A query parameter is malformed.
    #[error("invalid query: {0}")]
    BadQuery(&'static str),
    /// The store failed.
    #[error("storage failure")]
    Store(#[from] StoreError),
    /// The server is shutting down or the database is unreachable.
    #[error("service unavailable")]
    Unavailable,
    /// A rate limiter refused the request.
    #[error("too many requests; retry in {retry_after_secs}s")]
    RateLimited {
        /// Seconds until a retry may succeed (at least 1).
        retry_after_secs: u64,
    },
    /// A write lacked a valid proof-of-work stamp while a difficulty is in force.
    #[error("this write needs a proof-of-work stamp of difficulty {difficulty} ({failure})")]
    Pow {
        /// Missing or invalid.
        failure: PowFailure,
        /// Leading zero bits demanded.
        difficulty: u8,
        /// The server nonce to solve against (hex).
        nonce: String,
    },
    /// The identity cap is reached and this key has no record yet.
    #[error("the server stores no new identities at the moment")]
    StoreFull,
    /// A signed mailbox request was refused.
    #[error(transparent)]
    MailAuth(#[from] MailAuthError),
    /// The recipient's mailbox quota (messages or bytes) is reached.
    #[error("the recipient's mailbox is full")]
    MailboxFull,
    /// A message id in the path is malformed.
    #[error("invalid message id (expected 32 lowercase hex characters)")]
    BadMessageId,
    /// A mailbox envelope was empty.
    #[error("the envelope is empty")]
    EmptyEnvelope,
    /// The mailbox is switched off on this server.
    #[error("this server does not run a mailbox")]
    MailboxDisabled,
}

/// Why a proof-of-work check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowFailure {
    /// No stamp header.
    Missing,
    /// A malformed stamp, or one that does not meet the difficulty.
    Invalid,
}

impl std::fmt::Display for PowFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowFailure::Missing => "no stamp was sent",
            PowFailure::Invalid => "the stamp does not meet it",
        })
    }
}

impl From<super::rate_limit::Limited> for ApiError {
    fn from(l: super::rate_limit::Limited) -> Self {
        let secs = l.retry_after.as_secs() + u64::from(l.retry_after.subsec_nanos() > 0);
        ApiError::RateLimited {
            retry_after_secs: secs.max(1),
        }
    }
}

impl ApiError {
    /// The status and stable code for this error.
    #[must_use]
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Manifest(e) => (manifest_status(e), e.code()),
            Self::Profile(e) => (profile_status(e), e.code()),
            Self::Pointer(e) => (pointer_status(e), e.code()),
            Self::BadKey(_) => (StatusCode::BAD_REQUEST, "invalid-key"),
            Self::KeyMismatch => (StatusCode::BAD_REQUEST, "key-mismatch"),
            Self::Conflict { .. } | Self::PointerConflict { .. } => {
                (StatusCode::CONFLICT, "conflict")
            }
            Self::NotFound => (StatusCode::NOT_FOUND, "not-found"),
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
            Self::BodyRead => (StatusCode::BAD_REQUEST, "bad-body"),
            Self::BadQuery(_) => (StatusCode::BAD_REQUEST, "invalid-query"),
            Self::Store(StoreError::Busy) => (StatusCode::SERVICE_UNAVAILABLE, "store-busy"),
            Self::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate-limited"),
            Self::Pow {
                failure: PowFailure::Missing,
                ..
            } => (StatusCode::PRECONDITION_REQUIRED, "pow-required"),
            Self::Pow {
                failure: PowFailure::Invalid,
                ..
            } => (StatusCode::PRECONDITION_REQUIRED, "pow-invalid"),
            Self::StoreFull => (StatusCode::INSUFFICIENT_STORAGE, "store-full"),
            Self::MailAuth(e) => (mail_auth_status(e), e.code()),
            Self::MailboxFull => (StatusCode::INSUFFICIENT_STORAGE, "mailbox-full"),
            Self::BadMessageId => (StatusCode::BAD_REQUEST, "invalid-id"),
            Self::EmptyEnvelope => (StatusCode::BAD_REQUEST, "empty-envelope"),
            Self::MailboxDisabled => (StatusCode::NOT_FOUND, "mailbox-disabled"),
        }
    }

    fn body(&self, code: &'static str) -> Value {
        match self {
            Self::Store(StoreError::Busy) => json!({
                "error": code, "message": "the write queue is full; try again later",
            }),
            Self::Store(_) => json!({"error": code, "message": "internal error"}),
            Self::Conflict { current, .. } => json!({
                "error": code, "message": self.to_string(), "currentSequence": current,
            }),
            Self::PointerConflict { current, .. } => json!({
                "error": code, "message": self.to_string(), "currentSeq": current,
            }),
            Self::RateLimited { retry_after_secs } => json!({
                "error": code, "message": self.to_string(), "retryAfter": retry_after_secs,
            }),
            Self::Pow {
                difficulty, nonce, ..
            } => json!({
                "error": code, "message": self.to_string(),
                "difficulty": difficulty, "nonce": nonce,
            }),
            Self::Manifest(_)
            | Self::Profile(_)
            | Self::StoreFull
            | Self::Pointer(_)
            | Self::BadKey(_)
            | Self::KeyMismatch
            | Self::NotFound
            | Self::BodyTooLarge { .. }
            | Self::BodyRead
            | Self::BadQuery(_)
            | Self::MailAuth(_)
            | Self::MailboxFull
            | Self::BadMessageId
            | Self::EmptyEnvelope
            | Self::MailboxDisabled
            | Self::Unavailable => json!({"error": code, "message": self.to_string()}),
        }
    }
}

fn manifest_status(e: &ManifestError) -> StatusCode {
    match e {
        ManifestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        ManifestError::BadSignature => StatusCode::FORBIDDEN,
        ManifestError::Json(_)
        | ManifestError::Shape(_)
        | ManifestError::Hex { .. }
        | ManifestError::TimestampInFuture { .. } => StatusCode::BAD_REQUEST,
    }
}

fn profile_status(e: &ProfileError) -> StatusCode {
    match e {
        ProfileError::TooLarge { .. } | ProfileError::AvatarTooLarge { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        ProfileError::BadSignature => StatusCode::FORBIDDEN,
        ProfileError::Json(_)
        | ProfileError::Shape(_)
        | ProfileError::Name(_)
        | ProfileError::Avatar(_)
        | ProfileError::Hex { .. }
        | ProfileError::TimestampInFuture { .. } => StatusCode::BAD_REQUEST,
    }
}

fn mail_auth_status(e: &MailAuthError) -> StatusCode {
    match e {
        MailAuthError::Malformed(_) => StatusCode::BAD_REQUEST,
        MailAuthError::BadSignature => StatusCode::FORBIDDEN,
        MailAuthError::Missing(_) | MailAuthError::Expired | MailAuthError::Replay => {
            StatusCode::UNAUTHORIZED
        }
    }
}

fn pointer_status(e: &PointerError) -> StatusCode {
    match e {
        PointerError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        PointerError::BadSignature => StatusCode::FORBIDDEN,
        PointerError::Json(_) | PointerError::Shape(_) | PointerError::Hex { .. } => {
            StatusCode::BAD_REQUEST
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, cause = ?std::error::Error::source(&self), "request failed");
        }
        let mut resp = (status, axum::Json(self.body(code))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Self::RateLimited { retry_after_secs } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

/// Everything a tracker `GET /announce` or `GET /scrape` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The query did not parse.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The query parsed but the tracker refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// A bencoded tracker body with the `text/plain` content type trackers use.
pub fn bencode_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        body,
    )
        .into_response()
}

impl IntoResponse for TrackerError {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(64);
        match &self {
            Self::Request(e) => match e.disposition() {
                Disposition::TellPeer => {
                    crate::proto::tracker::write_failure(&mut body, &e.failure_reason());
                }
                Disposition::Drop => return bencode_response(StatusCode::BAD_REQUEST, body),
            },
            Self::Refused(r) => crate::proto::tracker::write_failure(&mut body, &r.to_string()),
        }
        bencode_response(StatusCode::OK, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::json::{JsonError, JsonErrorKind};

    async fn render(e: ApiError) -> (StatusCode, Value) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_variant_has_a_status_and_code() {
        let json_err = |kind| {
            ManifestError::Json(JsonError {
                kind,
                detail: "x".into(),
            })
        };
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ManifestError::BadSignature.into(), 403, "bad-signature"),
            (
                ManifestError::TooLarge { size: 2, max: 1 }.into(),
                413,
                "too-large",
            ),
            (
                json_err(JsonErrorKind::DuplicateMember).into(),
                400,
                "duplicate-member",
            ),
            (
                json_err(JsonErrorKind::NotAnInteger).into(),
                400,
                "not-an-integer",
            ),
            (json_err(JsonErrorKind::Syntax).into(), 400, "invalid-json"),
            (
                ManifestError::Shape("x".into()).into(),
                400,
                "invalid-manifest",
            ),
            (
                ManifestError::TimestampInFuture {
                    timestamp: 2,
                    now: 1,
                    max_skew_ms: 0,
                }
                .into(),
                400,
                "timestamp-in-future",
            ),
            (ProfileError::BadSignature.into(), 403, "bad-signature"),
            (
                ProfileError::TooLarge { size: 2, max: 1 }.into(),
                413,
                "too-large",
            ),
            (
                ProfileError::AvatarTooLarge { size: 2, max: 1 }.into(),
                413,
                "avatar-too-large",
            ),
            (
                ProfileError::Shape("x".into()).into(),
                400,
                "invalid-profile",
            ),
            (ProfileError::Name("x".into()).into(), 400, "invalid-name"),
            (
                ProfileError::Avatar("x".into()).into(),
                400,
                "invalid-avatar",
            ),
            (
                ProfileError::Hex {
                    member: "mailboxKey",
                    source: HexError::NotLowerHex,
                }
                .into(),
                400,
                "invalid-hex",
            ),
            (
                ProfileError::TimestampInFuture {
                    timestamp: 2,
                    now: 1,
                    max_skew_ms: 0,
                }
                .into(),
                400,
                "timestamp-in-future",
            ),
            (PointerError::BadSignature.into(), 403, "bad-signature"),
            (PointerError::TooLarge(9).into(), 413, "too-large"),
            (ApiError::BadKey(HexError::NotLowerHex), 400, "invalid-key"),
            (ApiError::KeyMismatch, 400, "key-mismatch"),
            (ApiError::NotFound, 404, "not-found"),
            (ApiError::BodyTooLarge { max: 1 }, 413, "too-large"),
            (ApiError::BodyRead, 400, "bad-body"),
            (ApiError::BadQuery("x"), 400, "invalid-query"),
            (ApiError::Unavailable, 503, "unavailable"),
            (ApiError::StoreFull, 507, "store-full"),
            (ApiError::Store(StoreError::Busy), 503, "store-busy"),
            (MailAuthError::Missing("x").into(), 401, "auth-missing"),
            (MailAuthError::Malformed("x").into(), 400, "auth-malformed"),
            (MailAuthError::Expired.into(), 401, "auth-expired"),
            (MailAuthError::BadSignature.into(), 403, "bad-signature"),
            (MailAuthError::Replay.into(), 401, "replay"),
            (ApiError::MailboxFull, 507, "mailbox-full"),
            (ApiError::BadMessageId, 400, "invalid-id"),
            (ApiError::EmptyEnvelope, 400, "empty-envelope"),
            (ApiError::MailboxDisabled, 404, "mailbox-disabled"),
            (
                ApiError::Store(StoreError::Corrupt("secret detail".into())),
                500,
                "internal",
            ),
        ];
        for (err, status, code) in cases {
            let (s, body) = render(err).await;
            assert_eq!(s.as_u16(), status, "{body}");
            assert_eq!(body["error"], code);
            assert!(!body.to_string().contains("secret detail"));
        }
        let (s, body) = render(ApiError::Conflict {
            offered: 1,
            current: 5,
        })
        .await;
        assert_eq!((s.as_u16(), &body["currentSequence"]), (409, &json!(5)));
        let (s, body) = render(ApiError::PointerConflict {
            offered: 1,
            current: 5,
        })
        .await;
        assert_eq!((s.as_u16(), &body["currentSeq"]), (409, &json!(5)));

        let resp = ApiError::RateLimited {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        let (s, body) = render(ApiError::RateLimited {
            retry_after_secs: 7,
        })
        .await;
        assert_eq!(
            (s.as_u16(), &body["error"], &body["retryAfter"]),
            (429, &json!("rate-limited"), &json!(7))
        );
        let limited = crate::server::rate_limit::Limited {
            limiter: crate::server::metrics::Limiter::Read,
            retry_after: std::time::Duration::from_millis(1),
        };
        assert!(matches!(
            ApiError::from(limited),
            ApiError::RateLimited {
                retry_after_secs: 1
            }
        ));

        for (failure, code) in [
            (PowFailure::Missing, "pow-required"),
            (PowFailure::Invalid, "pow-invalid"),
        ] {
            let (s, body) = render(ApiError::Pow {
                failure,
                difficulty: 9,
                nonce: "ab".into(),
            })
            .await;
            assert_eq!((s.as_u16(), &body["error"]), (428, &json!(code)));
            assert_eq!(
                (&body["difficulty"], &body["nonce"]),
                (&json!(9), &json!("ab"))
            );
        }
    }

    async fn render_tracker(e: TrackerError) -> (StatusCode, Option<String>, Vec<u8>) {
        let resp = e.into_response();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap()
            .to_vec();
        (status, ct, body)
    }

    #[tokio::test]
    async fn tracker_errors_are_bencoded_failures_or_bare_400s() {
        use crate::proto::tracker::AnnounceReply;
        let told: Vec<TrackerError> = vec![
            RequestError::Missing("info_hash").into(),
            RequestError::BadValue("numwant").into(),
            Refusal::NotAllowed.into(),
            Refusal::Unavailable.into(),
        ];
        for err in told {
            let text = err.to_string();
            let (status, ct, body) = render_tracker(err).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(ct.as_deref(), Some("text/plain"));
            let AnnounceReply::Failure(reason) = AnnounceReply::parse(&body).unwrap() else {
                panic!("not a failure");
            };
            assert!(reason.starts_with(&text), "{reason} / {text}");
        }
        let (status, _, body) = render_tracker(
            RequestError::QueryTooLong {
                len: 99_999,
                max: 1,
            }
            .into(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.is_empty());
    }
}
