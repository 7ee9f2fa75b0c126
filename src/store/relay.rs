//! The announcement relay's state: subscriptions, announcements seen at the
//! source, and deliveries (which chat got which announcement), so that no
//! subscription and no announcement is lost or sent twice across restarts.
//! Times here are Unix milliseconds: a chat receives the announcements first
//! seen at or after the moment it subscribed.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;

use super::{Fence, Store, StoreError, check_fence, on_pool};

/// An announcement waiting to be delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub id: String,
    /// The order in which announcements were first seen.
    pub seq: i64,
    pub link: String,
    /// The message to send, formatted when first seen.
    pub message: String,
    /// When it was first seen (Unix milliseconds).
    pub first_seen: i64,
}

/// An announcement seen at the source for the first time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAnnouncement {
    pub id: String,
    pub link: String,
    /// The message to deliver; `None` for one that is only marked as seen
    /// (the first check, or one with the skip marker).
    pub message: Option<String>,
}

/// A subscribed chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub chat_id: i64,
    /// When it subscribed (Unix milliseconds).
    pub since: i64,
}

/// Now, in Unix milliseconds.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Store {
    /// Subscribes `chat_id`; false when it already was.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn subscribe(
        &self,
        bot_id: &str,
        chat_id: i64,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO subscriptions (bot_id, chat_id, since) VALUES ($1, $2, $3) \
                           ON CONFLICT (bot_id, chat_id) DO NOTHING";
        let added = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            check_fence!(tx, bot_id, fence);
            let added = sqlx::query(SQL)
                .bind(bot_id)
                .bind(chat_id)
                .bind(now_millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            added
        });
        Ok(added == 1)
    }

    /// Unsubscribes `chat_id`; false when it was not subscribed.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn unsubscribe(
        &self,
        bot_id: &str,
        chat_id: i64,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM subscriptions WHERE bot_id = $1 AND chat_id = $2";
        let removed = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            check_fence!(tx, bot_id, fence);
            let removed = sqlx::query(SQL)
                .bind(bot_id)
                .bind(chat_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            removed
        });
        Ok(removed > 0)
    }

    /// Every subscribed chat, oldest subscription first.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn subscriptions(&self, bot_id: &str) -> Result<Vec<Subscription>, StoreError> {
        const SQL: &str =
            "SELECT chat_id, since FROM subscriptions WHERE bot_id = $1 ORDER BY since, chat_id";
        Ok(on_pool!(self, |pool| sqlx::query(SQL)
            .bind(bot_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Subscription {
                chat_id: row.get(0),
                since: row.get(1),
            })
            .collect()))
    }

    /// A group became a supergroup: its subscription and deliveries move to
    /// the new id, in one transaction.
    ///
    /// # Errors
    /// When the store fails; nothing is written then.
    pub async fn move_chat(
        &self,
        bot_id: &str,
        old: i64,
        new: i64,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        // The new id may be subscribed already: then the old row goes.
        const SUBSCRIPTION: &str = "UPDATE subscriptions SET chat_id = $3 WHERE bot_id = $1 AND chat_id = $2 \
                                    AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE bot_id = $1 AND chat_id = $3)";
        const DROP_OLD: &str = "DELETE FROM subscriptions WHERE bot_id = $1 AND chat_id = $2";
        const COPY_DELIVERIES: &str = "INSERT INTO deliveries (bot_id, announcement_id, chat_id, delivered_at) \
                                       SELECT bot_id, announcement_id, $3, delivered_at FROM deliveries \
                                       WHERE bot_id = $1 AND chat_id = $2 \
                                       ON CONFLICT (bot_id, announcement_id, chat_id) DO NOTHING";
        const DROP_DELIVERIES: &str = "DELETE FROM deliveries WHERE bot_id = $1 AND chat_id = $2";
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            check_fence!(tx, bot_id, fence);
            sqlx::query(SUBSCRIPTION)
                .bind(bot_id)
                .bind(old)
                .bind(new)
                .execute(&mut *tx)
                .await?;
            sqlx::query(DROP_OLD)
                .bind(bot_id)
                .bind(old)
                .execute(&mut *tx)
                .await?;
            sqlx::query(COPY_DELIVERIES)
                .bind(bot_id)
                .bind(old)
                .bind(new)
                .execute(&mut *tx)
                .await?;
            sqlx::query(DROP_DELIVERIES)
                .bind(bot_id)
                .bind(old)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The ids of every announcement seen at the source.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn seen_announcements(&self, bot_id: &str) -> Result<HashSet<String>, StoreError> {
        const SQL: &str = "SELECT announcement_id FROM announcements WHERE bot_id = $1";
        Ok(on_pool!(self, |pool| sqlx::query(SQL)
            .bind(bot_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect()))
    }

    /// Records announcements seen for the first time, in the order given,
    /// in one transaction.
    ///
    /// # Errors
    /// When the store fails; nothing is written then.
    pub async fn record_announcements(
        &self,
        bot_id: &str,
        items: &[NewAnnouncement],
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        const NEXT: &str = "SELECT COALESCE(MAX(seq), 0) FROM announcements WHERE bot_id = $1";
        const INSERT: &str = "INSERT INTO announcements (bot_id, announcement_id, seq, link, message, first_seen, pending) \
                              VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (bot_id, announcement_id) DO NOTHING";
        if items.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            check_fence!(tx, bot_id, fence);
            let last: i64 = sqlx::query(NEXT)
                .bind(bot_id)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
            for (i, item) in items.iter().enumerate() {
                sqlx::query(INSERT)
                    .bind(bot_id)
                    .bind(&item.id)
                    .bind(last + 1 + i64::try_from(i).unwrap_or(i64::MAX - last - 1))
                    .bind(&item.link)
                    .bind(item.message.clone().unwrap_or_default())
                    .bind(now)
                    .bind(item.message.is_some())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Announcements not yet delivered everywhere, oldest first.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn pending_announcements(
        &self,
        bot_id: &str,
    ) -> Result<Vec<Announcement>, StoreError> {
        const SQL: &str = "SELECT announcement_id, seq, link, message, first_seen FROM announcements \
                           WHERE bot_id = $1 AND pending = $2 ORDER BY seq";
        Ok(on_pool!(self, |pool| sqlx::query(SQL)
            .bind(bot_id)
            .bind(true)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Announcement {
                id: row.get(0),
                seq: row.get(1),
                link: row.get(2),
                message: row.get(3),
                first_seen: row.get(4),
            })
            .collect()))
    }

    /// The chats that already received announcement `id`.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn delivered_to(&self, bot_id: &str, id: &str) -> Result<HashSet<i64>, StoreError> {
        const SQL: &str =
            "SELECT chat_id FROM deliveries WHERE bot_id = $1 AND announcement_id = $2";
        Ok(on_pool!(self, |pool| sqlx::query(SQL)
            .bind(bot_id)
            .bind(id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| row.get::<i64, _>(0))
            .collect()))
    }

    /// Records that `chat_id` received announcement `id`.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn mark_delivered(
        &self,
        bot_id: &str,
        id: &str,
        chat_id: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO deliveries (bot_id, announcement_id, chat_id, delivered_at) \
                           VALUES ($1, $2, $3, $4) ON CONFLICT (bot_id, announcement_id, chat_id) DO NOTHING";
        on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(bot_id)
                .bind(id)
                .bind(chat_id)
                .bind(now_millis())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Announcement `id` has reached every chat: it is no longer pending
    /// and its delivery records go, in one transaction.
    ///
    /// # Errors
    /// When the store fails; nothing is written then.
    pub async fn finish_announcement(&self, bot_id: &str, id: &str) -> Result<(), StoreError> {
        const DONE: &str =
            "UPDATE announcements SET pending = $3 WHERE bot_id = $1 AND announcement_id = $2";
        const FORGET: &str = "DELETE FROM deliveries WHERE bot_id = $1 AND announcement_id = $2";
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(DONE)
                .bind(bot_id)
                .bind(id)
                .bind(false)
                .execute(&mut *tx)
                .await?;
            sqlx::query(FORGET)
                .bind(bot_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Keeps the seen set bounded: forgets delivered announcements older
    /// than the newest `keep`, except those in `listed` (what the list page
    /// shows now). An id the site still lists is never forgotten, or it
    /// would come back as new at the next check and be relayed again.
    ///
    /// # Errors
    /// When the store fails; nothing is deleted then.
    pub async fn prune_announcements(
        &self,
        bot_id: &str,
        keep: i64,
        listed: &HashSet<String>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        const OLD: &str = "SELECT announcement_id FROM announcements WHERE bot_id = $1 AND pending = $2 AND seq <= \
                           (SELECT COALESCE(MAX(seq), 0) FROM announcements WHERE bot_id = $1) - $3";
        const DELETE: &str =
            "DELETE FROM announcements WHERE bot_id = $1 AND announcement_id = $2 AND pending = $3";
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            check_fence!(tx, bot_id, fence);
            let old: Vec<String> = sqlx::query(OLD)
                .bind(bot_id)
                .bind(false)
                .bind(keep)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.get::<String, _>(0))
                .collect();
            for id in old.iter().filter(|id| !listed.contains(*id)) {
                sqlx::query(DELETE)
                    .bind(bot_id)
                    .bind(id)
                    .bind(false)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSpec;

    fn new(id: &str, message: Option<&str>) -> NewAnnouncement {
        NewAnnouncement {
            id: id.to_owned(),
            link: format!("https://example.invalid/{id}"),
            message: message.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn subscriptions_announcements_and_deliveries_round_trip() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(&StoreSpec::Sqlite(dir.path().join("relay.db")))
            .await
            .expect("open");
        assert!(store.subscribe("7", -100, None).await.expect("subscribe"));
        assert!(
            !store.subscribe("7", -100, None).await.expect("again"),
            "already subscribed"
        );
        assert!(store.subscribe("7", 5, None).await.expect("subscribe"));
        assert_eq!(store.subscriptions("7").await.expect("list").len(), 2);
        assert!(
            store
                .subscriptions("8")
                .await
                .expect("other bot")
                .is_empty()
        );

        store
            .record_announcements(
                "7",
                &[
                    new("a", None),
                    new("b", Some("DUYURU: b")),
                    new("c", Some("DUYURU: c")),
                ],
                None,
            )
            .await
            .expect("record");
        assert_eq!(store.seen_announcements("7").await.expect("seen").len(), 3);
        let pending = store.pending_announcements("7").await.expect("pending");
        assert_eq!(
            pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert!(pending[0].seq < pending[1].seq);

        store.mark_delivered("7", "b", -100).await.expect("deliver");
        store
            .mark_delivered("7", "b", -100)
            .await
            .expect("twice is fine");
        store
            .move_chat("7", -100, -1009, None)
            .await
            .expect("migrate");
        assert_eq!(
            store.delivered_to("7", "b").await.expect("read"),
            HashSet::from([-1009])
        );
        let chats: Vec<i64> = store
            .subscriptions("7")
            .await
            .expect("list")
            .iter()
            .map(|s| s.chat_id)
            .collect();
        assert!(chats.contains(&-1009) && !chats.contains(&-100));

        // Migrating into an id that is subscribed already, with deliveries on
        // both: one subscription and one delivery remain.
        assert!(store.subscribe("7", -2000, None).await.expect("subscribe"));
        store
            .mark_delivered("7", "b", -2000)
            .await
            .expect("deliver");
        store
            .move_chat("7", -1009, -2000, None)
            .await
            .expect("migrate into a subscribed id");
        let chats: Vec<i64> = store
            .subscriptions("7")
            .await
            .expect("list")
            .iter()
            .map(|s| s.chat_id)
            .collect();
        assert_eq!(chats.iter().filter(|c| **c == -2000).count(), 1);
        assert!(!chats.contains(&-1009));
        assert_eq!(
            store.delivered_to("7", "b").await.expect("read"),
            HashSet::from([-2000])
        );
        store.finish_announcement("7", "b").await.expect("finish");
        assert_eq!(
            store
                .pending_announcements("7")
                .await
                .expect("pending")
                .len(),
            1
        );
        assert!(store.delivered_to("7", "b").await.expect("read").is_empty());
        assert!(store.unsubscribe("7", 5, None).await.expect("unsubscribe"));
        assert!(
            !store.unsubscribe("7", 5, None).await.expect("again"),
            "was off"
        );

        store.finish_announcement("7", "c").await.expect("finish");
        let listed = HashSet::from(["a".to_owned()]);
        store
            .prune_announcements("7", 1, &listed, None)
            .await
            .expect("prune");
        let seen = store.seen_announcements("7").await.expect("seen");
        assert_eq!(
            seen,
            HashSet::from(["a".to_owned(), "c".to_owned()]),
            "the newest is kept, and what the site still lists"
        );
        store
            .prune_announcements("7", 1, &HashSet::new(), None)
            .await
            .expect("prune");
        let seen = store.seen_announcements("7").await.expect("seen");
        assert_eq!(seen, HashSet::from(["c".to_owned()]), "only the newest");
    }

    #[tokio::test]
    async fn pruning_never_forgets_a_listed_id() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(&StoreSpec::Sqlite(dir.path().join("relay.db")))
            .await
            .expect("open");
        // 1,100 listed ids, recorded oldest first as the first check does.
        let ids: Vec<String> = (1..=1100).map(|i| i.to_string()).collect();
        let items: Vec<NewAnnouncement> = ids.iter().map(|id| new(id, None)).collect();
        store
            .record_announcements("7", &items, None)
            .await
            .expect("record");
        let listed: HashSet<String> = ids.iter().cloned().collect();
        store
            .prune_announcements("7", 1000, &listed, None)
            .await
            .expect("prune");
        assert_eq!(
            store.seen_announcements("7").await.expect("seen"),
            listed,
            "every listed id is still known"
        );
        // The site now lists only the newest 500: the older ones may go,
        // down to the newest 1,000.
        let newest: HashSet<String> = ids[600..].iter().cloned().collect();
        store
            .prune_announcements("7", 1000, &newest, None)
            .await
            .expect("prune");
        let seen = store.seen_announcements("7").await.expect("seen");
        assert_eq!(seen.len(), 1000);
        assert!(newest.is_subset(&seen));
    }
}
