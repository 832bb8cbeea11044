//! The conditional-write decision shared by both backends.
//!
//! Each backend reads a slot under its write lock, asks [`plan`] what to do, and executes
//! that plan with statements that themselves refuse to lower a sequence.

use super::{PutOutcome, StoreError};

/// A slot as read inside the write transaction.
pub(super) struct Slot {
    /// Its high-water mark.
    pub(super) sequence: u64,
    /// Whether it holds a live record.
    pub(super) live: bool,
    /// Whether the live record is identical to the one being written.
    pub(super) same: bool,
}

/// What a conditional write has to do, decided from the slot's current state.
pub(super) enum Plan {
    /// The slot has never been written: insert a row.
    Insert,
    /// The new sequence is above the mark: overwrite the row.
    Replace {
        /// Whether a live record is being replaced (`Updated`) or a tombstone (`Created`).
        was_live: bool,
    },
    /// Nothing to write.
    Done(PutOutcome),
}

pub(super) fn plan(new_sequence: u64, slot: Option<Slot>) -> Plan {
    match slot {
        None => Plan::Insert,
        Some(s) if new_sequence > s.sequence => Plan::Replace { was_live: s.live },
        Some(s) if new_sequence == s.sequence && s.live && s.same => {
            Plan::Done(PutOutcome::Unchanged)
        }
        Some(s) => Plan::Done(PutOutcome::Conflict {
            current: s.sequence,
        }),
    }
}

/// A sequence as the database stores it (`INTEGER`/`BIGINT`).
pub(super) fn seq_to_db(sequence: u64) -> Result<i64, StoreError> {
    i64::try_from(sequence).map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))
}

/// A stored sequence back as `u64`; a negative value means the row is corrupt.
pub(super) fn seq_from_db(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{what} sequence {value} is negative")))
}

pub(super) fn count_from_db(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} count {value}")))
}

pub(super) fn gave_up(what: &str, attempts: usize) -> StoreError {
    StoreError::Corrupt(format!(
        "{what} slot kept changing under the write lock ({attempts} attempts)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_case() {
        let slot = |sequence, live, same| {
            Some(Slot {
                sequence,
                live,
                same,
            })
        };
        assert!(matches!(plan(1, None), Plan::Insert));
        assert!(matches!(
            plan(5, slot(4, true, false)),
            Plan::Replace { was_live: true }
        ));
        assert!(matches!(
            plan(5, slot(4, false, false)),
            Plan::Replace { was_live: false }
        ));
        assert!(matches!(
            plan(4, slot(4, true, true)),
            Plan::Done(PutOutcome::Unchanged)
        ));
        assert!(matches!(
            plan(4, slot(4, true, false)),
            Plan::Done(PutOutcome::Conflict { current: 4 })
        ));
        assert!(matches!(
            plan(4, slot(4, false, false)),
            Plan::Done(PutOutcome::Conflict { current: 4 })
        ));
        assert!(matches!(
            plan(3, slot(4, true, true)),
            Plan::Done(PutOutcome::Conflict { current: 4 })
        ));
    }

    #[test]
    fn sequences_map_to_and_from_the_database() {
        assert_eq!(seq_to_db(0).ok(), Some(0));
        assert!(matches!(seq_to_db(u64::MAX), Err(StoreError::Database(_))));
        assert_eq!(seq_from_db(7, "x").ok(), Some(7));
        assert!(matches!(seq_from_db(-1, "x"), Err(StoreError::Corrupt(_))));
    }
}
