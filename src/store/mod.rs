//! Storage: one object-safe [`Store`] trait with a SQLite and a PostgreSQL implementation.
//!
//! Methods are named by use case. Every write that returns `Ok` is durable (committed and,
//! for SQLite, fsynced per `synchronous = FULL` unless configured otherwise).
//!
//! Sequence high-water marks: each slot (manifest or pointer) keeps the highest sequence it
//! ever accepted, even after the record is deleted or expires, so a replay of an old signed
//! record can never be accepted again. Profiles keep theirs past expiry and purging too.

use async_trait::async_trait;

use crate::proto::{PublicKey, Signature};

pub use group::{GroupCommitStats, MAX_BATCH_BYTES, MAX_BATCH_WRITES, QUEUE_CAPACITY};

mod group;
mod mail;
#[cfg(feature = "postgres")]
pub mod postgres;
mod slot;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("the `server` feature needs at least one of the `sqlite` or `postgres` features");

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is malformed or names an unsupported backend.
    #[error("unsupported or malformed database URL: {0}")]
    BadUrl(String),
    /// The database could not be reached or a query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A SQLite lookup that bypasses sqlx failed (see `sqlite/inline_read.rs`).
    #[cfg(feature = "sqlite")]
    #[error("database error")]
    SqliteRead(#[from] rusqlite::Error),
    /// Applying migrations failed.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row held data that does not decode (corruption or a foreign writer).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The manifest write queue stayed full for the whole acquire timeout.
    #[error("the manifest write queue is full")]
    Busy,
    /// The manifest writer task is gone (the store is closing).
    #[error("the manifest writer has stopped")]
    WriterStopped,
}

/// A manifest ready to store: already verified by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The slot.
    pub key: PublicKey,
    /// The manifest's sequence.
    pub sequence: u64,
    /// The canonical (JCS) bytes, signature included.
    pub body: Vec<u8>,
    /// Server time of the write (ms since the epoch).
    pub updated_at_ms: i64,
}

/// A stored manifest as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// The sequence.
    pub sequence: u64,
    /// The canonical bytes (identical for every reader).
    pub body: Vec<u8>,
    /// When it was written (ms since the epoch).
    pub updated_at_ms: i64,
}

/// A proof-of-concept pointer record ready to store: already verified by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerRecord {
    /// The slot (normalised key).
    pub key: PublicKey,
    /// `publicKey` exactly as the announcer sent it (part of the signed bytes).
    pub public_key_text: String,
    /// `manifestInfohash` exactly as sent.
    pub infohash_text: String,
    /// The pointer's sequence (`seq`).
    pub seq: u64,
    /// The announcer's signature.
    pub signature: Signature,
    /// Server time of the write (ms since the epoch).
    pub updated_at_ms: i64,
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The slot was empty (never written, or deleted) and now holds the record.
    Created,
    /// A record with a lower sequence was replaced.
    Updated,
    /// The same sequence with identical content was already stored: nothing changed.
    Unchanged,
    /// The sequence is not above the slot's high-water mark; nothing changed.
    Conflict {
        /// The slot's high-water mark.
        current: u64,
    },
}

/// Counts for `/stats` and `/v1/info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Live manifests.
    pub manifests: u64,
    /// Live pointer records.
    pub pointers: u64,
    /// Stored profiles (expired ones count until the purge removes them).
    pub profiles: u64,
}

/// A profile ready to store: already verified by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRecord {
    /// The slot.
    pub key: PublicKey,
    /// The profile's sequence.
    pub sequence: u64,
    /// The canonical (JCS) bytes, signature included.
    pub body: Vec<u8>,
    /// Server time of the write (ms since the epoch); also "now" for deciding whether the
    /// stored profile is still live.
    pub updated_at_ms: i64,
    /// When it expires unless replaced (ms since the epoch).
    pub expires_at_ms: i64,
}

/// A stored, unexpired profile as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProfile {
    /// The sequence.
    pub sequence: u64,
    /// The canonical bytes (identical for every reader).
    pub body: Vec<u8>,
    /// When it was written (ms since the epoch).
    pub updated_at_ms: i64,
    /// When it expires (ms since the epoch).
    pub expires_at_ms: i64,
}

/// A sealed mailbox message ready to store. The server knows nothing about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRecord {
    /// The recipient's key (the mailbox).
    pub recipient: PublicKey,
    /// Server-chosen id (32 lowercase hex characters).
    pub id: String,
    /// The opaque envelope.
    pub envelope: Vec<u8>,
    /// Server time it arrived (ms since the epoch).
    pub received_at_ms: i64,
    /// When it expires (ms since the epoch).
    pub expires_at_ms: i64,
}

/// Per-recipient mailbox quota (counted over unexpired messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailQuota {
    /// Messages at most.
    pub max_messages: u64,
    /// Total envelope bytes at most.
    pub max_bytes: u64,
}

/// What storing a mailbox message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailPut {
    /// Stored.
    Stored,
    /// The recipient's quota would be exceeded; nothing was stored.
    Full,
}

/// What all mailboxes hold (for the metrics gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailTotals {
    /// Unexpired messages.
    pub messages: u64,
    /// Their envelope bytes.
    pub bytes: u64,
}

/// A listed mailbox message (without its envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailMeta {
    /// The id.
    pub id: String,
    /// Envelope size in bytes.
    pub size: u64,
    /// Server time it arrived (ms since the epoch).
    pub received_at_ms: i64,
    /// When it expires (ms since the epoch).
    pub expires_at_ms: i64,
}

/// Connection-pool occupancy, for the metrics gauge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections currently open (idle plus in use).
    pub open: u32,
    /// Open connections not checked out.
    pub idle: u32,
    /// The configured maximum.
    pub max: u32,
}

/// The storage interface used by the server. Object-safe: the server holds `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Store `rec` if its sequence is above the slot's high-water mark (atomically: racing
    /// writers can never let a lower sequence overwrite a higher one). The same sequence
    /// with identical bytes is [`PutOutcome::Unchanged`]; anything else not above the mark
    /// is [`PutOutcome::Conflict`]. Concurrent calls are group-committed (the
    /// `group` module): the same outcomes as one after the other, in arrival order.
    async fn put_manifest(&self, rec: &ManifestRecord) -> Result<PutOutcome, StoreError>;

    /// The live manifest for `key`, if any.
    async fn get_manifest(&self, key: &PublicKey) -> Result<Option<StoredManifest>, StoreError>;

    /// Remove the live manifest, keeping its high-water mark. Returns whether one existed.
    async fn delete_manifest(&self, key: &PublicKey) -> Result<bool, StoreError>;

    /// The highest manifest sequence ever accepted for `key` (even if since deleted).
    async fn manifest_high_water(&self, key: &PublicKey) -> Result<Option<u64>, StoreError>;

    /// Store a pointer record under the same rules as [`Store::put_manifest`], with its own
    /// sequence space. "Identical" means same info-hash text and signature.
    async fn put_pointer(&self, rec: &PointerRecord) -> Result<PutOutcome, StoreError>;

    /// The live pointer record for `key`, if any.
    async fn get_pointer(&self, key: &PublicKey) -> Result<Option<PointerRecord>, StoreError>;

    /// Store a profile under the rules of [`Store::put_manifest`], with its own sequence
    /// space. A profile whose expiry is at or before `rec.updated_at_ms` is not live: the
    /// same document re-sent then is a [`PutOutcome::Conflict`] (re-publishing needs a
    /// higher sequence), and a higher sequence is [`PutOutcome::Created`]. The high-water
    /// mark survives expiry and purging.
    async fn put_profile(&self, rec: &ProfileRecord) -> Result<PutOutcome, StoreError>;

    /// The profile for `key` unless it has expired by `now_ms`.
    async fn get_profile(
        &self,
        key: &PublicKey,
        now_ms: i64,
    ) -> Result<Option<StoredProfile>, StoreError>;

    /// The highest profile sequence ever accepted for `key` (even if since expired).
    async fn profile_high_water(&self, key: &PublicKey) -> Result<Option<u64>, StoreError>;

    /// Drop the documents of profiles expired by `now_ms` (`expires_at <= now_ms`), keeping
    /// their high-water marks. Returns how many were dropped.
    async fn purge_profiles(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Live record counts.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Add a private-tracker passkey (the caller checked its format). Returns `false` if it
    /// already existed (nothing changes then).
    async fn add_passkey(&self, passkey: &str, created_at_ms: i64) -> Result<bool, StoreError>;

    /// Remove a passkey. Returns whether it existed.
    async fn remove_passkey(&self, passkey: &str) -> Result<bool, StoreError>;

    /// Whether a passkey exists.
    async fn passkey_exists(&self, passkey: &str) -> Result<bool, StoreError>;

    /// Every passkey, sorted.
    async fn list_passkeys(&self) -> Result<Vec<String>, StoreError>;

    /// Store a mailbox message unless the recipient's unexpired messages (as of `now_ms`)
    /// plus this one would exceed `quota`. Atomic against concurrent senders.
    async fn put_mail(
        &self,
        rec: &MailRecord,
        quota: &MailQuota,
        now_ms: i64,
    ) -> Result<MailPut, StoreError>;

    /// The recipient's unexpired messages, oldest first.
    async fn list_mail(
        &self,
        recipient: &PublicKey,
        now_ms: i64,
    ) -> Result<Vec<MailMeta>, StoreError>;

    /// One unexpired message's envelope.
    async fn get_mail(
        &self,
        recipient: &PublicKey,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Delete a message (acknowledged). Returns whether it existed.
    async fn ack_mail(&self, recipient: &PublicKey, id: &str) -> Result<bool, StoreError>;

    /// Record a signed request's nonce for `recipient`, kept until `expires_at_ms`. Returns
    /// `false` if it was already recorded (a replay).
    async fn use_mail_nonce(
        &self,
        recipient: &PublicKey,
        nonce: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Delete expired messages and nonces (`expires_at <= now_ms`). Returns the number of
    /// messages deleted.
    async fn purge_mail(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Unexpired mailbox messages and their envelope bytes, over all recipients (a full
    /// count: call it from housekeeping, not per request).
    async fn mail_totals(&self, now_ms: i64) -> Result<MailTotals, StoreError>;

    /// Cheap round trip to the database, for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Which backend this is (`"sqlite"` or `"postgres"`), for `/v1/info` and logs.
    fn backend(&self) -> &'static str;

    /// Close the pool, flushing what the backend buffers.
    async fn close(&self);

    /// The PostgreSQL pool, if this store is PostgreSQL (for `LISTEN`/`NOTIFY` between
    /// replicas). `None` by default.
    #[cfg(feature = "postgres")]
    fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        None
    }

    /// Pool occupancy if the backend has a pool (summed over its pools). Cheap: no I/O.
    fn pool_usage(&self) -> Option<PoolUsage> {
        None
    }

    /// Manifest group-commit counters, if the backend batches. Cheap: no I/O.
    fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        None
    }
}

/// Options shared by both backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Maximum pooled connections.
    pub max_connections: u32,
    /// SQLite only: fsync every commit (`synchronous = FULL`) when true, else `NORMAL`
    /// (durable against process crashes such as `kill -9`, not against power loss).
    pub sqlite_sync_full: bool,
    /// How long to wait for a pooled connection (seconds).
    pub acquire_timeout_secs: u64,
    /// SQLite only: manifest lookups on the calling thread over rusqlite (the default)
    /// rather than through sqlx's read pool. Ignored for an in-memory database.
    pub sqlite_inline_lookups: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            sqlite_sync_full: true,
            acquire_timeout_secs: 10,
            sqlite_inline_lookups: true,
        }
    }
}

/// Open the store named by `url` (`sqlite://PATH` or `postgres://…`), creating the SQLite
/// file if missing, and apply migrations.
pub async fn open(url: &str, opts: &StoreOptions) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    #[cfg(feature = "sqlite")]
    if url.starts_with("sqlite:") {
        return Ok(std::sync::Arc::new(
            sqlite::SqliteStore::open(url, opts).await?,
        ));
    }
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(
            postgres::PgStore::open(url, opts).await?,
        ));
    }
    let _ = opts;
    let scheme = url.split(':').next().unwrap_or_default();
    Err(StoreError::BadUrl(format!(
        "scheme {scheme:?} is not supported by this build (expected sqlite:// or postgres://)"
    )))
}
