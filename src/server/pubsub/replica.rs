//! Cross-replica fan-out over PostgreSQL `LISTEN`/`NOTIFY` (no extra broker).
//!
//! Mailbox arrivals use a second channel, `megatorrent_mail`, with `<key hex>:<id>`: a
//! replica with sockets watching that mailbox pushes the arrival to them (nothing is read
//! from the store; a lost notification only delays the client to its next listing).
//!
//! After a publish the replica runs `pg_notify('megatorrent_manifests', '<key hex>:<seq>')`.
//! Every replica listens on that channel with a dedicated connection. On news of a
//! sequence newer than it fanned out, a replica with subscribers for the key reads the
//! manifest from the store (never from the payload) and fans it out; one with only
//! long-poll waiters just wakes them. When the listening connection is lost it is
//! re-established and every subscribed key is re-read from the store, so publishes made
//! while it was down still arrive.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{push_frame, Hub, MailWatchers};
use crate::proto::mailbox::valid_message_id;
use crate::proto::PublicKey;
use crate::store::Store;

/// The notification channel.
pub const CHANNEL: &str = "megatorrent_manifests";
/// The mailbox-arrival channel.
pub const MAIL_CHANNEL: &str = "megatorrent_mail";

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Tell every replica that `key` now has `sequence`.
pub async fn notify(pool: &PgPool, key: &PublicKey, sequence: u64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload(key, sequence))
        .execute(pool)
        .await?;
    Ok(())
}

/// Tell every replica that an envelope `id` for `key` was stored.
pub async fn notify_mail(pool: &PgPool, key: &PublicKey, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(MAIL_CHANNEL)
        .bind(format!("{}:{id}", key.to_hex()))
        .execute(pool)
        .await?;
    Ok(())
}

/// Parse a mailbox notification payload; `None` for anything malformed.
#[must_use]
pub fn parse_mail_payload(text: &str) -> Option<(PublicKey, &str)> {
    let (key, id) = text.split_once(':')?;
    valid_message_id(id).then_some((PublicKey::from_hex(key).ok()?, id))
}

/// The notification payload.
#[must_use]
pub fn payload(key: &PublicKey, sequence: u64) -> String {
    format!("{}:{sequence}", key.to_hex())
}

/// Parse a notification payload; `None` for anything malformed.
#[must_use]
pub fn parse_payload(text: &str) -> Option<(PublicKey, u64)> {
    let (key, seq) = text.split_once(':')?;
    Some((PublicKey::from_hex(key).ok()?, seq.parse().ok()?))
}

/// Listen until `shutdown`, reconnecting with exponential backoff.
///
/// The listening connection comes from a one-connection pool of its own (same connect
/// options as the store's), so it never takes a connection the store's queries need.
pub async fn listen(
    pool: PgPool,
    store: Arc<dyn Store>,
    hub: Hub,
    mail: MailWatchers,
    shutdown: CancellationToken,
) {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let attempt = async {
            let mut l = PgListener::connect_with(&own).await?;
            l.ignore_pool_close_event(true);
            l.listen_all([CHANNEL, MAIL_CHANNEL]).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let listener = tokio::select! {
            () = shutdown.cancelled() => return,
            r = attempt => r,
        };
        match listener {
            Ok(mut listener) => {
                backoff = Duration::from_millis(100);
                resync(store.as_ref(), &hub).await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    e = receive(&mut listener, store.as_ref(), &hub, &mail) => {
                        tracing::warn!(error = %e, "replica listener failed; reconnecting");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for other replicas' publishes"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Handle notifications until the listener fails.
async fn receive(
    listener: &mut PgListener,
    store: &dyn Store,
    hub: &Hub,
    mail: &MailWatchers,
) -> sqlx::Error {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) if n.channel() == MAIL_CHANNEL => match parse_mail_payload(n.payload()) {
                Some((key, id)) => {
                    mail.arrived(&key, id);
                }
                None => tracing::warn!("ignoring a malformed mailbox notification"),
            },
            Ok(Some(n)) => {
                hub.stats()
                    .replica_notifications
                    .fetch_add(1, Ordering::Relaxed);
                match parse_payload(n.payload()) {
                    Some((key, seq)) => on_news(store, hub, &key, seq).await,
                    None => tracing::warn!("ignoring a malformed replica notification"),
                }
            }
            Ok(None) => {
                // The connection dropped and was re-established (and re-LISTENed):
                // notifications sent meanwhile are lost, so catch up from the store.
                tracing::warn!("replica listener reconnected; resynchronising");
                resync(store, hub).await;
            }
            Err(e) => return e,
        }
    }
}

/// Another replica stored `key` at `sequence`.
async fn on_news(store: &dyn Store, hub: &Hub, key: &PublicKey, sequence: u64) {
    let Some(interest) = hub.interest(key) else {
        return;
    };
    if interest.latest.is_some_and(|l| l >= sequence) {
        return;
    }
    if interest.subscribers {
        fan_out_stored(store, hub, key).await;
    } else {
        hub.wake(key, sequence);
    }
}

/// Read `key`'s manifest from the store and fan it out (the hub drops it if not newer).
async fn fan_out_stored(store: &dyn Store, hub: &Hub, key: &PublicKey) {
    match store.get_manifest(key).await {
        Ok(Some(m)) => match push_frame(&m.body) {
            Some(frame) => {
                hub.publish(key, m.sequence, &frame);
            }
            None => tracing::error!("stored manifest is not UTF-8"),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read a manifest announced by a replica"),
    }
}

/// Re-read every subscribed key.
async fn resync(store: &dyn Store, hub: &Hub) {
    for key in hub.subscribed_keys() {
        fan_out_stored(store, hub, &key).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let key = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
        let p = payload(&key, 42);
        assert!(p.len() < 100);
        assert_eq!(parse_payload(&p), Some((key, 42)));
        for bad in [
            "",
            "x:1",
            &format!("{}:", key.to_hex()),
            &format!("{}:-1", key.to_hex()),
        ] {
            assert_eq!(parse_payload(bad), None, "{bad}");
        }
        let id = "0123456789abcdef0123456789abcdef";
        let text = format!("{}:{id}", key.to_hex());
        assert_eq!(parse_mail_payload(&text), Some((key, id)));
        for bad in [
            "",
            "x:1",
            &format!("{}:zz", key.to_hex()),
            &format!("{}:", key.to_hex()),
        ] {
            assert_eq!(parse_mail_payload(bad), None, "{bad}");
        }
    }
}
