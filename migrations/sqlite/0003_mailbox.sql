-- Mailbox: sealed store-and-forward messages (keep in step with migrations/postgres).
--
-- Nothing about a message's sender is stored: only the recipient's key, an opaque envelope
-- and server times. See docs/mail.md.

CREATE TABLE mailbox_messages (
    -- Server-chosen random id, 32 lowercase hex characters.
    id          TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 32),
    -- The recipient's Ed25519 public key (32 bytes).
    recipient   BLOB    NOT NULL CHECK (length(recipient) = 32),
    envelope    BLOB    NOT NULL,
    -- Server times, ms since the epoch.
    received_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX mailbox_messages_recipient ON mailbox_messages (recipient, received_at);
CREATE INDEX mailbox_messages_expiry ON mailbox_messages (expires_at);

-- Nonces of signed mailbox requests, kept until the request's timestamp leaves the skew
-- window (after which the timestamp alone refuses a replay).
CREATE TABLE mailbox_nonces (
    recipient  BLOB    NOT NULL CHECK (length(recipient) = 32),
    nonce      TEXT    NOT NULL CHECK (length(nonce) BETWEEN 16 AND 64),
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (recipient, nonce)
) STRICT;

CREATE INDEX mailbox_nonces_expiry ON mailbox_nonces (expires_at);
