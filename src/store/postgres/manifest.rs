//! PostgreSQL manifest batch writes (see the `group` module of the store): one
//! transaction per batch, a constant number of round trips whatever its size.
//!
//! 1. `SELECT … WHERE public_key = ANY($1) ORDER BY public_key FOR UPDATE` locks the
//!    batch's existing rows in key order (so two replicas' batches lock in the same order
//!    and cannot deadlock on them).
//! 2. The batch is classified in memory, in arrival order (`plan_batch`).
//! 3. One `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` for new keys and one
//!    `UPDATE … FROM unnest(…) WHERE sequence < new` for locked rows. If the insert lost a
//!    race with another replica's first write of a key (fewer rows than planned), the
//!    transaction is rolled back and the batch tried again: the row now exists and step 1
//!    locks it.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::PgPool;

use crate::proto::PublicKey;
use crate::store::group::{plan_batch, ManifestWriter, Row};
use crate::store::slot::{seq_from_db, seq_to_db};
use crate::store::{ManifestRecord, PutOutcome, StoreError};

/// New manifest rows from column arrays (key, sequence, body, time).
const INSERT_MANY: &str = "INSERT INTO manifests (public_key, sequence, body, updated_at) \
     SELECT * FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::int8[]) \
     ON CONFLICT (public_key) DO NOTHING";
/// Newer sequences for locked rows, from the same column arrays.
const UPDATE_MANY: &str = "UPDATE manifests AS m \
     SET sequence = n.sequence, body = n.body, updated_at = n.updated_at \
     FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::int8[]) \
          AS n (public_key, sequence, body, updated_at) \
     WHERE m.public_key = n.public_key AND m.sequence < n.sequence";

/// The writer task's view of the store.
pub(super) struct Writer(pub(super) PgPool);

/// Column arrays of some records, for `unnest`.
struct Columns {
    keys: Vec<Vec<u8>>,
    sequences: Vec<i64>,
    bodies: Vec<Vec<u8>>,
    updated: Vec<i64>,
}

impl Columns {
    fn of(recs: &[ManifestRecord], which: &[usize]) -> Result<Self, StoreError> {
        let mut c = Self {
            keys: Vec::with_capacity(which.len()),
            sequences: Vec::with_capacity(which.len()),
            bodies: Vec::with_capacity(which.len()),
            updated: Vec::with_capacity(which.len()),
        };
        for &i in which {
            let rec = &recs[i];
            c.keys.push(rec.key.as_bytes().to_vec());
            c.sequences.push(seq_to_db(rec.sequence)?);
            c.bodies.push(rec.body.clone());
            c.updated.push(rec.updated_at_ms);
        }
        Ok(c)
    }

    fn len(&self) -> u64 {
        self.keys.len() as u64
    }
}

#[async_trait]
impl ManifestWriter for Writer {
    async fn write_manifests(
        &self,
        recs: &[ManifestRecord],
    ) -> Result<Option<Vec<PutOutcome>>, StoreError> {
        let mut keys: Vec<Vec<u8>> = recs.iter().map(|r| r.key.as_bytes().to_vec()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut tx = self.0.begin().await?;
        let found: Vec<(Vec<u8>, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT public_key, sequence, body FROM manifests \
             WHERE public_key = ANY($1) ORDER BY public_key FOR UPDATE",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        let mut rows = HashMap::with_capacity(found.len());
        for (key, sequence, body) in found {
            let key: [u8; 32] = key.try_into().map_err(|k: Vec<u8>| {
                StoreError::Corrupt(format!("manifest key is {} bytes", k.len()))
            })?;
            let sequence = seq_from_db(sequence, "manifest")?;
            rows.insert(PublicKey::from(key), Row { sequence, body });
        }
        let plan = plan_batch(recs, &rows);
        // The update is conditional on the mark, so nothing here can ever lower it.
        for (which, sql) in [(&plan.inserts, INSERT_MANY), (&plan.updates, UPDATE_MANY)] {
            if which.is_empty() {
                continue;
            }
            let c = Columns::of(recs, which)?;
            let done = sqlx::query(sql)
                .bind(&c.keys)
                .bind(&c.sequences)
                .bind(&c.bodies)
                .bind(&c.updated)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != c.len() {
                return Ok(None); // dropping `tx` rolls back
            }
        }
        tx.commit().await?;
        Ok(Some(plan.outcomes))
    }
}
