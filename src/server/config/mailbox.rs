//! `[mailbox]`: end-to-end encrypted store-and-forward messages (see `docs/mail.md`).

use serde::{Deserialize, Serialize};

/// `[mailbox]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    /// Serve `/v1/mailbox/…`. Default true.
    pub enabled: bool,
    /// Largest envelope accepted, in bytes (256..=1048576). Default 65536.
    pub max_envelope_bytes: usize,
    /// Unexpired messages one recipient may hold (1..=100000). Default 200.
    pub max_messages_per_recipient: u64,
    /// Total envelope bytes one recipient may hold (at least `max_envelope_bytes`, at most
    /// 1 GiB). Default 4194304.
    pub max_bytes_per_recipient: u64,
    /// Days a message is kept unless acknowledged (3..=30). Default 7.
    pub ttl_days: u32,
    /// How far a signed request's timestamp may be from the server clock, in seconds
    /// (10..=3600). Default 300.
    pub auth_skew_secs: u64,
    /// Seconds between purges of expired messages and nonces (1..=86400). Default 300.
    pub purge_interval_secs: u64,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_envelope_bytes: 64 * 1024,
            max_messages_per_recipient: 200,
            max_bytes_per_recipient: 4 * 1024 * 1024,
            ttl_days: 7,
            auth_skew_secs: 300,
            purge_interval_secs: 300,
        }
    }
}

impl MailboxConfig {
    /// The TTL in milliseconds.
    #[must_use]
    pub fn ttl_ms(&self) -> i64 {
        i64::from(self.ttl_days) * 86_400_000
    }

    pub(super) fn validate(&self, errs: &mut Vec<String>) {
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errs.push(format!("mailbox.{msg}"));
            }
        };
        check(
            (256..=1024 * 1024).contains(&self.max_envelope_bytes),
            "max_envelope_bytes must be in 256..=1048576",
        );
        check(
            (1..=100_000).contains(&self.max_messages_per_recipient),
            "max_messages_per_recipient must be in 1..=100000",
        );
        check(
            self.max_bytes_per_recipient >= self.max_envelope_bytes as u64
                && self.max_bytes_per_recipient <= 1 << 30,
            "max_bytes_per_recipient must be at least max_envelope_bytes and at most 1073741824",
        );
        check(
            (3..=30).contains(&self.ttl_days),
            "ttl_days must be in 3..=30",
        );
        check(
            (10..=3600).contains(&self.auth_skew_secs),
            "auth_skew_secs must be in 10..=3600",
        );
        check(
            (1..=86_400).contains(&self.purge_interval_secs),
            "purge_interval_secs must be in 1..=86400",
        );
    }
}
