-- Private-tracker passkeys (keep in step with migrations/sqlite).
--
-- A passkey is a bearer credential that a private tracker's users put in their announce URL
-- (`/announce/<passkey>`). The server only ever asks whether one exists; the tracker caches
-- the answer in memory for `tracker.passkey_cache_secs`.

CREATE TABLE passkeys (
    -- Server time the passkey was added, ms since the epoch.
    created_at BIGINT NOT NULL,
    passkey    TEXT   NOT NULL PRIMARY KEY CHECK (length(passkey) BETWEEN 1 AND 64)
);
