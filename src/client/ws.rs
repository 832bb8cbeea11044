//! A WebSocket connection to the signaling server, dialled through the [`Connector`]
//! (tokio-tungstenite's `client_async` over the connector's stream, so proxied modes carry
//! it too). Frames from the server are parsed strictly; pushed manifests are verified
//! here, never trusted.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::http::BaseUrl;
use crate::net::{BoxStream, Connector, NetError};
use crate::proto::json::parse_strict;
use crate::proto::{Manifest, ManifestError, ManifestLimits};

/// Largest frame accepted from the server: the hard manifest cap plus room for the
/// envelope.
pub const MAX_FRAME_BYTES: usize = ManifestLimits::HARD_MAX_BYTES + 4096;

/// Why a WebSocket exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The connection could not be opened.
    #[error("cannot reach the server")]
    Connect(#[source] NetError),
    /// The WebSocket handshake or a frame failed.
    #[error("WebSocket failure")]
    Protocol(#[source] tungstenite::Error),
    /// The server closed the socket.
    #[error("the server closed the connection{}", reason_suffix(.code, .reason))]
    Closed {
        /// The close code, if one was sent.
        code: Option<u16>,
        /// The close reason text.
        reason: String,
    },
    /// The server sent something that is not a strict JSON object.
    #[error("the server sent an invalid frame")]
    BadFrame,
    /// The server pushed a manifest that does not verify.
    #[error("the server pushed an invalid manifest")]
    BadManifest(#[source] ManifestError),
    /// Nothing arrived in time.
    #[error("no answer from the server within {}s", .0.as_secs())]
    Timeout(Duration),
}

fn reason_suffix(code: &Option<u16>, reason: &str) -> String {
    match (code, reason.is_empty()) {
        (Some(c), false) => format!(" ({c}: {})", super::display::printable(reason)),
        (Some(c), true) => format!(" ({c})"),
        (None, _) => String::new(),
    }
}

/// A frame from the server, classified.
#[derive(Debug)]
pub enum ServerFrame {
    /// `{"action":"publish","manifest":…}`: a verified manifest (which key it is for is
    /// for the caller to check).
    Manifest(Box<Manifest>),
    /// `{"action":…,"status":"ok",…}`: an acknowledgement (the whole frame).
    Ok {
        /// The action acknowledged.
        action: String,
        /// The frame.
        frame: Value,
    },
    /// `{"failure reason":…}`.
    Failure {
        /// The action refused, if named.
        action: Option<String>,
        /// The reason, machine-readable prefix first.
        reason: String,
        /// `currentSequence`, on a publish conflict.
        current_sequence: Option<u64>,
    },
    /// Anything else (tracker traffic, future extensions).
    Other(Value),
}

/// An open WebSocket to the server.
pub struct WsConn {
    ws: WebSocketStream<BoxStream>,
}

/// The `ws://` URL of the server's WebSocket endpoint for `base`.
#[must_use]
pub fn ws_url(base: &BaseUrl) -> String {
    let http = base.to_string();
    let rest = http.strip_prefix("http://").unwrap_or(&http);
    format!("ws://{rest}/")
}

impl WsConn {
    /// Dial `base` through `connector` and complete the handshake within `timeout`.
    pub async fn connect(
        connector: &Connector,
        base: &BaseUrl,
        timeout: Duration,
    ) -> Result<Self, WsError> {
        let attempt = async {
            let stream = connector
                .connect(base.target())
                .await
                .map_err(WsError::Connect)?;
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_FRAME_BYTES))
                .max_frame_size(Some(MAX_FRAME_BYTES));
            let (ws, _) =
                tokio_tungstenite::client_async_with_config(ws_url(base), stream, Some(config))
                    .await
                    .map_err(WsError::Protocol)?;
            Ok(Self { ws })
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| WsError::Timeout(timeout))?
    }

    /// Send one JSON message.
    pub async fn send(&mut self, v: &Value) -> Result<(), WsError> {
        self.send_text(v.to_string()).await
    }

    /// Send one text frame.
    pub async fn send_text(&mut self, text: String) -> Result<(), WsError> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(WsError::Protocol)
    }

    /// The next frame from the server (pings are answered and skipped). `None` as timeout
    /// waits forever.
    pub async fn recv(&mut self, timeout: Option<Duration>) -> Result<ServerFrame, WsError> {
        loop {
            let next = match timeout {
                Some(t) => tokio::time::timeout(t, self.ws.next())
                    .await
                    .map_err(|_| WsError::Timeout(t))?,
                None => self.ws.next().await,
            };
            match next {
                Some(Ok(Message::Text(t))) => return classify(t.as_str()),
                Some(Ok(Message::Close(f))) => {
                    return Err(WsError::Closed {
                        code: f.as_ref().map(|f| u16::from(f.code)),
                        reason: f.map(|f| f.reason.as_str().to_owned()).unwrap_or_default(),
                    })
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(WsError::Protocol(e)),
                None => {
                    return Err(WsError::Closed {
                        code: None,
                        reason: String::new(),
                    })
                }
            }
        }
    }

    /// Close politely (errors ignored: the socket is going away either way).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// Parse a server frame strictly and verify a pushed manifest.
pub fn classify(text: &str) -> Result<ServerFrame, WsError> {
    let Value::Object(mut m) = parse_strict(text.as_bytes()).map_err(|_| WsError::BadFrame)? else {
        return Err(WsError::BadFrame);
    };
    let action = m.get("action").and_then(Value::as_str).map(str::to_owned);
    if let Some(reason) = m.get("failure reason") {
        let reason = reason.as_str().ok_or(WsError::BadFrame)?.to_owned();
        return Ok(ServerFrame::Failure {
            action,
            reason,
            current_sequence: m.get("currentSequence").and_then(Value::as_u64),
        });
    }
    if m.get("status").and_then(Value::as_str) == Some("ok") {
        return Ok(ServerFrame::Ok {
            action: action.unwrap_or_default(),
            frame: Value::Object(m),
        });
    }
    if action.as_deref() == Some("publish") {
        if let Some(value) = m.remove("manifest") {
            let limits = ManifestLimits {
                max_bytes: ManifestLimits::HARD_MAX_BYTES,
            };
            let manifest = Manifest::verify_value(value, &limits).map_err(WsError::BadManifest)?;
            return Ok(ServerFrame::Manifest(Box::new(manifest)));
        }
    }
    Ok(ServerFrame::Other(Value::Object(m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::UnsignedManifest;

    #[test]
    fn ws_url_follows_the_base_url() {
        let b = BaseUrl::parse("http://127.0.0.1:6969").unwrap();
        assert_eq!(ws_url(&b), "ws://127.0.0.1:6969/");
        let b = BaseUrl::parse("http://h.example/mt/").unwrap();
        assert_eq!(ws_url(&b), "ws://h.example/mt/");
    }

    #[test]
    fn frames_are_classified_and_manifests_verified() {
        let m = UnsignedManifest {
            sequence: 3,
            timestamp: 1,
            collections: vec![],
        }
        .sign(&ed25519_dalek::SigningKey::from_bytes(&[4; 32]))
        .unwrap();
        let text = std::str::from_utf8(m.canonical_bytes()).unwrap();
        let push = format!("{{\"action\":\"publish\",\"manifest\":{text}}}");
        assert!(matches!(classify(&push), Ok(ServerFrame::Manifest(x)) if x.sequence() == 3));
        let forged = push.replace("\"sequence\":3", "\"sequence\":4");
        assert!(matches!(classify(&forged), Err(WsError::BadManifest(_))));
        let dup = push.replace("{\"action\"", "{\"action\":\"x\",\"action\"");
        assert!(matches!(classify(&dup), Err(WsError::BadFrame)));
        let fail = r#"{"action":"publish","failure reason":"conflict: x","currentSequence":9}"#;
        assert!(matches!(
            classify(fail),
            Ok(ServerFrame::Failure {
                current_sequence: Some(9),
                ..
            })
        ));
        assert!(matches!(
            classify(r#"{"action":"subscribe","status":"ok"}"#),
            Ok(ServerFrame::Ok { action, .. }) if action == "subscribe"
        ));
        assert!(matches!(classify("[]"), Err(WsError::BadFrame)));
    }
}
