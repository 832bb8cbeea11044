//! Proof-of-work admission for writes: the difficulty controller and the stamp check.
//!
//! The difficulty starts at `pow.min_difficulty`. Every write is counted; when the writes in
//! the current window pass the threshold's budget (`threshold × window`), the difficulty
//! rises by `pow.step_bits` at once and a new window starts. Each window that ends under the
//! budget lowers it by one bit, down to the minimum. Adjustment is lazy (on each write and
//! each `/v1/info`), so there is no timer to drive.
//!
//! The server nonce is derived from a per-process random secret and the current rotation
//! epoch, so it changes every `pow.nonce_rotate_secs` without any stored state; stamps for
//! the current and the previous nonce are accepted. Replicas each have their own secret: a
//! client that meets another replica's nonce is simply asked again.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use serde_json::{json, Value};

use super::config::PowConfig;
use super::error::{ApiError, PowFailure};
use super::metrics::{Metrics, PowResult};
use crate::proto::pow;

/// The proof-of-work state. Its mutex guards two numbers and is never held across `.await`.
pub struct Pow {
    cfg: PowConfig,
    secret: [u8; 32],
    ctl: Mutex<Controller>,
}

#[derive(Debug)]
struct Controller {
    difficulty: u8,
    window_start: Instant,
    writes: u64,
}

impl Pow {
    /// A controller for `cfg` with a fresh random nonce secret.
    #[must_use]
    pub fn new(cfg: PowConfig) -> Self {
        let now = Instant::now();
        Self {
            secret: rand::random(),
            ctl: Mutex::new(Controller {
                difficulty: cfg.min_difficulty,
                window_start: now,
                writes: 0,
            }),
            cfg,
        }
    }

    fn budget(&self) -> u64 {
        let per_window = self.cfg.threshold.per_second() * self.cfg.window_secs as f64;
        (per_window.ceil() as u64).max(1)
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.cfg.window_secs.max(1))
    }

    /// Let quiet windows lower the difficulty.
    fn decay(&self, c: &mut Controller, now: Instant) {
        let elapsed = now.saturating_duration_since(c.window_start);
        let windows = elapsed.as_secs() / self.window().as_secs();
        if windows == 0 {
            return;
        }
        // The window that just ended was under budget (a busy one would have raised and
        // restarted already); every further whole window was idle.
        let drop = u8::try_from(windows).unwrap_or(u8::MAX);
        c.difficulty = c
            .difficulty
            .saturating_sub(drop)
            .max(self.cfg.min_difficulty);
        c.window_start += self.window() * u32::try_from(windows).unwrap_or(u32::MAX);
        c.writes = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Controller> {
        self.ctl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The difficulty currently demanded (0 when disabled).
    #[must_use]
    pub fn difficulty(&self) -> u8 {
        self.difficulty_at(Instant::now())
    }

    fn difficulty_at(&self, now: Instant) -> u8 {
        if !self.cfg.enabled {
            return 0;
        }
        let mut c = self.lock();
        self.decay(&mut c, now);
        c.difficulty
    }

    /// Count one write and return the difficulty it must meet.
    fn observe_write_at(&self, now: Instant) -> u8 {
        let mut c = self.lock();
        self.decay(&mut c, now);
        c.writes += 1;
        if c.writes > self.budget() {
            c.difficulty = c
                .difficulty
                .saturating_add(self.cfg.step_bits)
                .min(self.cfg.max_difficulty);
            c.window_start = now;
            c.writes = 0;
        }
        c.difficulty
    }

    fn epoch(&self) -> u64 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        secs / self.cfg.nonce_rotate_secs.max(1)
    }

    fn nonce_for(&self, epoch: u64) -> [u8; pow::NONCE_BYTES] {
        let mut input = self.secret.to_vec();
        input.extend_from_slice(&epoch.to_be_bytes());
        let full = pow::body_digest(&input);
        let mut out = [0u8; pow::NONCE_BYTES];
        out.copy_from_slice(&full[..pow::NONCE_BYTES]);
        out
    }

    /// The nonce clients should solve against now.
    #[must_use]
    pub fn current_nonce(&self) -> [u8; pow::NONCE_BYTES] {
        self.nonce_for(self.epoch())
    }

    /// Admit a write with `body`: count it, and if a difficulty is in force require a valid
    /// stamp in [`pow::HEADER`] (for the current or the previous nonce).
    pub fn check_write(
        &self,
        stamp_header: Option<&HeaderValue>,
        body: &[u8],
        metrics: &Metrics,
    ) -> Result<(), ApiError> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let difficulty = self.observe_write_at(Instant::now());
        if difficulty == 0 {
            metrics.pow_check(PowResult::NotRequired);
            return Ok(());
        }
        let epoch = self.epoch();
        let refuse = |failure, result| {
            metrics.pow_check(result);
            ApiError::Pow {
                failure,
                difficulty,
                nonce: hex::encode(self.nonce_for(epoch)),
            }
        };
        let Some(value) = stamp_header else {
            return Err(refuse(PowFailure::Missing, PowResult::Missing));
        };
        let stamp = value
            .to_str()
            .ok()
            .and_then(|v| pow::parse_stamp(v).ok())
            .ok_or_else(|| refuse(PowFailure::Invalid, PowResult::Invalid))?;
        let digest = pow::body_digest(body);
        let ok = [epoch, epoch.saturating_sub(1)]
            .iter()
            .any(|e| pow::meets(&self.nonce_for(*e), &digest, &stamp, difficulty));
        if ok {
            metrics.pow_check(PowResult::Valid);
            Ok(())
        } else {
            Err(refuse(PowFailure::Invalid, PowResult::Invalid))
        }
    }

    /// The `pow` object of `/v1/info`.
    #[must_use]
    pub fn info(&self) -> Value {
        json!({
            "enabled": self.cfg.enabled,
            "difficulty": self.difficulty(),
            "nonce": hex::encode(self.current_nonce()),
            "header": "X-Megatorrent-PoW",
            "algorithm": "sha256(nonce || sha256(body) || stamp) has >= difficulty leading zero bits",
            "maxDifficulty": self.cfg.max_difficulty,
            "nonceRotateSecs": self.cfg.nonce_rotate_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn cfg(threshold: &str) -> PowConfig {
        PowConfig {
            enabled: true,
            threshold: threshold.parse().unwrap(),
            window_secs: 10,
            step_bits: 3,
            ..PowConfig::default()
        }
    }

    #[test]
    fn difficulty_rises_past_the_threshold_and_decays() {
        // 1r/s over a 10 s window: a budget of 10 writes.
        let p = Pow::new(cfg("1r/s"));
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(p.observe_write_at(t0), 0);
        }
        assert_eq!(p.observe_write_at(t0), 3);
        for _ in 0..10 {
            assert_eq!(p.observe_write_at(t0), 3);
        }
        assert_eq!(p.observe_write_at(t0), 6);
        // Two quiet windows: two bits fewer.
        assert_eq!(p.difficulty_at(t0 + Duration::from_secs(25)), 4);
        assert_eq!(p.difficulty_at(t0 + Duration::from_secs(1000)), 0);
    }

    #[test]
    fn difficulty_is_capped() {
        let mut c = cfg("1r/s");
        c.max_difficulty = 5;
        let p = Pow::new(c);
        let t0 = Instant::now();
        for _ in 0..100 {
            p.observe_write_at(t0);
        }
        assert_eq!(p.difficulty_at(t0), 5);
    }

    #[test]
    fn stamps_are_checked_against_current_and_previous_nonce() {
        let mut c = cfg("1r/s");
        c.min_difficulty = 6;
        let p = Pow::new(c);
        let m = Metrics::new();
        let body = b"{}";
        let mut h = HeaderMap::new();
        let err = p.check_write(h.get(pow::HEADER), body, &m).unwrap_err();
        assert!(matches!(
            err,
            ApiError::Pow {
                failure: PowFailure::Missing,
                difficulty: 6,
                ..
            }
        ));
        let digest = pow::body_digest(body);
        let epoch = p.epoch();
        for e in [epoch, epoch - 1] {
            let stamp = pow::solve(&p.nonce_for(e), &digest, 6, 0, 1 << 22).unwrap();
            h.insert(pow::HEADER, hex::encode(stamp).parse().unwrap());
            p.check_write(h.get(pow::HEADER), body, &m).unwrap();
        }
        // A stamp for an expired nonce that happens to fail both live ones.
        let live = |s: &[u8]| {
            [epoch, epoch - 1]
                .iter()
                .any(|e| pow::meets(&p.nonce_for(*e), &digest, s, 6))
        };
        let stale = (0u64..)
            .filter_map(|start| pow::solve(&p.nonce_for(epoch - 5), &digest, 6, start, 1))
            .find(|s| !live(s))
            .unwrap();
        h.insert(pow::HEADER, hex::encode(stale).parse().unwrap());
        assert!(p.check_write(h.get(pow::HEADER), body, &m).is_err());
        h.insert(pow::HEADER, "not hex".parse().unwrap());
        assert!(matches!(
            p.check_write(h.get(pow::HEADER), body, &m),
            Err(ApiError::Pow {
                failure: PowFailure::Invalid,
                ..
            })
        ));
        let text = m.encode().unwrap();
        assert!(
            text.contains("megatorrent_pow_checks_total{result=\"valid\"} 2"),
            "{text}"
        );
        assert!(text.contains("megatorrent_pow_checks_total{result=\"missing\"} 1"));
    }

    #[test]
    fn disabled_demands_nothing() {
        let p = Pow::new(PowConfig::default());
        assert_eq!(p.difficulty(), 0);
        p.check_write(None, b"x", &Metrics::new()).unwrap();
        assert_eq!(p.info()["enabled"], false);
    }
}
