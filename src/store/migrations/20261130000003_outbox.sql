-- Each bot's outbox: messages decided and not yet accepted by Telegram, in
-- the order they go out (seq, per bot). A row is written in the same
-- transaction as the handled mark of the update that produced it (or as the
-- end of the announcement it broadcasts), and deleted once Telegram has
-- accepted the message or refused it for good. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS outbox (
    bot_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (bot_id, seq)
);
