//! The BitTorrent tracker: HTTP (`GET /announce`, `GET /scrape`) and UDP (BEP 15) front
//! ends over one in-memory [`Swarm`].
//!
//! [`Tracker`] is the shared part: swarm, counters, access list, passkey cache and the UDP
//! connection-id key. The front ends turn their wire requests into an [`AnnounceInput`]
//! (deciding the peer's address), call [`Tracker::announce`], and write the reply. The
//! database is only consulted for private-mode passkeys, through a cache.
//!
//! Protocol details and operator notes: `docs/tracker.md`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::proto::tracker::{AnnounceEvent, AnnounceRequest, PeerAddr, PeerHost};
use crate::proto::udp;
use crate::server::config::TrackerConfig;
use crate::store::Store;

pub mod access;
pub mod conn_id;
pub mod http;
pub mod passkey;
pub mod stats;
pub mod swarm;
pub mod udp_batch;
pub mod udp_server;

pub use access::{AccessList, AccessListError};
pub use conn_id::ConnectionIds;
pub use passkey::{Passkey, PasskeyCache};
pub use stats::{Outcome, Protocol, TrackerStats};
pub use swarm::{AnnounceInput, Counts, KeyTag, Selection, Swarm, SwarmLimits, Want};

/// Why the tracker refused a well-formed request. The text is sent to the peer as the
/// `failure reason` (HTTP) or error message (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The access list does not allow this torrent.
    #[error("torrent not allowed on this tracker")]
    NotAllowed,
    /// The torrent holds its maximum number of peers.
    #[error("torrent is full")]
    TorrentFull,
    /// The tracker holds its maximum number of peers.
    #[error("tracker is full")]
    TrackerFull,
    /// The peer id is registered from another address with a different `key`.
    #[error("peer_id is in use from another address")]
    PeerIdInUse,
    /// Port 0 cannot be connected to.
    #[error("invalid port 0")]
    PortZero,
    /// Private mode and no passkey in the URL.
    #[error("private tracker: announce to /announce/<passkey>")]
    PasskeyRequired,
    /// Private mode and the passkey is not known.
    #[error("unknown passkey")]
    UnknownPasskey,
    /// A scrape without `info_hash` (a full scrape), which is not served.
    #[error("full scrape is not supported: pass info_hash")]
    FullScrape,
    /// The passkey could not be checked (database unreachable); try later.
    #[error("tracker temporarily unavailable")]
    Unavailable,
}

impl Refusal {
    /// A short, stable code for logs and tests.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAllowed => "not-allowed",
            Self::TorrentFull => "torrent-full",
            Self::TrackerFull => "tracker-full",
            Self::PeerIdInUse => "peer-id-in-use",
            Self::PortZero => "port-zero",
            Self::PasskeyRequired => "passkey-required",
            Self::UnknownPasskey => "unknown-passkey",
            Self::FullScrape => "full-scrape",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The `warning message` sent when an `ip=` IP literal was ignored.
pub const IP_IGNORED_WARNING: &str =
    "ip parameter ignored: this tracker uses the address your announce came from";

/// Most peers in one UDP reply over IPv4 (keeps the datagram under a 1500-byte MTU).
pub const UDP_MAX_PEERS_V4: usize = 200;
/// Most peers in one UDP reply over IPv6 (keeps the datagram within IPv6's minimum MTU).
pub const UDP_MAX_PEERS_V6: usize = 65;

/// The tracker's shared state (owned by the server's `AppState`).
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    stats: Arc<TrackerStats>,
    swarm: Swarm,
    access: AccessList,
    passkeys: PasskeyCache,
    conn_ids: ConnectionIds,
}

impl Tracker {
    /// A tracker with an empty swarm. The access list is empty until [`Tracker::reload`].
    #[must_use]
    pub fn new(config: &TrackerConfig) -> Self {
        let stats = Arc::new(TrackerStats::default());
        let limits = SwarmLimits {
            max_peers_per_torrent: usize::try_from(config.max_peers_per_torrent)
                .unwrap_or(usize::MAX),
            max_peers: config.max_peers,
            max_peer_age: Duration::from_secs(u64::from(config.max_peer_age_secs)),
        };
        Self {
            config: config.clone(),
            swarm: Swarm::new(limits, stats.clone()),
            stats,
            access: AccessList::new(config.access, config.access_list_file.clone()),
            passkeys: PasskeyCache::new(Duration::from_secs(u64::from(config.passkey_cache_secs))),
            conn_ids: ConnectionIds::new(),
        }
    }

    /// The `[tracker]` configuration.
    #[must_use]
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Counters and gauges.
    #[must_use]
    pub fn stats(&self) -> &Arc<TrackerStats> {
        &self.stats
    }

    /// The swarm.
    #[must_use]
    pub fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// The access policy.
    #[must_use]
    pub fn access(&self) -> &AccessList {
        &self.access
    }

    /// The UDP connection-id minter.
    #[must_use]
    pub fn connection_ids(&self) -> &ConnectionIds {
        &self.conn_ids
    }

    /// The passkey cache.
    #[must_use]
    pub fn passkeys(&self) -> &PasskeyCache {
        &self.passkeys
    }

    /// Peers to return for a requested `numwant`: absent or negative means the default;
    /// anything above the cap is capped.
    #[must_use]
    pub fn numwant(&self, requested: Option<i64>) -> usize {
        let n = match requested {
            Some(n) if n >= 0 => u64::try_from(n)
                .unwrap_or(0)
                .min(u64::from(self.config.max_numwant)),
            _ => u64::from(self.config.default_numwant),
        };
        usize::try_from(n).unwrap_or(0)
    }

    /// Re-read the access list (dropping torrents it no longer permits) and forget cached
    /// passkeys. Returns the number of listed info-hashes. On error nothing changes.
    pub fn reload(&self) -> Result<usize, AccessListError> {
        let n = self.access.reload()?;
        self.passkeys.clear();
        if self.access.mode() != crate::server::config::AccessMode::Open {
            self.swarm.retain(|ih| self.access.permits(ih));
        }
        Ok(n)
    }

    /// In private mode, check the passkey from the URL (cached lookups); otherwise accept.
    pub async fn authorize(&self, store: &dyn Store, passkey: Option<&str>) -> Result<(), Refusal> {
        if !self.config.private {
            return Ok(());
        }
        let passkey = passkey.ok_or(Refusal::PasskeyRequired)?;
        match self.passkeys.check(store, passkey).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::UnknownPasskey),
            Err(e) => {
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "passkey lookup failed");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// Check the access list, then record the announce and choose peers into `out`.
    pub fn announce(&self, input: AnnounceInput, out: &mut Selection) -> Result<Counts, Refusal> {
        if !self.access.permits(&input.info_hash) {
            return Err(Refusal::NotAllowed);
        }
        self.swarm.announce(input, out)
    }

    /// Turn an HTTP announce into swarm input. The peer's address is the connection's,
    /// unless `ip=` names an onion/I2P host (always honoured) or an IP literal with
    /// `trust_ip_param` on. Returns a warning to pass on when an `ip=` literal was ignored.
    pub fn http_input(
        &self,
        req: &AnnounceRequest,
        remote: SocketAddr,
    ) -> Result<(AnnounceInput, Option<&'static str>), Refusal> {
        let mut warning = None;
        let host = match &req.ip {
            Some(h) if h.is_name() || self.config.trust_ip_param => h.clone(),
            Some(_) => {
                warning = Some(IP_IGNORED_WARNING);
                PeerHost::from_ip(remote.ip())
            }
            None => PeerHost::from_ip(remote.ip()),
        };
        check_port(req.port, req.event)?;
        let input = AnnounceInput {
            info_hash: req.info_hash,
            peer_id: req.peer_id,
            addr: PeerAddr::new(host, req.port),
            key: req
                .key
                .map_or(KeyTag::NONE, |k| self.swarm.key_tag(k.as_bytes())),
            event: req.event,
            seeder: req.left == Some(0),
            numwant: self.numwant(req.numwant),
            want: if req.compact {
                Want::Compact
            } else {
                Want::Dict
            },
        };
        Ok((input, warning))
    }

    /// Turn a UDP announce into swarm input: the sender's address (the request's `ip`
    /// field only with `trust_ip_param`), peers of the sender's family, capped to fit a
    /// datagram.
    pub fn udp_input(
        &self,
        req: &udp::AnnounceRequest,
        remote: SocketAddr,
    ) -> Result<AnnounceInput, Refusal> {
        let mut host = PeerHost::from_ip(remote.ip());
        if self.config.trust_ip_param && !req.ip.is_unspecified() {
            host = PeerHost::from_ip(IpAddr::V4(req.ip));
        }
        check_port(req.port, req.event)?;
        let (want, cap) = match PeerHost::from_ip(remote.ip()) {
            PeerHost::V6(_) => (Want::V6, UDP_MAX_PEERS_V6),
            PeerHost::V4(_) | PeerHost::Onion(_) | PeerHost::I2p(_) => (Want::V4, UDP_MAX_PEERS_V4),
        };
        Ok(AnnounceInput {
            info_hash: req.info_hash,
            peer_id: req.peer_id,
            addr: PeerAddr::new(host, req.port),
            key: self.swarm.key_tag(&req.key.to_be_bytes()),
            event: req.event,
            seeder: req.left == 0,
            numwant: self.numwant(Some(i64::from(req.num_want))).min(cap),
            want,
        })
    }

    /// Sweep expired peers every `sweep_interval_secs` until `shutdown`.
    pub async fn run_sweeper(&self, shutdown: CancellationToken) {
        let every = Duration::from_secs(u64::from(self.config.sweep_interval_secs));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    let removed = self.swarm.sweep();
                    if removed > 0 {
                        tracing::debug!(removed, "swept expired peers");
                    }
                }
            }
        }
    }
}

fn check_port(port: u16, event: AnnounceEvent) -> Result<(), Refusal> {
    if port == 0 && event != AnnounceEvent::Stopped {
        Err(Refusal::PortZero)
    } else {
        Ok(())
    }
}
