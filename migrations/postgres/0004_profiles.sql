-- Profiles: signed {publicKey, sequence, timestamp, name, avatar?, mailboxKey?} documents
-- kept for a TTL unless re-published (keep in step with migrations/sqlite). See docs/api.md.
--
-- A row is never deleted: when a profile expires the purge sets body to NULL and keeps the
-- row, whose sequence is the high-water mark that still refuses older documents.

CREATE TABLE profiles (
    -- The owner's Ed25519 public key (32 bytes).
    public_key BYTEA NOT NULL PRIMARY KEY CHECK (length(public_key) = 32),
    -- The highest sequence ever accepted for this key.
    sequence   BIGINT NOT NULL CHECK (sequence >= 0),
    -- The canonical (JCS) document, signature included; NULL once expired and purged.
    body       BYTEA,
    -- Server times, ms since the epoch.
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX profiles_expiry ON profiles (expires_at) WHERE body IS NOT NULL;
