//! `[profiles]`: signed profile documents (see `docs/api.md`, "Profiles").

use serde::{Deserialize, Serialize};

use crate::proto::ProfileLimits;

/// `[profiles]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfilesConfig {
    /// Days a profile is served after it was published, unless re-published with a higher
    /// sequence (1..=30). Default 7.
    pub ttl_days: u32,
    /// Largest avatar, in decoded bytes (1024..=262144). Default 65536. The whole document
    /// may be the avatar's base64 length plus 8192 bytes.
    pub max_avatar_bytes: usize,
    /// Seconds between purges of expired profiles (1..=86400). Default 300.
    pub purge_interval_secs: u64,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self {
            ttl_days: 7,
            max_avatar_bytes: ProfileLimits::DEFAULT_MAX_AVATAR_BYTES,
            purge_interval_secs: 300,
        }
    }
}

impl ProfilesConfig {
    /// The TTL in milliseconds.
    #[must_use]
    pub fn ttl_ms(&self) -> i64 {
        i64::from(self.ttl_days) * 86_400_000
    }

    /// The verification limits.
    #[must_use]
    pub fn limits(&self) -> ProfileLimits {
        ProfileLimits {
            max_avatar_bytes: self.max_avatar_bytes,
        }
    }

    pub(super) fn validate(&self, errs: &mut Vec<String>) {
        if !(1..=30).contains(&self.ttl_days) {
            errs.push("profiles.ttl_days must be in 1..=30".into());
        }
        let (lo, hi) = (
            ProfileLimits::MIN_AVATAR_BYTES,
            ProfileLimits::HARD_MAX_AVATAR_BYTES,
        );
        if !(lo..=hi).contains(&self.max_avatar_bytes) {
            errs.push(format!("profiles.max_avatar_bytes must be in {lo}..={hi}"));
        }
        if !(1..=86_400).contains(&self.purge_interval_secs) {
            errs.push("profiles.purge_interval_secs must be in 1..=86400".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let mut errs = vec![];
        ProfilesConfig::default().validate(&mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        for cfg in [
            ProfilesConfig {
                ttl_days: 0,
                ..Default::default()
            },
            ProfilesConfig {
                ttl_days: 31,
                ..Default::default()
            },
            ProfilesConfig {
                max_avatar_bytes: 1023,
                ..Default::default()
            },
            ProfilesConfig {
                max_avatar_bytes: 256 * 1024 + 1,
                ..Default::default()
            },
            ProfilesConfig {
                purge_interval_secs: 0,
                ..Default::default()
            },
        ] {
            let mut errs = vec![];
            cfg.validate(&mut errs);
            assert_eq!(errs.len(), 1, "{cfg:?}");
        }
        assert_eq!(ProfilesConfig::default().ttl_ms(), 7 * 86_400_000);
    }
}
