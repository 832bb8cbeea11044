//! The signaling client: fetch and publish manifests over the `/v1` HTTP API.
//!
//! Nothing the server sends is trusted: a fetched manifest is parsed strictly, its signature
//! verified, and its `publicKey` compared with the key that was asked for.

use std::fmt;
use std::sync::Arc;

use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::http::{HttpClient, HttpError, HttpResponse};

mod pointer;
mod pow_solve;
use crate::proto::{pow, Manifest, ManifestError, ManifestLimits, PointerError, PublicKey};

/// How many times a write is re-sent with a fresh proof-of-work stamp after a `428`.
pub const MAX_POW_ATTEMPTS: u32 = 3;

/// Highest proof-of-work difficulty the client agrees to solve (2^28 hashes on average,
/// tens of seconds on a laptop).
pub const MAX_POW_DIFFICULTY: u8 = 28;

/// A progress note for the user (the CLI prints it on stderr).
pub type ProgressFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Longest server-provided text kept in an error (longer text is cut).
const MAX_SERVER_TEXT: usize = 300;

/// An error reply from the server (`{"error": …, "message": …}`), made safe to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The HTTP status.
    pub status: u16,
    /// The short machine-readable code (e.g. `conflict`), or `http-<status>` if the body had
    /// none.
    pub code: String,
    /// The human-readable message (one line, control characters removed).
    pub message: String,
    /// On `409 Conflict`: the sequence the server already holds.
    pub current_sequence: Option<u64>,
    /// On `429`: the `Retry-After` delay in seconds, if given.
    pub retry_after_secs: Option<u64>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server refused the request ({} {})",
            self.status, self.code
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(n) = self.retry_after_secs {
            write!(f, " (retry after {n}s)")?;
        }
        Ok(())
    }
}

/// Why a signaling call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The HTTP exchange failed (connect, timeout, protocol, size).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server answered with an error status.
    #[error("{0}")]
    Server(ServerError),
    /// The server sent a manifest that does not parse or verify.
    #[error("the server sent an invalid manifest for {key}")]
    InvalidManifest {
        /// The key that was asked for.
        key: PublicKey,
        /// Why it was rejected.
        #[source]
        source: ManifestError,
    },
    /// The server sent a proof-of-concept pointer record that does not parse or verify.
    #[error("the server sent an invalid pointer record for {key}")]
    InvalidPointer {
        /// The key that was asked for.
        key: PublicKey,
        /// Why it was rejected.
        #[source]
        source: PointerError,
    },
    /// The server sent a validly signed manifest of a different key.
    #[error("the server sent the manifest of {got} when asked for {requested}")]
    WrongKey {
        /// The key that was asked for.
        requested: PublicKey,
        /// The key in the manifest.
        got: PublicKey,
    },
    /// The server demands more proof-of-work than [`MAX_POW_DIFFICULTY`].
    #[error("the server demands a proof-of-work of difficulty {difficulty}, over this client's limit of {MAX_POW_DIFFICULTY}")]
    PowTooHard {
        /// The difficulty demanded.
        difficulty: u8,
    },
    /// `/v1/info` did not describe a usable proof-of-work challenge.
    #[error("the server demands a proof-of-work but does not describe it in /v1/info")]
    PowChallenge,
    /// A status this client does not expect for the call.
    #[error("unexpected response from the server: HTTP {status}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
    },
}

impl ApiError {
    /// The server's error reply, if this is one.
    #[must_use]
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            ApiError::Server(s) => Some(s),
            _ => None,
        }
    }

    /// `Some(current)` if this is a `409 Conflict` (the server already holds `current`, or a
    /// higher sequence, when it said so).
    #[must_use]
    pub fn conflict(&self) -> Option<Option<u64>> {
        self.server()
            .filter(|s| s.status == StatusCode::CONFLICT.as_u16())
            .map(|s| s.current_sequence)
    }
}

/// How a publish was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutResult {
    /// `201`: the first manifest for this key.
    Created {
        /// The stored sequence.
        sequence: u64,
    },
    /// `200`: a newer manifest replaced the old one (or the same one was re-sent).
    Updated {
        /// The stored sequence.
        sequence: u64,
    },
}

impl PutResult {
    /// The stored sequence.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        match self {
            PutResult::Created { sequence } | PutResult::Updated { sequence } => *sequence,
        }
    }
}

/// A verified manifest together with the exact bytes the server sent.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The verified manifest.
    pub manifest: Manifest,
    /// The response body, byte for byte.
    pub body: Vec<u8>,
}

/// A client for the signaling API of one server.
#[derive(Clone)]
pub struct SignalingClient {
    http: HttpClient,
    limits: ManifestLimits,
    progress: Option<ProgressFn>,
}

impl fmt::Debug for SignalingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalingClient")
            .field("http", &self.http)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SignalingClient {
    /// A client over `http`. Fetched manifests may be up to the hard cap
    /// ([`ManifestLimits::HARD_MAX_BYTES`]): the server decides its own cap.
    #[must_use]
    pub fn new(http: HttpClient) -> Self {
        Self {
            http,
            limits: ManifestLimits {
                max_bytes: ManifestLimits::HARD_MAX_BYTES,
            },
            progress: None,
        }
    }

    /// The same client, reporting slow steps (a proof-of-work taking over a second) to
    /// `progress`.
    #[must_use]
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The underlying HTTP client.
    #[must_use]
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Fetch and verify the latest manifest of `key`; `None` if the server has none.
    pub async fn get_manifest(&self, key: &PublicKey) -> Result<Option<Manifest>, ApiError> {
        Ok(self.fetch_manifest(key).await?.map(|f| f.manifest))
    }

    /// Like [`Self::get_manifest`], also returning the bytes exactly as served.
    pub async fn fetch_manifest(
        &self,
        key: &PublicKey,
    ) -> Result<Option<FetchedManifest>, ApiError> {
        let accept = (header::ACCEPT, HeaderValue::from_static("application/json"));
        let resp = self
            .http
            .request(Method::GET, &manifest_path(key), &[accept], None)
            .await?;
        match resp.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(error_from(&resp)),
        }
        let manifest = Manifest::verify(&resp.body, &self.limits)
            .map_err(|source| ApiError::InvalidManifest { key: *key, source })?;
        if manifest.public_key() != key {
            return Err(ApiError::WrongKey {
                requested: *key,
                got: *manifest.public_key(),
            });
        }
        Ok(Some(FetchedManifest {
            manifest,
            body: resp.body,
        }))
    }

    /// Publish `manifest` (its canonical bytes) under its own key. When the server demands
    /// a proof-of-work (`428`), the challenge is read from `/v1/info`, solved and the write
    /// re-sent, up to [`MAX_POW_ATTEMPTS`] times.
    pub async fn put_manifest(&self, manifest: &Manifest) -> Result<PutResult, ApiError> {
        let path = manifest_path(manifest.public_key());
        self.put_signed(&path, manifest.canonical_bytes(), manifest.sequence())
            .await
    }

    /// `PUT` a signed document (a manifest or a profile) with sequence `sequence` to `path`,
    /// solving a proof-of-work and re-sending when the server demands one (`428`).
    pub(crate) async fn put_signed(
        &self,
        path: &str,
        body: &[u8],
        sequence: u64,
    ) -> Result<PutResult, ApiError> {
        let mut stamp: Option<HeaderValue> = None;
        let mut attempt = 0;
        let resp = loop {
            let mut headers = vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )];
            if let Some(s) = &stamp {
                headers.push((header::HeaderName::from_static(pow::HEADER), s.clone()));
            }
            let resp = self
                .http
                .request(Method::PUT, path, &headers, Some(body.to_vec()))
                .await?;
            if resp.status != StatusCode::PRECONDITION_REQUIRED || attempt >= MAX_POW_ATTEMPTS {
                break resp;
            }
            attempt += 1;
            stamp = Some(self.solve_pow(body).await?);
        };
        #[derive(Deserialize)]
        struct Accepted {
            sequence: u64,
        }
        let sequence =
            serde_json::from_slice::<Accepted>(&resp.body).map_or(sequence, |b| b.sequence);
        match resp.status {
            StatusCode::CREATED => Ok(PutResult::Created { sequence }),
            StatusCode::OK => Ok(PutResult::Updated { sequence }),
            _ => Err(error_from(&resp)),
        }
    }
}

impl SignalingClient {
    /// The server's manifest size cap: `limits.maxManifestBytes` of `/v1/info`, or
    /// [`ManifestLimits::DEFAULT_MAX_BYTES`] if the server does not say; never above
    /// [`ManifestLimits::HARD_MAX_BYTES`].
    pub async fn max_manifest_bytes(&self) -> Result<usize, ApiError> {
        let resp = self
            .http
            .request(Method::GET, "/v1/info", &[], None)
            .await?;
        if resp.status != StatusCode::OK {
            return Err(error_from(&resp));
        }
        let cap = serde_json::from_slice::<serde_json::Value>(&resp.body)
            .ok()
            .and_then(|v| v["limits"]["maxManifestBytes"].as_u64())
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(ManifestLimits::DEFAULT_MAX_BYTES);
        Ok(cap.min(ManifestLimits::HARD_MAX_BYTES))
    }
}

fn manifest_path(key: &PublicKey) -> String {
    format!("/v1/manifests/{}", key.to_hex())
}

/// Map a non-success response to [`ApiError::Server`] (or `Unexpected` for odd statuses).
pub(crate) fn error_from(resp: &HttpResponse) -> ApiError {
    let status = resp.status;
    if !(status.is_client_error() || status.is_server_error()) {
        return ApiError::Unexpected {
            status: status.as_u16(),
        };
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        error: Option<String>,
        message: Option<String>,
        current_sequence: Option<u64>,
    }
    let body: Option<Body> = serde_json::from_slice(&resp.body).ok();
    let (code, message, current_sequence) = match body {
        Some(b) => (b.error, b.message, b.current_sequence),
        None => (None, None, None),
    };
    let retry_after_secs = resp
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    ApiError::Server(ServerError {
        status: status.as_u16(),
        code: code
            .map(|c| one_line(&c))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("http-{}", status.as_u16())),
        message: message
            .map(|m| one_line(&m))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or_default().to_owned()),
        current_sequence,
        retry_after_secs,
    })
}

/// Server text made safe for one terminal line: control characters become spaces, length
/// is capped.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_SERVER_TEXT)
        .collect();
    if s.chars().count() > MAX_SERVER_TEXT {
        out.push('…');
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::http::BaseUrl;
    use crate::client::testutil::{json_response, serve_once};
    use crate::net::Connector;
    use crate::proto::{Collection, UnsignedManifest};
    use ed25519_dalek::SigningKey;

    fn client(url: &str) -> SignalingClient {
        SignalingClient::new(HttpClient::new(
            Connector::direct(),
            BaseUrl::parse(url).unwrap(),
        ))
    }

    fn signed(seed: u8, sequence: u64) -> Manifest {
        UnsignedManifest {
            sequence,
            timestamp: 1_678_886_400_000,
            collections: vec![Collection {
                title: "t".into(),
                items: vec!["magnet:?xt=urn:btih:aa".into()],
            }],
        }
        .sign(&SigningKey::from_bytes(&[seed; 32]))
        .unwrap()
    }

    fn ok_body(m: &Manifest) -> Vec<u8> {
        let body = String::from_utf8(m.canonical_bytes().to_vec()).unwrap();
        json_response("200 OK", &body)
    }

    #[tokio::test]
    async fn get_verifies_and_keeps_served_bytes() {
        let m = signed(1, 3);
        let (url, req) = serve_once(ok_body(&m)).await;
        let got = client(&url)
            .fetch_manifest(m.public_key())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.manifest, m);
        assert_eq!(got.body, m.canonical_bytes());
        let req = String::from_utf8(req.await.unwrap()).unwrap();
        assert!(req.starts_with(&format!("GET /v1/manifests/{} ", m.public_key())));
    }

    #[tokio::test]
    async fn get_404_is_none() {
        let (url, _) = serve_once(json_response(
            "404 Not Found",
            r#"{"error":"not-found","message":"no manifest"}"#,
        ))
        .await;
        let key = *signed(1, 1).public_key();
        assert!(client(&url).get_manifest(&key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn get_rejects_another_keys_manifest() {
        let other = signed(2, 1);
        let (url, _) = serve_once(ok_body(&other)).await;
        let asked = *signed(1, 1).public_key();
        let err = client(&url).get_manifest(&asked).await.unwrap_err();
        assert!(matches!(err, ApiError::WrongKey { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn get_rejects_a_tampered_manifest() {
        let m = signed(1, 1);
        let body = String::from_utf8(m.canonical_bytes().to_vec())
            .unwrap()
            .replace("\"sequence\":1", "\"sequence\":2");
        let (url, _) = serve_once(json_response("200 OK", &body)).await;
        let err = client(&url).get_manifest(m.public_key()).await.unwrap_err();
        match err {
            ApiError::InvalidManifest { source, .. } => {
                assert_eq!(source, ManifestError::BadSignature)
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn put_created_and_updated() {
        let m = signed(1, 4);
        let (url, req) = serve_once(json_response("201 Created", r#"{"sequence":4}"#)).await;
        let r = client(&url).put_manifest(&m).await.unwrap();
        assert_eq!(r, PutResult::Created { sequence: 4 });
        let req = req.await.unwrap();
        assert!(req.ends_with(m.canonical_bytes()));
        let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
        assert!(head.contains("content-type: application/json"));

        let (url, _) = serve_once(json_response("200 OK", r#"{"sequence":4}"#)).await;
        let r = client(&url).put_manifest(&m).await.unwrap();
        assert_eq!(r, PutResult::Updated { sequence: 4 });
        assert_eq!(r.sequence(), 4);
    }

    #[tokio::test]
    async fn put_conflict_carries_code_message_and_current_sequence() {
        let (url, _) = serve_once(json_response(
            "409 Conflict",
            r#"{"error":"conflict","message":"sequence 4 is not greater than 9\n\u001b[31m","currentSequence":9}"#,
        ))
        .await;
        let err = client(&url).put_manifest(&signed(1, 4)).await.unwrap_err();
        assert_eq!(err.conflict(), Some(Some(9)));
        let s = err.server().unwrap();
        assert_eq!((s.status, s.code.as_str()), (409, "conflict"));
        assert!(!s.message.chars().any(char::is_control), "{:?}", s.message);
        assert!(err.to_string().contains("409 conflict"));
    }

    #[tokio::test]
    async fn non_json_error_bodies_still_map() {
        let (url, _) = serve_once(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nslow"
                .to_vec(),
        )
        .await;
        let err = client(&url).put_manifest(&signed(1, 1)).await.unwrap_err();
        let s = err.server().unwrap();
        assert_eq!(s.code, "http-429");
        assert_eq!(s.retry_after_secs, Some(7));
        assert_eq!(err.conflict(), None);
    }

    #[tokio::test]
    async fn put_solves_a_demanded_proof_of_work() {
        use crate::client::testutil::serve_many;
        let m = signed(1, 2);
        let nonce = "0f".repeat(pow::NONCE_BYTES);
        let (url, requests) = serve_many(vec![
            json_response(
                "428 Precondition Required",
                r#"{"error":"pow-required","message":"x","difficulty":6}"#,
            ),
            json_response(
                "200 OK",
                &format!(r#"{{"pow":{{"difficulty":6,"nonce":"{nonce}"}}}}"#),
            ),
            json_response("201 Created", r#"{"sequence":2}"#),
        ])
        .await;
        let notes = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&notes);
        let c = client(&url)
            .with_progress(Arc::new(move |s: &str| sink.lock().unwrap().push(s.into())));
        assert_eq!(
            c.put_manifest(&m).await.unwrap(),
            PutResult::Created { sequence: 2 }
        );
        let sent = String::from_utf8_lossy(&requests.await.unwrap()).to_string();
        assert!(sent.contains("GET /v1/info"), "{sent}");
        let stamp = sent
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-megatorrent-pow: ")
                    .map(str::to_owned)
            })
            .unwrap();
        let stamp = pow::parse_stamp(&stamp).unwrap();
        let digest = pow::body_digest(m.canonical_bytes());
        assert!(pow::meets(
            &hex::decode(&nonce).unwrap(),
            &digest,
            &stamp,
            6
        ));

        let (url, _) = serve_many(vec![
            json_response("428 Precondition Required", r#"{"error":"pow-required"}"#),
            json_response(
                "200 OK",
                &format!(r#"{{"pow":{{"difficulty":40,"nonce":"{nonce}"}}}}"#),
            ),
        ])
        .await;
        let err = client(&url).put_manifest(&m).await.unwrap_err();
        assert!(
            matches!(err, ApiError::PowTooHard { difficulty: 40 }),
            "{err:?}"
        );
    }

    #[test]
    fn one_line_caps_and_cleans() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        let long = "x".repeat(1000);
        assert_eq!(one_line(&long).chars().count(), MAX_SERVER_TEXT + 1);
    }
}
