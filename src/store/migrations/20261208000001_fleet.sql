-- The fleet (issue 22): botvisor instances sharing one PostgreSQL store
-- announce themselves here, and each bot's lease is a row with a fencing
-- generation that only grows. Times are Unix milliseconds on the
-- database's clock. A SQLite store has the tables too (one set of
-- migrations) but leases there are file locks.
CREATE TABLE IF NOT EXISTS fleet_instances (
    instance_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    weight BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS bot_leases (
    bot_id TEXT PRIMARY KEY,
    holder TEXT,
    generation BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    taken_at BIGINT NOT NULL
);
