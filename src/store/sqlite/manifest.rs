//! SQLite manifest batch writes (see the `group` module of the store): one `BEGIN
//! IMMEDIATE` transaction per batch on the single writer connection.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::SqlitePool;

use crate::store::group::{plan_batch, ManifestWriter, Row};
use crate::store::slot::{seq_from_db, seq_to_db};
use crate::store::{ManifestRecord, PutOutcome, StoreError};

/// A new manifest row (`?1` key, `?2` sequence, `?3` body, `?4` time).
const INSERT_ONE: &str = "INSERT INTO manifests (public_key, sequence, body, updated_at) \
                          VALUES (?1, ?2, ?3, ?4) ON CONFLICT (public_key) DO NOTHING";
/// A newer sequence for a stored key (same parameters).
const UPDATE_ONE: &str = "UPDATE manifests SET sequence = ?2, body = ?3, updated_at = ?4 \
                          WHERE public_key = ?1 AND sequence < ?2";

/// The writer task's view of the store: the writer pool only.
pub(super) struct Writer(pub(super) SqlitePool);

#[async_trait]
impl ManifestWriter for Writer {
    async fn write_manifests(
        &self,
        recs: &[ManifestRecord],
    ) -> Result<Option<Vec<PutOutcome>>, StoreError> {
        // BEGIN IMMEDIATE takes the write lock up front: the reads that classify and the
        // writes see the same state even if another process opened the file.
        let mut tx = self.0.begin_with("BEGIN IMMEDIATE").await?;
        let mut rows = HashMap::with_capacity(recs.len());
        for rec in recs {
            if rows.contains_key(&rec.key) {
                continue;
            }
            let row: Option<(i64, Option<Vec<u8>>)> =
                sqlx::query_as("SELECT sequence, body FROM manifests WHERE public_key = ?1")
                    .bind(&rec.key.as_bytes()[..])
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((sequence, body)) = row {
                let sequence = seq_from_db(sequence, "manifest")?;
                rows.insert(rec.key, Row { sequence, body });
            }
        }
        let plan = plan_batch(recs, &rows);
        // The update is conditional on the mark, so even a stale read could never lower it.
        let steps = [(&plan.inserts, INSERT_ONE), (&plan.updates, UPDATE_ONE)];
        for (which, sql) in steps {
            for &i in which {
                let rec = &recs[i];
                let done = sqlx::query(sql)
                    .bind(&rec.key.as_bytes()[..])
                    .bind(seq_to_db(rec.sequence)?)
                    .bind(&rec.body[..])
                    .bind(rec.updated_at_ms)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(None); // dropping `tx` rolls back
                }
            }
        }
        tx.commit().await?;
        Ok(Some(plan.outcomes))
    }
}
