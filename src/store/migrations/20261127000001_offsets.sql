-- Per bot (keyed by its Telegram user id): the next update id to ask for,
-- and the updates handled above it, so a restart neither repeats nor loses
-- an update. Times are Unix seconds.
CREATE TABLE IF NOT EXISTS bot_offsets (
    bot_id TEXT PRIMARY KEY,
    next_offset BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS handled_updates (
    bot_id TEXT NOT NULL,
    update_id BIGINT NOT NULL,
    handled_at BIGINT NOT NULL,
    PRIMARY KEY (bot_id, update_id)
);
