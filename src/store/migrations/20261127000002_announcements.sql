-- The announcement relay: which chats are subscribed (and since when), the
-- announcements seen at the source (bounded by pruning), and which chat
-- received which announcement, so a broadcast resumes after a crash
-- without resending. Times are Unix seconds.
CREATE TABLE IF NOT EXISTS subscriptions (
    bot_id TEXT NOT NULL,
    chat_id BIGINT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (bot_id, chat_id)
);

CREATE TABLE IF NOT EXISTS announcements (
    bot_id TEXT NOT NULL,
    announcement_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    link TEXT NOT NULL,
    message TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    pending BOOLEAN NOT NULL,
    PRIMARY KEY (bot_id, announcement_id)
);

CREATE TABLE IF NOT EXISTS deliveries (
    bot_id TEXT NOT NULL,
    announcement_id TEXT NOT NULL,
    chat_id BIGINT NOT NULL,
    delivered_at BIGINT NOT NULL,
    PRIMARY KEY (bot_id, announcement_id, chat_id)
);
