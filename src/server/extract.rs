//! Typed extractors: turn requests into domain types, failing with [`ApiError`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;

use super::error::ApiError;
use super::AppState;
use crate::proto::PublicKey;

/// A public key from the `{key}` path segment, lowercase hex only.
#[derive(Debug, Clone, Copy)]
pub struct KeyPath(pub PublicKey);

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadKey(crate::proto::HexError::NotLowerHex))?;
        PublicKey::from_hex(&text)
            .map(KeyPath)
            .map_err(ApiError::BadKey)
    }
}

/// A public key from the path in either hex case (proof-of-concept routes).
#[derive(Debug, Clone, Copy)]
pub struct AnyCaseKeyPath(pub PublicKey);

impl<S: Send + Sync> FromRequestParts<S> for AnyCaseKeyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadKey(crate::proto::HexError::NotHex))?;
        PublicKey::from_hex_any_case(&text)
            .map(AnyCaseKeyPath)
            .map_err(ApiError::BadKey)
    }
}

/// The request body, read up to the state's body cap (`limits.max_manifest_bytes` plus a
/// little room), failing with 413 `too-large` beyond it.
#[derive(Debug, Clone)]
pub struct CappedBody(pub Bytes);

impl FromRequest<AppState> for CappedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        read_capped(req, state.max_body_bytes()).await.map(Self)
    }
}

/// Read a request body of at most `max` bytes, failing with 413 `too-large` beyond it.
pub async fn read_capped(req: Request, max: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::BodyTooLarge { max });
    }
    match axum::body::to_bytes(req.into_body(), max).await {
        Ok(b) => Ok(b),
        Err(e) => {
            // `to_bytes` reports the length limit through its error source chain.
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            Err(if too_large {
                ApiError::BodyTooLarge { max }
            } else {
                ApiError::BodyRead
            })
        }
    }
}
