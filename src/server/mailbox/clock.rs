//! The mailbox clock: wall time at start-up plus tokio's monotonic time since.

use tokio::time::Instant;

/// Time for message expiry and purging. It reads the wall clock once, at construction, and
/// then advances with [`tokio::time::Instant`]: monotonic in production (a wall-clock step
/// never expires or resurrects messages), and controllable with `tokio::time::pause` in
/// tests. Request signatures are checked against the wall clock instead.
#[derive(Debug, Clone, Copy)]
pub struct MailClock {
    wall_at_start_ms: i64,
    start: Instant,
}

impl MailClock {
    /// A clock reading the wall clock now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            wall_at_start_ms: crate::now_ms(),
            start: Instant::now(),
        }
    }

    /// Milliseconds since the epoch.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.wall_at_start_ms.saturating_add(elapsed)
    }
}

impl Default for MailClock {
    fn default() -> Self {
        Self::new()
    }
}
