-- Each bot's inbox: updates Telegram delivered and botvisor has not yet
-- handled. A row is written in the same transaction as the offset that
-- confirms its update to Telegram, and deleted in the transaction that
-- records what its handler decided (the outbox rows). A crash in between
-- leaves the row: the next session handles it. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS inbox (
    bot_id TEXT NOT NULL,
    update_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (bot_id, update_id)
);
