//! Live operations over the server's WebSocket: `megatorrent subscribe` (follow keys,
//! print each verified manifest once, reconnect with jittered exponential backoff) and
//! `megatorrent publish --ws`.
//!
//! Nothing the server pushes is trusted: every manifest is parsed strictly and verified
//! ([`super::ws::classify`]), must be of a key that was asked for, and must be newer than
//! the last one printed for that key, so a reconnection (which re-sends the current
//! manifests) never prints duplicates.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::sync::watch;

use super::display::{printable, render_manifest};
use super::http::BaseUrl;
use super::ws::{ServerFrame, WsConn, WsError};
use crate::net::Connector;
use crate::proto::{Manifest, PublicKey};

/// First reconnection delay.
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest reconnection delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a live operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The WebSocket exchange failed.
    #[error(transparent)]
    Ws(#[from] WsError),
    /// The server refused the request (its `failure reason`).
    #[error("the server refused: {}", printable(.0))]
    Refused(String),
    /// `--max-time` passed before `--count` manifests arrived.
    #[error("only {got} of {wanted} manifests arrived within {secs}s")]
    TimedOut {
        /// Manifests printed.
        got: u64,
        /// Manifests wanted.
        wanted: u64,
        /// The time limit.
        secs: u64,
    },
    /// Writing the output failed.
    #[error("cannot write output")]
    Output(#[source] io::Error),
}

/// What to follow and how to print it.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// The keys to follow.
    pub keys: Vec<PublicKey>,
    /// One canonical JSON document per line instead of the readable form.
    pub json: bool,
    /// Stop after printing this many manifests.
    pub count: Option<u64>,
    /// Stop after this long (an error if `count` was not reached).
    pub max_time: Option<Duration>,
    /// Limit for connecting and for each request-like wait.
    pub request_timeout: Duration,
}

/// Jittered exponential backoff: each delay is drawn from `[d/2, d]`, `d` doubling up to
/// [`BACKOFF_MAX`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt.
    pub fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        let half = d / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }

    /// Start over (after a successful connection).
    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// Where new manifests go.
enum Out<'a> {
    /// Printed.
    Write(&'a mut (dyn Write + Send)),
    /// Handed to a watcher (which sees the newest one).
    Latest(watch::Sender<Option<Manifest>>),
}

/// Printing state that survives reconnections.
struct Follow<'a> {
    opts: &'a SubscribeOptions,
    last: HashMap<PublicKey, u64>,
    printed: u64,
    out: Out<'a>,
}

impl Follow<'_> {
    fn done(&self) -> bool {
        match &self.out {
            Out::Write(_) => self.opts.count.is_some_and(|n| self.printed >= n),
            Out::Latest(tx) => tx.is_closed(),
        }
    }

    /// Print `m` if it is new; returns whether it was.
    fn offer(&mut self, m: &Manifest) -> Result<bool, LiveError> {
        let key = m.public_key();
        if !self.opts.keys.contains(key) {
            note("warning: ignoring a manifest of a key that was not asked for");
            return Ok(false);
        }
        if self.last.get(key).is_some_and(|s| *s >= m.sequence()) {
            return Ok(false);
        }
        self.last.insert(*key, m.sequence());
        let out = match &mut self.out {
            Out::Write(out) => out,
            Out::Latest(tx) => {
                // An error means the watcher is gone; `done` then ends the loop.
                let _ = tx.send(Some(m.clone()));
                self.printed += 1;
                return Ok(true);
            }
        };
        let text = if self.opts.json {
            let mut b = m.canonical_bytes().to_vec();
            b.push(b'\n');
            b
        } else {
            format!("{}\n", render_manifest(m)).into_bytes()
        };
        out.write_all(&text)
            .and_then(|()| out.flush())
            .map_err(LiveError::Output)?;
        self.printed += 1;
        Ok(true)
    }
}

/// Follow `opts.keys` until `opts.count` manifests were printed or `opts.max_time` passed
/// (forever without either), reconnecting whenever the connection is lost.
pub async fn subscribe(
    connector: &Connector,
    base: &BaseUrl,
    opts: &SubscribeOptions,
    out: &mut (dyn Write + Send),
) -> Result<(), LiveError> {
    let mut follow = Follow {
        opts,
        last: HashMap::new(),
        printed: 0,
        out: Out::Write(out),
    };
    let run = follow_forever(connector, base, &mut follow);
    let Some(limit) = opts.max_time else {
        return run.await;
    };
    match tokio::time::timeout(limit, run).await {
        Ok(r) => r,
        Err(_) => match opts.count {
            Some(wanted) => Err(LiveError::TimedOut {
                got: follow.printed,
                wanted,
                secs: limit.as_secs(),
            }),
            None => Ok(()),
        },
    }
}

/// Follow one key until `tx`'s receiver is dropped, reconnecting whenever the connection
/// is lost, and hand each newer verified manifest to `tx` (a receiver that lags sees only
/// the newest, which is all a feed reader needs). Returns early only if the server refuses
/// the subscription.
pub async fn follow_latest(
    connector: &Connector,
    base: &BaseUrl,
    key: PublicKey,
    request_timeout: Duration,
    tx: watch::Sender<Option<Manifest>>,
) -> Result<(), LiveError> {
    let opts = SubscribeOptions {
        keys: vec![key],
        json: false,
        count: None,
        max_time: None,
        request_timeout,
    };
    let mut follow = Follow {
        opts: &opts,
        last: HashMap::new(),
        printed: 0,
        out: Out::Latest(tx),
    };
    follow_forever(connector, base, &mut follow).await
}

async fn follow_forever(
    connector: &Connector,
    base: &BaseUrl,
    follow: &mut Follow<'_>,
) -> Result<(), LiveError> {
    let mut backoff = Backoff::default();
    loop {
        match one_connection(connector, base, follow, &mut backoff).await {
            Ok(()) => return Ok(()),
            Err(LiveError::Ws(e)) => {
                let wait = backoff.delay();
                note(&format!(
                    "connection lost ({}); reconnecting in {:.1}s",
                    error_chain(&e),
                    wait.as_secs_f32()
                ));
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn one_connection(
    connector: &Connector,
    base: &BaseUrl,
    follow: &mut Follow<'_>,
    backoff: &mut Backoff,
) -> Result<(), LiveError> {
    let mut conn = WsConn::connect(connector, base, follow.opts.request_timeout).await?;
    let keys: Vec<String> = follow.opts.keys.iter().map(PublicKey::to_hex).collect();
    conn.send(&json!({"action": "subscribe", "keys": keys}))
        .await?;
    loop {
        match conn.recv(None).await {
            Ok(ServerFrame::Manifest(m)) => {
                follow.offer(&m)?;
                if follow.done() {
                    conn.close().await;
                    return Ok(());
                }
            }
            Ok(ServerFrame::Ok { action, .. }) if action == "subscribe" => backoff.reset(),
            Ok(ServerFrame::Failure { action, reason, .. }) => {
                if action.as_deref() == Some("subscribe") {
                    return Err(LiveError::Refused(reason));
                }
                note(&format!("warning: the server said: {reason}"));
            }
            Ok(ServerFrame::Ok { .. } | ServerFrame::Other(_)) => {}
            Err(e @ (WsError::BadManifest(_) | WsError::BadFrame)) => {
                note(&format!("warning: {}", error_chain(&e)));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Open a socket for `publish --ws` and learn `key`'s current manifest: subscribe, and
/// whatever arrives before the acknowledgement is the current state.
pub async fn open_for_publish(
    connector: &Connector,
    base: &BaseUrl,
    key: &PublicKey,
    timeout: Duration,
) -> Result<(WsConn, Option<Manifest>), LiveError> {
    let mut conn = WsConn::connect(connector, base, timeout).await?;
    conn.send(&json!({"action": "subscribe", "key": key.to_hex()}))
        .await?;
    let mut current: Option<Manifest> = None;
    loop {
        match conn.recv(Some(timeout)).await? {
            ServerFrame::Manifest(m) if m.public_key() == key => {
                if current.as_ref().is_none_or(|c| c.sequence() < m.sequence()) {
                    current = Some(*m);
                }
            }
            ServerFrame::Ok { action, .. } if action == "subscribe" => return Ok((conn, current)),
            ServerFrame::Failure { reason, .. } => return Err(LiveError::Refused(reason)),
            ServerFrame::Manifest(_) | ServerFrame::Ok { .. } | ServerFrame::Other(_) => {}
        }
    }
}

/// The outcome of one publish over the socket.
#[derive(Debug)]
pub enum WsPublish {
    /// Stored at this sequence.
    Stored(u64),
    /// A newer manifest is stored (`currentSequence`, if the server said).
    Conflict(Option<u64>),
}

/// Publish `m` over `conn` and wait for the answer (pushes of newer manifests of the key
/// meanwhile update `current`).
pub async fn publish_over(
    conn: &mut WsConn,
    m: &Manifest,
    current: &mut Option<Manifest>,
    timeout: Duration,
) -> Result<WsPublish, LiveError> {
    let text = std::str::from_utf8(m.canonical_bytes()).map_err(|_| WsError::BadFrame)?;
    conn.send_text(format!("{{\"action\":\"publish\",\"manifest\":{text}}}"))
        .await?;
    loop {
        match conn.recv(Some(timeout)).await? {
            ServerFrame::Ok { action, frame } if action == "publish" => {
                let seq = frame["sequence"].as_u64().unwrap_or(m.sequence());
                return Ok(WsPublish::Stored(seq));
            }
            ServerFrame::Failure {
                action,
                reason,
                current_sequence,
            } if action.as_deref() == Some("publish") => {
                if reason.starts_with("conflict:") {
                    return Ok(WsPublish::Conflict(current_sequence));
                }
                return Err(LiveError::Refused(reason));
            }
            ServerFrame::Manifest(p) if p.public_key() == m.public_key() => {
                if current.as_ref().is_none_or(|c| c.sequence() < p.sequence()) {
                    *current = Some(*p);
                }
            }
            ServerFrame::Manifest(_)
            | ServerFrame::Ok { .. }
            | ServerFrame::Failure { .. }
            | ServerFrame::Other(_) => {}
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn note(msg: &str) {
    let _ = writeln!(io::stderr(), "{}", printable(msg));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let first = b.delay();
        assert!(first >= BACKOFF_START / 2 && first <= BACKOFF_START);
        for _ in 0..20 {
            let d = b.delay();
            assert!(d <= BACKOFF_MAX && d >= Duration::from_millis(125));
        }
        assert!(b.delay() >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.delay() <= BACKOFF_START);
    }
}
