//! [`MeteredStore`]: a [`Store`] decorator that times every call, so the backends stay free
//! of metrics code.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::metrics::{DbOp, Metrics};
use crate::proto::PublicKey;
use crate::store::{
    MailMeta, MailPut, MailQuota, MailRecord, MailTotals, ManifestRecord, PointerRecord, PoolUsage,
    ProfileRecord, PutOutcome, Store, StoreError, StoreStats, StoredManifest, StoredProfile,
};

/// Wraps a store; records latency (and failures) per operation in
/// `megatorrent_db_query_duration_seconds` / `megatorrent_db_errors_total`.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Decorate `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        op: DbOp,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let res = fut.await;
        self.metrics.db_call(op, started, res.is_ok());
        res
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn put_manifest(&self, rec: &ManifestRecord) -> Result<PutOutcome, StoreError> {
        self.timed(DbOp::PutManifest, self.inner.put_manifest(rec))
            .await
    }

    async fn get_manifest(&self, key: &PublicKey) -> Result<Option<StoredManifest>, StoreError> {
        self.timed(DbOp::GetManifest, self.inner.get_manifest(key))
            .await
    }

    async fn delete_manifest(&self, key: &PublicKey) -> Result<bool, StoreError> {
        self.timed(DbOp::DeleteManifest, self.inner.delete_manifest(key))
            .await
    }

    async fn manifest_high_water(&self, key: &PublicKey) -> Result<Option<u64>, StoreError> {
        self.timed(DbOp::ManifestHighWater, self.inner.manifest_high_water(key))
            .await
    }

    async fn put_pointer(&self, rec: &PointerRecord) -> Result<PutOutcome, StoreError> {
        self.timed(DbOp::PutPointer, self.inner.put_pointer(rec))
            .await
    }

    async fn get_pointer(&self, key: &PublicKey) -> Result<Option<PointerRecord>, StoreError> {
        self.timed(DbOp::GetPointer, self.inner.get_pointer(key))
            .await
    }

    async fn put_profile(&self, rec: &ProfileRecord) -> Result<PutOutcome, StoreError> {
        self.timed(DbOp::PutProfile, self.inner.put_profile(rec))
            .await
    }

    async fn get_profile(
        &self,
        key: &PublicKey,
        now_ms: i64,
    ) -> Result<Option<StoredProfile>, StoreError> {
        self.timed(DbOp::GetProfile, self.inner.get_profile(key, now_ms))
            .await
    }

    async fn profile_high_water(&self, key: &PublicKey) -> Result<Option<u64>, StoreError> {
        self.timed(DbOp::ProfileHighWater, self.inner.profile_high_water(key))
            .await
    }

    async fn purge_profiles(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.timed(DbOp::PurgeProfiles, self.inner.purge_profiles(now_ms))
            .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.timed(DbOp::Stats, self.inner.stats()).await
    }

    async fn add_passkey(&self, passkey: &str, created_at_ms: i64) -> Result<bool, StoreError> {
        self.timed(
            DbOp::PasskeyWrite,
            self.inner.add_passkey(passkey, created_at_ms),
        )
        .await
    }

    async fn remove_passkey(&self, passkey: &str) -> Result<bool, StoreError> {
        self.timed(DbOp::PasskeyWrite, self.inner.remove_passkey(passkey))
            .await
    }

    async fn passkey_exists(&self, passkey: &str) -> Result<bool, StoreError> {
        self.timed(DbOp::PasskeyRead, self.inner.passkey_exists(passkey))
            .await
    }

    async fn list_passkeys(&self) -> Result<Vec<String>, StoreError> {
        self.timed(DbOp::PasskeyRead, self.inner.list_passkeys())
            .await
    }

    async fn put_mail(
        &self,
        rec: &MailRecord,
        quota: &MailQuota,
        now_ms: i64,
    ) -> Result<MailPut, StoreError> {
        self.timed(DbOp::PutMail, self.inner.put_mail(rec, quota, now_ms))
            .await
    }

    async fn list_mail(
        &self,
        recipient: &PublicKey,
        now_ms: i64,
    ) -> Result<Vec<MailMeta>, StoreError> {
        self.timed(DbOp::ReadMail, self.inner.list_mail(recipient, now_ms))
            .await
    }

    async fn get_mail(
        &self,
        recipient: &PublicKey,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed(DbOp::ReadMail, self.inner.get_mail(recipient, id, now_ms))
            .await
    }

    async fn ack_mail(&self, recipient: &PublicKey, id: &str) -> Result<bool, StoreError> {
        self.timed(DbOp::AckMail, self.inner.ack_mail(recipient, id))
            .await
    }

    async fn use_mail_nonce(
        &self,
        recipient: &PublicKey,
        nonce: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.timed(
            DbOp::MailNonce,
            self.inner.use_mail_nonce(recipient, nonce, expires_at_ms),
        )
        .await
    }

    async fn mail_totals(&self, now_ms: i64) -> Result<MailTotals, StoreError> {
        self.timed(DbOp::ReadMail, self.inner.mail_totals(now_ms))
            .await
    }

    async fn purge_mail(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.timed(DbOp::PurgeMail, self.inner.purge_mail(now_ms))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(DbOp::Ping, self.inner.ping()).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn close(&self) {
        self.inner.close().await;
    }

    #[cfg(feature = "postgres")]
    fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        self.inner.pg_pool()
    }

    fn pool_usage(&self) -> Option<PoolUsage> {
        self.inner.pool_usage()
    }

    fn group_commit_stats(&self) -> Option<crate::store::GroupCommitStats> {
        self.inner.group_commit_stats()
    }
}
