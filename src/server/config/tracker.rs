//! `[tracker]` and `[udp]`: the BitTorrent tracker's settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[tracker]`: the BitTorrent tracker (HTTP `GET /announce`, `/scrape`; UDP in `[udp]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// Seconds clients should wait between announces (60..=86400). Default 1800.
    pub interval_secs: u32,
    /// Seconds clients must wait at least (HTTP `min interval`; 0 = not sent). Default 300.
    pub min_interval_secs: u32,
    /// Peers returned when the client does not say (`numwant` absent or negative). Default 50.
    pub default_numwant: u32,
    /// Most peers returned to one announce (1..=1000). Default 200.
    pub max_numwant: u32,
    /// A peer is forgotten this long after its last announce (>= interval). Default 3600.
    pub max_peer_age_secs: u32,
    /// How often expired peers are swept, in seconds (1..=3600). Default 60.
    pub sweep_interval_secs: u32,
    /// Peers one torrent may hold; new peers beyond it are refused. Default 100000.
    pub max_peers_per_torrent: u32,
    /// Peers the whole tracker may hold; new peers beyond it are refused. Default 2000000.
    pub max_peers: u64,
    /// Most `info_hash` values in one HTTP scrape (1..=1000). Default 256.
    pub max_scrape_hashes: u32,
    /// Use an `ip=` IP literal (HTTP) or the UDP `ip` field instead of the connection's
    /// address. Off by default: it lets anyone point a swarm at a third party (reflection
    /// abuse). `.onion`/`.i2p` names in `ip=` are always accepted.
    pub trust_ip_param: bool,
    /// Which torrents are served: `open`, `allowlist` or `denylist`. Default `open`.
    pub access: AccessMode,
    /// The list for `allowlist`/`denylist`: one 40-hex info-hash per line, `#` comments.
    /// Re-read on SIGHUP. Default: unset.
    pub access_list_file: Option<PathBuf>,
    /// Private mode: announces only on `/announce/{passkey}` with a passkey in the store.
    /// Default false.
    pub private: bool,
    /// Seconds a passkey lookup is cached in memory (1..=3600). Default 60.
    pub passkey_cache_secs: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            interval_secs: 1800,
            min_interval_secs: 300,
            default_numwant: 50,
            max_numwant: 200,
            max_peer_age_secs: 3600,
            sweep_interval_secs: 60,
            max_peers_per_torrent: 100_000,
            max_peers: 2_000_000,
            max_scrape_hashes: 256,
            trust_ip_param: false,
            access: AccessMode::Open,
            access_list_file: None,
            private: false,
            passkey_cache_secs: 60,
        }
    }
}

impl TrackerConfig {
    pub(super) fn validate(&self, errs: &mut Vec<String>) {
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errs.push(format!("tracker.{msg}"));
            }
        };
        check(
            (60..=86_400).contains(&self.interval_secs),
            "interval_secs must be in 60..=86400",
        );
        check(
            self.min_interval_secs <= self.interval_secs,
            "min_interval_secs must be at most interval_secs",
        );
        check(
            (1..=1000).contains(&self.max_numwant),
            "max_numwant must be in 1..=1000",
        );
        check(
            self.default_numwant <= self.max_numwant,
            "default_numwant must be at most max_numwant",
        );
        check(
            self.max_peer_age_secs >= self.interval_secs && self.max_peer_age_secs <= 7 * 86_400,
            "max_peer_age_secs must be in interval_secs..=604800",
        );
        check(
            (1..=3600).contains(&self.sweep_interval_secs),
            "sweep_interval_secs must be in 1..=3600",
        );
        check(
            self.max_peers_per_torrent >= 1,
            "max_peers_per_torrent must be at least 1",
        );
        check(self.max_peers >= 1, "max_peers must be at least 1");
        check(
            (1..=1000).contains(&self.max_scrape_hashes),
            "max_scrape_hashes must be in 1..=1000",
        );
        check(
            self.access == AccessMode::Open || self.access_list_file.is_some(),
            "access_list_file is required when access is allowlist or denylist",
        );
        check(
            (1..=3600).contains(&self.passkey_cache_secs),
            "passkey_cache_secs must be in 1..=3600",
        );
    }
}

/// Which torrents the tracker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Any info-hash.
    Open,
    /// Only the info-hashes in `access_list_file`.
    Allowlist,
    /// Any info-hash except those in `access_list_file`.
    Denylist,
}

/// `[udp]`: the BEP 15 UDP tracker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UdpConfig {
    /// Serve the UDP tracker. Default true.
    pub enabled: bool,
    /// Address to listen on. Default `0.0.0.0:6969`.
    pub listen: SocketAddr,
    /// Receive loops sharing the socket (0 = one per CPU, at most 16). Default 0.
    pub workers: u32,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 6969)),
            workers: 0,
        }
    }
}

impl UdpConfig {
    pub(super) fn validate(&self, errs: &mut Vec<String>) {
        if self.workers > 64 {
            errs.push("udp.workers must be at most 64".into());
        }
    }
}
