//! Manifest lookups on the calling thread.
//!
//! sqlx runs every SQLite statement on a worker thread of its connection and hands the
//! result back through a channel: two thread wake-ups per query, which profiling showed to
//! be the largest single cost of `GET /v1/manifests/{key}` (docs/decisions.md, "SQLite
//! lookups on the calling thread"). A lookup is one read of the primary-key B-tree, a few
//! microseconds when its pages are cached, so it runs here directly on the tokio worker
//! that asks, over a small set of read-only rusqlite connections to the same file (WAL:
//! readers never block the writer, nor it them).
//!
//! At most `max_idle` connections are kept; more are opened while lookups overlap (one per
//! runtime worker thread at most, since a lookup never yields) and closed when returned to
//! a full set.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::proto::PublicKey;
use crate::store::StoreError;

/// The lookup: a live manifest's sequence, body and write time.
pub(super) const LOOKUP: &str = "SELECT sequence, body, updated_at FROM manifests \
                      WHERE public_key = ?1 AND body IS NOT NULL";

/// Read-only connections for [`InlineReads::manifest`].
#[derive(Debug)]
pub(super) struct InlineReads {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl InlineReads {
    /// Lookups in the database file at `path` (which must exist: the store migrated it).
    /// One connection is opened now, so a bad path fails here rather than at the first read.
    pub(super) fn open(
        path: &Path,
        busy_timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, StoreError> {
        let reads = Self {
            path: path.to_owned(),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
        };
        let first = reads.connect()?;
        reads.give_back(first);
        Ok(reads)
    }

    fn connect(&self) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        Ok(conn)
    }

    fn take(&self) -> Result<Connection, rusqlite::Error> {
        // A poisoned lock only means a thread panicked while pushing or popping; the
        // vector is still valid.
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// The live manifest of `key`: `(sequence, body, updated_at)` as stored.
    pub(super) fn manifest(
        &self,
        key: &PublicKey,
    ) -> Result<Option<(i64, Vec<u8>, i64)>, StoreError> {
        let conn = self.take()?;
        let row = conn
            .prepare_cached(LOOKUP)
            .and_then(|mut st| {
                st.query_row([&key.as_bytes()[..]], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(StoreError::from);
        // A connection whose statement failed is dropped rather than reused.
        if row.is_ok() {
            self.give_back(conn);
        }
        row
    }
}
