//! One bot's store handle: the store, the bot's key and, on a fleet store,
//! the fence of the lease its session holds. Every write a session or its
//! kind makes for the bot goes through it, so fencing is one check in the
//! transaction each write already has.

use std::collections::HashSet;

use super::{Announcement, Fence, NewAnnouncement, OutboxCommit, Store, StoreError, Subscription};

/// A bot's store, as one session holds it.
#[derive(Clone, Debug)]
pub struct BotStore {
    store: Store,
    bot_id: String,
    fence: Option<Fence>,
}

impl BotStore {
    pub fn new(store: Store, bot_id: String, fence: Option<Fence>) -> BotStore {
        BotStore {
            store,
            bot_id,
            fence,
        }
    }

    /// The bot's Telegram id, its key in the store.
    pub fn bot_id(&self) -> &str {
        &self.bot_id
    }

    /// The whole store, for reads that are not this bot's.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// [`Store::commit_outbox`], fenced.
    ///
    /// # Errors
    /// As [`Store::commit_outbox`].
    pub async fn commit(&self, commit: &OutboxCommit) -> Result<(), StoreError> {
        self.store
            .commit_outbox(&self.bot_id, commit, self.fence.as_ref())
            .await
    }

    /// [`Store::subscribe`], fenced.
    ///
    /// # Errors
    /// When the store fails or the lease is gone.
    pub async fn subscribe(&self, chat_id: i64) -> Result<bool, StoreError> {
        self.store
            .subscribe(&self.bot_id, chat_id, self.fence.as_ref())
            .await
    }

    /// [`Store::unsubscribe`], fenced.
    ///
    /// # Errors
    /// When the store fails or the lease is gone.
    pub async fn unsubscribe(&self, chat_id: i64) -> Result<bool, StoreError> {
        self.store
            .unsubscribe(&self.bot_id, chat_id, self.fence.as_ref())
            .await
    }

    /// [`Store::move_chat`], fenced.
    ///
    /// # Errors
    /// When the store fails or the lease is gone; nothing is written then.
    pub async fn move_chat(&self, old: i64, new: i64) -> Result<(), StoreError> {
        self.store
            .move_chat(&self.bot_id, old, new, self.fence.as_ref())
            .await
    }

    /// [`Store::record_announcements`], fenced.
    ///
    /// # Errors
    /// When the store fails or the lease is gone; nothing is written then.
    pub async fn record_announcements(&self, items: &[NewAnnouncement]) -> Result<(), StoreError> {
        self.store
            .record_announcements(&self.bot_id, items, self.fence.as_ref())
            .await
    }

    /// [`Store::prune_announcements`], fenced.
    ///
    /// # Errors
    /// When the store fails or the lease is gone; nothing is written then.
    pub async fn prune_announcements(
        &self,
        keep: i64,
        listed: &HashSet<String>,
    ) -> Result<(), StoreError> {
        self.store
            .prune_announcements(&self.bot_id, keep, listed, self.fence.as_ref())
            .await
    }

    /// # Errors
    /// When the store fails.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.store.subscriptions(&self.bot_id).await
    }

    /// # Errors
    /// When the store fails.
    pub async fn seen_announcements(&self) -> Result<HashSet<String>, StoreError> {
        self.store.seen_announcements(&self.bot_id).await
    }

    /// # Errors
    /// When the store fails.
    pub async fn pending_announcements(&self) -> Result<Vec<Announcement>, StoreError> {
        self.store.pending_announcements(&self.bot_id).await
    }

    /// # Errors
    /// When the store fails.
    pub async fn delivered_to(&self, id: &str) -> Result<HashSet<i64>, StoreError> {
        self.store.delivered_to(&self.bot_id, id).await
    }
}
