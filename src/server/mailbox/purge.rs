//! The background purge of expired messages and nonces.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::MailClock;
use crate::store::Store;

/// What all mailboxes held at the last purge (for the metrics gauges).
#[derive(Debug, Default)]
pub struct MailGauges {
    /// Unexpired messages.
    pub messages: AtomicU64,
    /// Their envelope bytes.
    pub bytes: AtomicU64,
    /// Whether a count has completed yet (the gauges are absent until then).
    pub known: std::sync::atomic::AtomicBool,
}

/// Every `interval`, delete what expired by `clock`, until `stop`. Failures are logged and
/// retried on the next tick.
pub async fn run_purger(
    store: Arc<dyn Store>,
    clock: MailClock,
    interval: Duration,
    gauges: Arc<MailGauges>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.purge_mail(clock.now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(messages = n, "purged expired mailbox messages"),
            Err(e) => tracing::warn!(error = %e, "mailbox purge failed"),
        }
        match store.mail_totals(clock.now_ms()).await {
            Ok(t) => {
                gauges.messages.store(t.messages, Ordering::Relaxed);
                gauges.bytes.store(t.bytes, Ordering::Relaxed);
                gauges.known.store(true, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot count mailbox messages"),
        }
    }
}
