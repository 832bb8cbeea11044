//! PostgreSQL profile queries (see [`Store::put_profile`](crate::store::Store::put_profile) and
//! friends).

use super::{PgStore, PUT_ATTEMPTS};
use crate::proto::PublicKey;
use crate::store::slot::{gave_up, plan, seq_from_db, seq_to_db, Plan, Slot};
use crate::store::{ProfileRecord, PutOutcome, StoreError, StoredProfile};

impl PgStore {
    pub(super) async fn profile_put(&self, rec: &ProfileRecord) -> Result<PutOutcome, StoreError> {
        let seq = seq_to_db(rec.sequence)?;
        let key = &rec.key.as_bytes()[..];
        for _ in 0..PUT_ATTEMPTS {
            // FOR UPDATE locks an existing row; racing first inserts meet ON CONFLICT and retry.
            let mut tx = self.pool.begin().await?;
            let row: Option<(i64, bool, bool)> = sqlx::query_as(
                "SELECT sequence, body IS NOT NULL AND expires_at > $3, coalesce(body = $2, false) \
                 FROM profiles WHERE public_key = $1 FOR UPDATE",
            )
            .bind(key)
            .bind(&rec.body[..])
            .bind(rec.updated_at_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let slot = match row {
                Some((s, live, same)) => Some(Slot {
                    sequence: seq_from_db(s, "profile")?,
                    live,
                    same,
                }),
                None => None,
            };
            let outcome = match plan(rec.sequence, slot) {
                Plan::Done(outcome) => Some(outcome),
                Plan::Insert => {
                    let done = sqlx::query(
                        "INSERT INTO profiles \
                         (public_key, sequence, body, updated_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (public_key) DO NOTHING",
                    )
                    .bind(key)
                    .bind(seq)
                    .bind(&rec.body[..])
                    .bind(rec.updated_at_ms)
                    .bind(rec.expires_at_ms)
                    .execute(&mut *tx)
                    .await?;
                    (done.rows_affected() == 1).then_some(PutOutcome::Created)
                }
                Plan::Replace { was_live } => {
                    // Conditional on the mark, so even a stale read could never lower it.
                    let done = sqlx::query(
                        "UPDATE profiles SET sequence = $2, body = $3, updated_at = $4, \
                         expires_at = $5 WHERE public_key = $1 AND sequence < $2",
                    )
                    .bind(key)
                    .bind(seq)
                    .bind(&rec.body[..])
                    .bind(rec.updated_at_ms)
                    .bind(rec.expires_at_ms)
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
        Err(gave_up("profile", PUT_ATTEMPTS))
    }

    pub(super) async fn profile_get(
        &self,
        key: &PublicKey,
        now_ms: i64,
    ) -> Result<Option<StoredProfile>, StoreError> {
        let row: Option<(i64, Vec<u8>, i64, i64)> = sqlx::query_as(
            "SELECT sequence, body, updated_at, expires_at FROM profiles \
             WHERE public_key = $1 AND body IS NOT NULL AND expires_at > $2",
        )
        .bind(&key.as_bytes()[..])
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(sequence, body, updated_at_ms, expires_at_ms)| {
            Ok(StoredProfile {
                sequence: seq_from_db(sequence, "profile")?,
                body,
                updated_at_ms,
                expires_at_ms,
            })
        })
        .transpose()
    }

    pub(super) async fn profile_mark(&self, key: &PublicKey) -> Result<Option<u64>, StoreError> {
        let row: Option<i64> =
            sqlx::query_scalar("SELECT sequence FROM profiles WHERE public_key = $1")
                .bind(&key.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await?;
        row.map(|s| seq_from_db(s, "profile")).transpose()
    }

    pub(super) async fn profile_purge(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE profiles SET body = NULL WHERE body IS NOT NULL AND expires_at <= $1",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
