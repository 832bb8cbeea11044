//! Config sections and rules for metrics, rate limits, proof-of-work and connection limits.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Config;
use crate::server::quota::Quota;

/// `[metrics]`: the private Prometheus listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all. Default true.
    pub enabled: bool,
    /// Address of the metrics listener (keep it private). Default `127.0.0.1:9100`.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
        }
    }
}

/// `[onion_proxy]`: an optional listener for a Tor daemon's `HiddenServicePort` with
/// `HiddenServiceExportCircuitID haproxy`. Every connection must start with a PROXY v1
/// header; the Tor circuit id becomes the rate-limit key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnionProxyConfig {
    /// Address to listen on (e.g. `127.0.0.1:6970`). Default: unset (no onion listener).
    pub listen: Option<SocketAddr>,
}

/// `[pow]`: proof-of-work admission for writes (`PUT /v1/manifests/…`, `POST /announce`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowConfig {
    /// Require stamps when the difficulty is above zero. Default false.
    pub enabled: bool,
    /// Difficulty (leading zero bits) when idle; 0 means no stamp at rest. Default 0.
    pub min_difficulty: u8,
    /// The ceiling the difficulty can rise to (≤ 32). Default 24.
    pub max_difficulty: u8,
    /// Write rate (all clients) above which the difficulty rises. Default `"50r/s"`.
    pub threshold: Quota,
    /// Bits added each time a window's writes pass the threshold. Default 2.
    pub step_bits: u8,
    /// Length of a measuring window in seconds; each quiet window lowers the difficulty by
    /// one bit. Default 10.
    pub window_secs: u64,
    /// How often the server nonce changes, in seconds (current and previous are accepted).
    /// Default 300.
    pub nonce_rotate_secs: u64,
}

impl Default for PowConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            min_difficulty: 0,
            max_difficulty: 24,
            threshold: Quota::new(nonzero(50), crate::server::quota::Per::Second),
            step_bits: 2,
            window_secs: 10,
            nonce_rotate_secs: 300,
        }
    }
}

/// A non-zero count for the built-in default quotas (`n` is never 0 at the call sites).
pub(super) fn nonzero(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN)
}

/// Check the hardening keys; push one message per violation.
pub(super) fn validate(cfg: &Config, errs: &mut Vec<String>) {
    let h = &cfg.http;
    if !(1..=3600).contains(&h.header_read_timeout_secs) {
        errs.push("http.header_read_timeout_secs must be in 1..=3600".into());
    }
    if !(8192..=1_048_576).contains(&h.max_header_bytes) {
        errs.push("http.max_header_bytes must be in 8192..=1048576".into());
    }
    // A scrape the tracker accepts must fit in a request head (request line + headers).
    let scrape_len = crate::proto::tracker::ScrapeRequest::max_query_len(
        usize::try_from(cfg.tracker.max_scrape_hashes).unwrap_or(usize::MAX),
    );
    let needed = scrape_len.saturating_add(1024);
    if h.max_header_bytes < needed {
        errs.push(format!(
            "http.max_header_bytes must be at least {needed} to fit a scrape of \
             tracker.max_scrape_hashes info-hashes"
        ));
    }
    if !(1..=1_000_000).contains(&h.max_connections) {
        errs.push("http.max_connections must be in 1..=1000000".into());
    }
    if h.shutdown_delay_secs > 300 {
        errs.push("http.shutdown_delay_secs must be at most 300".into());
    }
    if cfg.limits.max_tracked_clients < 16 {
        errs.push("limits.max_tracked_clients must be at least 16".into());
    }
    if cfg.metrics.enabled && cfg.metrics.listen == h.listen && h.listen.port() != 0 {
        errs.push("metrics.listen must differ from http.listen".into());
    }
    let p = &cfg.pow;
    if p.max_difficulty > 32 || p.min_difficulty > p.max_difficulty {
        errs.push("pow: need min_difficulty <= max_difficulty <= 32".into());
    }
    if p.step_bits == 0 || p.step_bits > 16 {
        errs.push("pow.step_bits must be in 1..=16".into());
    }
    if !(1..=3600).contains(&p.window_secs) {
        errs.push("pow.window_secs must be in 1..=3600".into());
    }
    if !(10..=86_400).contains(&p.nonce_rotate_secs) {
        errs.push("pow.nonce_rotate_secs must be in 10..=86400".into());
    }
}

impl Config {
    /// The rate limits derived from `[limits]`.
    #[must_use]
    pub fn rate_limits(&self) -> crate::server::rate_limit::RateLimits {
        let l = &self.limits;
        crate::server::rate_limit::RateLimits {
            read: l.read_quota,
            write: l.write_quota,
            global_write: l.global_write_quota,
            key_write: l.key_write_quota,
            max_tracked_clients: l.max_tracked_clients,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::ConfigError;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn quotas_and_lists_come_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("MEGATORRENT_LIMITS__READ_QUOTA", "5r/s");
            jail.set_env(
                "MEGATORRENT_HTTP__TRUSTED_PROXIES",
                "[\"10.0.0.0/8\",\"::1/128\"]",
            );
            jail.set_env("MEGATORRENT_ONION_PROXY__LISTEN", "127.0.0.1:6970");
            jail.set_env("MEGATORRENT_POW__ENABLED", "true");
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.limits.read_quota.to_string(), "5r/s");
            assert_eq!(cfg.http.trusted_proxies.len(), 2);
            assert!(cfg.onion_proxy.listen.is_some());
            assert!(cfg.pow.enabled);
            jail.set_env("MEGATORRENT_LIMITS__WRITE_QUOTA", "lots");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("invalid quota"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn hardening_rules_are_checked() {
        let mut cfg = Config::default();
        cfg.http.max_header_bytes = 100;
        cfg.http.header_read_timeout_secs = 0;
        cfg.http.max_connections = 0;
        cfg.pow.min_difficulty = 30;
        cfg.pow.max_difficulty = 20;
        cfg.pow.step_bits = 0;
        cfg.metrics.listen = cfg.http.listen;
        let Err(ConfigError::Invalid(errs)) = cfg.validate() else {
            panic!("expected invalid");
        };
        assert_eq!(errs.len(), 7, "{errs:?}");
    }

    #[test]
    fn the_header_cap_must_fit_the_largest_scrape() {
        let mut cfg = Config::default();
        cfg.tracker.max_scrape_hashes = 1000;
        let Err(ConfigError::Invalid(errs)) = cfg.validate() else {
            panic!("expected invalid");
        };
        assert!(errs[0].contains("at least 73048"), "{errs:?}");
        cfg.http.max_header_bytes = 73_048;
        cfg.validate().unwrap();
    }
}
