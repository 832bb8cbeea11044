//! SQLite implementation of [`Store`](super::Store).
//!
//! # Connections
//!
//! Two sqlx pools and a set of rusqlite connections over one database file:
//!
//! * `writer` holds exactly one connection and every write goes through it. Manifest writes
//!   are group-committed by one task (the store's `group` module, `sqlite/manifest.rs`). This process's
//!   writers therefore queue in the pool (bounded by the acquire timeout) instead of racing
//!   for SQLite's single write lock and failing with `SQLITE_BUSY`. Conditional writes run in
//!   `BEGIN IMMEDIATE` transactions, which take the write lock up front, so the read that
//!   classifies the outcome and the write itself see the same state even if another process
//!   opens the same file (the busy timeout then waits for it).
//! * `reader` holds up to `max_connections`; in WAL mode readers run beside the writer and
//!   never block it.
//! * Manifest lookups, the hottest read, skip sqlx: they run on the calling thread over
//!   read-only rusqlite connections to the same file (`sqlite/inline_read.rs`).
//!
//! An in-memory database (`sqlite::memory:` or `mode=memory`) has no WAL and vanishes with its
//! last connection, so it gets a single pinned connection that serves reads and writes.
//!
//! # Durability
//!
//! WAL with `synchronous = FULL` fsyncs every commit; with `NORMAL` a commit survives a
//! process crash (`kill -9`) but not power loss. See [`StoreOptions::sqlite_sync_full`].

mod inline_read;
mod mailbox;
mod manifest;
mod profile;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::group::GroupCommit;
use super::slot::{count_from_db, gave_up, plan, seq_from_db, seq_to_db, Plan, Slot};
use super::{
    MailMeta, MailPut, MailQuota, MailRecord, MailTotals, ManifestRecord, PointerRecord,
    ProfileRecord, PutOutcome, Store, StoreError, StoreOptions, StoreStats, StoredManifest,
    StoredProfile,
};
use crate::proto::{PublicKey, Signature};

/// How long a statement waits for another process's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts of a conditional write before giving up. Under `BEGIN IMMEDIATE` the first
/// attempt always decides; the bound only guards against a foreign writer.
const PUT_ATTEMPTS: usize = 3;

/// A SQLite-backed [`Store`]: one file, WAL journal, a single-connection write pool and a
/// read pool (see the module docs).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The only connection that writes.
    writer: SqlitePool,
    /// Connections for reads (the same pool as `writer` for an in-memory database).
    reader: SqlitePool,
    /// The manifest group-commit queue (its task writes through `writer`).
    manifests: GroupCommit,
    /// Manifest lookups on the calling thread (file databases with
    /// `sqlite_inline_lookups`; otherwise they go through `reader`).
    lookups: Option<std::sync::Arc<inline_read::InlineReads>>,
}

impl SqliteStore {
    /// Open (creating if missing) the database named by `url` (`sqlite://PATH`), configure
    /// WAL, `synchronous`, a busy timeout and foreign keys, and apply migrations.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        // The URL may carry secrets in other backends; keep it out of the message anyway.
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(format!("not a valid SQLite URL ({e})")))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let sync = if opts.sqlite_sync_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        };
        let conn = base
            .create_if_missing(true)
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(sync)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let acquire = Duration::from_secs(opts.acquire_timeout_secs);

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // Kept open for the store's life (an in-memory database dies with it).
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(acquire)
            .connect_with(conn.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;

        let path = conn.get_filename().to_owned();
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .acquire_timeout(acquire)
                .connect_with(conn.create_if_missing(false).read_only(true))
                .await?
        };
        let lookups = if in_memory || !opts.sqlite_inline_lookups {
            None
        } else {
            let max_idle = usize::try_from(opts.max_connections).unwrap_or(usize::MAX);
            Some(std::sync::Arc::new(inline_read::InlineReads::open(
                &path,
                BUSY_TIMEOUT,
                max_idle,
            )?))
        };
        let manifests = GroupCommit::spawn(manifest::Writer(writer.clone()), acquire);
        Ok(Self {
            writer,
            reader,
            manifests,
            lookups,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_manifest(&self, rec: &ManifestRecord) -> Result<PutOutcome, StoreError> {
        self.manifests.put(rec).await
    }

    async fn get_manifest(&self, key: &PublicKey) -> Result<Option<StoredManifest>, StoreError> {
        let row: Option<(i64, Vec<u8>, i64)> = match &self.lookups {
            Some(lookups) => lookups.manifest(key)?,
            None => {
                sqlx::query_as(inline_read::LOOKUP)
                    .bind(&key.as_bytes()[..])
                    .fetch_optional(&self.reader)
                    .await?
            }
        };
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
            "UPDATE manifests SET body = NULL, updated_at = ?2 \
             WHERE public_key = ?1 AND body IS NOT NULL",
        )
        .bind(&key.as_bytes()[..])
        .bind(crate::now_ms())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn manifest_high_water(&self, key: &PublicKey) -> Result<Option<u64>, StoreError> {
        let row: Option<i64> =
            sqlx::query_scalar("SELECT sequence FROM manifests WHERE public_key = ?1")
                .bind(&key.as_bytes()[..])
                .fetch_optional(&self.reader)
                .await?;
        row.map(|s| seq_from_db(s, "manifest")).transpose()
    }

    async fn put_pointer(&self, rec: &PointerRecord) -> Result<PutOutcome, StoreError> {
        let seq = seq_to_db(rec.seq)?;
        let key = &rec.key.as_bytes()[..];
        let sig = &rec.signature.as_bytes()[..];
        for _ in 0..PUT_ATTEMPTS {
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
            let row: Option<(i64, bool, bool)> = sqlx::query_as(
                "SELECT seq, signature IS NOT NULL, \
                        coalesce(infohash_text = ?2 AND signature = ?3, 0) \
                 FROM pointers WHERE public_key = ?1",
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
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (public_key) DO NOTHING",
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
                        "UPDATE pointers SET seq = ?2, public_key_text = ?3, \
                         infohash_text = ?4, signature = ?5, updated_at = ?6 \
                         WHERE public_key = ?1 AND seq < ?2",
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
             WHERE public_key = ?1 AND signature IS NOT NULL",
        )
        .bind(&key.as_bytes()[..])
        .fetch_optional(&self.reader)
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
        .fetch_one(&self.reader)
        .await?;
        Ok(StoreStats {
            manifests: count_from_db(manifests, "manifest")?,
            pointers: count_from_db(pointers, "pointer")?,
            profiles: count_from_db(profiles, "profile")?,
        })
    }

    async fn add_passkey(&self, passkey: &str, created_at_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO passkeys (passkey, created_at) VALUES (?1, ?2) \
             ON CONFLICT (passkey) DO NOTHING",
        )
        .bind(passkey)
        .bind(created_at_ms)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn remove_passkey(&self, passkey: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM passkeys WHERE passkey = ?1")
            .bind(passkey)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn passkey_exists(&self, passkey: &str) -> Result<bool, StoreError> {
        let row: Option<i64> = sqlx::query_scalar("SELECT 1 FROM passkeys WHERE passkey = ?1")
            .bind(passkey)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.is_some())
    }

    async fn list_passkeys(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT passkey FROM passkeys ORDER BY passkey")
                .fetch_all(&self.reader)
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
            "SELECT count(*), coalesce(sum(length(envelope)), 0) FROM mailbox_messages \
             WHERE expires_at > ?1",
        )
        .bind(now_ms)
        .fetch_one(&self.reader)
        .await?;
        Ok(MailTotals {
            messages: count_from_db(messages, "mailbox message")?,
            bytes: count_from_db(bytes, "mailbox byte")?,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn group_commit_stats(&self) -> Option<super::GroupCommitStats> {
        Some(self.manifests.stats())
    }

    fn pool_usage(&self) -> Option<super::PoolUsage> {
        let idle = |p: &SqlitePool| u32::try_from(p.num_idle()).unwrap_or(u32::MAX);
        let max = |p: &SqlitePool| p.options().get_max_connections();
        Some(super::PoolUsage {
            open: self.writer.size().saturating_add(self.reader.size()),
            idle: idle(&self.writer).saturating_add(idle(&self.reader)),
            max: max(&self.writer).saturating_add(max(&self.reader)),
        })
    }

    async fn close(&self) {
        // Readers first, then the writer, so the last connection to close checkpoints the WAL.
        self.reader.close().await;
        self.writer.close().await;
    }
}
