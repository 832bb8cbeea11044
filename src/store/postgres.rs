//! PostgreSQL implementation of [`Store`](super::Store).
//!
//! # Conditional writes
//!
//! Manifest writes are group-committed: one task applies whatever is queued in one
//! transaction (the store's `group` module and `postgres/manifest.rs`). Every other put runs
//! in one `READ COMMITTED` transaction of its own:
//!
//! 1. `SELECT … FOR UPDATE` the slot's row. If it exists it is now locked until commit, so
//!    the outcome (`Created` over a tombstone, `Updated`, `Unchanged`, `Conflict`) is decided
//!    against the state the write will replace.
//! 2. A new sequence above the mark is written with `UPDATE … WHERE sequence < $new`;
//!    an empty slot with `INSERT … ON CONFLICT DO NOTHING`. Both are conditional on their
//!    own, so no interleaving can ever lower a mark.
//! 3. If the insert lost a race with another first writer (no row inserted), the row now
//!    exists and the next attempt locks it in step 1.
//!
//! Several server replicas can share one database: migrations take sqlx's advisory lock and
//! all writes above are safe across connections.

mod mailbox;
mod manifest;
mod profile;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::group::GroupCommit;
use super::slot::{count_from_db, gave_up, plan, seq_from_db, seq_to_db, Plan, Slot};
use super::{
    MailMeta, MailPut, MailQuota, MailRecord, MailTotals, ManifestRecord, PointerRecord,
    ProfileRecord, PutOutcome, Store, StoreError, StoreOptions, StoreStats, StoredManifest,
    StoredProfile,
};
use crate::proto::{PublicKey, Signature};

/// Attempts of a conditional write: a lost first-insert race costs one more; the bound only
/// guards against a foreign writer deleting rows.
const PUT_ATTEMPTS: usize = 3;

/// A PostgreSQL-backed [`Store`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The manifest group-commit queue (its task writes through `pool`).
    manifests: GroupCommit,
}

impl PgStore {
    /// Connect to the database named by `url` (`postgres://…`) and apply migrations.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        // Never echo the URL: it may carry a password.
        let mut conn = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(format!("not a valid PostgreSQL URL ({e})")))?;
        if conn.get_application_name().is_none() {
            conn = conn.application_name("megatorrent");
        }
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(opts.acquire_timeout_secs))
            .connect_with(conn)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let wait = Duration::from_secs(opts.acquire_timeout_secs);
        let manifests = GroupCommit::spawn(manifest::Writer(pool.clone()), wait);
        Ok(Self { pool, manifests })
    }

    /// The connection pool, for features that need PostgreSQL itself (`LISTEN`/`NOTIFY`).
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    async fn put_manifest(&self, rec: &ManifestRecord) -> Result<PutOutcome, StoreError> {
        self.manifests.put(rec).await
    }

    async fn get_manifest(&self, key: &PublicKey) -> Result<Option<StoredManifest>, StoreError> {
        let row: Option<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT sequence, body, updated_at FROM manifests \
             WHERE public_key = $1 AND body IS NOT NULL",
        )
        .bind(&key.as_bytes()[..])
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(sequence, body, updated_at_ms)| {
            Ok(StoredManifest {
                sequence: seq_from_db(sequence, "manifest")?,
                body,
                updated_at_ms,
            })
        })
        .transpose()
    }

    async fn delete_manifest(&self, key: &PublicKey) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE manifests SET body = NULL, updated_at = $2 \
             WHERE public_key = $1 AND body IS NOT NULL",
        )
        .bind(&key.as_bytes()[..])
        .bind(crate::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn manifest_high_water(&self, key: &PublicKey) -> Result<Option<u64>, StoreError> {
        let row: Option<i64> =
            sqlx::query_scalar("SELECT sequence FROM manifests WHERE public_key = $1")
                .bind(&key.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await?;
        row.map(|s| seq_from_db(s, "manifest")).transpose()
    }

    async fn put_pointer(&self, rec: &PointerRecord) -> Result<PutOutcome, StoreError> {
        let seq = seq_to_db(rec.seq)?;
        let key = &rec.key.as_bytes()[..];
        let sig = &rec.signature.as_bytes()[..];
        for _ in 0..PUT_ATTEMPTS {
            let mut tx = self.pool.begin().await?;
            let row: Option<(i64, bool, bool)> = sqlx::query_as(
                "SELECT seq, signature IS NOT NULL, \
                        coalesce(infohash_text = $2 AND signature = $3, false) \
                 FROM pointers WHERE public_key = $1 FOR UPDATE",
            )
            .bind(key)
            .bind(rec.infohash_text.as_str())
            .bind(sig)
            .fetch_optional(&mut *tx)
            .await?;
            let slot = match row {
                Some((s, live, same)) => Some(Slot {
                    sequence: seq_from_db(s, "pointer")?,
                    live,
                    same,
                }),
                None => None,
            };
            let outcome = match plan(rec.seq, slot) {
                Plan::Done(outcome) => Some(outcome),
                Plan::Insert => {
                    let done = sqlx::query(
                        "INSERT INTO pointers \
                         (public_key, seq, public_key_text, infohash_text, signature, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (public_key) DO NOTHING",
                    )
                    .bind(key)
                    .bind(seq)
                    .bind(rec.public_key_text.as_str())
                    .bind(rec.infohash_text.as_str())
                    .bind(sig)
                    .bind(rec.updated_at_ms)
                    .execute(&mut *tx)
                    .await?;
                    (done.rows_affected() == 1).then_some(PutOutcome::Created)
                }
                Plan::Replace { was_live } => {
                    let done = sqlx::query(
                        "UPDATE pointers SET seq = $2, public_key_text = $3, \
                         infohash_text = $4, signature = $5, updated_at = $6 \
                         WHERE public_key = $1 AND seq < $2",
                    )
                    .bind(key)
                    .bind(seq)
                    .bind(rec.public_key_text.as_str())
                    .bind(rec.infohash_text.as_str())
                    .bind(sig)
                    .bind(rec.updated_at_ms)
                    .execute(&mut *tx)
                    .await?;
                    (done.rows_affected() == 1).then_some(if was_live {
                        PutOutcome::Updated
                    } else {
                        PutOutcome::Created
                    })
                }
            };
            tx.commit().await?;
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
        Err(gave_up("pointer", PUT_ATTEMPTS))
    }

    async fn get_pointer(&self, key: &PublicKey) -> Result<Option<PointerRecord>, StoreError> {
        type Row = (i64, Option<String>, Option<String>, Vec<u8>, i64);
        let row: Option<Row> = sqlx::query_as(
            "SELECT seq, public_key_text, infohash_text, signature, updated_at FROM pointers \
             WHERE public_key = $1 AND signature IS NOT NULL",
        )
        .bind(&key.as_bytes()[..])
        .fetch_optional(&self.pool)
        .await?;
        let Some((seq, pk_text, ih_text, sig, updated_at_ms)) = row else {
            return Ok(None);
        };
        let (Some(public_key_text), Some(infohash_text)) = (pk_text, ih_text) else {
            return Err(StoreError::Corrupt(
                "live pointer row without its text columns".into(),
            ));
        };
        let sig: [u8; Signature::LEN] = sig.try_into().map_err(|v: Vec<u8>| {
            StoreError::Corrupt(format!("pointer signature is {} bytes", v.len()))
        })?;
        Ok(Some(PointerRecord {
            key: *key,
            public_key_text,
            infohash_text,
            seq: seq_from_db(seq, "pointer")?,
            signature: Signature::from(sig),
            updated_at_ms,
        }))
    }

    async fn put_profile(&self, rec: &ProfileRecord) -> Result<PutOutcome, StoreError> {
        self.profile_put(rec).await
    }

    async fn get_profile(
        &self,
        key: &PublicKey,
        now_ms: i64,
    ) -> Result<Option<StoredProfile>, StoreError> {
        self.profile_get(key, now_ms).await
    }

    async fn profile_high_water(&self, key: &PublicKey) -> Result<Option<u64>, StoreError> {
        self.profile_mark(key).await
    }

    async fn purge_profiles(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.profile_purge(now_ms).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let (manifests, pointers, profiles): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM manifests WHERE body IS NOT NULL), \
                    (SELECT count(*) FROM pointers WHERE signature IS NOT NULL), \
                    (SELECT count(*) FROM profiles WHERE body IS NOT NULL)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(StoreStats {
            manifests: count_from_db(manifests, "manifest")?,
            pointers: count_from_db(pointers, "pointer")?,
            profiles: count_from_db(profiles, "profile")?,
        })
    }

    async fn add_passkey(&self, passkey: &str, created_at_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO passkeys (passkey, created_at) VALUES ($1, $2) \
             ON CONFLICT (passkey) DO NOTHING",
        )
        .bind(passkey)
        .bind(created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn remove_passkey(&self, passkey: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM passkeys WHERE passkey = $1")
            .bind(passkey)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn passkey_exists(&self, passkey: &str) -> Result<bool, StoreError> {
        let row: Option<i32> = sqlx::query_scalar("SELECT 1 FROM passkeys WHERE passkey = $1")
            .bind(passkey)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn list_passkeys(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT passkey FROM passkeys ORDER BY passkey COLLATE \"C\"")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn put_mail(
        &self,
        rec: &MailRecord,
        quota: &MailQuota,
        now_ms: i64,
    ) -> Result<MailPut, StoreError> {
        self.mail_put(rec, quota, now_ms).await
    }

    async fn list_mail(
        &self,
        recipient: &PublicKey,
        now_ms: i64,
    ) -> Result<Vec<MailMeta>, StoreError> {
        self.mail_list(recipient, now_ms).await
    }

    async fn get_mail(
        &self,
        recipient: &PublicKey,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.mail_get(recipient, id, now_ms).await
    }

    async fn ack_mail(&self, recipient: &PublicKey, id: &str) -> Result<bool, StoreError> {
        self.mail_ack(recipient, id).await
    }

    async fn use_mail_nonce(
        &self,
        recipient: &PublicKey,
        nonce: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.mail_nonce(recipient, nonce, expires_at_ms).await
    }

    async fn purge_mail(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.mail_purge(now_ms).await
    }

    async fn mail_totals(&self, now_ms: i64) -> Result<MailTotals, StoreError> {
        let (messages, bytes): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(octet_length(envelope)), 0)::bigint \
             FROM mailbox_messages WHERE expires_at > $1",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(MailTotals {
            messages: count_from_db(messages, "mailbox message")?,
            bytes: count_from_db(bytes, "mailbox byte")?,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn group_commit_stats(&self) -> Option<super::GroupCommitStats> {
        Some(self.manifests.stats())
    }

    fn pool_usage(&self) -> Option<super::PoolUsage> {
        Some(super::PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn pg_pool(&self) -> Option<&PgPool> {
        Some(&self.pool)
    }
}
