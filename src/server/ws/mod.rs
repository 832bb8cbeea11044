//! The WebSocket endpoint: one socket for the WebTorrent tracker and manifest pub/sub.
//!
//! Upgrades are taken on `GET /` and `GET /announce`. Each socket has a reader (this task:
//! parses text frames and dispatches them by `action`, see [`session`]) and a writer task
//! that drains the socket's bounded outbound queue and sends pings. Closing goes through
//! one [`Closer`]: whoever decides (reader, hub, shutdown) sets the reason, the writer
//! sends the close frame with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{
    rejection::WebSocketUpgradeRejection, CloseFrame, Message, WebSocket, WebSocketUpgrade,
};
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::pubsub::{CloseReason, Closer, Frame, Outbox};
use super::rate_limit::ClientKey;
use super::AppState;

pub mod session;
pub mod tracker;

use session::Session;
pub use tracker::{RelayCounts, Swarms};

/// Read buffer per socket (see [`accept`]).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How long the writer may take to flush queued frames and the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The most queued frames written behind one another before a flush.
const WRITE_BATCH: usize = 64;

/// State shared by all sockets.
#[derive(Default)]
pub struct WsShared {
    swarms: Swarms,
    next_id: AtomicU64,
    /// Cancelled when the server shuts down: every socket closes with a reason.
    closing: CancellationToken,
    /// Notified whenever a socket closes.
    closed: Notify,
}

impl WsShared {
    /// The WebTorrent swarms.
    #[must_use]
    pub fn swarms(&self) -> &Swarms {
        &self.swarms
    }
}

/// `GET /`: a WebSocket upgrade; anything else is told to upgrade.
pub async fn root(
    State(state): State<AppState>,
    client: Option<Extension<ClientKey>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => accept(state, ws, client),
        Err(_) => upgrade_required(),
    }
}

/// `GET /announce`: a WebSocket upgrade goes to the WebTorrent tracker; any other request is
/// an HTTP BitTorrent announce.
pub async fn announce(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<std::net::SocketAddr>,
    client: Option<Extension<ClientKey>>,
    uri: axum::http::Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => accept(state, ws, client),
        Err(_) => super::tracker::http::announce(State(state), ConnectInfo(remote), uri)
            .await
            .into_response(),
    }
}

fn upgrade_required() -> Response {
    (
        StatusCode::UPGRADE_REQUIRED,
        [(axum::http::header::UPGRADE, "websocket")],
        Json(json!({
            "error": "upgrade-required",
            "message": "this endpoint speaks WebSocket (send Upgrade: websocket)",
        })),
    )
        .into_response()
}

fn accept(state: AppState, ws: WebSocketUpgrade, client: Option<Extension<ClientKey>>) -> Response {
    let max = state.config().websocket.max_message_bytes;
    // The rate-limit middleware resolved the client (address, /64 or Tor circuit); every
    // message on the socket is charged to it. Without the middleware (never in `app()`),
    // all such sockets share one bucket.
    let client = client.map_or(ClientKey::Unknown, |Extension(c)| c);
    // tungstenite allocates its read buffer up front (128 KiB by default), which would
    // dominate the memory of an idle subscriber; 4 KiB chunks still read the largest
    // message (the buffer grows while a frame arrives and `max_message_bytes` caps it).
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| run_socket(state, socket, client))
}

/// Closes the books on a socket when its task ends, however it ends.
struct SocketGuard(AppState);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.pubsub().count_socket(false);
        self.0.ws().closed.notify_waiters();
    }
}

async fn run_socket(state: AppState, socket: WebSocket, client: ClientKey) {
    let cfg = state.config().websocket.clone();
    let open = state.pubsub().count_socket(true);
    let _guard = SocketGuard(state.clone());
    let shared = state.ws();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(cfg.outbound_queue);
    let closer = Arc::new(Closer::default());
    let stats = state.pubsub().hub().stats().clone();
    let outbox = Outbox::new(id, tx, closer.clone(), stats.clone());
    if shared.closing.is_cancelled() {
        closer.close(CloseReason::ShuttingDown);
    } else if open > cfg.max_connections {
        stats.rejected_sockets.fetch_add(1, Ordering::Relaxed);
        closer.close(CloseReason::TooManySockets);
    }
    let (sink, stream) = socket.split();
    let ping = Duration::from_secs(cfg.ping_interval_secs);
    let writer = tokio::spawn(write_loop(sink, rx, closer.clone(), ping));
    if closer.reason().is_none() {
        let mut session = Session::new(state.clone(), outbox, client);
        let idle = Duration::from_secs(cfg.idle_timeout_secs);
        read_loop(stream, &mut session, &closer, &shared.closing, idle).await;
        session.finish();
    } else {
        drop(outbox);
    }
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "WebSocket writer task failed");
    }
    stats.record_close(closer.reason().unwrap_or(CloseReason::ClientGone));
}

async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    session: &mut Session,
    closer: &Closer,
    closing: &CancellationToken,
    idle: Duration,
) {
    loop {
        let next = tokio::select! {
            () = closer.closed() => return,
            () = closing.cancelled() => {
                closer.close(CloseReason::ShuttingDown);
                return;
            }
            next = tokio::time::timeout(idle, stream.next()) => next,
        };
        let msg = match next {
            Err(_elapsed) => {
                closer.close(CloseReason::IdleTimeout);
                return;
            }
            Ok(None) => {
                closer.close(CloseReason::ClientGone);
                return;
            }
            Ok(Some(Err(e))) => {
                closer.close(classify(e));
                return;
            }
            Ok(Some(Ok(msg))) => msg,
        };
        match msg {
            Message::Text(text) => session.handle_text(text.as_str()).await,
            Message::Binary(_) => session.fail(None, "invalid: binary frames are not supported"),
            // Pings are answered by the WebSocket layer; any frame resets the idle timer.
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => {
                closer.close(CloseReason::ClientGone);
                return;
            }
        }
    }
}

/// Map a read error to the close reason.
fn classify(e: axum::Error) -> CloseReason {
    use tokio_tungstenite::tungstenite::Error as WsErr;
    match e.into_inner().downcast::<WsErr>().map(|b| *b) {
        Ok(WsErr::Capacity(_)) => CloseReason::MessageTooLarge,
        Ok(WsErr::Protocol(_) | WsErr::Utf8(_)) => CloseReason::ProtocolError,
        Ok(_) | Err(_) => CloseReason::ClientGone,
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Frame>,
    closer: Arc<Closer>,
    ping: Duration,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + ping, ping);
    loop {
        let msg = tokio::select! {
            biased;
            () = closer.closed() => break,
            frame = rx.recv() => match frame {
                Some(f) => Message::Text(f),
                None => break,
            },
            _ = ticker.tick() => Message::Ping(Bytes::new()),
        };
        let sent = tokio::select! {
            r = send_batch(&mut sink, &mut rx, msg) => r.is_ok(),
            () = closer.closed() => false,
        };
        if !sent {
            closer.close(CloseReason::ClientGone);
            break;
        }
    }
    let reason = closer.reason().unwrap_or(CloseReason::ClientGone);
    let finish = async {
        if reason != CloseReason::ClientGone {
            if reason.drain_first() {
                while let Ok(f) = rx.try_recv() {
                    sink.feed(Message::Text(f)).await?;
                }
            }
            let frame = CloseFrame {
                code: reason.code(),
                reason: reason.text().into(),
            };
            sink.send(Message::Close(Some(frame))).await?;
        }
        sink.close().await
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
}

/// Write `first` and then the frames already queued behind it (at most
/// [`WRITE_BATCH`]), and flush once: under load a socket's backlog leaves in a few large
/// writes rather than one write system call per frame. An idle socket still gets each frame
/// at once (nothing is waited for).
async fn send_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    rx: &mut mpsc::Receiver<Frame>,
    first: Message,
) -> Result<(), axum::Error> {
    sink.feed(first).await?;
    for _ in 0..WRITE_BATCH {
        match rx.try_recv() {
            Ok(f) => sink.feed(Message::Text(f)).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

/// The WebSocket bounds, as `/v1/info` shows them.
#[must_use]
pub fn info(cfg: &super::config::WebsocketConfig) -> serde_json::Value {
    json!({
        "paths": ["/", "/announce"],
        "maxConnections": cfg.max_connections,
        "maxMessageBytes": cfg.max_message_bytes,
        "maxSubscriptions": cfg.max_subscriptions,
        "maxTorrents": cfg.max_torrents,
        "maxOffers": crate::proto::webtorrent::MAX_OFFERS,
        "outboundQueue": cfg.outbound_queue,
        "pingIntervalSecs": cfg.ping_interval_secs,
        "idleTimeoutSecs": cfg.idle_timeout_secs,
        "announceIntervalSecs": cfg.announce_interval_secs,
        "messageQuota": cfg.message_quota.to_string(),
        "subscribeQuota": cfg.subscribe_quota.to_string(),
    })
}

/// Close every socket with a reason and wait (up to `grace`) until they are gone.
pub async fn shut_down(state: &AppState, grace: Duration) {
    let shared = state.ws();
    shared.closing.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let closed = shared.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if state.pubsub().stats().sockets == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, closed).await.is_err() {
            tracing::warn!("some WebSockets did not close within the grace period");
            return;
        }
    }
}
