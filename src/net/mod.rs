//! Outgoing connections: the one [`Connector`] every client stream goes through.
//!
//! Every TCP stream the client opens — API calls, WebSockets, tracker announces, peer
//! connections — is dialled by [`Connector::connect`] with a [`TargetAddr`] (host name or IP
//! literal plus port). There is deliberately no way to dial a pre-resolved `SocketAddr`: a
//! proxied connector must be able to hand the *name* to the proxy, so nothing above this
//! layer resolves names.
//!
//! Modes: today only [`ConnectorKind::Direct`] (plain TCP, local DNS; for tests and clearnet
//! use). SOCKS5 (Tor/I2P with stream isolation) and embedded Tor (arti) slot in as further
//! private modes behind the same `connect` call (DESIGN §5).

mod error;
mod target;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub use error::{NetError, NetErrorKind};
pub use target::{HostKind, TargetAddr, MAX_HOST_LEN};

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
    /// Plain TCP with local name resolution. Refuses `.onion` and `.i2p` names.
    Direct,
}

impl ConnectorKind {
    /// A short, stable, lowercase name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Direct => "direct",
        }
    }
}

/// The private mode; later: `Socks5 { proxy, isolation }` and `Arti(TorClient)`.
#[derive(Debug, Clone)]
enum Mode {
    Direct,
}

/// Attempt counters shared by every clone of one [`Connector`].
#[derive(Debug, Default)]
struct Counters {
    attempts: AtomicU64,
    succeeded: AtomicU64,
    failed: [AtomicU64; NetErrorKind::ALL.len()],
}

/// A snapshot of a connector's attempt counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectStats {
    /// Connection attempts started.
    pub attempts: u64,
    /// Attempts that produced a stream.
    pub succeeded: u64,
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
/// Cheap to clone; clones share their attempt counters.
#[derive(Clone)]
pub struct Connector {
    mode: Mode,
    connect_timeout: Duration,
    counters: Arc<Counters>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("kind", &self.kind())
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// The default limit for establishing one connection (resolution included).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A direct (no proxy) connector with the default connect timeout.
    #[must_use]
    pub fn direct() -> Self {
        Self {
            mode: Mode::Direct,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            counters: Arc::default(),
        }
    }

    /// The same connector with a different connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The mode this connector dials in.
    #[must_use]
    pub fn kind(&self) -> ConnectorKind {
        match self.mode {
            Mode::Direct => ConnectorKind::Direct,
        }
    }

    /// The limit for establishing one connection.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
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
            failed,
        }
    }

    /// Open a stream to `target`, within the connect timeout.
    pub async fn connect(&self, target: &TargetAddr) -> Result<BoxStream, NetError> {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let attempt = async {
            match self.mode {
                Mode::Direct => connect_direct(target).await,
            }
        };
        let result = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_elapsed) => Err(NetError::Timeout {
                target: target.to_string(),
                after: self.connect_timeout,
            }),
        };
        match &result {
            Ok(_) => self.counters.succeeded.fetch_add(1, Ordering::Relaxed),
            Err(e) => self.counters.failed[e.kind().index()].fetch_add(1, Ordering::Relaxed),
        };
        result
    }
}

/// Plain TCP: resolve locally (names only), then try each address in order.
async fn connect_direct(target: &TargetAddr) -> Result<BoxStream, NetError> {
    let addrs: Vec<SocketAddr> = match target.kind() {
        HostKind::Ip(ip) => vec![SocketAddr::new(ip, target.port())],
        HostKind::Onion | HostKind::I2p => {
            return Err(NetError::ForbiddenTarget {
                target: target.to_string(),
                reason: "onion and i2p names need a Tor or I2P connection, not a direct one",
            })
        }
        HostKind::Name => tokio::net::lookup_host((target.host(), target.port()))
            .await
            .map_err(|source| NetError::Resolve {
                host: target.host().to_owned(),
                source,
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(NetError::Resolve {
            host: target.host().to_owned(),
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
        target: target.to_string(),
        source: last_err
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses found")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn direct_connects_and_counts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"hi").await.unwrap();
        });
        let c = Connector::direct();
        let mut stream = c
            .connect(&TargetAddr::new("127.0.0.1", port).unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        server.await.unwrap();
        let stats = c.clone().stats();
        assert_eq!((stats.attempts, stats.succeeded), (1, 1));
        assert_eq!(stats.failed_total(), 0);
    }

    #[tokio::test]
    async fn closed_port_is_connect_failed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = Connector::direct();
        let err = c
            .connect(&TargetAddr::new("127.0.0.1", port).unwrap())
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), NetErrorKind::ConnectFailed);
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(c.stats().failed(NetErrorKind::ConnectFailed), 1);
    }

    #[tokio::test]
    async fn direct_refuses_onion_and_i2p() {
        let c = Connector::direct();
        for host in [format!("{}.onion", "a".repeat(56)), "x.i2p".to_owned()] {
            let err = c
                .connect(&TargetAddr::new(&host, 80).unwrap())
                .await
                .err()
                .unwrap();
            assert_eq!(err.kind(), NetErrorKind::ForbiddenTarget);
        }
        assert_eq!(c.stats().failed(NetErrorKind::ForbiddenTarget), 2);
    }

    #[tokio::test]
    async fn unresolvable_name_is_resolve_failed() {
        // `.invalid` is reserved (RFC 6761) and never resolves.
        let c = Connector::direct().with_connect_timeout(Duration::from_secs(20));
        let err = c
            .connect(&TargetAddr::new("no-such-host.invalid", 80).unwrap())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                err.kind(),
                NetErrorKind::ResolveFailed | NetErrorKind::Timeout
            ),
            "{err:?}"
        );
    }

    /// A listener whose accept queue is full drops further SYNs (Linux), so a connect to it
    /// hangs until the connect timeout.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn connect_times_out() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let attempt = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), attempt).await {
                fillers.push(s);
            }
        }
        let c = Connector::direct().with_connect_timeout(Duration::from_millis(300));
        let err = c
            .connect(&TargetAddr::new("127.0.0.1", addr.port()).unwrap())
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), NetErrorKind::Timeout);
        assert_eq!(c.stats().failed(NetErrorKind::Timeout), 1);
        drop((fillers, listener));
    }
}
