-- megatorrent storage schema, PostgreSQL dialect (keep in step with migrations/sqlite).
--
-- Each table has one row per slot (public key). The row IS the slot's sequence high-water
-- mark: deleting or expiring a record clears its payload columns and keeps the sequence, so a
-- replay of an old signed record can never be accepted again.
--
-- Fixed-width columns come first so the tuple needs no alignment padding.
--
-- The partial `*_live` indexes let stats() count live rows from a small index instead of
-- reading every row.

CREATE TABLE manifests (
    sequence   BIGINT NOT NULL CHECK (sequence >= 0),
    -- Server time of the last write, ms since the epoch.
    updated_at BIGINT NOT NULL,
    public_key BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(public_key) = 32),
    -- Canonical manifest bytes; NULL once deleted (the row then only keeps the mark).
    body       BYTEA
);

CREATE INDEX manifests_live ON manifests (sequence) WHERE body IS NOT NULL;

-- Proof-of-concept pointer records (`POST /announce`): their own sequence space.
CREATE TABLE pointers (
    seq             BIGINT NOT NULL CHECK (seq >= 0),
    updated_at      BIGINT NOT NULL,
    public_key      BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(public_key) = 32),
    -- The three payload columns are all set (live) or all NULL (tombstone).
    public_key_text TEXT,
    infohash_text   TEXT,
    signature       BYTEA CHECK (signature IS NULL OR octet_length(signature) = 64),
    CHECK ((public_key_text IS NULL) = (signature IS NULL)
       AND (infohash_text IS NULL) = (signature IS NULL))
);

CREATE INDEX pointers_live ON pointers (seq) WHERE signature IS NOT NULL;
