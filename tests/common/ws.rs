//! A WebSocket test client (tokio-tungstenite over a plain TCP stream) and manifest helpers.

use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use megatorrent::proto::{Collection, Manifest, UnsignedManifest};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long any single wait for a frame may take.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct WsClient {
    pub ws: WebSocketStream<TcpStream>,
}

/// Connect to `ws://addr{path}`.
pub async fn connect(addr: SocketAddr, path: &str) -> WsClient {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connect_over(tcp, addr, path).await
}

/// Complete the WebSocket handshake over an already connected stream.
pub async fn connect_over(tcp: TcpStream, addr: SocketAddr, path: &str) -> WsClient {
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("handshake timed out")
        .expect("handshake failed");
    WsClient { ws }
}

/// What the server sent next: a JSON text frame, or the close.
#[derive(Debug)]
pub enum Event {
    Json(Value),
    Closed(Option<(u16, String)>),
}

impl WsClient {
    pub async fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s)).await.unwrap();
    }

    /// The next text frame or the close (pings are skipped).
    pub async fn next_event(&mut self) -> Event {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame from the server in time");
            match next {
                Some(Ok(Message::Text(t))) => {
                    return Event::Json(serde_json::from_str(t.as_str()).unwrap())
                }
                Some(Ok(Message::Close(f))) => {
                    return Event::Closed(
                        f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                    )
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }

    /// The next JSON frame; panics on a close.
    pub async fn recv(&mut self) -> Value {
        match self.next_event().await {
            Event::Json(v) => v,
            Event::Closed(c) => panic!("socket closed: {c:?}"),
        }
    }

    /// Skip frames until the close; returns its code and reason.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        loop {
            if let Event::Closed(c) = self.next_event().await {
                return c;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "done".into(),
            }))
            .await;
    }
}

/// A signed manifest of `key` at `sequence` with one item (and optional padding).
pub fn manifest(key: &SigningKey, sequence: u64, padding: usize) -> Manifest {
    let mut items = vec![format!("magnet:?xt=urn:btih:{:040x}", sequence)];
    if padding > 0 {
        items.push("x".repeat(padding));
    }
    UnsignedManifest {
        sequence,
        timestamp: u64::try_from(megatorrent::now_ms()).unwrap(),
        collections: vec![Collection {
            title: "t".into(),
            items,
        }],
    }
    .sign(key)
    .unwrap()
}

/// `{"action":"publish","manifest":…}` for `m`.
pub fn publish_frame(m: &Manifest) -> String {
    format!(
        "{{\"action\":\"publish\",\"manifest\":{}}}",
        std::str::from_utf8(m.canonical_bytes()).unwrap()
    )
}

pub fn signing_key(n: u64) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// Publish `m` over `c` and return the reply.
pub async fn publish(c: &mut WsClient, m: &Manifest) -> Value {
    c.send_text(&publish_frame(m)).await;
    c.recv().await
}
