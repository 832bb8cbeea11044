//! Manifest pub/sub: push every newer manifest of a key to the sockets subscribed to it,
//! on this replica ([`Hub`]) and, with PostgreSQL, on every other replica
//! (`LISTEN`/`NOTIFY`, [`replica`]).
//!
//! A publish (WebSocket or `PUT /v1/manifests`) calls [`PubSub::published`] once the store
//! accepted a newer sequence: the push frame is serialized once, fanned out here, then
//! announced to the other replicas as `<key hex>:<sequence>`. A replica that hears of it
//! and has subscribers for that key reads the manifest from the store and fans it out.
//!
//! Delivery: each socket gets each sequence at most once and never an older one after a
//! newer. Publishes on this replica are delivered one by one. A replica catching up from
//! the store sends the newest stored manifest, so two publishes of one key arriving at
//! another replica faster than it reads the store may be coalesced into the newer one.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::proto::PublicKey;
use crate::store::Store;

pub mod hub;
pub mod mail;
pub mod outbox;
#[cfg(feature = "postgres")]
pub mod replica;

pub use hub::{Frame, Hub, HubStats, HubStatsSnapshot, Waiter};
pub use mail::MailWatchers;
pub use outbox::{CloseReason, Closer, Outbox};

/// The push frame for a stored manifest: `{"action":"publish","manifest":<canonical>}`.
///
/// `canonical` is the stored canonical JSON (valid UTF-8 by construction); bytes that are
/// not UTF-8 (a corrupt row) yield `None`.
#[must_use]
pub fn push_frame(canonical: &[u8]) -> Option<Frame> {
    let text = std::str::from_utf8(canonical).ok()?;
    Some(Frame::from(format!(
        "{{\"action\":\"publish\",\"manifest\":{text}}}"
    )))
}

/// The pub/sub handle shared by the HTTP API and the WebSocket. Cheap to clone.
#[derive(Clone)]
pub struct PubSub {
    hub: Hub,
    mail: MailWatchers,
    #[cfg(feature = "postgres")]
    pg: Option<sqlx::PgPool>,
}

impl PubSub {
    /// Pub/sub over `store`: cross-replica when it is PostgreSQL.
    #[must_use]
    pub fn new(store: &dyn Store) -> Self {
        #[cfg(not(feature = "postgres"))]
        let _ = store;
        Self {
            hub: Hub::new(),
            mail: MailWatchers::default(),
            #[cfg(feature = "postgres")]
            pg: store.pg_pool().cloned(),
        }
    }

    /// The local hub.
    #[must_use]
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The sockets watching mailboxes.
    #[must_use]
    pub fn mail(&self) -> &MailWatchers {
        &self.mail
    }

    /// An envelope `id` for `key` was stored: push its arrival to the sockets watching that
    /// mailbox here and tell the other replicas (which push to theirs). A failed
    /// notification is logged only: the envelope is stored and will be listed.
    pub async fn mail_arrived(&self, key: &PublicKey, id: &str) {
        self.mail.arrived(key, id);
        #[cfg(feature = "postgres")]
        if let Some(pool) = &self.pg {
            if let Err(e) = replica::notify_mail(pool, key, id).await {
                tracing::warn!(error = %e, "could not notify other replicas of a mailbox arrival");
            }
        }
    }

    /// Whether publishes reach other replicas.
    #[must_use]
    pub fn replicated(&self) -> bool {
        #[cfg(feature = "postgres")]
        return self.pg.is_some();
        #[cfg(not(feature = "postgres"))]
        false
    }

    /// The store accepted `key` at `sequence` (canonical bytes `body`): fan it out here and
    /// tell the other replicas. A failed notification is logged, never returned: the
    /// manifest is stored, and other replicas resynchronise when their listener reconnects.
    pub async fn published(&self, key: &PublicKey, sequence: u64, body: &[u8]) {
        if self.hub.interest(key).is_some() {
            if let Some(frame) = push_frame(body) {
                self.hub.publish(key, sequence, &frame);
            }
        }
        #[cfg(feature = "postgres")]
        if let Some(pool) = &self.pg {
            if let Err(e) = replica::notify(pool, key, sequence).await {
                tracing::warn!(error = %e, "could not notify other replicas of a publish");
            }
        }
    }

    /// Run the cross-replica listener until `shutdown` (returns at once without
    /// PostgreSQL).
    pub async fn run_replication(&self, store: Arc<dyn Store>, shutdown: CancellationToken) {
        #[cfg(feature = "postgres")]
        if let Some(pool) = self.pg.clone() {
            replica::listen(pool, store, self.hub.clone(), self.mail.clone(), shutdown).await;
            return;
        }
        let _ = (store, shutdown);
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> HubStatsSnapshot {
        self.hub.stats().snapshot()
    }

    /// Count a socket opened (`true`) or closed (`false`); returns the open count.
    pub fn count_socket(&self, open: bool) -> u64 {
        let s = &self.hub.stats().sockets;
        if open {
            s.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            s.fetch_sub(1, Ordering::Relaxed).saturating_sub(1)
        }
    }
}
