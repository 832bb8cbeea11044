//! A socket's bounded outbound queue and the one-shot reason it is being closed for.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::sync::atomic::Ordering;

use super::hub::{Frame, HubStats};

/// Why the server closes a WebSocket. The first reason set wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed, or the connection dropped.
    ClientGone,
    /// The outbound queue was full: the client does not read fast enough.
    SlowReader,
    /// Nothing (not even a pong) arrived within the idle timeout.
    IdleTimeout,
    /// A message over `websocket.max_message_bytes`.
    MessageTooLarge,
    /// A malformed WebSocket frame.
    ProtocolError,
    /// The server is shutting down.
    ShuttingDown,
    /// `websocket.max_connections` sockets are already open.
    TooManySockets,
}

impl CloseReason {
    /// Every reason, for metrics initialised to zero.
    pub const ALL: [CloseReason; 7] = [
        Self::ClientGone,
        Self::SlowReader,
        Self::IdleTimeout,
        Self::MessageTooLarge,
        Self::ProtocolError,
        Self::ShuttingDown,
        Self::TooManySockets,
    ];

    /// The metrics label (`megatorrent_ws_disconnects_total{reason}`).
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientGone => "client",
            Self::SlowReader => "slow_client",
            Self::IdleTimeout => "idle",
            Self::MessageTooLarge => "too_large",
            Self::ProtocolError => "protocol_error",
            Self::ShuttingDown => "shutdown",
            Self::TooManySockets => "too_many_sockets",
        }
    }

    /// Position in [`Self::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Self::ClientGone => 0,
            Self::SlowReader => 1,
            Self::IdleTimeout => 2,
            Self::MessageTooLarge => 3,
            Self::ProtocolError => 4,
            Self::ShuttingDown => 5,
            Self::TooManySockets => 6,
        }
    }

    /// The close code (RFC 6455 §7.4.1).
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Self::ClientGone => 1000,
            Self::IdleTimeout | Self::ShuttingDown => 1001,
            Self::ProtocolError => 1002,
            Self::SlowReader => 1008,
            Self::MessageTooLarge => 1009,
            Self::TooManySockets => 1013,
        }
    }

    /// The close reason text (at most 123 bytes), machine-readable prefix first.
    #[must_use]
    pub fn text(self) -> &'static str {
        match self {
            Self::ClientGone => "bye",
            Self::SlowReader => "too-large: outbound queue full (slow reader)",
            Self::IdleTimeout => "idle: nothing received within the idle timeout",
            Self::MessageTooLarge => "too-large: message over websocket.max_message_bytes",
            Self::ProtocolError => "invalid: WebSocket protocol error",
            Self::ShuttingDown => "unavailable: server shutting down",
            Self::TooManySockets => "unavailable: too many open sockets; try again later",
        }
    }

    /// Whether frames already queued should still be sent before the close frame (false
    /// when the reader is the problem, or gone).
    #[must_use]
    pub fn drain_first(self) -> bool {
        match self {
            Self::ClientGone | Self::SlowReader => false,
            Self::IdleTimeout
            | Self::MessageTooLarge
            | Self::ProtocolError
            | Self::ShuttingDown
            | Self::TooManySockets => true,
        }
    }
}

/// The close signal shared by a socket's reader, writer and the hub.
#[derive(Debug, Default)]
pub struct Closer {
    reason: OnceLock<CloseReason>,
    token: CancellationToken,
}

impl Closer {
    /// Ask the socket to close for `reason`. Returns true if this was the first reason.
    pub fn close(&self, reason: CloseReason) -> bool {
        let first = self.reason.set(reason).is_ok();
        self.token.cancel();
        first
    }

    /// The reason, once closing.
    #[must_use]
    pub fn reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// Resolves once closing.
    pub async fn closed(&self) {
        self.token.cancelled().await;
    }
}

/// The sending side of one socket's bounded queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    id: u64,
    tx: mpsc::Sender<Frame>,
    closer: Arc<Closer>,
    stats: Arc<HubStats>,
}

impl Outbox {
    /// Wrap a socket's queue sender; slow-reader closes are counted in `stats`.
    #[must_use]
    pub fn new(
        id: u64,
        tx: mpsc::Sender<Frame>,
        closer: Arc<Closer>,
        stats: Arc<HubStats>,
    ) -> Self {
        Self {
            id,
            tx,
            closer,
            stats,
        }
    }

    /// The socket's id (unique within the process).
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queue a frame without waiting.
    pub fn try_push(&self, frame: Frame) -> Result<(), mpsc::error::TrySendError<Frame>> {
        if self.closer.reason().is_some() {
            return Err(mpsc::error::TrySendError::Closed(frame));
        }
        self.tx.try_send(frame)
    }

    /// Queue a frame; a full queue closes the socket as a slow reader (counted in
    /// [`HubStats::slow_disconnects`]). Returns whether the frame was queued.
    pub fn send_or_close(&self, frame: Frame) -> bool {
        match self.try_push(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close(CloseReason::SlowReader) {
                    self.stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Ask the socket to close. Returns true if this was the first reason.
    pub fn close(&self, reason: CloseReason) -> bool {
        self.closer.close(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_texts_fit_a_close_frame() {
        for r in [
            CloseReason::ClientGone,
            CloseReason::SlowReader,
            CloseReason::IdleTimeout,
            CloseReason::MessageTooLarge,
            CloseReason::ProtocolError,
            CloseReason::ShuttingDown,
            CloseReason::TooManySockets,
        ] {
            assert!(r.text().len() <= 123, "{r:?}");
            assert!((1000..=1015).contains(&r.code()));
        }
    }

    #[test]
    fn first_reason_wins_and_closed_outboxes_refuse_frames() {
        let (tx, mut rx) = mpsc::channel(1);
        let closer = Arc::new(Closer::default());
        let stats = Arc::new(HubStats::default());
        let ob = Outbox::new(7, tx, closer.clone(), stats.clone());
        assert!(ob.send_or_close(Frame::from("a")));
        assert!(!ob.send_or_close(Frame::from("b")));
        assert!(!ob.send_or_close(Frame::from("b")));
        assert_eq!(closer.reason(), Some(CloseReason::SlowReader));
        assert_eq!(stats.snapshot().slow_disconnects, 1);
        assert!(!ob.close(CloseReason::IdleTimeout));
        assert_eq!(rx.try_recv().unwrap().as_str(), "a");
        assert!(ob.try_push(Frame::from("c")).is_err());
    }
}
