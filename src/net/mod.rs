//! Outgoing connections: the one [`Connector`] every client stream goes through.
//!
//! Every TCP stream the client opens — API calls, WebSockets, tracker announces, peer
//! connections — is dialled by [`Connector::connect`] with a [`TargetAddr`] (host name or IP
//! literal plus port). There is deliberately no way to dial a pre-resolved `SocketAddr`: a
//! proxied connector must be able to hand the *name* to the proxy, so nothing above this
//! layer resolves names.
//!
//! Modes ([`ConnectorKind`]):
//! * `Direct` — plain TCP, local DNS; for tests and clearnet use. Refuses `.onion`.
//! * `Socks5` — every stream through one SOCKS5 proxy (Tor's `SocksPort`, i2pd), names sent
//!   unresolved (ATYP 3), per-destination (and per isolation key) credentials for Tor stream
//!   isolation. See [`ProxyUrl`].
//! * `Tor` — embedded arti (feature `tor`), onion services allowed, one isolation token per
//!   destination and key.
//!
//! In both proxied modes an IP-literal target is refused with `ForbiddenTarget` unless it is
//! dialled through the visibly named [`Connector::connect_ip_literal_through_proxy`], and
//! nothing ever falls back to a direct connection. An optional I2P proxy
//! ([`Connector::with_i2p_proxy`]) carries `.i2p` names in any mode.
//!
//! The SOCKS bridge for the torrent engine ([`SocksBridge`]) sits on top of this type: it
//! accepts librqbit's CONNECT to a placeholder address, maps it back to a named
//! [`TargetAddr`] and calls [`Connector::connect`].

#[cfg(feature = "tor")]
mod arti;
mod bridge;
mod error;
mod sensitive;
mod socks;
mod target;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

#[cfg(feature = "tor")]
pub use arti::ArtiOptions;
pub use bridge::{
    is_placeholder, SocksBridge, HANDSHAKE_TIMEOUT as BRIDGE_HANDSHAKE_TIMEOUT,
    MAX_CONNECTIONS as BRIDGE_MAX_CONNECTIONS, MAX_PLACEHOLDERS,
};
pub use error::{BoxError, NetError, NetErrorKind};
pub use sensitive::Sensitive;
pub use socks::ProxyUrl;
pub use target::{HostKind, TargetAddr, MAX_HOST_LEN};

use socks::Credentials;

/// The recording SOCKS5 server, for other modules' unit tests.
#[cfg(test)]
pub(crate) use socks::recording as socks_recording;

/// A bidirectional byte stream a [`Connector`] hands out.
///
/// Blanket-implemented for every `AsyncRead + AsyncWrite + Send + Unpin` type.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// A boxed connected stream, whatever the connector mode.
pub type BoxStream = Box<dyn AsyncStream>;

/// Which mode a [`Connector`] dials in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorKind {
    /// Plain TCP with local name resolution. Refuses `.onion` names.
    Direct,
    /// Through a SOCKS5 proxy (Tor, I2P), names resolved by the proxy.
    Socks5,
    /// Through the embedded Tor client (arti).
    Tor,
}

impl ConnectorKind {
    /// A short, stable, lowercase name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Direct => "direct",
            ConnectorKind::Socks5 => "socks5",
            ConnectorKind::Tor => "tor",
        }
    }
}

/// The private mode.
#[derive(Clone)]
enum Mode {
    Direct,
    Socks5(ProxyUrl),
    #[cfg(feature = "tor")]
    Tor(Arc<arti::ArtiConn>),
}

/// Which way one attempt goes (after the target has been checked).
enum Route<'a> {
    Direct,
    Socks(&'a ProxyUrl, Option<Credentials>),
    #[cfg(feature = "tor")]
    Tor(&'a arti::ArtiConn),
}

/// Attempt counters shared by every clone of one [`Connector`].
#[derive(Debug, Default)]
struct Counters {
    attempts: AtomicU64,
    succeeded: AtomicU64,
    failed: [AtomicU64; NetErrorKind::ALL.len()],
    direct: AtomicU64,
    socks: AtomicU64,
    tor: AtomicU64,
}

/// A snapshot of a connector's attempt counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectStats {
    /// Connection attempts started.
    pub attempts: u64,
    /// Attempts that produced a stream.
    pub succeeded: u64,
    /// Attempts that went out as plain TCP to the target (name resolved locally).
    pub direct: u64,
    /// Attempts handed to a SOCKS5 proxy (Tor or I2P).
    pub socks: u64,
    /// Attempts handed to the embedded Tor client.
    pub tor: u64,
    failed: [u64; NetErrorKind::ALL.len()],
}

impl ConnectStats {
    /// Attempts that failed with `kind`.
    #[must_use]
    pub fn failed(&self, kind: NetErrorKind) -> u64 {
        self.failed[kind.index()]
    }

    /// All failed attempts.
    #[must_use]
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().sum()
    }
}

/// The one way the client opens outgoing TCP streams.
///
/// Cheap to clone; clones share their attempt counters (and, in the proxied modes, the
/// secret stream-isolation credentials are derived from).
#[derive(Clone)]
pub struct Connector {
    mode: Mode,
    i2p: Option<ProxyUrl>,
    isolation: Option<Arc<str>>,
    secret: Arc<[u8; 32]>,
    connect_timeout: Duration,
    counters: Arc<Counters>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("kind", &self.kind())
            .field("i2p_proxy", &self.i2p)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// The default limit for establishing one connection (resolution included).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    fn with_mode(mode: Mode) -> Self {
        Self {
            mode,
            i2p: None,
            isolation: None,
            secret: Arc::new(rand::random()),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            counters: Arc::default(),
        }
    }

    /// A direct (no proxy) connector with the default connect timeout.
    #[must_use]
    pub fn direct() -> Self {
        Self::with_mode(Mode::Direct)
    }

    /// A connector that sends every stream through the SOCKS5 proxy `proxy`, with
    /// per-destination stream isolation. Call [`Connector::probe`] before use to fail fast
    /// when the proxy is down.
    #[must_use]
    pub fn socks5(proxy: ProxyUrl) -> Self {
        Self::with_mode(Mode::Socks5(proxy))
    }

    /// Start the embedded Tor client and return a connector that uses it. Bootstrap
    /// progress goes to `progress`; `NetErrorKind::Timeout` if bootstrap takes longer than
    /// `opts.bootstrap_timeout`, `NetErrorKind::TorBootstrap` for any other failure.
    #[cfg(feature = "tor")]
    pub async fn tor(
        opts: &ArtiOptions,
        progress: impl FnMut(&str) + Send + 'static,
    ) -> Result<Self, NetError> {
        let conn = arti::ArtiConn::start(opts, progress).await?;
        Ok(Self::with_mode(Mode::Tor(Arc::new(conn))))
    }

    /// The same connector, sending `.i2p` names to the SOCKS5 proxy `proxy` (i2pd's SOCKS
    /// port, usually 4447) whatever the main mode.
    #[must_use]
    pub fn with_i2p_proxy(mut self, proxy: ProxyUrl) -> Self {
        self.i2p = Some(proxy);
        self
    }

    /// The same connector with a different connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A clone whose streams are isolated under `key` (e.g. one feed or one torrent): in the
    /// proxied modes they never share a Tor circuit with streams of another key, even to the
    /// same destination. Shares the attempt counters.
    #[must_use]
    pub fn isolated(&self, key: &str) -> Self {
        let mut c = self.clone();
        c.isolation = Some(Arc::from(key));
        c
    }

    /// The embedded Tor client, in the `Tor` mode (to host an onion service on the same
    /// client the connector dials with).
    #[cfg(feature = "tor")]
    pub(crate) fn tor_client(
        &self,
    ) -> Option<Arc<arti_client::TorClient<tor_rtcompat::PreferredRuntime>>> {
        match &self.mode {
            Mode::Tor(conn) => Some(conn.client().clone()),
            Mode::Direct | Mode::Socks5(_) => None,
        }
    }

    /// The mode this connector dials in.
    #[must_use]
    pub fn kind(&self) -> ConnectorKind {
        match self.mode {
            Mode::Direct => ConnectorKind::Direct,
            Mode::Socks5(_) => ConnectorKind::Socks5,
            #[cfg(feature = "tor")]
            Mode::Tor(_) => ConnectorKind::Tor,
        }
    }

    /// Whether streams leave through a proxy or Tor (never directly).
    #[must_use]
    pub fn is_proxied(&self) -> bool {
        self.kind() != ConnectorKind::Direct
    }

    /// The limit for establishing one connection.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Check that the configured SOCKS5 proxies (main and I2P) answer. Proxied programs call
    /// this once at start and refuse to run on `ProxyUnreachable`. A no-op for the direct
    /// and embedded-Tor modes (the latter is checked by bootstrapping).
    pub async fn probe(&self) -> Result<(), NetError> {
        if let Mode::Socks5(proxy) = &self.mode {
            proxy.probe(self.connect_timeout).await?;
        }
        if let Some(proxy) = &self.i2p {
            proxy.probe(self.connect_timeout).await?;
        }
        Ok(())
    }

    /// A snapshot of the attempt counters (shared by all clones).
    #[must_use]
    pub fn stats(&self) -> ConnectStats {
        let c = &self.counters;
        let mut failed = [0u64; NetErrorKind::ALL.len()];
        for (out, n) in failed.iter_mut().zip(c.failed.iter()) {
            *out = n.load(Ordering::Relaxed);
        }
        ConnectStats {
            attempts: c.attempts.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            direct: c.direct.load(Ordering::Relaxed),
            socks: c.socks.load(Ordering::Relaxed),
            tor: c.tor.load(Ordering::Relaxed),
            failed,
        }
    }

    /// Open a stream to `target`, within the connect timeout.
    ///
    /// In the proxied modes an IP literal is refused (`ForbiddenTarget`); see
    /// [`Connector::connect_ip_literal_through_proxy`].
    pub async fn connect(&self, target: &TargetAddr) -> Result<BoxStream, NetError> {
        self.dial(target, false).await
    }

    /// Open a stream to `target` even if it is an IP literal and this connector is proxied.
    ///
    /// **Dangerous**: an IP address usually comes from a local lookup or a peer list, and
    /// reveals more than a name; the proxy (a Tor exit) connects to it as given. Use only
    /// where the address is known not to come from local DNS.
    pub async fn connect_ip_literal_through_proxy(
        &self,
        target: &TargetAddr,
    ) -> Result<BoxStream, NetError> {
        self.dial(target, true).await
    }

    async fn dial(&self, target: &TargetAddr, allow_ip: bool) -> Result<BoxStream, NetError> {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let result = match self.route(target, allow_ip) {
            Ok(route) => {
                let counter = match &route {
                    Route::Direct => &self.counters.direct,
                    Route::Socks(..) => &self.counters.socks,
                    #[cfg(feature = "tor")]
                    Route::Tor(_) => &self.counters.tor,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let attempt = async {
                    match route {
                        Route::Direct => connect_direct(target).await,
                        Route::Socks(proxy, creds) => proxy.connect(target, creds.as_ref()).await,
                        #[cfg(feature = "tor")]
                        Route::Tor(conn) => conn.connect(target, self.isolation.as_deref()).await,
                    }
                };
                match tokio::time::timeout(self.connect_timeout, attempt).await {
                    Ok(r) => r,
                    Err(_elapsed) => Err(NetError::Timeout {
                        target: Sensitive::new(target.to_string()),
                        after: self.connect_timeout,
                    }),
                }
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.counters.succeeded.fetch_add(1, Ordering::Relaxed),
            Err(e) => self.counters.failed[e.kind().index()].fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    /// Decide how `target` is dialled, or refuse it.
    fn route(&self, target: &TargetAddr, allow_ip: bool) -> Result<Route<'_>, NetError> {
        let forbidden = |reason| NetError::ForbiddenTarget {
            target: Sensitive::new(target.to_string()),
            reason,
        };
        let kind = target.kind();
        if kind == HostKind::I2p {
            if let Some(i2p) = &self.i2p {
                return Ok(Route::Socks(i2p, None));
            }
        }
        if matches!(kind, HostKind::Ip(_)) && self.is_proxied() && !allow_ip {
            return Err(forbidden(
                "an IP address through a proxy needs the explicit IP-literal path",
            ));
        }
        match &self.mode {
            Mode::Direct => match kind {
                HostKind::Onion | HostKind::I2p => Err(forbidden(
                    "onion and i2p names need a Tor or I2P connection, not a direct one",
                )),
                HostKind::Ip(_) | HostKind::Name => Ok(Route::Direct),
            },
            Mode::Socks5(proxy) => {
                let creds = Credentials::derive(&self.secret, self.isolation.as_deref(), target);
                Ok(Route::Socks(proxy, Some(creds)))
            }
            #[cfg(feature = "tor")]
            Mode::Tor(conn) => match kind {
                HostKind::I2p => Err(forbidden("i2p names need an I2P proxy (--i2p-proxy)")),
                HostKind::Ip(_) | HostKind::Onion | HostKind::Name => Ok(Route::Tor(conn)),
            },
        }
    }
}

/// Plain TCP: resolve locally (names only), then try each address in order.
async fn connect_direct(target: &TargetAddr) -> Result<BoxStream, NetError> {
    let addrs: Vec<SocketAddr> = match target.kind() {
        HostKind::Ip(ip) => vec![SocketAddr::new(ip, target.port())],
        HostKind::Onion | HostKind::I2p => {
            return Err(NetError::ForbiddenTarget {
                target: Sensitive::new(target.to_string()),
                reason: "onion and i2p names need a Tor or I2P connection, not a direct one",
            })
        }
        HostKind::Name => tokio::net::lookup_host((target.host(), target.port()))
            .await
            .map_err(|source| NetError::Resolve {
                host: Sensitive::new(target.host().to_owned()),
                source,
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(NetError::Resolve {
            host: Sensitive::new(target.host().to_owned()),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses found"),
        });
    }
    let mut last_err = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Small request/response exchanges: don't wait on Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(Box::new(stream));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(NetError::Connect {
        target: Sensitive::new(target.to_string()),
        source: last_err
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses found")),
    })
}

#[cfg(test)]
mod tests;
