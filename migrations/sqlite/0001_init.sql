-- megatorrent storage schema, SQLite dialect (keep in step with migrations/postgres).
--
-- Each table has one row per slot (public key). The row IS the slot's sequence high-water
-- mark: deleting or expiring a record clears its payload columns and keeps the sequence, so a
-- replay of an old signed record can never be accepted again.
--
-- These are ordinary rowid tables on purpose, not WITHOUT ROWID: manifest rows are hundreds
-- of bytes, and a WITHOUT ROWID b-tree copies whole rows into its interior pages. Measured at
-- 200k identities with random keys: 300/600/900-byte bodies cost 419/730/1072 bytes per
-- identity as a rowid table versus 434/805/1219 WITHOUT ROWID.
--
-- The partial `*_live` indexes let stats() count live rows from a small index (~13 bytes a
-- row) instead of reading every body.

CREATE TABLE manifests (
    public_key BLOB    NOT NULL PRIMARY KEY CHECK (length(public_key) = 32),
    sequence   INTEGER NOT NULL CHECK (sequence >= 0),
    -- Canonical manifest bytes; NULL once deleted (the row then only keeps the mark).
    body       BLOB,
    -- Server time of the last write, ms since the epoch.
    updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX manifests_live ON manifests (sequence) WHERE body IS NOT NULL;

-- Proof-of-concept pointer records (`POST /announce`): their own sequence space.
CREATE TABLE pointers (
    public_key      BLOB    NOT NULL PRIMARY KEY CHECK (length(public_key) = 32),
    seq             INTEGER NOT NULL CHECK (seq >= 0),
    -- The three payload columns are all set (live) or all NULL (tombstone).
    public_key_text TEXT,
    infohash_text   TEXT,
    signature       BLOB CHECK (signature IS NULL OR length(signature) = 64),
    updated_at      INTEGER NOT NULL,
    CHECK ((public_key_text IS NULL) = (signature IS NULL)
       AND (infohash_text IS NULL) = (signature IS NULL))
) STRICT;

CREATE INDEX pointers_live ON pointers (seq) WHERE signature IS NOT NULL;
