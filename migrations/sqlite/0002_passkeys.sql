-- Private-tracker passkeys (keep in step with migrations/postgres).
--
-- A passkey is a bearer credential that a private tracker's users put in their announce URL
-- (`/announce/<passkey>`). The server only ever asks whether one exists; the tracker caches
-- the answer in memory for `tracker.passkey_cache_secs`.

CREATE TABLE passkeys (
    passkey    TEXT    NOT NULL PRIMARY KEY CHECK (length(passkey) BETWEEN 1 AND 64),
    -- Server time the passkey was added, ms since the epoch.
    created_at INTEGER NOT NULL
) STRICT;
