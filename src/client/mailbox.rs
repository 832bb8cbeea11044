//! The mailbox HTTP client: post sealed envelopes, and list, fetch and acknowledge one's own
//! with signed requests (`/v1/mailbox/{key}`, see `docs/api.md`).
//!
//! The signed path is the one relative to the base URL (what the server routes on); the
//! server is trusted for nothing but storage: envelopes are opened and verified by the
//! caller ([`super::mail::open`]).

use ed25519_dalek::SigningKey;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::api::{error_from, ApiError};
use super::http::{HttpClient, HttpError, HttpResponse};
use crate::proto::mailbox::{
    valid_message_id, MailAuth, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use crate::proto::PublicKey;

/// Most list entries accepted from the server in one listing (the server's own cap per
/// recipient is at most 100 000).
pub const MAX_LISTED: usize = 100_000;

/// One stored message, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailEntry {
    /// The server's id (32 lowercase hex).
    pub id: String,
    /// Envelope size in bytes.
    pub size: u64,
    /// When the server received it (ms since the epoch).
    pub received_at: u64,
    /// When the server drops it (ms since the epoch).
    pub expires_at: u64,
}

/// What the server answered to a post.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Posted {
    /// The server's id for the stored envelope.
    pub id: String,
    /// When the server drops it unless acknowledged (ms since the epoch).
    pub expires_at: u64,
}

/// A mailbox client for one server.
#[derive(Debug, Clone)]
pub struct MailboxClient {
    http: HttpClient,
}

fn mailbox_path(key: &PublicKey) -> String {
    format!("/v1/mailbox/{}", key.to_hex())
}

impl MailboxClient {
    /// A client over `http`.
    #[must_use]
    pub fn new(http: HttpClient) -> Self {
        Self { http }
    }

    /// The HTTP client underneath (its connector and base URL).
    #[must_use]
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Store `envelope` for `to` (no authentication, nothing about the sender).
    pub async fn post(&self, to: &PublicKey, envelope: Vec<u8>) -> Result<Posted, ApiError> {
        let ct = (
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let resp = self
            .http
            .request(Method::POST, &mailbox_path(to), &[ct], Some(envelope))
            .await?;
        if resp.status != StatusCode::CREATED {
            return Err(error_from(&resp));
        }
        serde_json::from_slice(&resp.body).map_err(|_| ApiError::Unexpected {
            status: resp.status.as_u16(),
        })
    }

    /// A request signed by `key` for its own mailbox.
    async fn signed(
        &self,
        key: &SigningKey,
        method: Method,
        path: &str,
    ) -> Result<HttpResponse, ApiError> {
        let now = u64::try_from(crate::now_ms()).unwrap_or(0);
        let auth = MailAuth::sign(key, method.as_str(), path, now, b"");
        let header = |name: &'static str, value: String| {
            HeaderValue::from_str(&value)
                .map(|v| (HeaderName::from_static(name), v))
                .map_err(|e| ApiError::Http(HttpError::Request(e.into())))
        };
        let headers = [
            header(HEADER_TIMESTAMP, auth.timestamp_ms.to_string())?,
            header(HEADER_NONCE, auth.nonce)?,
            header(HEADER_SIGNATURE, auth.signature.to_hex())?,
        ];
        Ok(self.http.request(method, path, &headers, None).await?)
    }

    /// List `key`'s unexpired messages, oldest first.
    pub async fn list(&self, key: &SigningKey) -> Result<Vec<MailEntry>, ApiError> {
        let path = mailbox_path(&PublicKey::from(key));
        let resp = self.signed(key, Method::GET, &path).await?;
        if resp.status != StatusCode::OK {
            return Err(error_from(&resp));
        }
        #[derive(Deserialize)]
        struct List {
            messages: Vec<MailEntry>,
        }
        let bad = || ApiError::Unexpected {
            status: resp.status.as_u16(),
        };
        let list: List = serde_json::from_slice(&resp.body).map_err(|_| bad())?;
        if list.messages.len() > MAX_LISTED
            || list.messages.iter().any(|m| !valid_message_id(&m.id))
        {
            return Err(bad());
        }
        Ok(list.messages)
    }

    /// Fetch one envelope; `None` if it is gone (acknowledged elsewhere or expired).
    pub async fn fetch(&self, key: &SigningKey, id: &str) -> Result<Option<Vec<u8>>, ApiError> {
        let path = format!("{}/{id}", mailbox_path(&PublicKey::from(key)));
        let resp = self.signed(key, Method::GET, &path).await?;
        match resp.status {
            StatusCode::OK => Ok(Some(resp.body)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_from(&resp)),
        }
    }

    /// Acknowledge (delete) one message; `false` if it was already gone.
    pub async fn ack(&self, key: &SigningKey, id: &str) -> Result<bool, ApiError> {
        let path = format!("{}/{id}", mailbox_path(&PublicKey::from(key)));
        let resp = self.signed(key, Method::DELETE, &path).await?;
        match resp.status {
            StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(error_from(&resp)),
        }
    }
}
