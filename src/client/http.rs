//! A minimal HTTP/1.1 client over the [`Connector`]: one connection per request.
//!
//! Only `http://` base URLs are supported for now; TLS arrives with the proxied modes (an
//! `.onion` address needs no TLS).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use crate::net::{Connector, NetError, TargetAddr};

/// The `User-Agent` sent with every request.
pub const USER_AGENT: &str = concat!("megatorrent/", env!("CARGO_PKG_VERSION"));

/// Why a base URL was rejected.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("invalid server URL {url:?}")]
    Syntax {
        /// The URL as given.
        url: String,
        /// The parser's error.
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// `https://` was given.
    #[error("https:// is not supported yet; use http:// or an .onion address")]
    HttpsUnsupported,
    /// A scheme other than `http` (or none).
    #[error("server URL {url:?} must start with http://")]
    Scheme {
        /// The URL as given.
        url: String,
    },
    /// Something the base URL must not contain (user info, query, …) or is missing (host).
    #[error("server URL {url:?}: {reason}")]
    Invalid {
        /// The URL as given.
        url: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The host or port is not a valid dial target.
    #[error("server URL {url:?} has an invalid host")]
    Target {
        /// The URL as given.
        url: String,
        /// Why the target was rejected.
        #[source]
        source: NetError,
    },
}

/// A parsed `http://host[:port][/prefix]` base URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    target: TargetAddr,
    host_header: String,
    prefix: String,
}

impl BaseUrl {
    /// Parse a base URL. A trailing `/` on the prefix is ignored.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let owned = || url.to_owned();
        let uri: Uri = url.parse().map_err(|source| UrlError::Syntax {
            url: owned(),
            source,
        })?;
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => {}
            Some(s) if s.eq_ignore_ascii_case("https") => return Err(UrlError::HttpsUnsupported),
            _ => return Err(UrlError::Scheme { url: owned() }),
        }
        let invalid = |reason| UrlError::Invalid {
            url: owned(),
            reason,
        };
        let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user info (user@host) is not supported"));
        }
        if uri.query().is_some() {
            return Err(invalid("a query string is not allowed"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let target =
            TargetAddr::new(authority.host(), port).map_err(|source| UrlError::Target {
                url: owned(),
                source,
            })?;
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            target,
            host_header: authority.as_str().to_owned(),
            prefix,
        })
    }

    /// Where to connect.
    #[must_use]
    pub fn target(&self) -> &TargetAddr {
        &self.target
    }

    /// The path prefix (empty, or starting with `/` and without a trailing `/`).
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl FromStr for BaseUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        Self::parse(s)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host_header, self.prefix)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({self})")
    }
}

/// Why an HTTP request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection could not be opened. In the direct mode the message names the server
    /// (nothing to hide there); through a proxy or Tor it does not.
    #[error("cannot reach the server{}", server.as_ref().map(|s| format!(" {s}")).unwrap_or_default())]
    Connect {
        /// The base URL, in the direct mode only.
        server: Option<String>,
        /// Why.
        #[source]
        source: NetError,
    },
    /// The request could not be built (a bad path or header).
    #[error("could not build the request")]
    Request(#[source] hyper::http::Error),
    /// HTTP protocol or I/O failure after connecting.
    #[error("HTTP exchange with the server failed")]
    Protocol(#[source] hyper::Error),
    /// The response body exceeded the cap.
    #[error("response body exceeds {max} bytes")]
    BodyTooLarge {
        /// The cap.
        max: usize,
    },
    /// The whole request took longer than the request timeout.
    #[error("request timed out after {}s", after.as_secs_f32())]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body (at most the client's cap).
    pub body: Vec<u8>,
}

/// An HTTP/1.1 client bound to one base URL.
#[derive(Debug, Clone)]
pub struct HttpClient {
    connector: Connector,
    base: BaseUrl,
    request_timeout: Duration,
    max_body: usize,
}

impl HttpClient {
    /// Default limit for a whole request (connect, send, receive).
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long a finished exchange may take to close its connection cleanly.
    const CLOSE_GRACE: Duration = Duration::from_secs(2);
    /// Default response body cap: 4 MiB.
    pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

    /// A client for `base`, dialling through `connector`, with the default limits.
    #[must_use]
    pub fn new(connector: Connector, base: BaseUrl) -> Self {
        Self {
            connector,
            base,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            max_body: Self::DEFAULT_MAX_BODY,
        }
    }

    /// The same client with another whole-request timeout.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The same client with another response body cap.
    #[must_use]
    pub fn with_max_body(mut self, max: usize) -> Self {
        self.max_body = max;
        self
    }

    /// The base URL.
    #[must_use]
    pub fn base(&self) -> &BaseUrl {
        &self.base
    }

    /// The connector every request dials through.
    #[must_use]
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The whole-request timeout.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Send one request to `path` (relative to the base prefix; starts with `/`).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, HeaderValue)],
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, HttpError> {
        let exchange = self.exchange(method, path, headers, body);
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(r) => r,
            Err(_elapsed) => Err(HttpError::Timeout {
                after: self.request_timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, HeaderValue)],
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, HttpError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base.prefix, path))
            .header(header::HOST, self.base.host_header.as_str())
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONNECTION, "close");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(HttpError::Request)?;

        let stream = self
            .connector
            .connect(&self.base.target)
            .await
            .map_err(|source| HttpError::Connect {
                server: (!self.connector.is_proxied()).then(|| self.base.to_string()),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(HttpError::Protocol)?;
        // The connection future drives the socket; it ends with the exchange (or on drop).
        let mut driver = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let resp = sender
            .send_request(req)
            .await
            .map_err(HttpError::Protocol)?;
        let (parts, mut incoming) = resp.into_parts();

        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(HttpError::BodyTooLarge { max: self.max_body });
        }
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(HttpError::Protocol)?;
            if let Some(data) = frame.data_ref() {
                if body.len() + data.len() > self.max_body {
                    return Err(HttpError::BodyTooLarge { max: self.max_body });
                }
                body.extend_from_slice(data);
            }
        }
        // Let the connection end cleanly (hyper shuts the stream down, which a Tor stream
        // turns into END/DONE) rather than aborting it; bounded in case the server lingers.
        drop(sender);
        let _ = tokio::time::timeout(Self::CLOSE_GRACE, &mut driver.0).await;
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Aborts the connection task when the request finishes or is cancelled (e.g. by timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::testutil::{closed_port, serve_once};
    use crate::net::NetErrorKind;

    #[test]
    fn parses_base_urls() {
        let b = BaseUrl::parse("http://127.0.0.1:6969").unwrap();
        assert_eq!(b.target().to_string(), "127.0.0.1:6969");
        assert_eq!(b.prefix(), "");
        assert_eq!(b.to_string(), "http://127.0.0.1:6969");

        let b = BaseUrl::parse("http://example.org/api/").unwrap();
        assert_eq!(b.target().to_string(), "example.org:80");
        assert_eq!(b.prefix(), "/api");

        let b = BaseUrl::parse("HTTP://[::1]:8080/x").unwrap();
        assert_eq!(b.target().host(), "::1");
        assert_eq!(b.target().port(), 8080);
        assert_eq!(b.host_header, "[::1]:8080");
    }

    #[test]
    fn rejects_bad_base_urls() {
        assert!(matches!(
            BaseUrl::parse("https://example.org"),
            Err(UrlError::HttpsUnsupported)
        ));
        assert!(UrlError::HttpsUnsupported
            .to_string()
            .contains("https:// is not supported yet"));
        assert!(matches!(
            BaseUrl::parse("ftp://example.org"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("example.org:80"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("http://user:pw@example.org"),
            Err(UrlError::Invalid { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("http://example.org/?a=b"),
            Err(UrlError::Invalid { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("http://exa mple.org"),
            Err(UrlError::Syntax { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("http://example.org:0"),
            Err(UrlError::Target { .. })
        ));
    }

    #[tokio::test]
    async fn sends_host_and_user_agent_and_reads_body() {
        let (url, seen) =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec()).await;
        let client = HttpClient::new(Connector::direct(), BaseUrl::parse(&url).unwrap());
        let resp = client
            .request(Method::GET, "/v1/info", &[], None)
            .await
            .unwrap();
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.body, b"hello");
        let req = String::from_utf8(seen.await.unwrap()).unwrap();
        assert!(req.starts_with("GET /v1/info HTTP/1.1\r\n"), "{req}");
        let lower = req.to_ascii_lowercase();
        assert!(lower.contains("\r\nhost: 127.0.0.1:"), "{req}");
        assert!(
            lower.contains(&format!("\r\nuser-agent: {USER_AGENT}")),
            "{req}"
        );
    }

    #[tokio::test]
    async fn caps_the_body() {
        let big = "x".repeat(100);
        let (url, _) =
            serve_once(format!("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{big}").into_bytes())
                .await;
        let client =
            HttpClient::new(Connector::direct(), BaseUrl::parse(&url).unwrap()).with_max_body(10);
        let err = client
            .request(Method::GET, "/", &[], None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpError::BodyTooLarge { max: 10 }),
            "{err:?}"
        );

        // Without a Content-Length (close-delimited body), the cap still applies.
        let (url, _) =
            serve_once(format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{big}").into_bytes())
                .await;
        let client =
            HttpClient::new(Connector::direct(), BaseUrl::parse(&url).unwrap()).with_max_body(10);
        let err = client
            .request(Method::GET, "/", &[], None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpError::BodyTooLarge { max: 10 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn server_down_is_a_connect_error() {
        let url = format!("http://127.0.0.1:{}", closed_port());
        let client = HttpClient::new(Connector::direct(), BaseUrl::parse(&url).unwrap());
        let err = client
            .request(Method::GET, "/", &[], None)
            .await
            .unwrap_err();
        match err {
            HttpError::Connect { source, server } => {
                assert_eq!(source.kind(), NetErrorKind::ConnectFailed);
                assert_eq!(server.as_deref(), Some(url.as_str()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn proxied_errors_do_not_name_the_server() {
        let proxy =
            crate::net::ProxyUrl::parse(&format!("socks5h://127.0.0.1:{}", closed_port())).unwrap();
        let base = BaseUrl::parse("http://secret-name.example:8080").unwrap();
        let err = HttpClient::new(Connector::socks5(proxy), base)
            .request(Method::GET, "/", &[], None)
            .await
            .unwrap_err();
        let mut chain = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            chain.push_str(&format!(": {c}"));
            cause = c.source();
        }
        assert!(
            chain.starts_with("cannot reach the server: proxy unreachable"),
            "{chain}"
        );
        assert!(!chain.contains("secret-name"), "{chain}");
        assert!(!format!("{err:?}").contains("secret-name"), "{err:?}");
    }

    #[tokio::test]
    async fn whole_request_times_out() {
        // Accepts, reads, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let _hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(s);
        });
        let client = HttpClient::new(Connector::direct(), BaseUrl::parse(&url).unwrap())
            .with_request_timeout(Duration::from_millis(200));
        let err = client
            .request(Method::GET, "/", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err:?}");
    }
}
