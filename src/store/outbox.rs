//! The durable half of a bot's inbox and outbox: updates received but not
//! yet handled, messages decided but not yet accepted by Telegram, and the
//! one transaction that records, together, the updates a bot received (with
//! the offset that confirms them), the updates it handled, the messages they
//! produced and the messages that went out.
//!
//! One writer per bot (its outbox's committer) calls [`Store::commit_outbox`]
//! with everything that accumulated since its last commit, so a burst costs
//! a handful of transactions, not one per message.

use sqlx::Row;

use super::{Store, StoreError, now_secs, on_pool};

/// One queued message as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    /// Its place in the bot's sending order.
    pub seq: i64,
    pub chat_id: i64,
    /// The message (text, buttons, or an edit), as the outbox serialised it.
    pub body: String,
    /// When it was queued, in Unix milliseconds.
    pub created_at: i64,
}

/// One received update as stored in the inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxRow {
    pub update_id: u32,
    /// The update as Telegram sent it (JSON).
    pub body: String,
}

/// What one commit records, all or nothing.
#[derive(Debug, Default)]
pub struct OutboxCommit {
    /// Updates received, kept until they are handled.
    pub received: Vec<InboxRow>,
    /// Updates handled: their inbox rows go.
    pub handled: Vec<u32>,
    /// Handled updates to remember by id (a webhook bot's: Telegram may
    /// deliver one again after a crash, whatever the offset).
    pub marks: Vec<u32>,
    /// New messages.
    pub inserts: Vec<OutboxRow>,
    /// Messages Telegram accepted or refused for good.
    pub deletes: Vec<i64>,
    /// Chats that became another (a group upgraded to a supergroup).
    pub migrations: Vec<(i64, i64)>,
    /// Announcements whose broadcast these messages are: no longer pending.
    pub finished_announcements: Vec<String>,
    /// The bot's new offset, when it moved.
    pub offset: Option<u32>,
}

impl OutboxCommit {
    pub fn is_empty(&self) -> bool {
        self.handled.is_empty()
            && self.marks.is_empty()
            && self.received.is_empty()
            && self.inserts.is_empty()
            && self.deletes.is_empty()
            && self.migrations.is_empty()
            && self.finished_announcements.is_empty()
            && self.offset.is_none()
    }
}

/// Rows per multi-row statement: well under SQLite's parameter limit.
const CHUNK: usize = 200;

impl Store {
    /// Every message queued for `bot_id`, in sending order.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn outbox_rows(&self, bot_id: &str) -> Result<Vec<OutboxRow>, StoreError> {
        const SQL: &str =
            "SELECT seq, chat_id, body, created_at FROM outbox WHERE bot_id = $1 ORDER BY seq";
        Ok(on_pool!(self, |pool| sqlx::query(SQL)
            .bind(bot_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| OutboxRow {
                seq: row.get(0),
                chat_id: row.get(1),
                body: row.get(2),
                created_at: row.get(3),
            })
            .collect()))
    }

    /// Every update in `bot_id`'s inbox (received, not handled), oldest
    /// first.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn inbox_rows(&self, bot_id: &str) -> Result<Vec<InboxRow>, StoreError> {
        const SQL: &str = "SELECT update_id, body FROM inbox WHERE bot_id = $1 ORDER BY update_id";
        let rows: Vec<(i64, String)> = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(bot_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect());
        Ok(rows
            .into_iter()
            .filter_map(|(id, body)| {
                u32::try_from(id)
                    .ok()
                    .map(|update_id| InboxRow { update_id, body })
            })
            .collect())
    }

    /// The bots whose inbox holds updates (for the webhook sessions' one
    /// shared scan).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn bots_with_inbox(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        const SQL: &str = "SELECT DISTINCT bot_id FROM inbox";
        Ok(on_pool!(self, |pool| sqlx::query(SQL)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect()))
    }

    /// Stores one webhook update in `bot_id`'s inbox outside any session
    /// (this instance does not run the bot now, or not yet): the session
    /// that holds the bot's lease finds it there. An update already stored,
    /// or handled within the marks' day, is left alone.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn receive_elsewhere(&self, bot_id: &str, row: &InboxRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO inbox (bot_id, update_id, body, received_at) \
             SELECT $1, $2, $3, $4 WHERE NOT EXISTS \
             (SELECT 1 FROM handled_updates WHERE bot_id = $1 AND update_id = $2) \
             ON CONFLICT (bot_id, update_id) DO NOTHING";
        on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(bot_id)
                .bind(i64::from(row.update_id))
                .bind(&row.body)
                .bind(crate::outbox::now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Writes and removes a row in one transaction: proof that the store
    /// takes writes (a full disk reads but does not write).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn write_probe(&self, bot_id: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO handled_updates (bot_id, update_id, handled_at) VALUES ($1, -1, $2) \
                 ON CONFLICT (bot_id, update_id) DO NOTHING",
            )
            .bind(bot_id)
            .bind(now_secs())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM handled_updates WHERE bot_id = $1 AND update_id = -1")
                .bind(bot_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Forgets the handled marks of `bot_id` written before `before` (Unix
    /// seconds): Telegram keeps an update for 24 hours at most.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn forget_marks_before(&self, bot_id: &str, before: i64) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM handled_updates WHERE bot_id = $1 AND handled_at < $2";
        on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(bot_id)
                .bind(before)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records `commit` in one transaction.
    ///
    /// # Errors
    /// When the store fails; nothing is written then.
    /// With a `fence`, the commit first checks in the same transaction that
    /// the lease is still this instance's at that generation;
    /// [`StoreError::Fenced`] when not.
    pub async fn commit_outbox(
        &self,
        bot_id: &str,
        commit: &OutboxCommit,
        fence: Option<&super::Fence>,
    ) -> Result<(), StoreError> {
        const OFFSET: &str = "INSERT INTO bot_offsets (bot_id, next_offset, updated_at) VALUES ($1, $2, $3) \
                              ON CONFLICT (bot_id) DO UPDATE SET next_offset = excluded.next_offset, \
                              updated_at = excluded.updated_at";
        const FORGET: &str = "DELETE FROM handled_updates WHERE bot_id = $1 AND update_id < $2";
        const MIGRATE: &str = "UPDATE outbox SET chat_id = $3 WHERE bot_id = $1 AND chat_id = $2";
        const FINISH: &str =
            "UPDATE announcements SET pending = $3 WHERE bot_id = $1 AND announcement_id = $2";
        const FORGET_DELIVERIES: &str =
            "DELETE FROM deliveries WHERE bot_id = $1 AND announcement_id = $2";
        if commit.is_empty() {
            return Ok(());
        }
        let now = now_secs();
        let now_ms = crate::outbox::now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            super::check_fence!(tx, bot_id, fence);
            for chunk in commit.received.chunks(CHUNK) {
                let sql = values_sql(
                    "INSERT INTO inbox (bot_id, update_id, body, received_at) VALUES ",
                    chunk.len(),
                    4,
                    " ON CONFLICT (bot_id, update_id) DO NOTHING",
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for row in chunk {
                    query = query
                        .bind(bot_id)
                        .bind(i64::from(row.update_id))
                        .bind(&row.body)
                        .bind(now_ms);
                }
                query.execute(&mut *tx).await?;
            }
            for chunk in commit.handled.chunks(CHUNK) {
                let sql = format!(
                    "DELETE FROM inbox WHERE bot_id = $1 AND update_id IN ({})",
                    in_list(chunk.len())
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(bot_id);
                for id in chunk {
                    query = query.bind(i64::from(*id));
                }
                query.execute(&mut *tx).await?;
            }
            for chunk in commit.marks.chunks(CHUNK) {
                let sql = values_sql(
                    "INSERT INTO handled_updates (bot_id, update_id, handled_at) VALUES ",
                    chunk.len(),
                    3,
                    " ON CONFLICT (bot_id, update_id) DO NOTHING",
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(bot_id).bind(i64::from(*id)).bind(now);
                }
                query.execute(&mut *tx).await?;
            }
            for chunk in commit.inserts.chunks(CHUNK) {
                let sql = values_sql(
                    "INSERT INTO outbox (bot_id, seq, chat_id, body, created_at) VALUES ",
                    chunk.len(),
                    5,
                    "",
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for row in chunk {
                    query = query
                        .bind(bot_id)
                        .bind(row.seq)
                        .bind(row.chat_id)
                        .bind(&row.body)
                        .bind(row.created_at);
                }
                query.execute(&mut *tx).await?;
            }
            for chunk in commit.deletes.chunks(CHUNK) {
                let sql = format!(
                    "DELETE FROM outbox WHERE bot_id = $1 AND seq IN ({})",
                    in_list(chunk.len())
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(bot_id);
                for seq in chunk {
                    query = query.bind(*seq);
                }
                query.execute(&mut *tx).await?;
            }
            for (old, new) in &commit.migrations {
                sqlx::query(MIGRATE)
                    .bind(bot_id)
                    .bind(*old)
                    .bind(*new)
                    .execute(&mut *tx)
                    .await?;
            }
            for id in &commit.finished_announcements {
                sqlx::query(FINISH)
                    .bind(bot_id)
                    .bind(id)
                    .bind(false)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(FORGET_DELIVERIES)
                    .bind(bot_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(offset) = commit.offset {
                sqlx::query(OFFSET)
                    .bind(bot_id)
                    .bind(i64::from(offset))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(FORGET)
                    .bind(bot_id)
                    .bind(i64::from(offset))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

/// `$2, $3, …` for `count` values after the bot id.
fn in_list(count: usize) -> String {
    let list: Vec<String> = (0..count).map(|i| format!("${}", i + 2)).collect();
    list.join(", ")
}

/// `head ($1, $2, $3), ($4, …) tail` for `rows` rows of `columns` values.
fn values_sql(head: &str, rows: usize, columns: usize, tail: &str) -> String {
    let mut sql = String::from(head);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * columns + column + 1));
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSpec;

    #[test]
    fn values_lists_number_every_parameter() {
        assert_eq!(
            values_sql("INSERT INTO t VALUES ", 2, 2, " X"),
            "INSERT INTO t VALUES ($1, $2), ($3, $4) X"
        );
    }

    #[tokio::test]
    async fn a_commit_records_everything_or_nothing_and_rows_come_back_in_order() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(&StoreSpec::Sqlite(dir.path().join("o.db")))
            .await
            .expect("open");
        let row = |seq: i64, chat: i64| OutboxRow {
            seq,
            chat_id: chat,
            body: format!("m{seq}"),
            created_at: 1,
        };
        let update = |id: u32| InboxRow {
            update_id: id,
            body: format!("{{\"update_id\":{id}}}"),
        };
        let inserts: Vec<OutboxRow> = (1..=450).map(|seq| row(seq, seq % 7)).collect();
        let received: Vec<InboxRow> = (20..=22).map(update).collect();
        store
            .commit_outbox(
                "9",
                &OutboxCommit {
                    received: received.clone(),
                    inserts: inserts.clone(),
                    offset: Some(23),
                    ..OutboxCommit::default()
                },
                None,
            )
            .await
            .expect("commit");
        assert_eq!(store.outbox_rows("9").await.expect("read"), inserts);
        assert_eq!(store.inbox_rows("9").await.expect("read"), received);
        assert_eq!(
            store
                .offset("9")
                .await
                .expect("read")
                .map(|o| o.next_offset),
            Some(23)
        );
        store
            .commit_outbox(
                "9",
                &OutboxCommit {
                    handled: vec![20, 22],
                    deletes: (1..=449).collect(),
                    migrations: vec![(450 % 7, -100)],
                    ..OutboxCommit::default()
                },
                None,
            )
            .await
            .expect("commit");
        let left = store.outbox_rows("9").await.expect("read");
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].seq, left[0].chat_id), (450, -100));
        assert_eq!(store.inbox_rows("9").await.expect("read"), [update(21)]);
        // A duplicate seq fails the whole commit: nothing of it is written.
        let failed = store
            .commit_outbox(
                "9",
                &OutboxCommit {
                    handled: vec![21],
                    received: vec![update(30)],
                    inserts: vec![row(451, 1), row(450, 1)],
                    offset: Some(31),
                    ..OutboxCommit::default()
                },
                None,
            )
            .await;
        assert!(failed.is_err());
        assert_eq!(store.outbox_rows("9").await.expect("read").len(), 1);
        assert_eq!(store.inbox_rows("9").await.expect("read"), [update(21)]);
        assert_eq!(
            store
                .offset("9")
                .await
                .expect("read")
                .map(|o| o.next_offset),
            Some(23)
        );
    }
}
