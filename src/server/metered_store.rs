//! [`MeteredStore`]: a [`Store`] decorator that times every call, so the backends stay free
//! of metrics code.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::metrics::{DbOp, Metrics};
use crate::proto::PublicKey;
use crate::store::{
    ManifestRecord, PointerRecord, PoolUsage, PutOutcome, Store, StoreError, StoreStats,
    StoredManifest,
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

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.timed(DbOp::Stats, self.inner.stats()).await
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

    fn pool_usage(&self) -> Option<PoolUsage> {
        self.inner.pool_usage()
    }
}
