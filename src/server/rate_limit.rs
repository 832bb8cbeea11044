//! Rate limiting (governor): per client for reads and writes, a server-wide write ceiling, and
//! per publishing public key.
//!
//! # Client keys
//!
//! A client is identified by a [`ClientKey`]: its IPv4 address, its IPv6 /64 (one subscriber
//! usually owns a whole /64), or — on the onion listener — the Tor circuit id from the PROXY
//! header. `X-Forwarded-For` is believed only when the connection comes from one of
//! `http.trusted_proxies`, and then its rightmost address that is not itself a trusted proxy
//! is the client. A request with no usable address is keyed [`ClientKey::Unknown`] (all such
//! requests share one bucket) rather than failing.
//!
//! # State
//!
//! Per-client buckets live in concurrent maps. They are pruned of idle entries (those back
//! at full burst) every [`PRUNE_INTERVAL`] by the server, and sooner when more than
//! `limits.max_tracked_clients` keys are held, so memory stays bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter};
use ipnet::IpNet;

use super::error::ApiError;
use super::metrics::{Limiter, Metrics};
use super::AppState;
use crate::proto::PublicKey;

/// How often the server prunes idle limiter entries.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Who a request is from, for rate limiting. Never logged or exported as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 client.
    V4(Ipv4Addr),
    /// An IPv6 client's /64 (the upper 64 bits).
    V6Net(u64),
    /// A Tor rendezvous circuit (onion listener with PROXY headers).
    Circuit(u32),
    /// No address known (e.g. an in-process test request).
    Unknown,
}

impl ClientKey {
    /// The key of a client at `ip` (IPv4-mapped IPv6 counts as IPv4).
    #[must_use]
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Request extension set by the onion listener: the Tor circuit id of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitId(pub u32);

/// The client key of a request: circuit id, else (trusted) forwarded address, else the
/// connection's address, else [`ClientKey::Unknown`].
#[must_use]
pub fn client_key(
    headers: &HeaderMap,
    circuit: Option<CircuitId>,
    peer: Option<SocketAddr>,
    trusted: &[IpNet],
) -> ClientKey {
    if let Some(CircuitId(id)) = circuit {
        return ClientKey::Circuit(id);
    }
    let Some(peer) = peer else {
        return ClientKey::Unknown;
    };
    let peer_ip = canonical(peer.ip());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer_ip) {
        return ClientKey::from_ip(peer_ip);
    }
    // Walk X-Forwarded-For from the right: the last hop our trusted proxy saw first.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Garbage inserted by someone we cannot vouch for: stop at the last good hop.
            break;
        };
        let ip = canonical(ip);
        if !is_trusted(&ip) {
            return ClientKey::from_ip(ip);
        }
    }
    ClientKey::from_ip(peer_ip)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// A refusal: which limiter and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limiter that refused.
    pub limiter: Limiter,
    /// How long until the request would be allowed.
    pub retry_after: Duration,
}

/// Whether a WebSocket message reads or writes, for [`RateLimiter::check_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Subscribe, unsubscribe, lookups, tracker announces.
    Read,
    /// Publish and other stored writes.
    Write,
}

/// The limits applied (see [`super::config::LimitsConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Per-client reads.
    pub read: super::quota::Quota,
    /// Per-client writes.
    pub write: super::quota::Quota,
    /// All writes together.
    pub global_write: super::quota::Quota,
    /// Per publishing key.
    pub key_write: super::quota::Quota,
    /// Entries per keyed limiter before an early prune.
    pub max_tracked_clients: usize,
}

/// The server's rate limiters. Shared through [`AppState`]; every method takes `&self` and
/// never blocks (governor's maps are sharded and lock-free on the hot path).
pub struct RateLimiter {
    read: DefaultKeyedRateLimiter<ClientKey>,
    write: DefaultKeyedRateLimiter<ClientKey>,
    key: DefaultKeyedRateLimiter<PublicKey>,
    global_write: DefaultDirectRateLimiter,
    max_tracked: usize,
    clock: DefaultClock,
    metrics: Arc<Metrics>,
    /// When the last early prune ran (a plain mutex, never held across `.await`).
    last_prune: Mutex<Instant>,
}

impl RateLimiter {
    /// Limiters with `limits`, counting refusals in `metrics`.
    #[must_use]
    pub fn new(limits: &RateLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            read: governor::RateLimiter::keyed(limits.read.to_governor()),
            write: governor::RateLimiter::keyed(limits.write.to_governor()),
            key: governor::RateLimiter::keyed(limits.key_write.to_governor()),
            global_write: governor::RateLimiter::direct(limits.global_write.to_governor()),
            max_tracked: limits.max_tracked_clients,
            clock: DefaultClock::default(),
            metrics,
            last_prune: Mutex::new(Instant::now()),
        }
    }

    fn refuse(&self, limiter: Limiter, wait: Duration) -> Limited {
        self.metrics.rate_limited(limiter);
        Limited {
            limiter,
            retry_after: wait,
        }
    }

    fn keyed<K>(
        &self,
        l: &DefaultKeyedRateLimiter<K>,
        key: &K,
        which: Limiter,
    ) -> Result<(), Limited>
    where
        K: Clone + std::hash::Hash + Eq,
    {
        if l.len() > self.max_tracked {
            self.prune_soon();
        }
        l.check_key(key)
            .map_err(|nu| self.refuse(which, nu.wait_time_from(self.clock.now())))
    }

    /// A cheap read by `client`.
    pub fn check_read(&self, client: &ClientKey) -> Result<(), Limited> {
        self.keyed(&self.read, client, Limiter::Read)
    }

    /// A write by `client`: its own quota, then the server-wide ceiling.
    pub fn check_write(&self, client: &ClientKey) -> Result<(), Limited> {
        self.keyed(&self.write, client, Limiter::Write)?;
        self.global_write
            .check()
            .map_err(|nu| self.refuse(Limiter::GlobalWrite, nu.wait_time_from(self.clock.now())))
    }

    /// A write under publishing key `key` (checked once the signature verified).
    pub fn check_key(&self, key: &PublicKey) -> Result<(), Limited> {
        self.keyed(&self.key, key, Limiter::Key)
    }

    /// For the WebSocket hub: admit one message of `kind` from `client` on an open socket.
    /// Reads and writes share the HTTP quotas of the same client, so a client cannot escape
    /// its limits by switching transport. Refusals are counted as `limiter="websocket"` in
    /// addition to the limiter that refused; answer them with a `rate-limited:` failure.
    pub fn check_message(&self, client: &ClientKey, kind: MessageKind) -> Result<(), Limited> {
        let res = match kind {
            MessageKind::Read => self.check_read(client),
            MessageKind::Write => self.check_write(client),
        };
        if res.is_err() {
            self.metrics.rate_limited(Limiter::Websocket);
        }
        res
    }

    /// Drop entries that are back at full burst (they carry no information) and give the
    /// memory back.
    pub fn prune(&self) {
        self.read.retain_recent();
        self.write.retain_recent();
        self.key.retain_recent();
        self.read.shrink_to_fit();
        self.write.shrink_to_fit();
        self.key.shrink_to_fit();
    }

    /// Prune now unless an early prune ran in the last second.
    fn prune_soon(&self) {
        let due = match self.last_prune.try_lock() {
            Ok(mut last) if last.elapsed() >= Duration::from_secs(1) => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if due {
            self.prune();
        }
    }

    /// Entries currently held (all keyed limiters).
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.read.len() + self.write.len() + self.key.len()
    }
}

/// Whether a request is a write (anything but GET, HEAD and OPTIONS).
fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware: resolve the [`ClientKey`] (also stored as a request extension for handlers
/// and the WebSocket upgrade) and apply the read or write quota.
pub async fn limit_requests(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let circuit = req.extensions().get::<CircuitId>().copied();
    let key = client_key(
        req.headers(),
        circuit,
        peer,
        &state.config().http.trusted_proxies,
    );
    req.extensions_mut().insert(key);
    let limiter = state.rate_limiter();
    let verdict = if is_write(req.method()) {
        limiter.check_write(&key)
    } else {
        limiter.check_read(&key)
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(l) => ApiError::from(l).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::quota::Quota;

    fn limits(read: &str, write: &str, global: &str, key: &str) -> RateLimits {
        RateLimits {
            read: read.parse::<Quota>().unwrap(),
            write: write.parse().unwrap(),
            global_write: global.parse().unwrap(),
            key_write: key.parse().unwrap(),
            max_tracked_clients: 2,
        }
    }

    #[test]
    fn ipv6_clients_aggregate_to_their_64() {
        let a = ClientKey::from_ip("2001:db8:1:2::1".parse().unwrap());
        let b = ClientKey::from_ip("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = ClientKey::from_ip("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            ClientKey::from_ip("::ffff:192.0.2.1".parse().unwrap()),
            ClientKey::V4(Ipv4Addr::new(192, 0, 2, 1))
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.0.0.2".parse().unwrap(),
        );
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // Untrusted peer: the header is ignored.
        assert_eq!(
            client_key(&h, None, Some(proxy), &[]),
            ClientKey::V4(Ipv4Addr::new(10, 0, 0, 1))
        );
        // Trusted: the rightmost untrusted hop, not the spoofable leftmost one.
        assert_eq!(
            client_key(&h, None, Some(proxy), &trusted),
            ClientKey::V4(Ipv4Addr::new(198, 51, 100, 7))
        );
        // Garbage stops the walk; we fall back to the peer.
        h.insert("x-forwarded-for", "nonsense".parse().unwrap());
        assert_eq!(
            client_key(&h, None, Some(proxy), &trusted),
            ClientKey::V4(Ipv4Addr::new(10, 0, 0, 1))
        );
        // The circuit id wins; no address at all is Unknown, never an error.
        assert_eq!(
            client_key(&h, Some(CircuitId(7)), Some(proxy), &trusted),
            ClientKey::Circuit(7)
        );
        assert_eq!(client_key(&h, None, None, &trusted), ClientKey::Unknown);
    }

    #[test]
    fn quotas_refuse_with_a_retry_delay_and_count() {
        let metrics = Arc::new(Metrics::new());
        let rl = RateLimiter::new(&limits("2r/m", "1r/m", "100r/s", "1r/h"), metrics.clone());
        let a = ClientKey::V4(Ipv4Addr::LOCALHOST);
        let b = ClientKey::Circuit(1);
        assert!(rl.check_read(&a).is_ok());
        assert!(rl.check_read(&a).is_ok());
        let refused = rl.check_read(&a).unwrap_err();
        assert_eq!(refused.limiter, Limiter::Read);
        assert!(refused.retry_after > Duration::ZERO);
        assert!(
            rl.check_read(&b).is_ok(),
            "another client has its own bucket"
        );
        assert!(rl.check_write(&a).is_ok());
        assert_eq!(rl.check_write(&a).unwrap_err().limiter, Limiter::Write);
        assert_eq!(
            rl.check_message(&a, MessageKind::Write)
                .unwrap_err()
                .limiter,
            Limiter::Write
        );
        let pk = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        assert!(rl.check_key(&pk).is_ok());
        assert_eq!(rl.check_key(&pk).unwrap_err().limiter, Limiter::Key);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("megatorrent_rate_limited_total{limiter=\"read\"} 1"),
            "{text}"
        );
        assert!(text.contains("megatorrent_rate_limited_total{limiter=\"websocket\"} 1"));
    }

    #[test]
    fn global_ceiling_applies_across_clients() {
        let rl = RateLimiter::new(
            &limits("10r/s", "10r/s", "2r/h", "10r/s"),
            Arc::new(Metrics::new()),
        );
        assert!(rl.check_write(&ClientKey::Circuit(1)).is_ok());
        assert!(rl.check_write(&ClientKey::Circuit(2)).is_ok());
        let l = rl.check_write(&ClientKey::Circuit(3)).unwrap_err();
        assert_eq!(l.limiter, Limiter::GlobalWrite);
    }

    #[test]
    fn idle_entries_are_pruned() {
        let rl = RateLimiter::new(
            &limits("1000r/s", "10r/s", "10r/s", "10r/s"),
            Arc::new(Metrics::new()),
        );
        for i in 0..50 {
            rl.check_read(&ClientKey::Circuit(i)).unwrap();
        }
        assert!(rl.tracked() >= 3);
        // 1000r/s refills one token per millisecond: a short wait makes them all idle.
        std::thread::sleep(Duration::from_millis(20));
        rl.prune();
        assert_eq!(rl.tracked(), 0);
    }
}
