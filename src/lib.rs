//! megatorrent: signed, versioned torrent feeds.
//!
//! A map of the crate (no logic lives here):
//!
//! * [`proto`] — pure wire formats (keys, manifests, pointer records). No I/O.
//! * `store` — the storage trait and its SQLite / PostgreSQL implementations (feature `server`).
//! * `server` — the `megatorrentd` HTTP/WebSocket server (feature `server`).
//! * `net` — the one outgoing-connection [`Connector`](net::Connector) (feature `client`).
//! * `client` — the `megatorrent` client library (feature `client`).
//! * `tor_embed` — embedded Tor (arti) set-up shared by the client's `--tor` mode and the
//!   server's onion service (features `tor` / `onion-server`).

pub mod proto;

#[cfg(feature = "server")]
pub mod store;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "client")]
pub mod net;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "arti")]
pub mod tor_embed;

/// Milliseconds since the Unix epoch, from the system clock.
///
/// The only place the crate reads wall-clock time for protocol purposes; a clock before
/// 1970 reads as 0.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
