//! SQLite mailbox queries (see [`Store::put_mail`](crate::store::Store::put_mail) and
//! friends). Writes go through the single writer connection.

use super::SqliteStore;
use crate::proto::PublicKey;
use crate::store::mail::{fits, size_from_db};
use crate::store::{MailMeta, MailPut, MailQuota, MailRecord, StoreError};

impl SqliteStore {
    pub(super) async fn mail_put(
        &self,
        rec: &MailRecord,
        quota: &MailQuota,
        now_ms: i64,
    ) -> Result<MailPut, StoreError> {
        let recipient = &rec.recipient.as_bytes()[..];
        // BEGIN IMMEDIATE: the count and the insert see the same state.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let (count, bytes): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(length(envelope)), 0) FROM mailbox_messages \
             WHERE recipient = ?1 AND expires_at > ?2",
        )
        .bind(recipient)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        if !fits(count, bytes, rec.envelope.len(), quota) {
            tx.rollback().await?;
            return Ok(MailPut::Full);
        }
        sqlx::query(
            "INSERT INTO mailbox_messages (id, recipient, envelope, received_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&rec.id)
        .bind(recipient)
        .bind(&rec.envelope[..])
        .bind(rec.received_at_ms)
        .bind(rec.expires_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(MailPut::Stored)
    }

    pub(super) async fn mail_list(
        &self,
        recipient: &PublicKey,
        now_ms: i64,
    ) -> Result<Vec<MailMeta>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, length(envelope), received_at, expires_at FROM mailbox_messages \
             WHERE recipient = ?1 AND expires_at > ?2 ORDER BY received_at, id",
        )
        .bind(&recipient.as_bytes()[..])
        .bind(now_ms)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(id, size, received_at_ms, expires_at_ms)| {
                Ok(MailMeta {
                    id,
                    size: size_from_db(size)?,
                    received_at_ms,
                    expires_at_ms,
                })
            })
            .collect()
    }

    pub(super) async fn mail_get(
        &self,
        recipient: &PublicKey,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT envelope FROM mailbox_messages \
             WHERE recipient = ?1 AND id = ?2 AND expires_at > ?3",
        )
        .bind(&recipient.as_bytes()[..])
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&self.reader)
        .await?)
    }

    pub(super) async fn mail_ack(
        &self,
        recipient: &PublicKey,
        id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM mailbox_messages WHERE recipient = ?1 AND id = ?2")
            .bind(&recipient.as_bytes()[..])
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn mail_nonce(
        &self,
        recipient: &PublicKey,
        nonce: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO mailbox_nonces (recipient, nonce, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (recipient, nonce) DO NOTHING",
        )
        .bind(&recipient.as_bytes()[..])
        .bind(nonce)
        .bind(expires_at_ms)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn mail_purge(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query("DELETE FROM mailbox_messages WHERE expires_at <= ?1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mailbox_nonces WHERE expires_at <= ?1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
