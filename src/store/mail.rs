//! Rules shared by both backends' mailbox queries.

use super::{MailQuota, StoreError};

/// Whether a message of `len` bytes fits beside `count` messages of `bytes` total.
pub(crate) fn fits(count: i64, bytes: i64, len: usize, quota: &MailQuota) -> bool {
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    count < quota.max_messages && bytes.saturating_add(len) <= quota.max_bytes
}

/// A size read back from the database.
pub(crate) fn size_from_db(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative mail size {n}")))
}

/// The PostgreSQL advisory-lock key serialising writes to one mailbox.
#[cfg(feature = "postgres")]
pub(crate) fn lock_key(recipient: &crate::proto::PublicKey) -> i64 {
    let b = recipient.as_bytes();
    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}
